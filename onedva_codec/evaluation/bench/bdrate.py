"""Bjontegaard rate differences between RD curves."""

from __future__ import annotations

import math

import numpy as np

LOWER_IS_BETTER = {"lpips", "fvd"}
BD_METRICS = ("psnr", "lpips", "vmaf")


def bd_rate(anchor: list[dict], test: list[dict], metric: str) -> float | None:
    """Average bitrate difference (%) of `test` against `anchor` at equal `metric` (Bjontegaard, PCHIP).

    Negative: `test` needs fewer bits. None where the quality ranges do not overlap or a curve has fewer
    than two usable points.
    """
    from scipy.interpolate import PchipInterpolator

    def usable(rows: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
        pairs = [(r[metric], math.log(r["bpp"])) for r in rows if not math.isnan(r[metric]) and r["bpp"] > 0]
        if metric in LOWER_IS_BETTER:
            pairs = [(-q, rate) for q, rate in pairs]
        pairs.sort()
        frontier: list[tuple[float, float]] = []  # quality strictly rising with rate: the RD frontier
        for q, rate in pairs:
            while frontier and rate <= frontier[-1][1]:
                frontier.pop()
            if not frontier or q > frontier[-1][0]:
                frontier.append((q, rate))
        if len(frontier) < 2:
            return None
        q, rate = zip(*frontier)
        return np.array(q), np.array(rate)

    a, b = usable(anchor), usable(test)
    if a is None or b is None:
        return None
    low, high = max(a[0].min(), b[0].min()), min(a[0].max(), b[0].max())
    if high <= low:
        return None
    grid = np.linspace(low, high, 101)
    gap = np.trapezoid(PchipInterpolator(*b)(grid) - PchipInterpolator(*a)(grid), grid) / (high - low)
    return float((math.exp(gap) - 1) * 100)


def bd_rate_table(curves: dict[str, list[dict]], anchors: tuple[str, ...], adaptive_sweep: bool,
                  key_sweep: bool = False) -> list[dict]:
    """odva against each anchor, (with the adaptive sweep) motion-adaptive against constant length, and (with
    the key sweep, for a model whose chunks can depend on the one before) against every chunk a key chunk."""
    pairs = [("odva", name) for name in anchors]
    if adaptive_sweep:
        pairs.append(("odva", "odva constant"))
    if key_sweep:
        pairs.append(("odva", "odva key chunks"))
    table = []
    for test, anchor in pairs:
        if test in curves and anchor in curves:
            row = {"test": test, "anchor": anchor}
            for metric in BD_METRICS:
                row[metric] = bd_rate(curves[anchor], curves[test], metric)
            table.append(row)
    return table

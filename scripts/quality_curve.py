"""Held-out validation PSNR against GPU-minutes of training, one line per run, from a CSV.

    python scripts/quality_curve.py docs/quality_vs_gpu_minutes.csv -o docs/quality_vs_gpu_minutes.png

The CSV has columns run, gpu_minutes, psnr_all_1d, psnr_no_1d (the last may be empty): the
validation figures each run logged at the end of a round (metrics.jsonl, summary.json).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {}
    with open(args.table) as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["run"], []).append(row)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for run, rows in runs.items():
        minutes = [float(r["gpu_minutes"]) for r in rows]
        line, = ax.plot(minutes, [float(r["psnr_all_1d"]) for r in rows], "o-", label=f"{run}: all 1D tokens")
        none = [(m, float(r["psnr_no_1d"])) for m, r in zip(minutes, rows) if r["psnr_no_1d"]]
        if none:
            ax.plot(*zip(*none), "o--", color=line.get_color(), alpha=0.5, label=f"{run}: no 1D tokens")
    ax.set_xscale("log")
    ax.set_xlabel("GPU-minutes of training (H200)")
    ax.set_ylabel("held-out PSNR, 1 step (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: the runs crowd its corners
    fig.tight_layout()
    fig.savefig(args.output, dpi=110, bbox_inches="tight")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

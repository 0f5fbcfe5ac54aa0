"""What a benchmark leaves behind: results.csv, results.json and one RD plot per metric."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from .bdrate import LOWER_IS_BETTER
from .run import METRICS, BenchResult


def write_outputs(result: BenchResult, folder: Path) -> list[Path]:
    """results.csv (every point), results.json (everything), one RD plot per metric (PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.csv", folder / "results.json"]
    with open(written[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(result.points[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in result.points)
    written[1].write_text(json.dumps({"settings": result.settings, "notes": result.notes,
                                      "curves": result.curves, "bd_rates": result.bd_rates,
                                      "points": [asdict(p) for p in result.points]}, indent=1, default=str))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd_curves = {k: v for k, v in result.curves.items() if not k.startswith("odva steps")}
    for metric in METRICS:
        if all(math.isnan(r[metric]) for rows in rd_curves.values() for r in rows):
            continue
        fig, axis = plt.subplots(figsize=(6, 4.5))
        for name, rows in rd_curves.items():
            axis.plot([r["bpp"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
        axis.set_xscale("log")
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(metric.upper().replace("_", "-") + (" (lower is better)" if metric in LOWER_IS_BETTER
                                                              else ""))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
        fig.tight_layout()
        path = folder / f"rd_{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written

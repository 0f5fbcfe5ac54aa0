"""One markdown table over finished runs: budget spent and held-out quality at the end.

This is how variants trained on equal budgets are compared (docs/training.md,
the efficiency table): each run folder's summary.json says what it cost, the
last validation record of its metrics.jsonl what it reached.
"""

from __future__ import annotations

import json
from pathlib import Path


def final_validation(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    validations = [r for r in records if "val" in r]
    if not validations:
        raise ValueError(f"{run} has no validation record yet")
    return validations[-1]


def runs_table(runs: list[Path]) -> str:
    """Markdown: per run, steps, GPU-minutes and PSNR/SSIM/LPIPS with all and no 1D latents."""
    lines = ["| run | stage | steps x batch | GPU-min | PSNR all | PSNR none | all - none | SSIM all | LPIPS all |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        summary_path = run / "summary.json"
        if not summary_path.is_file():
            raise ValueError(f"{run} has no summary.json: it is not a finished run folder")
        summary = json.loads(summary_path.read_text())
        val = final_validation(run)["val"]
        if "full" not in val:
            raise ValueError(f"{run} is an ldm run; its validation is a loss, not reconstructions")
        full, none = val["full"], val["none"]
        minutes = summary["gpu_minutes"]
        lines.append(f"| {run.name} | {summary['stage']} | {summary['steps']} x {summary['batch']} | {minutes:.1f} | "
                     f"{full['psnr']:.2f} | {none['psnr']:.2f} | {full['psnr'] - none['psnr']:+.2f} | "
                     f"{full['ssim']:.3f} | {full['lpips']:.3f} |")
    return "\n".join(lines) + "\n"

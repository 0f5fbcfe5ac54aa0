"""A run's resume point, small enough to commit: its EMA weights in bf16 with the model config, motion
statistics and training history, without the optimizer's state or the raw weights.

    python scripts/resume_point.py RUN OUT.pt

`odva-train STAGE --init OUT.pt` starts the next round from it (as from a checkpoint); the optimizer's
Adam moments (twice the weights in float32) do not earn their size in the repository.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train.trainer import load_checkpoint  # noqa: E402


def main() -> None:
    run, out = sys.argv[1:3]
    checkpoint = load_checkpoint(run)
    ema = {k: v.to(torch.bfloat16) for k, v in checkpoint["ema"].items() if k.startswith("model.")}
    slim = {key: checkpoint[key] for key in ("config", "model_config", "motion", "history") if key in checkpoint}
    slim.update(model={}, ema=ema)
    torch.save(slim, out)
    print(f"{out}: {len(ema)} tensors, {Path(out).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

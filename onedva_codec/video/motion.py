"""The motion score that drives variable-length latents.

s = mean |gray(f_t+1) - gray(f_t)| over a chunk, with gray in [0, 1] (BT.601
luma). It is normalised as s^ = s / (mu + 3 sigma), with mu and sigma the running
statistics of s over the training data, stored in the model card.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)


def motion_scores(video: Tensor, valid_frames: Tensor) -> Tensor:
    """(B, 3, T, H, W) in [-1, 1], (B,) real frame counts -> (B,) motion scores.

    Only differences between real frames count, so the repeated frames that pad the
    last chunk of a video do not dilute its score.
    """
    weights = torch.tensor(_LUMA, device=video.device, dtype=torch.float32).view(1, 3, 1, 1, 1)
    gray = ((video.float() + 1) * 0.5 * weights).sum(dim=1)  # (B, T, H, W)
    diffs = (gray[:, 1:] - gray[:, :-1]).abs().mean(dim=(2, 3))  # (B, T - 1)
    real = torch.arange(diffs.shape[1], device=video.device)[None] < (valid_frames[:, None] - 1)
    return (diffs * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


def normalise_motion(scores: Tensor, mu: float, sigma: float) -> Tensor:
    """s^ = s / (mu + 3 sigma): about 1 for the most active chunks seen in training."""
    return scores / max(mu + 3.0 * sigma, 1e-8)

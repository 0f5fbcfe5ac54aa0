"""Quality metrics shared by training (validation) and benchmarking.

Frames are (N, 3, H, W) tensors in [-1, 1]; every function returns one value per
frame, so that a video's score is the mean over its frames.

- PSNR on RGB with a peak of 255, computed on frames rounded to 8 bits, as the
  decoded video a user sees would be;
- SSIM (Wang et al. 2004): 11 x 11 Gaussian window, sigma 1.5, on each RGB
  channel in [0, 1], valid positions only, channels averaged;
- LPIPS v0.1 with AlexNet (see lpips.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .lpips import LPIPS


def to_8bit(frames: Tensor) -> Tensor:
    """[-1, 1] -> values 0..255 (as float), rounded like the codec's output."""
    return ((frames.float().clamp(-1, 1) + 1) * 127.5).round()


def psnr(a: Tensor, b: Tensor) -> Tensor:
    mse = (to_8bit(a) - to_8bit(b)).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None]).expand(3, 1, size, size)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    x, y = to_8bit(a) / 255.0, to_8bit(b) / 255.0
    window = _gaussian_window(device=x.device)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return index.mean(dim=(1, 2, 3))


class FrameMetrics:
    """PSNR, SSIM and LPIPS (AlexNet) of frame pairs, averaged over frames."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.lpips = LPIPS("alexnet").to(device)

    @torch.no_grad()
    def __call__(self, reference: Tensor, decoded: Tensor, batch: int = 64) -> dict[str, float]:
        """(N, 3, H, W) pairs in [-1, 1] -> mean PSNR, SSIM and LPIPS over the N frames."""
        sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0}
        for start in range(0, reference.shape[0], batch):
            a, b = reference[start:start + batch].float(), decoded[start:start + batch].float()
            sums["psnr"] += psnr(a, b).sum().item()
            sums["ssim"] += ssim(a, b).sum().item()
            sums["lpips"] += self.lpips(a, b).sum().item()
        return {k: v / reference.shape[0] for k, v in sums.items()}


def video_frames(video: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> (B * T, 3, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)

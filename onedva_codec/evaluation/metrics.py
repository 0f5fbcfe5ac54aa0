"""Quality metrics shared by training (validation) and benchmarking.

Frames are (N, 3, H, W) tensors in [-1, 1]; every per-frame function returns one
value per frame, so that a video's score is the mean over its frames.

- PSNR on RGB with a peak of 255, computed on frames rounded to 8 bits, as the
  decoded video a user sees would be; PSNR-Y on BT.601 luma (16..235);
- SSIM (Wang et al. 2004): 11 x 11 Gaussian window, sigma 1.5, on each RGB
  channel in [0, 1], valid positions only, channels averaged;
- MS-SSIM (Wang et al. 2003): the same SSIM over 5 scales with the standard
  weights; frames too small for 5 scales use as many as fit, weights renormalised;
- LPIPS v0.1 with AlexNet (see lpips.py);
- rFVD: the Frechet distance between Kinetics-400 I3D logits of 16-frame windows
  (stride 8) of the reference and of the decoded videos, frames resized to
  224 x 224 (i3d.py). It compares two sets, so it is computed over every window of
  every clip coded with one setting.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..video.pixels import frames_to_model, to_8bit
from .lpips import LPIPS


def _levels(frames: Tensor) -> Tensor:
    """[-1, 1] -> values 0..255 as float, rounded as the codec's output is."""
    return to_8bit(frames).float()


def psnr(a: Tensor, b: Tensor) -> Tensor:
    mse = (_levels(a) - _levels(b)).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))


def psnr_y(a: Tensor, b: Tensor) -> Tensor:
    weights = torch.tensor([65.481, 128.553, 24.966], device=a.device).view(1, 3, 1, 1) / 255.0
    luma_a = 16 + (_levels(a) * weights).sum(dim=1)
    luma_b = 16 + (_levels(b) * weights).sum(dim=1)
    mse = (luma_a - luma_b).pow(2).mean(dim=(1, 2))
    return 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None]).expand(3, 1, size, size)


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ssim_parts(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame mean SSIM and mean contrast-structure term of images in [0, 1]."""
    window = _gaussian_window(device=x.device)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.pow(2) + mu_y.pow(2) + c1)
    return (luminance * contrast_structure).mean(dim=(1, 2, 3)), contrast_structure.mean(dim=(1, 2, 3))


def ssim(a: Tensor, b: Tensor) -> Tensor:
    return _ssim_parts(_levels(a) / 255.0, _levels(b) / 255.0)[0]


def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    x, y = _levels(a) / 255.0, _levels(b) / 255.0
    scales = 1
    while scales < len(_MS_SSIM_WEIGHTS) and min(x.shape[-2:]) // 2**scales >= 11:
        scales += 1
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    terms = []
    for scale in range(scales):
        full, contrast_structure = _ssim_parts(x, y)
        terms.append(full if scale == scales - 1 else contrast_structure)
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(terms, dim=1).clamp(min=0)  # a negative term would make the product meaningless
    return (stacked ** weights).prod(dim=1)


class FrameMetrics:
    """Every per-frame metric (PSNR, PSNR-Y, SSIM, MS-SSIM, LPIPS with AlexNet) of frame pairs,
    averaged over the frames: what validation logs and `odva bench` scores."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = device
        self.lpips = LPIPS("alexnet").to(device)

    @torch.no_grad()
    def __call__(self, reference: Tensor | np.ndarray, decoded: Tensor | np.ndarray, batch: int = 16
                 ) -> dict[str, float]:
        """(N, 3, H, W) tensors in [-1, 1], or (N, H, W, 3) uint8 arrays (converted a batch at a time),
        -> the mean of each metric over the N frames."""
        def frames(video: Tensor | np.ndarray, start: int) -> Tensor:
            part = video[start:start + batch]
            part = frames_to_model(part) if isinstance(part, np.ndarray) else part
            return part.to(self.device).float()

        sums = dict.fromkeys(("psnr", "psnr_y", "ssim", "ms_ssim", "lpips"), 0.0)
        for start in range(0, len(reference), batch):
            a, b = frames(reference, start), frames(decoded, start)
            for name, fn in (("psnr", psnr), ("psnr_y", psnr_y), ("ssim", ssim), ("ms_ssim", ms_ssim),
                             ("lpips", self.lpips)):
                sums[name] += fn(a, b).sum().item()
        return {k: v / len(reference) for k, v in sums.items()}


def video_frames(video: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> (B * T, 3, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature rows; nan below two rows each."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


class VideoFeatures:
    """I3D logits of 16-frame windows, the features of FVD."""

    clip_frames = 16
    stride = 8

    def __init__(self, device: torch.device | str = "cpu"):
        from .i3d import I3D
        self.device = device
        self.net = I3D().to(device)

    @torch.no_grad()
    def __call__(self, video: Tensor) -> np.ndarray:
        """(T, 3, H, W) frames in [-1, 1] -> one 400-d row per 16-frame window, windows 8 frames apart."""
        rows = []
        for start in range(0, video.shape[0] - self.clip_frames + 1, self.stride):
            frames = video[start:start + self.clip_frames].to(self.device).float()
            frames = F.interpolate(frames, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
            rows.append(self.net(frames.transpose(0, 1)[None]).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 400))

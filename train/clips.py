"""Training clips: 17-frame, tile-sized samples from the pack, real or pseudo-video.

Every sample is a pure function of (seed, index), so a run resumed at step s
sees exactly the samples an uninterrupted run would have seen.

Real clips: a video, a temporal stride of 1 to 3 frames, sometimes played
backwards, a random square window between 7/8 of a tile and the frame's short
side, scaled to the tile, sometimes mirrored.

Pseudo-video: a camera moving over a photo. The window pans (static, slow,
medium or fast), zooms in or out, and sometimes rotates; sprites cut from other
photos, with soft edges, may glide across it. Without these, a model trained on
the handful of real scenes does not generalise beyond them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

# clips cross to the GPU as uint8
from onedva_codec.video.pixels import frames_to_channels, frames_to_model, to_8bit, to_model_range

STRIDES, STRIDE_WEIGHTS = (1, 2, 3), (0.6, 0.3, 0.1)
REVERSE_PROB = 0.2
PAN_SPEEDS = ((0.0, 0.0), (0.0, 0.15), (0.15, 0.5), (0.5, 1.0))  # window widths per clip: static..fast
PAN_SPEED_WEIGHTS = (0.1, 0.3, 0.4, 0.2)
ZOOM_PROB, ROTATION_PROB, SPRITE_PROB = 0.4, 0.3, 0.35




def _resize(images: Tensor, size: int | None = None, scale: float | None = None) -> Tensor:
    """(N, 3, H, W) images at `size` x `size` or scaled by `scale`, antialiased, in their own dtype. uint8
    channels last (`frames_to_channels`) runs on a CPU about 30 times as fast as floats (a 17-frame 640 x 360
    clip to 256: 3.5 ms against 102, within one level): clip making, not the GPU, limited a v3 probe's
    training (docs/training.md), so the training stream resamples its pixels as uint8."""
    return F.interpolate(images, size=None if size is None else (size, size), scale_factor=scale, mode="bilinear",
                         antialias=True, align_corners=False)


def real_clip(video: np.ndarray, rng: np.random.Generator, frames: int, size: int) -> Tensor:
    """(T, H, W, 3) uint8 video -> (3, frames, size, size) uint8 clip."""
    length, height, width = video.shape[:3]
    strides = [s for s in STRIDES if (frames - 1) * s < length] or [1]
    weights = np.array([STRIDE_WEIGHTS[STRIDES.index(s)] for s in strides])
    stride = int(rng.choice(strides, p=weights / weights.sum()))
    span = (frames - 1) * stride
    start = int(rng.integers(0, max(length - span, 1)))
    picks = np.minimum(start + stride * np.arange(frames), length - 1)
    if rng.random() < REVERSE_PROB:
        picks = picks[::-1]
    short = min(height, width)
    window = int(rng.uniform(min(0.875 * size, short), short + 1))
    y, x = int(rng.integers(0, height - window + 1)), int(rng.integers(0, width - window + 1))
    clip = _resize(frames_to_channels(video[picks, y:y + window, x:x + window]), size)
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.transpose(0, 1).contiguous()


def _affine(center: Tensor, width: Tensor, angle: Tensor, image_h: int, image_w: int) -> Tensor:
    """Per-frame (T, 2, 3) matrices mapping output coordinates in [-1, 1] into a square window of the
    image, centred at `center` (pixels), `width` pixels wide, rotated by `angle` (radians)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    half = width / 2
    row_x = torch.stack([half * cos / (image_w / 2), -half * sin / (image_w / 2), center[:, 0] / (image_w / 2) - 1], 1)
    row_y = torch.stack([half * sin / (image_h / 2), half * cos / (image_h / 2), center[:, 1] / (image_h / 2) - 1], 1)
    return torch.stack([row_x, row_y], dim=1)


def _sample_through(image: Tensor, theta: Tensor, size: int, padding: str) -> Tensor:
    """(C, H, W) image, (T, 2, 3) matrices -> (T, C, size, size)."""
    grid = F.affine_grid(theta, [theta.shape[0], image.shape[0], size, size], align_corners=False)
    return F.grid_sample(image.expand(theta.shape[0], -1, -1, -1), grid, mode="bilinear",
                         padding_mode=padding, align_corners=False)


def _camera_path(rng: np.random.Generator, height: int, width: int, size: int, frames: int):
    """Window centre, width and angle per frame, kept inside the photo."""
    short = min(height, width)
    low, high = 0.9 * size, max(0.9 * size, 0.9 * short)
    w0 = math.exp(rng.uniform(math.log(low), math.log(high)))
    w1 = w0 * math.exp(rng.uniform(-0.3, 0.3)) if rng.random() < ZOOM_PROB else w0
    w1 = min(w1, 0.9 * short)
    a1 = math.radians(rng.uniform(-12, 12)) if rng.random() < ROTATION_PROB else 0.0
    reach = max(w0, w1) * (math.sqrt(2) if a1 else 1.0) / 2  # half-extent the window may need
    reach = min(reach, short / 2)
    lo_speed, hi_speed = PAN_SPEEDS[rng.choice(len(PAN_SPEEDS), p=PAN_SPEED_WEIGHTS)]
    distance = rng.uniform(lo_speed, hi_speed) * w0
    direction = rng.uniform(0, 2 * math.pi)
    free_x, free_y = width - 2 * reach, height - 2 * reach
    dx = float(np.clip(distance * math.cos(direction), -free_x, free_x))
    dy = float(np.clip(distance * math.sin(direction), -free_y, free_y))
    x0 = reach + rng.uniform(max(0.0, -dx), free_x - max(0.0, dx))
    y0 = reach + rng.uniform(max(0.0, -dy), free_y - max(0.0, dy))
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    center = torch.stack([x0 + dx * t, y0 + dy * t], 1)
    window = w0 * (w1 / w0) ** t
    angle = a1 * t
    return center, window, angle


def _sprite_layer(photo: np.ndarray, rng: np.random.Generator, frames: int, size: int) -> tuple[Tensor, Tensor]:
    """A soft-edged patch of `photo` gliding across the frame: (T, 3, size, size) colours and alphas."""
    diameter = int(rng.uniform(size / 8, size / 2.5))
    height, width = photo.shape[:2]
    source = min(height, width, int(diameter * rng.uniform(1.0, 3.0)))
    y, x = int(rng.integers(0, height - source + 1)), int(rng.integers(0, width - source + 1))
    patch = to_model_range(_resize(frames_to_channels(photo[y:y + source, x:x + source])[None], diameter)[0])
    coords = torch.linspace(-1, 1, diameter)
    if rng.random() < 0.5:  # ellipse
        radius = (coords[None] ** 2 + coords[:, None] ** 2).sqrt()
    else:  # rounded square
        radius = torch.maximum(coords[None].abs(), coords[:, None].abs())
    alpha = ((1 - radius) * diameter / 4).clamp(0, 1)[None]  # about 2 px of feathering
    canvas = torch.cat([patch, alpha])  # (4, d, d)
    start = rng.uniform(-0.2, 1.2, size=2) * size
    travel = rng.uniform(-0.8, 0.8, size=2) * size
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    center_px = torch.from_numpy(start)[None] + torch.from_numpy(travel)[None] * t[:, None]
    spin = math.radians(rng.uniform(-30, 30)) * t
    # Output pixel p maps to sprite coordinates (p - centre) / (d / 2), rotated.
    cos, sin = torch.cos(spin), torch.sin(spin)
    scale = size / diameter
    shift = (size / 2 - center_px) / (diameter / 2)
    theta = torch.stack([
        torch.stack([scale * cos, -scale * sin, cos * shift[:, 0] - sin * shift[:, 1]], 1),
        torch.stack([scale * sin, scale * cos, sin * shift[:, 0] + cos * shift[:, 1]], 1),
    ], 1).float()
    layer = _sample_through(canvas, theta, size, padding="zeros")
    return layer[:, :3], layer[:, 3:]


def photo_clip(photo: np.ndarray, others: list[np.ndarray], rng: np.random.Generator, frames: int,
               size: int) -> Tensor:
    """(H, W, 3) uint8 photo -> (3, frames, size, size) uint8 pseudo-video."""
    height, width = photo.shape[:2]
    center, window, angle = _camera_path(rng, height, width, size, frames)
    image = frames_to_channels(photo)
    shrink = float(window.min()) / size  # downscale first so that sampling is close to 1:1
    if shrink > 1.0:
        image = _resize(image[None], scale=1 / shrink)[0]
        center, window = center / shrink, window / shrink
    image = to_model_range(image)
    theta = _affine(center, window, angle, image.shape[1], image.shape[2]).float()
    clip = _sample_through(image, theta, size, padding="reflection")
    if others and rng.random() < SPRITE_PROB:
        for _ in range(int(rng.integers(1, 4))):
            colour, alpha = _sprite_layer(others[int(rng.integers(len(others)))], rng, frames, size)
            clip = clip * (1 - alpha) + colour * alpha
    return to_8bit(clip.transpose(0, 1))


class TrainClips(Dataset):
    """Sample `index` of the training stream, uint8: a real clip or, with `photo_share`, a pseudo-video."""

    def __init__(self, videos: list[np.ndarray], photos: list[np.ndarray], frames: int, size: int, seed: int,
                 photo_share: float = 0.5):
        if not videos and not photos:
            raise ValueError("the training split has neither videos nor photos")
        self.videos, self.photos = videos, photos
        self.frames, self.size, self.seed = frames, size, seed
        self.photo_share = photo_share if videos and photos else (1.0 if photos else 0.0)
        lengths = np.array([len(v) for v in videos], dtype=np.float64)
        self.video_weights = lengths / lengths.sum() if videos else None

    def __len__(self) -> int:
        return 2**62  # a stream; StepSampler picks the indices

    def __getitem__(self, index: int) -> Tensor:
        rng = np.random.default_rng([self.seed, index])
        if rng.random() < self.photo_share:
            pick = int(rng.integers(len(self.photos)))
            others = self.photos[:pick] + self.photos[pick + 1:]
            return photo_clip(self.photos[pick], others, rng, self.frames, self.size)
        video = self.videos[int(rng.choice(len(self.videos), p=self.video_weights))]
        return real_clip(video, rng, self.frames, self.size)


class StepSampler(Sampler[list[int]]):
    """Batches of stream indices for one rank: step s holds global samples s*B .. s*B+B-1."""

    def __init__(self, start_step: int, steps: int, global_batch: int, rank: int, world: int):
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} does not split over {world} processes")
        self.start, self.steps, self.batch = start_step, steps, global_batch
        self.local = global_batch // world
        self.offset = rank * self.local

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = step * self.batch + self.offset
            yield list(range(first, first + self.local))

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)


def validation_clips(videos: list[np.ndarray], photos: list[np.ndarray], frames: int, size: int,
                     per_video: int = 4, photo_clips: int = 8) -> Tensor:
    """A fixed set of held-out clips in [-1, 1]: centre crops of real videos at evenly spaced starts
    (stride 1, as stored), then pseudo-videos of held-out photos with fixed seeds; 8-bit, as a codec's input."""
    clips = []
    for video in videos:
        length, height, width = video.shape[:3]
        crop = min(size, height, width)
        y, x = (height - crop) // 2, (width - crop) // 2
        for start in np.linspace(0, max(length - frames, 0), per_video).astype(int):
            picks = np.minimum(start + np.arange(frames), length - 1)
            clips.append(to_8bit(_resize(frames_to_model(video[picks, y:y + crop, x:x + crop]), size).transpose(0, 1)))
    for i in range(photo_clips if photos else 0):
        rng = np.random.default_rng([12345, i])
        clips.append(photo_clip(photos[i % len(photos)], [], rng, frames, size))
    return to_model_range(torch.stack(clips))

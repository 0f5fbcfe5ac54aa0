"""Pictures for judging a codec by eye: chosen frames side by side, and quality frame by frame.

`compare` reads a reference video and any number of distorted versions of it: `.odva` files
(decoded with the model) or videos of any other codec (x264's at the same bpp, say). Each
column of the grid is labelled with its name, bits per pixel (the whole file) and mean PSNR;
the per-frame plot shows PSNR, and LPIPS where its network weights are installed. Videos are
streamed: only the shown frames and the per-frame figures are kept.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..bitstream.container import OdvaReader
from ..errors import InputError, OdvaError
from ..video.io import VideoReader
from ..video.pixels import frames_to_model
from .metrics import psnr

LABEL_HEIGHT = 18
LPIPS_BATCH = 8


@dataclass
class Column:
    name: str
    bpp: float
    psnr: list[float] = field(default_factory=list)  # per frame
    lpips: list[float] = field(default_factory=list)  # per frame, where LPIPS is available
    shown: list[np.ndarray] = field(default_factory=list)  # the chosen frames

    @property
    def label(self) -> str:
        return f"{self.name}: {self.bpp:.4f} bpp, {np.mean(self.psnr):.2f} dB"


@dataclass
class Comparison:
    reference: Column
    columns: list[Column]
    frames: list[int]  # the frames shown
    notes: list[str] = field(default_factory=list)


def _video_frames(path: Path, codec_for: Callable[[], object], steps: int | None
                  ) -> tuple[Iterator[np.ndarray], tuple[int, int], int, int | None]:
    """Frames of a video or an .odva file, their (height, width), the file's size in bytes, and its
    frame count where the file states it (.odva)."""
    size = path.stat().st_size if path.is_file() else 0
    if path.suffix.lower() == ".odva":
        reader = OdvaReader(path)
        h = reader.header

        def frames() -> Iterator[np.ndarray]:
            with reader:
                yield from codec_for().frames(reader, steps)
        return frames(), (h.height, h.width), size, h.frames
    video = VideoReader(path)

    def frames() -> Iterator[np.ndarray]:
        with video:
            yield from video.frames()
    return frames(), (video.info.height, video.info.width), size, None


def _lpips_network(device: torch.device):
    from .lpips import LPIPS
    try:
        return LPIPS("alexnet").to(device)
    except OdvaError:  # no weights installed: the plot shows PSNR only
        return None


def compare(reference: Path, distorted: list[Path], shown: list[int], codec_for: Callable[[], object],
            steps: int | None = None, device: torch.device | str = "cpu") -> Comparison:
    """Read everything once, frame by frame; `codec_for()` gives the Codec that decodes .odva files
    (made only if one is given)."""
    if not distorted:
        raise InputError("give at least one distorted video or .odva file to compare with the reference")
    device = torch.device(device)
    reference_frames, (height, width), _, _ = _video_frames(reference, codec_for, None)
    sources = []
    for path in distorted:
        frames, (h, w), size, total = _video_frames(path, codec_for, steps)
        if (h, w) != (height, width):
            raise InputError(f"{path} is {w}x{h}, the reference {width}x{height}")
        sources.append((path, frames, size, total))
    lpips = _lpips_network(device)
    notes = [] if lpips is not None else ["no LPIPS weights installed: the per-frame plot shows PSNR only"]
    ref = Column(reference.name, 0.0)
    columns = [Column(path.name, 0.0) for path, _, _, _ in sources]
    count = 0
    pending: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def score(batch: list[tuple[np.ndarray, list[np.ndarray]]]) -> None:
        a = frames_to_model(np.stack([r for r, _ in batch]), device)
        for i, column in enumerate(columns):
            b = frames_to_model(np.stack([d[i] for _, d in batch]), device)
            column.psnr += psnr(a, b).tolist()
            if lpips is not None:
                with torch.no_grad():
                    column.lpips += lpips(a, b).tolist()

    iterators = [frames for _, frames, _, _ in sources]
    for index, original in enumerate(reference_frames):
        decoded = [next(it, None) for it in iterators]
        if any(d is None for d in decoded):
            short = [str(sources[i][0]) for i, d in enumerate(decoded) if d is None]
            notes.append(f"{', '.join(short)} ended after {index} frames; compared over those")
            break
        if index in shown:
            ref.shown.append(original)
            for column, frame in zip(columns, decoded):
                column.shown.append(frame)
        pending.append((original, decoded))
        if len(pending) == LPIPS_BATCH:
            score(pending)
            pending = []
        count += 1
    if pending:
        score(pending)
    if count == 0:
        raise InputError(f"{reference} has no frames to compare")
    missing = [f for f in shown if f >= count]
    if missing:
        raise InputError(f"frame {missing[0]} is past the {count} frames compared; choose --frames below {count}")
    for column, (path, frames, size, total) in zip(columns, sources):
        # a file's bits pay for all of its frames, not only those compared: read a video to its end
        total = total if total is not None else count + sum(1 for _ in frames)
        column.bpp = size * 8 / (total * height * width)
        if total > count:
            notes.append(f"{path} has {total} frames, {count} compared; its bpp is over all {total}")
    return Comparison(ref, columns, sorted(shown), notes)


def frame_grid(comparison: Comparison) -> Image.Image:
    """Rows: the chosen frames; columns: the reference, then each distorted version, labelled."""
    columns = [comparison.reference, *comparison.columns]
    h, w = comparison.reference.shown[0].shape[:2]
    grid = Image.new("RGB", (w * len(columns), LABEL_HEIGHT + h * len(comparison.frames)), "white")
    draw = ImageDraw.Draw(grid)
    for c, column in enumerate(columns):
        label = column.name if column is comparison.reference else column.label
        draw.text((c * w + 4, 3), label, fill="black")
        for r, frame in enumerate(column.shown):
            grid.paste(Image.fromarray(frame), (c * w, LABEL_HEIGHT + r * h))
    return grid


def can_plot() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def per_frame_plot(comparison: Comparison, path: Path) -> None:
    """PSNR (and LPIPS) of each distorted version, frame by frame (needs matplotlib: odva[bench])."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with_lpips = bool(comparison.columns[0].lpips)
    fig, axes = plt.subplots(2 if with_lpips else 1, 1, figsize=(8, 6 if with_lpips else 3.5), squeeze=False)
    for column in comparison.columns:
        axes[0, 0].plot(column.psnr, label=column.label)
        if with_lpips:
            axes[1, 0].plot(column.lpips, label=column.name)
    axes[0, 0].set_ylabel("PSNR (dB)")
    axes[0, 0].legend(fontsize=7)
    if with_lpips:
        axes[1, 0].set_ylabel("LPIPS (lower is better)")
    axes[-1, 0].set_xlabel(f"frame of {comparison.reference.name}")
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)

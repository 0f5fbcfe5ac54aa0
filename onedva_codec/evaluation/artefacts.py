"""Artefacts a viewer sees that PSNR averages away: a grid at the decoder's patch edges, motion that moves
in steps of the encoder's temporal groups, and a pop where one chunk ends and the next begins.

Each is a ratio, 1 where the artefact is absent:

* `patch_edge_ratio`: the mean luma step between neighbouring pixels across patch boundaries (every
  `patch` pixels from the frame's origin) over the mean step inside patches. Natural video gives about 1.
* `temporal_ratios`: the frame-to-frame change of the decode over the source's, by position in the chunk
  (so that a still scene and a fast one weigh alike); `step` is that ratio where a temporal group begins
  (frames 1, 5, 9, 13 of a 17-frame chunk with groups of 4) over the ratio at the other frames inside the
  chunk, and `pop` the ratio at a chunk's first frame (the change from the previous chunk's last) over
  the same inside frames. Chunks are laid out as odva lays them out (a new one at every scene cut of the
  source); a frame that starts a shot is left out, since its change is the cut's, not the codec's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..bitstream.container import chunk_layout

_LUMA = np.array([0.299, 0.587, 0.114])


def _luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) float32 luma."""
    return (frames.astype(np.float32) @ _LUMA.astype(np.float32))


def patch_edge_ratio(frames: np.ndarray, patch: int = 16) -> float:
    """Mean |luma step| across patch boundaries over the mean inside patches, both directions pooled."""
    luma = _luma(frames)
    across, inside = [], []
    for axis in (1, 2):
        steps = np.abs(np.diff(luma, axis=axis))  # step i lies between pixels i and i + 1
        boundary = (np.arange(steps.shape[axis]) + 1) % patch == 0
        across.append(np.compress(boundary, steps, axis=axis).ravel())
        inside.append(np.compress(~boundary, steps, axis=axis).ravel())
    across_mean, inside_mean = np.concatenate(across).mean(), np.concatenate(inside).mean()
    if inside_mean == 0:  # flat patches: any step at their edges is all there is
        return float("inf") if across_mean > 0 else 1.0
    return float(across_mean / inside_mean)


def change_by_position(frames: np.ndarray, chunk_frames: int, cuts: Sequence[int] = ()) -> np.ndarray:
    """(chunk_frames,) mean |luma change| from the frame before, by the frame's position in its chunk
    (chunks as chunk_layout gives them); position 0 is a chunk's first frame. Frames that start a shot,
    and the video's very first, are left out; nan where no frame is at a position."""
    change = np.abs(np.diff(_luma(frames), axis=0)).mean(axis=(1, 2))  # change[t - 1]: frame t against t - 1
    starts = chunk_layout(len(frames), chunk_frames, cuts)
    frame = np.arange(1, len(frames))
    positions = frame - np.asarray(starts)[np.searchsorted(starts, frame, side="right") - 1]
    positions[np.isin(frame, list(cuts))] = -1
    return np.array([change[positions == p].mean() if (positions == p).any() else np.nan
                     for p in range(chunk_frames)])


def temporal_ratios(decoded: np.ndarray, source: np.ndarray, chunk_frames: int = 17, group: int = 4,
                    cuts: Sequence[int] = ()) -> dict:
    """{"step": ..., "pop": ...} of a decode against its source (module docstring), whose shots start at
    `cuts`; nan where the video is too short to hold the positions compared (a pop needs a second chunk)."""
    starts = np.arange(1, chunk_frames, group)  # a group's first frame: 1, 5, 9, 13
    between = np.setdiff1d(np.arange(1, chunk_frames), starts)
    with np.errstate(invalid="ignore", divide="ignore"):  # a still source, or a decode still within groups
        relative = change_by_position(decoded, chunk_frames, cuts) / change_by_position(source, chunk_frames, cuts)
        reference = np.nanmean(relative[between]) if np.isfinite(relative[between]).any() else np.nan
        step = np.nanmean(relative[starts]) / reference if np.isfinite(relative[starts]).any() else np.nan
        pop = relative[0] / reference
    return {"step": float(step), "pop": float(pop)}

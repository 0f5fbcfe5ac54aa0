"""Scene cuts: where a new shot begins, so that no chunk holds frames of two shots.

A chunk is decoded as one piece of video: frames of two shots in one chunk come back blended (a ghost
of the next shot over the last frames of the first). The encoder therefore ends a chunk early where a
shot ends; the file's header lists those frames (docs/format.md, "cuts").

A frame starts a new shot when it differs from the one before by much more than the frames before
it differed from each other, and the frame after it does not return to the old shot (a flash, a
lightning strike or a camera flash is no cut). Differences are measured on a small luma thumbnail
(about 64 pixels on the short side), so finding cuts costs little next to the model:
- the mean absolute luma difference d (0..255) must reach MIN_DIFFERENCE and RATIO times the mean of
  the last RECENT differences that were no candidate cut (motion raises both, so a fast pan is no cut), or
  STRONG_RATIO times where the histograms differ by STRONG_HISTOGRAM (a fast shot cut to another);
- the luma histograms (16 bins) must differ by HISTOGRAM_DISTANCE in L1 (a moving object does not
  change them much);
- the next frame must still differ from the old shot by at least half of d;
- a cut within MIN_SHOT frames of the last one is not taken (a transition over two frames stays one cut).
The thresholds were set on the training pack's 34 videos: they find the five cuts of the held-out street
clip (one after a fast shot, where d is only 2.6 times the shot's), the cuts of the two face clips and
the title cards of the three physics clips, and nothing in the 28 clips without cuts (moving cameras,
crowds, synthetic noise); the same five in the street clip cut to 256 x 256 (`odva-train heldout`).
`tests/test_scenes.py` holds synthetic cases of each kind.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

import numpy as np

THUMBNAIL_SIDE = 64
MIN_DIFFERENCE = 15.0
RATIO = 2.5
RECENT = 8
HISTOGRAM_DISTANCE = 0.25
STRONG_RATIO, STRONG_HISTOGRAM = 2.0, 0.5
MIN_SHOT = 3
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    step = max(1, min(frame.shape[:2]) // THUMBNAIL_SIDE)
    return frame[::step, ::step].astype(np.float32) @ _LUMA


def _histogram(luma: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.minimum(luma.astype(np.int64) >> 4, 15).ravel(), minlength=16)
    return counts / counts.sum()


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _starts_shot(thumbnail: np.ndarray, reference: np.ndarray, difference: float, usual: float) -> bool:
    """Whether a frame (its thumbnail, and its difference from the reference frame before) starts a new shot,
    given the usual difference; the histograms are compared only for a difference large enough to count."""
    if difference < MIN_DIFFERENCE:
        return False
    histogram_distance = float(np.abs(_histogram(thumbnail) - _histogram(reference)).sum())
    if histogram_distance < HISTOGRAM_DISTANCE:
        return False
    return difference >= (STRONG_RATIO if histogram_distance >= STRONG_HISTOGRAM else RATIO) * usual


def mark_cuts(frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Each (H, W, 3) uint8 frame with whether it starts a new shot (never the first frame). A frame is
    yielded once the frame after it has been seen (the flash test), so this runs one frame behind."""
    recent: deque[float] = deque(maxlen=RECENT)
    reference = None  # thumbnail of the last frame that was no flash: what the next frame is compared with
    pending = pending_thumbnail = None  # the frame waiting for the flash test
    candidate, since_cut = 0.0, MIN_SHOT  # the pending frame's difference if it may start a shot

    for frame in frames:
        thumbnail = _thumbnail(frame)
        if pending is not None:
            cut = candidate > 0 and _difference(thumbnail, reference) >= candidate / 2
            yield pending, cut
            since_cut = 0 if cut else since_cut + 1
            if not candidate or cut:  # a flash is no reference: the frame after it is compared with the one before
                reference = pending_thumbnail
        if reference is not None:
            difference = _difference(thumbnail, reference)
            usual = sum(recent) / len(recent) if recent else 0.0
            candidate = difference if since_cut >= MIN_SHOT - 1 and _starts_shot(
                thumbnail, reference, difference, usual) else 0.0
            if not candidate:
                recent.append(difference)
        else:
            reference = thumbnail
        pending, pending_thumbnail = frame, thumbnail
    if pending is not None:
        yield pending, candidate > 0  # the last frame: nothing after it to test for a flash


def shot_starts(frames: Iterable[np.ndarray]) -> list[int]:
    """The frames of a whole video that start a new shot (mark_cuts), where odva's chunks begin early."""
    return [index for index, (_, cut) in enumerate(mark_cuts(frames)) if cut]

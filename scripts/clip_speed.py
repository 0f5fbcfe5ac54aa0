"""Milliseconds to make one training clip (17 frames of 256 x 256) on one CPU thread, real and pseudo-video.

    python scripts/clip_speed.py PACK

A GPU's training steps wait on this (the data loader's processes make the clips): the v3 probe of
2026-12-06 made about 200 clips/s from 16 cores (docs/training.md).
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train.clips import photo_clip, real_clip  # noqa: E402
from train.pack import Pack  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)  # as in a data loader's process
    pack = Pack(sys.argv[1])
    videos, photos = pack.videos("train"), pack.photos("train")
    kinds = {"real": lambda rng: real_clip(videos[int(rng.integers(len(videos)))], rng, 17, 256),
             "pseudo-video": lambda rng: photo_clip(photos[int(rng.integers(len(photos)))], photos, rng, 17, 256)}
    for name, make in kinds.items():
        for i in range(3):  # warm-up
            make(np.random.default_rng([9, i]))
        started = time.perf_counter()
        for i in range(100):
            make(np.random.default_rng([0, i]))
        print(f"{name}: {(time.perf_counter() - started) * 10:.1f} ms a clip on one thread")


if __name__ == "__main__":
    main()

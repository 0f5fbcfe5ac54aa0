"""Regenerate the pinned test fixtures in tests/data.

Run this only when the bitstream or the decoder changes on purpose, and say so in
the commit: the regression tests exist to catch changes nobody meant to make.

    python tests/make_reference.py
"""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
from helpers import (DATA, TINY_MODEL, TINY_RESIDUAL_MODEL, TINY_V3_MODEL, TINY_V3T_MODEL, make_tiny_model,
                     synthetic_clip)

from onedva_codec import Codec, RateOptions
from onedva_codec.bitstream.prior import PriorLayout

REFERENCE_CLIP = dict(frames=20, height=40, width=48, seed=1)
REFERENCE_RATE = RateOptions(quality=0.5)
REFERENCE_STEPS = 2
TEMPORAL_CLIP = dict(frames=40, height=40, width=48, seed=1)  # three chunks: a key chunk and two after it
# the shipped model's path: residual 1D tokens, its prior's layout (weights/card.json, "entropy_prior")
SHIPPED_PATH_LAYOUT = PriorLayout(banded=False, lattice=True, referenced=True)


def main() -> None:
    shutil.rmtree(TINY_MODEL, ignore_errors=True)
    make_tiny_model(TINY_MODEL)
    codec = Codec(TINY_MODEL, device="cpu")
    data = codec.encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    (DATA / "reference.odva").write_bytes(data)
    np.save(DATA / "reference_frames.npy", codec.decode_array(data, steps=REFERENCE_STEPS))
    print(f"wrote {TINY_MODEL}, reference.odva ({len(data)} bytes), reference_frames.npy")
    shutil.rmtree(TINY_RESIDUAL_MODEL, ignore_errors=True)
    make_tiny_model(TINY_RESIDUAL_MODEL, config="tiny-residual", layout=SHIPPED_PATH_LAYOUT)
    data = Codec(TINY_RESIDUAL_MODEL, device="cpu").encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25),
                                                                  REFERENCE_RATE, seed=3)
    (DATA / "reference_residual.odva").write_bytes(data)
    print(f"wrote {TINY_RESIDUAL_MODEL}, reference_residual.odva ({len(data)} bytes)")
    shutil.rmtree(TINY_V3_MODEL, ignore_errors=True)
    make_tiny_model(TINY_V3_MODEL, config="tiny-v3")
    codec = Codec(TINY_V3_MODEL, device="cpu")
    data = codec.encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    (DATA / "reference_v3.odva").write_bytes(data)
    np.save(DATA / "reference_v3_frames.npy", codec.decode_array(data, steps=REFERENCE_STEPS))
    print(f"wrote {TINY_V3_MODEL}, reference_v3.odva ({len(data)} bytes), reference_v3_frames.npy")
    shutil.rmtree(TINY_V3T_MODEL, ignore_errors=True)
    make_tiny_model(TINY_V3T_MODEL, config="tiny-v3t")
    data = Codec(TINY_V3T_MODEL, device="cpu").encode_array(synthetic_clip(**TEMPORAL_CLIP), Fraction(25),
                                                             REFERENCE_RATE, seed=3)
    (DATA / "reference_v3t.odva").write_bytes(data)
    print(f"wrote {TINY_V3T_MODEL}, reference_v3t.odva ({len(data)} bytes)")


if __name__ == "__main__":
    main()

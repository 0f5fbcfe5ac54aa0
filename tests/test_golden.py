"""The shipped model's own output, pinned (as CompressAI pins its models): the first chunk of
docs/sample.mp4, encoded on the CPU at --quality 0.6 and decoded with the card's default schedule.

When a new model ships these figures change on purpose: run this file's `main` (python
tests/test_golden.py) and commit its output with the model, saying so. Anything else that moves them
changed what the shipped model's files are, or how they decode.
"""

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from onedva_codec import Codec, RateOptions
from onedva_codec.model.folder import default_weights_dir
from onedva_codec.video.io import VideoReader

SAMPLE = Path(__file__).parent.parent / "docs" / "sample.mp4"
FRAMES, QUALITY = 17, 0.6
GOLDEN = {  # from `python tests/test_golden.py` on the 2-core CPU
    "model": "m-residual-52e87952a28b57ce",
    "file_sha256": "5a139188f118fb1cf1baac9ddf4d5d852ba5e72ce706eae40981d9218ad74d6b",  # format 3.1
    "bytes": 12667,  # format 3.0: 2 bytes more a tile (its rate point) than 2.0's 12,659
    "psnr": 23.923,
}
PSNR_BAND = 0.05  # dB either side: the decoder's float arithmetic may round a pixel differently elsewhere


def first_chunk() -> np.ndarray:
    with VideoReader(SAMPLE) as reader:
        return np.stack([frame for _, frame in zip(range(FRAMES), reader.frames())])


def measure() -> dict:
    codec = Codec(device="cpu")
    frames = first_chunk()
    data = codec.encode_array(frames, Fraction(10), RateOptions(quality=QUALITY))
    decoded = codec.decode_array(data)
    mse = ((decoded.astype(np.float64) - frames.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return {"model": codec.model.model_id, "file_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "psnr": round(float(np.mean(10 * np.log10(255**2 / mse))), 3)}


@pytest.fixture(scope="module")
def measured() -> dict:
    return measure()


def test_the_shipped_model_is_the_one_pinned(measured):
    card = json.loads((default_weights_dir() / "card.json").read_text())
    assert measured["model"] == GOLDEN["model"], (
        f"weights/ holds {measured['model']}; update GOLDEN with `python tests/test_golden.py` when a model ships "
        f"({card['config']['name']})")


def test_the_shipped_model_encodes_the_sample_to_the_pinned_file(measured):
    assert (measured["bytes"], measured["file_sha256"]) == (GOLDEN["bytes"], GOLDEN["file_sha256"])


def test_the_shipped_model_decodes_the_sample_within_the_pinned_psnr_band(measured):
    assert abs(measured["psnr"] - GOLDEN["psnr"]) <= PSNR_BAND, measured["psnr"]


if __name__ == "__main__":
    print(json.dumps(measure(), indent=4))

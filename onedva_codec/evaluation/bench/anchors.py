"""The classical codecs odva is measured against, through PyAV: libx264, libx265, SVT-AV1."""

from __future__ import annotations

import io
import os
from fractions import Fraction

import av
import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner on every encode

ANCHORS = {  # name: (PyAV encoder, options besides crf, CRF sweep)
    "x264": ("libx264", {"preset": "medium"}, (23, 28, 33, 38, 43, 48, 51)),
    # x264 starting afresh every 17 frames, as odva's chunks do when each is a key chunk
    "x264-keyint17": ("libx264", {"preset": "medium", "x264-params": "keyint=17:min-keyint=17:scenecut=0"},
                      (23, 28, 33, 38, 43, 48, 51)),
    "x265": ("libx265", {"preset": "medium", "x265-params": "log-level=error"}, (25, 30, 35, 40, 45, 51)),
    "av1": ("libsvtav1", {"preset": "8"}, (30, 38, 45, 52, 58, 63)),
}


def encode_anchor(frames: np.ndarray, fps: Fraction, name: str, crf: int) -> bytes:
    """Encode with a classical codec through PyAV into an in-memory MP4."""
    encoder, options, _ = ANCHORS[name]
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=fps, options={**options, "crf": str(crf)})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def decode_anchor(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

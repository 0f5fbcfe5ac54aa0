"""`odva bench`: rate-distortion of odva against classical codecs, on the same clips and the same metrics.

For each clip (its first `frames` frames, cropped to even width and height so that
every codec sees the same pixels), every codec setting is encoded and decoded in
memory and scored against the clip as decoded to RGB:

- odva at a sweep of `--quality` (motion-adaptive), the same qualities with
  constant length (at equal average token count), optional `--bitrate` targets,
  and a sweep of decoding steps at one quality;
- libx264 and libx265 (preset medium) and SVT-AV1 (preset 8) through PyAV, yuv420p,
  at a CRF sweep.

Rate is the whole coded stream: kbps = bytes x 8 / duration, bpp = bits /
(frames x width x height). Metrics: PSNR (RGB and Y), SSIM, MS-SSIM, LPIPS
(AlexNet), rFVD (I3D) and VMAF (when an ffmpeg with libvmaf is found), and three
artefact ratios PSNR averages away (evaluation/artefacts.py: a grid at the model's
patch edges, motion in steps of its temporal groups, a pop at chunk boundaries).
BD-rate (PCHIP, over the overlapping quality range) compares odva with each
anchor, and motion-adaptive with constant length.

The harness is its own package: the codec never imports it, and it brings what
only measuring needs (PyAV's encoders, an ffmpeg subprocess, scipy, matplotlib).
"""

from .bdrate import BD_METRICS, bd_rate
from .outputs import write_outputs
from .run import ARTEFACTS, METRICS, BenchResult, BenchSettings, Point, read_clip, run_bench

__all__ = ["ARTEFACTS", "BD_METRICS", "METRICS", "BenchResult", "BenchSettings", "Point", "bd_rate", "read_clip", "run_bench",
           "write_outputs"]

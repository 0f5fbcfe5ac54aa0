"""VMAF through an ffmpeg with libvmaf (the one imageio-ffmpeg ships, else one on PATH)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np


def find_vmaf_ffmpeg() -> str | None:
    """An ffmpeg with libvmaf: the one imageio-ffmpeg ships, else one on PATH."""
    candidates = []
    try:
        import imageio_ffmpeg
        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    if shutil.which("ffmpeg"):
        candidates.append(shutil.which("ffmpeg"))
    for exe in candidates:
        listing = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
        if "libvmaf" in listing:
            return exe
    return None


def vmaf(ffmpeg: str, reference: np.ndarray, decoded: np.ndarray, fps: Fraction) -> float:
    """Mean VMAF (model vmaf_v0.6.1, on yuv420p) of decoded against reference frames."""
    t, h, w, _ = reference.shape
    with tempfile.TemporaryDirectory() as folder:
        ref, dist, log = Path(folder, "ref.rgb"), Path(folder, "dist.rgb"), Path(folder, "vmaf.json")
        reference.tofile(ref)
        decoded.tofile(dist)
        raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps)]
        graph = (f"[0:v]format=yuv420p[d];[1:v]format=yuv420p[r];"
                 f"[d][r]libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path={log}")
        run = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", *raw, "-i", str(dist), *raw,
                              "-i", str(ref), "-lavfi", graph, "-f", "null", "-"], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"VMAF failed: {run.stderr.strip()[-300:]}")
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])

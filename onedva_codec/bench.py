"""Rate-distortion of odva against classical codecs, on the same clips and the same metrics.

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
(AlexNet), rFVD (I3D) and VMAF (when an ffmpeg with libvmaf is found).
BD-rate (PCHIP, over the overlapping quality range) compares odva with each
anchor, and motion-adaptive with constant length.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch

from .codec import Codec
from .ratecontrol import RateOptions
from .errors import InputError
from .metrics import VideoFeatures, frechet_distance, ms_ssim, psnr, psnr_y, ssim
from .lpips import LPIPS
from .pixels import frames_to_model
from .video_io import VideoReader

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner on every encode

ANCHORS = {  # name: (PyAV encoder, options besides crf, CRF sweep)
    "x264": ("libx264", {"preset": "medium"}, (23, 28, 33, 38, 43, 48, 51)),
    "x265": ("libx265", {"preset": "medium", "x265-params": "log-level=error"}, (25, 30, 35, 40, 45, 51)),
    "av1": ("libsvtav1", {"preset": "8"}, (30, 38, 45, 52, 58, 63)),
}
METRICS = ("psnr", "psnr_y", "ssim", "ms_ssim", "lpips", "fvd", "vmaf")
LOWER_IS_BETTER = {"lpips", "fvd"}
BD_METRICS = ("psnr", "lpips", "vmaf")


@dataclass
class BenchSettings:
    qualities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    bitrates: tuple[float, ...] = ()
    steps: int | None = None  # decoding steps of the main sweep; None: the model's default
    step_sweep: tuple[int, ...] = (1, 4, 8, 25)
    step_sweep_quality: float = 1.0
    adaptive_sweep: bool = True
    anchors: tuple[str, ...] = ("x264", "x265", "av1")
    frames: int | None = None  # per clip; None: all


@dataclass
class Point:
    clip: str
    curve: str  # which RD curve this point belongs to, e.g. "odva", "odva constant", "x264"
    setting: str
    frames: int
    width: int
    height: int
    bytes: int
    kbps: float
    bpp: float
    encode_fps: float
    decode_fps: float
    psnr: float = math.nan
    psnr_y: float = math.nan
    ssim: float = math.nan
    ms_ssim: float = math.nan
    lpips: float = math.nan
    fvd: float = math.nan  # over all clips of this setting (a set metric); nan below two 16-frame windows
    vmaf: float = math.nan  # nan where no ffmpeg with libvmaf is found


@dataclass
class BenchResult:
    points: list[Point]
    curves: dict[str, list[dict]]  # curve -> its settings averaged over clips, by rate
    bd_rates: list[dict]
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


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


class Scorer:
    """Every metric of a decoded clip against its reference. `features` maps (T, 3, H, W) frames to
    one row per window for rFVD: I3D unless another extractor is given (tests pass a cheap one)."""

    def __init__(self, device: torch.device, features: Callable[[torch.Tensor], np.ndarray] | None = None):
        self.device = device
        self.lpips = LPIPS("alexnet").to(device)
        self.features = features or VideoFeatures(device)
        self.ffmpeg = find_vmaf_ffmpeg()

    def clip_features(self, video: np.ndarray) -> np.ndarray:
        """I3D features of a clip's 16-frame windows (none where it is shorter)."""
        return self.features(frames_to_model(video))

    @torch.no_grad()
    def __call__(self, reference: np.ndarray, decoded: np.ndarray, fps: Fraction, batch: int = 16) -> dict:
        """Every per-clip metric; rFVD is a set metric and is computed by run_bench."""
        sums = dict.fromkeys(("psnr", "psnr_y", "ssim", "ms_ssim", "lpips"), 0.0)
        for start in range(0, len(reference), batch):
            a = frames_to_model(reference[start:start + batch]).to(self.device)
            b = frames_to_model(decoded[start:start + batch]).to(self.device)
            for name, fn in (("psnr", psnr), ("psnr_y", psnr_y), ("ssim", ssim), ("ms_ssim", ms_ssim),
                             ("lpips", self.lpips)):
                sums[name] += fn(a, b).sum().item()
        scores = {k: v / len(reference) for k, v in sums.items()}
        if self.ffmpeg is not None:
            scores["vmaf"] = vmaf(self.ffmpeg, reference, decoded, fps)
        return scores


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


def read_clip(path: Path, frames: int | None) -> tuple[np.ndarray, Fraction]:
    with VideoReader(path) as reader:
        taken = []
        for frame in reader.frames():
            taken.append(frame)
            if frames is not None and len(taken) == frames:
                break
        fps = reader.info.fps
    if not taken:
        raise InputError(f"{path} has no frames")
    clip = np.stack(taken)
    h, w = clip.shape[1] // 2 * 2, clip.shape[2] // 2 * 2  # 4:2:0 anchors need even sizes
    if h == 0 or w == 0:
        raise InputError(f"{path} is too small to benchmark")
    return np.ascontiguousarray(clip[:, :h, :w]), fps


@dataclass(frozen=True)
class OdvaJob:
    rate: RateOptions
    steps: int


@dataclass(frozen=True)
class AnchorJob:
    name: str
    crf: int


def _jobs(settings: BenchSettings, steps: int) -> list[tuple[str, str, OdvaJob | AnchorJob]]:
    """(curve, setting, what to code) for every point of the benchmark. Jobs may repeat across
    curves (the step sweep's default step count is a point of the main sweep); each is coded once."""
    jobs: list[tuple[str, str, OdvaJob | AnchorJob]] = []
    for q in settings.qualities:
        jobs.append(("odva", f"quality {q:g}", OdvaJob(RateOptions(q), steps)))
        if settings.adaptive_sweep:
            jobs.append(("odva constant", f"quality {q:g}", OdvaJob(RateOptions(q, adaptive=False), steps)))
    for b in settings.bitrates:
        jobs.append(("odva bitrate", f"{b / 1000:g}k", OdvaJob(RateOptions(bitrate=b), steps)))
    q = settings.step_sweep_quality
    for s in settings.step_sweep:
        jobs.append((f"odva steps {s}", f"quality {q:g}", OdvaJob(RateOptions(q), s)))
    for name in settings.anchors:
        for crf in ANCHORS[name][2]:
            jobs.append((name, f"crf {crf}", AnchorJob(name, crf)))
    return jobs


def _code(codec: Codec, clip: np.ndarray, fps: Fraction, job: OdvaJob | AnchorJob,
          encoded: dict[RateOptions, tuple[bytes, float]]) -> tuple[bytes, np.ndarray, float, float]:
    """Encode and decode one clip: (bytes, decoded frames, encode seconds, decode seconds).
    odva encodes are kept in `encoded`, so decoding the same file with other step counts re-uses one."""
    if isinstance(job, AnchorJob):
        started = time.perf_counter()
        data = encode_anchor(clip, fps, job.name, job.crf)
        encode_s = time.perf_counter() - started
    else:
        if job.rate not in encoded:
            started = time.perf_counter()
            encoded[job.rate] = (codec.encode_array(clip, fps, job.rate), time.perf_counter() - started)
        data, encode_s = encoded[job.rate]
    started = time.perf_counter()
    decoded = decode_anchor(data) if isinstance(job, AnchorJob) else codec.decode_array(data, steps=job.steps)
    return data, decoded, encode_s, time.perf_counter() - started


def _warm_up(codec: Codec, clip: np.ndarray, fps: Fraction) -> None:
    """One chunk through the codec, untimed: the first call pays for start-up (CUDA context, kernel choice),
    which would otherwise be charged to whichever point runs first."""
    piece = clip[: codec.cfg.frames]
    codec.decode_array(codec.encode_array(piece, fps, RateOptions(1.0)), steps=1)


def run_bench(inputs: list[Path], codec: Codec, settings: BenchSettings = BenchSettings(),
              progress: Callable[[int, int], None] | None = None,
              features: Callable[[torch.Tensor], np.ndarray] | None = None) -> BenchResult:
    """Code every clip with every setting and score it; `progress(done, total)` after each point.
    `features` stands in for the I3D features of rFVD (see Scorer)."""
    for name in settings.anchors:
        if name not in ANCHORS:
            raise InputError(f"unknown anchor {name!r}; use {', '.join(ANCHORS)}")
    steps = codec.loaded.card.decoding_steps(settings.steps)
    jobs = _jobs(settings, steps)
    scorer = Scorer(codec.device, features)
    points: list[Point] = []
    reference_features: list[np.ndarray] = []
    decoded_features: dict[tuple[str, str], list[np.ndarray]] = {}
    total, done = len(inputs) * len(jobs), 0
    for index, path in enumerate(inputs):
        clip, fps = read_clip(path, settings.frames)
        if index == 0:
            _warm_up(codec, clip, fps)
        reference_features.append(scorer.clip_features(clip))
        t, h, w, _ = clip.shape
        encoded: dict[RateOptions, tuple[bytes, float]] = {}
        outcomes: dict[OdvaJob | AnchorJob, tuple] = {}
        for curve, setting, job in jobs:
            if job not in outcomes:
                data, decoded, encode_s, decode_s = _code(codec, clip, fps, job, encoded)
                if decoded.shape != clip.shape:
                    raise RuntimeError(f"{curve} {setting} decoded {decoded.shape}, expected {clip.shape}")
                outcomes[job] = (len(data), encode_s, decode_s, scorer(clip, decoded, fps),
                                 scorer.clip_features(decoded))
            size, encode_s, decode_s, scores, features = outcomes[job]
            points.append(Point(Path(path).name, curve, setting, t, w, h, size, size * 8 / float(t / fps) / 1000,
                                size * 8 / (t * w * h), t / encode_s, t / decode_s, **scores))
            decoded_features.setdefault((curve, setting), []).append(features)
            done += 1
            if progress:
                progress(done, total)
    reference_rows = np.concatenate(reference_features)
    for p in points:
        p.fvd = frechet_distance(reference_rows, np.concatenate(decoded_features[(p.curve, p.setting)]))
    notes = []
    if len(reference_rows) < 2:
        notes.append("rFVD left out: it needs at least two 16-frame windows (24 frames) over all clips")
    if scorer.ffmpeg is None:
        notes.append("VMAF left out: no ffmpeg with libvmaf found (pip install imageio-ffmpeg)")
    curves = average_curves(points)
    record = {**asdict(settings), "steps": steps, "device": describe_device(codec.device),
              "model": codec.loaded.model_id,
              "anchors": {n: {"encoder": ANCHORS[n][0], **ANCHORS[n][1], "crf": list(ANCHORS[n][2]),
                              "pix_fmt": "yuv420p"} for n in settings.anchors}}
    return BenchResult(points, curves, bd_rate_table(curves, settings), notes, record)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def average_curves(points: list[Point]) -> dict[str, list[dict]]:
    """Each curve's settings averaged over clips, sorted by rate."""
    grouped: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        grouped.setdefault((p.curve, p.setting), []).append(p)
    curves: dict[str, list[dict]] = {}
    for (curve, setting), group in grouped.items():
        row = {"setting": setting, "clips": len(group)}
        for key in ("kbps", "bpp", "encode_fps", "decode_fps", *METRICS):
            values = [getattr(p, key) for p in group]
            row[key] = float(np.mean(values)) if not any(math.isnan(v) for v in values) else math.nan
        curves.setdefault(curve, []).append(row)
    for rows in curves.values():
        rows.sort(key=lambda r: r["bpp"])
    return curves


def bd_rate(anchor: list[dict], test: list[dict], metric: str) -> float | None:
    """Average bitrate difference (%) of `test` against `anchor` at equal `metric` (Bjontegaard, PCHIP).

    Negative: `test` needs fewer bits. None where the quality ranges do not overlap or a curve has fewer
    than two usable points.
    """
    from scipy.interpolate import PchipInterpolator

    def usable(rows: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
        pairs = [(r[metric], math.log(r["bpp"])) for r in rows if not math.isnan(r[metric]) and r["bpp"] > 0]
        if metric in LOWER_IS_BETTER:
            pairs = [(-q, rate) for q, rate in pairs]
        pairs.sort()
        frontier: list[tuple[float, float]] = []  # quality strictly rising with rate: the RD frontier
        for q, rate in pairs:
            while frontier and rate <= frontier[-1][1]:
                frontier.pop()
            if not frontier or q > frontier[-1][0]:
                frontier.append((q, rate))
        if len(frontier) < 2:
            return None
        q, rate = zip(*frontier)
        return np.array(q), np.array(rate)

    a, b = usable(anchor), usable(test)
    if a is None or b is None:
        return None
    low, high = max(a[0].min(), b[0].min()), min(a[0].max(), b[0].max())
    if high <= low:
        return None
    grid = np.linspace(low, high, 101)
    gap = np.trapezoid(PchipInterpolator(*b)(grid) - PchipInterpolator(*a)(grid), grid) / (high - low)
    return float((math.exp(gap) - 1) * 100)


def bd_rate_table(curves: dict[str, list[dict]], settings: BenchSettings) -> list[dict]:
    pairs = [("odva", name) for name in settings.anchors]
    if settings.adaptive_sweep:
        pairs.append(("odva", "odva constant"))
    table = []
    for test, anchor in pairs:
        if test in curves and anchor in curves:
            row = {"test": test, "anchor": anchor}
            for metric in BD_METRICS:
                row[metric] = bd_rate(curves[anchor], curves[test], metric)
            table.append(row)
    return table


def write_outputs(result: BenchResult, folder: Path) -> list[Path]:
    """results.csv (every point), results.json (everything), one RD plot per metric (PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.csv", folder / "results.json"]
    with open(written[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(result.points[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in result.points)
    written[1].write_text(json.dumps({"settings": result.settings, "notes": result.notes,
                                      "curves": result.curves, "bd_rates": result.bd_rates,
                                      "points": [asdict(p) for p in result.points]}, indent=1, default=str))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd_curves = {k: v for k, v in result.curves.items() if not k.startswith("odva steps")}
    for metric in METRICS:
        if all(math.isnan(r[metric]) for rows in rd_curves.values() for r in rows):
            continue
        fig, axis = plt.subplots(figsize=(6, 4.5))
        for name, rows in rd_curves.items():
            axis.plot([r["bpp"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
        axis.set_xscale("log")
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(metric.upper().replace("_", "-") + (" (lower is better)" if metric in LOWER_IS_BETTER
                                                              else ""))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
        fig.tight_layout()
        path = folder / f"rd_{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written

"""Run a benchmark: code every clip with every setting, score it, average the curves."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...bitstream.ratecontrol import RateOptions
from ...codec import Codec
from ...errors import InputError
from ...video.io import VideoReader
from ...video.pixels import frames_to_model
from ...video.scenes import shot_starts
from ..artefacts import patch_edge_ratio, temporal_ratios
from ..metrics import FrameMetrics, VideoFeatures, frechet_distance
from .anchors import ANCHORS, decode_anchor, encode_anchor
from .bdrate import bd_rate_table
from .vmaf import find_vmaf_ffmpeg, vmaf

METRICS = ("psnr", "psnr_y", "ssim", "ms_ssim", "lpips", "fvd", "vmaf")
ARTEFACTS = ("edge_ratio", "step_ratio", "pop_ratio")  # 1: none (evaluation/artefacts.py); averaged where measured


@dataclass
class BenchSettings:
    qualities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    bitrates: tuple[float, ...] = ()
    steps: int | None = None  # decoding steps of the main sweep; None: the model's default
    step_sweep: tuple[int, ...] = (1, 4, 8, 25)
    step_sweep_quality: float = 1.0
    adaptive_sweep: bool = True
    key_sweep: bool = True  # a model whose chunks can depend on the one before: also every chunk a key chunk
    anchors: tuple[str, ...] = ("x264", "x265", "av1")
    frames: int | None = None  # per clip; None: all
    search_steps: int = 0  # odva's encoder-side search (odva encode --search)


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
    edge_ratio: float = math.nan  # luma steps across the model's patch edges over those inside
    step_ratio: float = math.nan  # change where an encoder group begins over inside, against the source's
    pop_ratio: float = math.nan  # change into a chunk's first frame over inside, against the source's; nan: one chunk


@dataclass
class BenchResult:
    points: list[Point]
    curves: dict[str, list[dict]]  # curve -> its settings averaged over clips, by rate
    bd_rates: list[dict]
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


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
    key_interval: int | None = None  # None: the codec's default


@dataclass(frozen=True)
class AnchorJob:
    name: str
    crf: int


def _jobs(settings: BenchSettings, steps: int, temporal: bool) -> list[tuple[str, str, OdvaJob | AnchorJob]]:
    """(curve, setting, what to code) for every point of the benchmark. Jobs may repeat across
    curves (the step sweep's default step count is a point of the main sweep); each is coded once.
    `temporal`: the model's chunks can depend on the one before."""
    jobs: list[tuple[str, str, OdvaJob | AnchorJob]] = []
    for q in settings.qualities:
        jobs.append(("odva", f"quality {q:g}", OdvaJob(RateOptions(q), steps)))
        if settings.adaptive_sweep:
            jobs.append(("odva constant", f"quality {q:g}", OdvaJob(RateOptions(q, adaptive=False), steps)))
        if settings.key_sweep and temporal:
            jobs.append(("odva key chunks", f"quality {q:g}", OdvaJob(RateOptions(q), steps, key_interval=1)))
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
          encoded: dict[tuple[RateOptions, int | None], tuple[bytes, float]], search_steps: int
          ) -> tuple[bytes, np.ndarray, float, float]:
    """Encode and decode one clip: (bytes, decoded frames, encode seconds, decode seconds).
    odva encodes are kept in `encoded`, so decoding the same file with other step counts re-uses one."""
    if isinstance(job, AnchorJob):
        started = time.perf_counter()
        data = encode_anchor(clip, fps, job.name, job.crf)
        encode_s = time.perf_counter() - started
    else:
        key = (job.rate, job.key_interval)
        if key not in encoded:
            started = time.perf_counter()
            data = codec.encode_array(clip, fps, job.rate, search_steps=search_steps, key_interval=job.key_interval)
            encoded[key] = (data, time.perf_counter() - started)
        data, encode_s = encoded[key]
    started = time.perf_counter()
    decoded = decode_anchor(data) if isinstance(job, AnchorJob) else codec.decode_array(data, steps=job.steps)
    return data, decoded, encode_s, time.perf_counter() - started


def _warm_up(codec: Codec, clip: np.ndarray, fps: Fraction) -> None:
    """One chunk through the codec, untimed: the first call pays for start-up (CUDA context, kernel choice),
    which would otherwise be charged to whichever point runs first."""
    piece = clip[: codec.model.cfg.frames]
    codec.decode_array(codec.encode_array(piece, fps, RateOptions(1.0)), steps=1)


def run_bench(inputs: list[Path], codec: Codec, settings: BenchSettings = BenchSettings(),
              progress: Callable[[int, int], None] | None = None,
              features: Callable[[torch.Tensor], np.ndarray] | None = None) -> BenchResult:
    """Code every clip with every setting and score it; `progress(done, total)` after each point.
    `features` maps (T, 3, H, W) frames to one row per 16-frame window for rFVD: I3D unless another
    extractor is given (the tests pass a cheap one)."""
    for name in settings.anchors:
        if name not in ANCHORS:
            raise InputError(f"unknown anchor {name!r}; use {', '.join(ANCHORS)}")
    steps = codec.model.card.schedule(settings.steps).steps
    jobs = _jobs(settings, steps, codec.model.cfg.temporal_prior)
    frame_metrics = FrameMetrics(codec.devices[0])
    extract_features = features or VideoFeatures(codec.devices[0])
    ffmpeg = find_vmaf_ffmpeg()

    cfg = codec.model.cfg

    def score(reference: np.ndarray, decoded: np.ndarray, fps: Fraction, cuts: list[int]) -> dict:
        scores = frame_metrics(reference, decoded)
        if ffmpeg is not None:
            scores["vmaf"] = vmaf(ffmpeg, reference, decoded, fps)
        temporal = temporal_ratios(decoded, reference, cfg.frames, cfg.enc_temporal_patch, cuts)
        return {**scores, "edge_ratio": patch_edge_ratio(decoded, cfg.patch), "step_ratio": temporal["step"],
                "pop_ratio": temporal["pop"]}

    points: list[Point] = []
    reference_features: list[np.ndarray] = []
    decoded_features: dict[tuple[str, str], list[np.ndarray]] = {}
    total, done = len(inputs) * len(jobs), 0
    if progress:
        progress(done, total)
    for index, path in enumerate(inputs):
        clip, fps = read_clip(path, settings.frames)
        if index == 0:
            _warm_up(codec, clip, fps)
        reference_features.append(extract_features(frames_to_model(clip)))
        cuts = shot_starts(iter(clip))  # where odva's chunks start early
        t, h, w, _ = clip.shape
        encoded: dict[tuple[RateOptions, int | None], tuple[bytes, float]] = {}
        outcomes: dict[OdvaJob | AnchorJob, tuple] = {}
        for curve, setting, job in jobs:
            if job not in outcomes:
                data, decoded, encode_s, decode_s = _code(codec, clip, fps, job, encoded, settings.search_steps)
                if decoded.shape != clip.shape:
                    raise RuntimeError(f"{curve} {setting} decoded {decoded.shape}, expected {clip.shape}")
                outcomes[job] = (len(data), encode_s, decode_s, score(clip, decoded, fps, cuts),
                                 extract_features(frames_to_model(decoded)))
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
    if ffmpeg is None:
        notes.append("VMAF left out: no ffmpeg with libvmaf found (pip install imageio-ffmpeg)")
    curves = average_curves(points)
    record = {**asdict(settings), "steps": steps, "device": describe_device(codec.devices[0]),
              "model": codec.model.model_id,
              "anchors": {n: {"encoder": ANCHORS[n][0], **ANCHORS[n][1], "crf": list(ANCHORS[n][2]),
                              "pix_fmt": "yuv420p"} for n in settings.anchors}}
    bd_rates = bd_rate_table(curves, settings.anchors, settings.adaptive_sweep, settings.key_sweep)
    return BenchResult(points, curves, bd_rates, notes, record)


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
        for key in ARTEFACTS:  # a clip of one chunk has no pop: the others' mean
            values = [getattr(p, key) for p in group if not math.isnan(getattr(p, key))]
            row[key] = float(np.mean(values)) if values else math.nan
        curves.setdefault(curve, []).append(row)
    for rows in curves.values():
        rows.sort(key=lambda r: r["bpp"])
    return curves

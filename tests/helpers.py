"""Synthetic test videos and a tiny model, made deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from onedva_codec.bitstream.prior import PriorLayout, fit_prior, group_zero_references
from onedva_codec.model.config import CONFIGS
from onedva_codec.model.folder import ModelCard, save_model
from onedva_codec.model.network import OneDVA, full_tile_geometry, token_homes
from onedva_codec.model.schedule import DecodingSchedule
from onedva_codec.video.pixels import video_to_model

DATA = Path(__file__).parent / "data"
TINY_MODEL = DATA / "tiny_model"
TINY_V3_MODEL = DATA / "tiny_v3_model"  # rate points and a hyperprior
TINY_V3T_MODEL = DATA / "tiny_v3t_model"  # and a temporal prior: chunks that depend on the one before
TINY_RESIDUAL_MODEL = DATA / "tiny_residual_model"  # the shipped model's path: residual tokens, its prior kind


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0, speed: float = 1.0) -> np.ndarray:
    """A gradient background, a textured square moving across it, and a little noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.integers(0, 255, (16, 16, 3)).astype(np.float32)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        frame = np.stack([xs / width * 200, ys / height * 200, np.full_like(xs, 90 + 40 * np.sin(t / 5))], -1)
        y0 = int((height - 16) * (0.5 + 0.4 * np.sin(speed * t / 7)))
        x0 = int((width - 16) * (0.5 + 0.4 * np.cos(speed * t / 9)))
        frame[y0:y0 + 16, x0:x0 + 16] = texture
        frame += rng.normal(0, 4, frame.shape)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_video(path: Path, frames: np.ndarray, fps: Fraction = Fraction(25), audio: bool = False,
                codec: str = "libx264") -> Path:
    """Write frames (and optionally a 440 Hz tone of the same length) with PyAV."""
    options = {"crf": "10"} if codec == "libx264" else {}
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps, options=options)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p" if codec != "ffv1" else "bgr0"
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            video.pix_fmt = "yuv444p" if codec == "libx264" else video.pix_fmt
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=44100)
            sound.layout = "stereo"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(len(frames) / fps * 44100)
            for start in range(0, samples, 1024):
                t = (np.arange(start, min(start + 1024, samples)) / 44100).astype(np.float32)
                tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = 44100, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def make_tiny_model(folder: Path, seed: int = 0, config: str = "tiny", layout: PriorLayout | None = None
                    ) -> ModelCard:
    """A tiny model with random weights: enough to exercise every path of the codec. `config`
    "tiny-residual" with a `layout` gives the shipped model's path (residual 1D tokens, and its prior's
    layout, which random weights would not choose: fit_prior picks the best on held-out tiles).

    Zero-initialised layers (adaLN-Zero) are randomised too; otherwise every decoder
    block would be the identity and the 1D latents would not reach the output.
    """
    torch.manual_seed(seed)
    cfg = CONFIGS[config]
    model = OneDVA(cfg)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(std=0.1)
    card = ModelCard(cfg, latent_mean=[0.0] * cfg.latent_channels, latent_std=[1.0] * cfg.latent_channels,
                     motion_mu=0.03, motion_sigma=0.02, quant_step=0.25, sampling=DecodingSchedule(2),
                     training={"note": "random weights, for tests"})
    # The prior is fitted, as export fits it, to the symbols of clips like those the tests code.
    clips = np.stack([synthetic_clip(cfg.frames, cfg.tile, cfg.tile, seed=100 + i, speed=0.5 + i / 4)
                      for i in range(8)])
    video = video_to_model(clips)
    with torch.no_grad():
        means = model.encode(video, full_tile_geometry(cfg, len(clips), "cpu")).means()
    if cfg.rate_distortion:  # its entropy model as export ships it
        s = cfg.structural_tokens
        peak = model.hyperprior.hidden_peak(means[:, :s], means[:, s:], model.decoder.home_slot)
        card.quant_step = 1.0
        return save_model(model, card, model.hyperprior.shipped_tables(peak), folder)
    reference = None
    if cfg.tokens_1d != "queries":
        group, position = token_homes(cfg)
        reference = group_zero_references(group.numpy(), position.numpy(), cfg.structural_tokens)
    prior, card.prior_fit = fit_prior(card.quantizer().quantize(means).numpy(), cfg.structural_tokens, reference,
                                      layout)
    return save_model(model, card, prior, folder)


@dataclass(frozen=True)
class DoublingJob:
    """A device_pool.Job for tests: each item doubled, with the process that did it and when it started
    on it; each item takes `seconds`; at item `fail_at` it raises, at `die_at` its process ends as if
    killed."""
    fail_at: int = -1
    die_at: int = -1
    seconds: float = 0.0

    def run(self, model, engine, items):
        import os
        import signal
        import time
        for item in items:
            started = time.monotonic()
            if item == self.fail_at:
                raise ValueError(f"item {item} is bad")
            if item == self.die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(self.seconds)
            yield 2 * item, os.getpid(), started


@dataclass(frozen=True)
class DoublingTensorJob:
    """A device_pool.Job for tests over tensors: each item doubled, into a new tensor."""

    def run(self, model, engine, items):
        for item in items:
            yield item * 2


def assert_damage_reported_alike(reference, other, data: bytes) -> None:
    """A byte flipped in the middle of `data`: `other` codec reports the very FormatError `reference` does
    (from device processes as from one, say)."""
    import re

    import pytest

    from onedva_codec import FormatError
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    with pytest.raises(FormatError) as expected:
        reference.decode_array(bytes(damaged))
    with pytest.raises(FormatError, match=re.escape(str(expected.value))):
        other.decode_array(bytes(damaged))

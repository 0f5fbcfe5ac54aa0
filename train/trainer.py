"""The training loop every stage shares.

One process per GPU under `torchrun` (or one process on a CPU). Parameters are
replicated with DDP, or sharded with FSDP2 (`fsdp = true`). Mixed precision is
bf16 autocast; gradients are clipped; an EMA of the trained weights is kept and
is what validation and export use.

Reproducibility: every random draw of step s on rank r comes from a generator
seeded with (seed, s, r), and sample i of the data stream is a function of
(seed, i), so a run resumed from a checkpoint continues exactly as an
uninterrupted run would.

A run folder holds config.json, checkpoint.pt (the latest), metrics.jsonl (one
line per log interval and per validation) and samples/ (reconstruction grids).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from onedva_codec.bitstream.latent_coding import Quantizer
from onedva_codec.evaluation.lpips import LPIPS
from onedva_codec.evaluation.metrics import FrameMetrics, video_frames
from onedva_codec.model.config import ModelConfig
from onedva_codec.model.folder import load_model
from onedva_codec.model.network import Latents, OneDVA, full_tile_geometry
from onedva_codec.model.sampler import mix, sample, velocity_target
from onedva_codec.model.schedule import DecodingSchedule
from onedva_codec.video.motion import motion_scores
from onedva_codec.video.pixels import model_to_frames, to_model_range

from . import config as config_io
from .clips import StepSampler, TrainClips, validation_clips
from .config import TrainConfig, model_config
from .grow import grown
from .ldm import LatentDiT
from .losses import RepaProjector, RepaTeacher
from .objective import Frozen, LatentStats, Objective
from .pack import Pack

CHECKPOINT = "checkpoint.pt"
LATENT_STAT_BATCHES = 8
SAMPLE_CLIPS = 4  # held-out clips shown in a validation's sample grid


@dataclass
class Process:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_process() -> Process:
    """Join the torchrun group if there is one; one process per GPU, or a CPU process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return Process(rank, world, device)


class MotionStats:
    """Running mean and standard deviation of the motion score (EMA), synchronised across processes.

    The statistics stay on the device, so updating them does not stall the host every step.
    """

    def __init__(self, momentum: float, mu: float = 0.0, sigma: float = 0.0, count: int = 0,
                 device: torch.device | str = "cpu"):
        self.momentum, self.count = momentum, count
        self.mu = torch.tensor(mu, dtype=torch.float64, device=device)
        self.sigma = torch.tensor(sigma, dtype=torch.float64, device=device)

    def update(self, scores: Tensor) -> None:
        moments = torch.stack([scores.mean(), scores.pow(2).mean()]).double()
        if dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, std = moments[0], (moments[1] - moments[0] ** 2).clamp(min=0).sqrt()
        m = self.momentum if self.count else 0.0  # the first batch sets the statistics
        self.mu = m * self.mu + (1 - m) * mean
        self.sigma = m * self.sigma + (1 - m) * std
        self.count += 1

    def normalise(self, scores: Tensor) -> Tensor:
        """s^ = s / (mu + 3 sigma), as onedva_codec.video.motion.normalise_motion does with the card's numbers."""
        return scores / (self.mu + 3 * self.sigma).clamp(min=1e-8).to(scores.dtype)

    def to_dict(self) -> dict:
        return {"mu": float(self.mu), "sigma": float(self.sigma), "count": self.count}


def gathered(tensor: Tensor) -> Tensor:
    """The whole tensor, also when FSDP holds only this rank's shard of it (collective then)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device).manual_seed(hash((seed, step, rank)) & (2**62 - 1))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=True)


def load_init(path: str | Path) -> dict:
    """What a stage starts from: a run folder or checkpoint, or a model folder (weights + card.json),
    read as a checkpoint of its weights, motion statistics and training history."""
    path = Path(path)
    if not (path / "card.json").is_file():
        return load_checkpoint(path)
    loaded = load_model(path)
    card = loaded.card
    return {"model_config": card.config.to_dict(), "ema": {},
            "model": {f"model.{k}": v for k, v in loaded.model.state_dict().items()},
            "motion": {"mu": card.motion_mu, "sigma": card.motion_sigma, "count": 1},
            "history": list(card.training.get("stages", []))}


def ema_weights(checkpoint: dict, prefix: str) -> dict[str, Tensor]:
    """The EMA weights of one module ("model." or "ldm.") of a checkpoint, by that module's names."""
    return {k[len(prefix):]: v for k, v in checkpoint["ema"].items() if k.startswith(prefix)}


def model_from_checkpoint(checkpoint: dict) -> OneDVA:
    model = OneDVA(ModelConfig.from_dict(checkpoint["model_config"]))
    weights = {**{k[len("model."):]: v for k, v in checkpoint["model"].items() if k.startswith("model.")},
               **ema_weights(checkpoint, "model.")}
    model.load_state_dict(weights)
    return model


def ldm_from_checkpoint(checkpoint: dict) -> LatentDiT:
    cfg = checkpoint["config"]
    mcfg = ModelConfig.from_dict(checkpoint["model_config"])
    ldm = LatentDiT(mcfg.structural_tokens + mcfg.max_1d_tokens, mcfg.latent_channels, cfg["ldm_width"],
                    cfg["ldm_depth"], cfg["ldm_heads"])
    ldm.load_state_dict(ema_weights(checkpoint, "ldm."))
    return ldm


@torch.no_grad()
def latent_means(model: OneDVA, videos: list[np.ndarray], photos: list[np.ndarray], seed: int,
                 photo_share: float, batch: int, device: torch.device, rank: int = 0, world: int = 1,
                 workers: int = 0) -> Tensor:
    """Posterior means (n, S + N, C) of LATENT_STAT_BATCHES batches of training clips drawn from their
    own stream (seed + 1); each process takes its share of the stream. Clips are cut on `workers` loader
    processes: on one, the 512 clips of a batch-64 run took about 50 s of a 3-minute LDM budget."""
    cfg = model.cfg
    stream = TrainClips(videos, photos, cfg.frames, cfg.tile, seed + 1, photo_share)
    indices = [(i * world + rank) * batch + j for i in range(LATENT_STAT_BATCHES) for j in range(batch)]
    loader = DataLoader(Subset(stream, indices), batch_size=batch, num_workers=workers)
    values = []
    for clips in loader:
        clips = to_model_range(clips.to(device))
        values.append(model.encode(clips, full_tile_geometry(cfg, clips.shape[0], device)).means().float())
    return torch.cat(values)


def latent_statistics(latents: Tensor) -> LatentStats:
    """Per-channel mean and std of (n, S + N, C) latents; averaged over processes."""
    z = latents.flatten(0, 1)
    stats = torch.stack([z.mean(0), z.std(0).clamp(min=1e-4)])
    if dist.is_initialized():
        dist.all_reduce(stats)
        stats /= dist.get_world_size()
    return LatentStats(stats[0], stats[1])


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.proc = start_process()
        self.out = Path(cfg.out)
        checkpoint_path = self.out / CHECKPOINT
        if not resume and checkpoint_path.exists():
            raise FileExistsError(f"{self.out} already holds a checkpoint; continue it with "
                                  f"`odva-train resume {self.out}` or choose another --out")
        self.started = time.time()
        device = self.proc.device
        torch.manual_seed(cfg.seed)

        previous = load_init(cfg.init) if cfg.init else None
        model = model_from_checkpoint(previous) if previous else OneDVA(model_config(cfg.model, cfg.model_changes))
        if cfg.grow_into:
            model = grown(model, model_config(cfg.grow_into))
        pack = Pack(cfg.data)
        self.train_videos, self.train_photos = pack.videos("train"), pack.photos("train")
        self.val_clips = self.val_pairs = None
        if self.proc.main:
            self.val_clips = validation_clips(pack.videos("val"), pack.photos("val"), model.cfg.frames,
                                              model.cfg.tile)[: cfg.val_clips]
            if model.cfg.temporal_prior:  # pairs of consecutive chunks: what the temporal prior saves
                self.val_pairs = validation_clips(pack.videos("val"), pack.photos("val"), 2 * model.cfg.frames,
                                                  model.cfg.tile)[: cfg.val_clips]
            # written once what the run needs has loaded: a run refused for its inputs leaves nothing behind
            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            config_io.save(cfg, self.out / "config.json")
        # the stages this run continues; this run's own line is added by _history(), so that a later run
        # writing to the same folder name never replaces an earlier run's line
        self.inherited: list[dict] = list(previous.get("history", [])) if previous else []
        self.last_train: dict = {}
        self.motion = MotionStats(cfg.motion_momentum, **(previous.get("motion", {}) if previous else {}),
                                  device=self.proc.device)
        self.gpu_minutes = 0.0
        self.val_seconds = 0.0  # how long the last validation took, kept in reserve by the time budget

        stage = cfg.stage_spec
        frozen = Frozen()
        if stage.decodes and cfg.w_perc > 0:
            frozen.lpips = LPIPS(cfg.perceptual_net).to(device)
        projector = None
        if stage.decodes and cfg.w_repa > 0:
            if not 0 <= cfg.repa_block < model.cfg.dec_depth:
                raise ValueError(f"repa_block {cfg.repa_block} is not a block of the {model.cfg.dec_depth}-block "
                                 "decoder")
            frozen.teacher = RepaTeacher(model.cfg.grid).to(device)
            projector = RepaProjector(model.cfg.dec_width, frozen.teacher.channels)
        ldm = None
        if stage.trains == "ldm":
            ldm = LatentDiT(model.cfg.structural_tokens + model.cfg.max_1d_tokens, model.cfg.latent_channels,
                            cfg.ldm_width, cfg.ldm_depth, cfg.ldm_heads)
        if stage.conditioning == "codec-mix" and cfg.ldm:
            ldm_checkpoint = load_checkpoint(cfg.ldm)
            frozen.ldm = ldm_from_checkpoint(ldm_checkpoint).to(device).requires_grad_(False).eval()
            self.inherited += [h for h in ldm_checkpoint.get("history", []) if h not in self.inherited]

        model.to(device)
        latent_stats = None
        if stage.fixes_latent_statistics:
            model.eval()  # the encoder is frozen: its statistics are fixed for the stage
            latent_stats = latent_statistics(latent_means(model, self.train_videos, self.train_photos, cfg.seed,
                                                          cfg.photo_share, max(cfg.batch // self.proc.world, 1),
                                                          device, self.proc.rank, self.proc.world, cfg.workers))
        self.objective = Objective(cfg, model, projector, ldm, frozen, latent_stats).to(device)
        self._freeze_for_stage()
        self.wrapped = self._distribute()
        # After sharding: FSDP replaces each parameter with its shard.
        self.trainable = {n: p for n, p in self.objective.named_parameters() if p.requires_grad}
        self.ema = {n: p.detach().clone().float() for n, p in self.trainable.items()}
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.trainable.values(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                           weight_decay=cfg.weight_decay, fused=fused)
        self.step = 0
        if resume:
            self._restore(load_checkpoint(checkpoint_path))
        self.metrics = FrameMetrics(device) if self.proc.main else None

    # ------------------------------------------------------------------ setup

    def _freeze_for_stage(self) -> None:
        stage, obj = self.cfg.stage_spec, self.objective
        if stage.trains == "ldm":
            obj.model.requires_grad_(False)
        elif not stage.trains_encoder:
            obj.model.encoder.requires_grad_(False)

    def _distribute(self) -> torch.nn.Module:
        if self.proc.world == 1:
            return self.objective
        if self.cfg.fsdp:
            from torch.distributed.fsdp import fully_shard
            model = self.objective.model
            for block in [*model.encoder.blocks, *model.decoder.blocks]:
                fully_shard(block)
            return fully_shard(self.objective)
        ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
        return DistributedDataParallel(self.objective, device_ids=ids)

    def _autocast(self):
        enabled = self.cfg.bf16 and self.proc.device.type == "cuda"
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)

    # ------------------------------------------------------------------ state

    def _full_state(self) -> dict:
        """Everything a resumed run needs, gathered in full on every rank."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(self.objective, self.optimizer, options=options)
        stats = self.objective.latent_stats
        return {
            **self._weights(), "step": self.step, "optimizer": optim_state, "motion": self.motion.to_dict(),
            "latent_stats": stats.to_dict() if stats is not None else None,
            "history": self._history(), "gpu_minutes": self._gpu_minutes(),
            "rng": {"torch": torch.get_rng_state()},
        }

    def save(self) -> float:
        """Write the checkpoint atomically; returns the seconds it took."""
        started = time.time()
        state = self._full_state()
        if self.proc.main:
            tmp = self.out / f"{CHECKPOINT}.part"
            torch.save(state, tmp)
            os.replace(tmp, self.out / CHECKPOINT)
        if dist.is_initialized():
            dist.barrier()
        return time.time() - started

    def _restore(self, state: dict) -> None:
        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.objective, state["model"], options=options)
        set_optimizer_state_dict(self.objective, self.optimizer, state["optimizer"], options=options)
        for name, tensor in self.ema.items():
            source = state["ema"][name].to(self.proc.device)
            if hasattr(tensor, "full_tensor"):  # a shard: take this rank's part
                from torch.distributed.tensor import distribute_tensor
                source = distribute_tensor(source, tensor.device_mesh, tensor.placements)
            tensor.copy_(source)
        self.step = state["step"]
        self.motion = MotionStats(self.cfg.motion_momentum, **state["motion"], device=self.proc.device)
        if state["latent_stats"] is not None:
            self.objective.latent_stats = LatentStats(
                torch.tensor(state["latent_stats"]["mean"], device=self.proc.device),
                torch.tensor(state["latent_stats"]["std"], device=self.proc.device))
        self.inherited = state["history"][:-1]  # the last line is this run's own
        self.gpu_minutes = state["gpu_minutes"]
        self.started = time.time()
        torch.set_rng_state(state["rng"]["torch"])

    def _history(self) -> list[dict]:
        """The training history up to now: the inherited stages, then this run as far as it has got."""
        cfg = self.cfg
        entry = {"stage": cfg.stage, "steps": self.step, "batch": cfg.batch, "processes": self.proc.world,
                 "gpu_minutes": round(self._gpu_minutes(), 2), "final": self.last_train, "run": str(self.out)}
        return self.inherited + [entry]

    def _gpu_minutes(self) -> float:
        return self.gpu_minutes + (time.time() - self.started) / 60 * self.proc.world

    # ------------------------------------------------------------------ loop

    def run(self) -> dict:
        cfg, proc = self.cfg, self.proc
        mcfg = self.objective.model.cfg
        # a temporal prior trains on pairs of consecutive chunks: clips of twice the frames
        frames = mcfg.frames * (2 if mcfg.temporal_prior else 1)
        dataset = TrainClips(self.train_videos, self.train_photos, frames, mcfg.tile, cfg.seed, cfg.photo_share)
        sampler = StepSampler(self.step, cfg.steps, cfg.batch, proc.rank, proc.world)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                            pin_memory=proc.device.type == "cuda", persistent_workers=cfg.workers > 0,
                            prefetch_factor=4 if cfg.workers > 0 else None)
        deadline = self.started + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
        log = MetricsLog(self.out / "metrics.jsonl", proc.main)
        recent: list[dict] = []
        save_seconds, last_time, step_time = 30.0, time.time(), time.time()
        stopped_early = False
        first_step: tuple[int, float] | None = None
        with log.progress(self.step, cfg.steps) as advance:
            for clips in loader:
                clips = to_model_range(clips.to(proc.device, non_blocking=True))
                parts = self._train_step(clips)
                self.step += 1
                recent.append(parts)
                now = time.time()
                advance(cfg.batch / max(now - step_time, 1e-9))
                step_time = now
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = len(recent) * cfg.batch / (now - last_time)
                    log.write_train(self.step, cfg.steps, recent, rate / proc.world, lr_at(cfg, self.step - 1),
                                    self.motion, proc.device)
                    recent, last_time = [], time.time()
                if self.step % cfg.val_every == 0 and self.step < cfg.steps:
                    self.validate(log)
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    save_seconds = self.save()
                if first_step is None:  # steps are timed from here: start-up is not a step's cost
                    first_step = (self.step, now)
                budget_check = deadline is not None and self.step % 10 == 0
                if (budget_check and self._out_of_time(deadline, save_seconds, first_step)) \
                        or self.step == cfg.stop_at:
                    stopped_early = True
                    break
        return self._finish(log, stopped_early)

    def _train_step(self, clips: Tensor) -> dict[str, Tensor]:
        cfg, proc = self.cfg, self.proc
        gen = step_generator(cfg.seed, self.step, proc.rank, proc.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        with torch.no_grad():
            scores = motion_scores(clips, torch.full((clips.shape[0],), clips.shape[2], device=proc.device))
            self.motion.update(scores)
            motion = self.motion.normalise(scores)
        self.objective.train()
        if cfg.stage_spec.fixes_latent_statistics:
            self.objective.model.encoder.eval()
        with self._autocast():
            loss, parts = self.wrapped(clips, motion, gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), cfg.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            params = [p.detach() for p in self.trainable.values()]
            # Warm-up: the average starts short, so the random initialisation leaves it quickly.
            decay = min(cfg.ema, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(list(self.ema.values()), [p.float() for p in params], 1 - decay)
        logged = {k: v.detach() for k, v in parts.items()}
        logged["loss"] = loss.detach()
        logged["grad_norm"] = gathered(grad_norm)
        return logged  # tensors: read on the host only at log steps

    def _out_of_time(self, deadline: float, save_seconds: float, first_step: tuple[int, float]) -> bool:
        """Agree across processes to stop when a few more steps, a validation and a save might not fit."""
        step, since = first_step
        step_seconds = (time.time() - since) / max(self.step - step, 1)
        reserve = 12 * step_seconds + 2 * save_seconds + self.val_seconds
        stop = torch.tensor(float(time.time() + reserve > deadline),
                            device=self.proc.device)
        if dist.is_initialized():
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        return bool(stop.item())

    def _finish(self, log: "MetricsLog", stopped_early: bool) -> dict:
        cfg = self.cfg
        self.validate(log)  # every run ends with held-out figures: budgets are compared by them
        self.last_train = log.last_train
        entry = self._history()[-1]
        self.save()
        if self.proc.main:
            summary = {**entry, "stopped_early": stopped_early, "model_config": self.objective.model.cfg.to_dict()}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        status = "stopped early (time budget or stop_at)" if stopped_early else "finished"
        log.note(f"{cfg.stage} {status} at step {self.step}/{cfg.steps}; checkpoint {self.out / CHECKPOINT}")
        if dist.is_initialized():
            dist.barrier()
        return {"step": self.step, "stopped_early": stopped_early, **entry}

    # ------------------------------------------------------------------ validation

    def _weights(self) -> dict:
        """Config, weights and their EMA, whole, as a checkpoint holds them (collective under FSDP)."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {"config": self.cfg.to_dict(), "model_config": self.objective.model.cfg.to_dict(),
                "model": get_model_state_dict(self.objective, options=options),
                "ema": {n: gathered(t).detach().cpu() for n, t in self.ema.items()}}

    @torch.no_grad()
    def validate(self, log: "MetricsLog") -> None:
        started = time.time()
        snapshot = self._weights()
        if self.proc.main and self.val_clips is not None:
            model = model_from_checkpoint(snapshot).to(self.proc.device).eval()
            if not self.cfg.stage_spec.decodes:
                ldm = ldm_from_checkpoint(snapshot).to(self.proc.device).eval()
                log.write_val(self.step, {"ldm_loss": ldm_validation_loss(model, ldm, self.objective.latent_stats,
                                                                          self.val_clips, self.proc.device)},
                              self._gpu_minutes())
            elif model.cfg.rate_distortion:
                schedule = DecodingSchedule(self.cfg.val_steps, self.cfg.refine_from)
                results, grids = evaluate_rates(model, self.val_clips, schedule, self.proc.device, self.metrics,
                                                self._autocast)
                if self.val_pairs is not None:
                    results.update(evaluate_temporal(model, self.val_pairs, self.proc.device, self._autocast))
                log.write_val(self.step, results, self._gpu_minutes())
                save_samples(self.out / "samples", self.step, grids)
            else:
                quantizer = None
                if self.cfg.latents == "quantized":  # as the codec will: rounded to the step
                    quantizer = Quantizer.in_latent_units(self.cfg.quant_step, model.cfg.latent_channels)
                schedule = DecodingSchedule(self.cfg.val_steps, self.cfg.refine_from)
                results, grids = evaluate(model, self.val_clips, schedule, self.proc.device, self.metrics,
                                          self._autocast, quantizer=quantizer)
                log.write_val(self.step, results, self._gpu_minutes())
                save_samples(self.out / "samples", self.step, grids)
        if dist.is_initialized():
            dist.barrier()
        self.val_seconds = time.time() - started


@torch.no_grad()
def evaluate(model: OneDVA, clips: Tensor, schedule: DecodingSchedule, device: torch.device, metrics: FrameMetrics,
             autocast=contextlib.nullcontext, batch: int = 4, quantizer: Quantizer | None = None
             ) -> tuple[dict, dict[str, Tensor]]:
    """Reconstruct held-out clips keeping all, half and none of the 1D latents; PSNR, SSIM, LPIPS each.
    With a quantizer the latents are quantized as the codec quantizes them, else used as they are."""
    cfg = model.cfg
    shares = {"full": 1.0, "half": 0.5, "none": 0.0}

    def cases(posterior, b: int) -> Iterator[tuple[str, Latents, Tensor | None]]:
        structural, tokens_1d = posterior.structural_mean, posterior.tokens_1d_mean
        if quantizer is not None:
            structural = quantizer.dequantize(quantizer.quantize(structural))
            tokens_1d = quantizer.dequantize(quantizer.quantize(tokens_1d))
        for name, share in shares.items():
            kept = torch.full((b,), round(share * cfg.max_1d_tokens), device=device)
            yield name, Latents(structural, tokens_1d, Latents.keep_mask(kept, cfg.max_1d_tokens)), None

    results, decoded, _ = decode_held_out(model, clips, schedule, device, metrics, autocast, batch, cases)
    return results, {"original": clips[:SAMPLE_CLIPS], **decoded}


@torch.no_grad()
def evaluate_rates(model: OneDVA, clips: Tensor, schedule: DecodingSchedule, device: torch.device,
                   metrics: FrameMetrics, autocast=contextlib.nullcontext, batch: int = 4
                   ) -> tuple[dict, dict[str, Tensor]]:
    """A v3 model on held-out clips at every rate point with every 1D token, rounded as a file holds them:
    bits per pixel (the ideal code length, side information included) and PSNR, SSIM, LPIPS. At the top
    rate point also with no 1D tokens (what they are worth) and unrounded (the latent's ceiling)."""
    cfg = model.cfg
    top = cfg.rate_points - 1
    settings = {f"rate{r}": (r, cfg.max_1d_tokens, "round") for r in range(cfg.rate_points)}
    settings["top-no-1d"] = (top, 0, "round")
    settings["ceiling"] = (top, cfg.max_1d_tokens, "none")

    def cases(posterior, b: int) -> Iterator[tuple[str, Latents, Tensor | None]]:
        for name, (rate, kept, mode) in settings.items():
            keep = Latents.keep_mask(torch.full((b,), kept, device=device), cfg.max_1d_tokens)
            latents, bits, _ = model.code_latents(posterior, keep, torch.full((b,), float(rate), device=device), mode)
            yield name, latents, bits

    results, decoded, bits = decode_held_out(model, clips, schedule, device, metrics, autocast, batch, cases)
    pixels = clips.shape[0] * clips.shape[2] * clips.shape[3] * clips.shape[4]
    results = {name: {**values, "bpp": bits[name] / pixels} for name, values in results.items()}
    return results, {"original": clips[:SAMPLE_CLIPS], "lowest": decoded["rate0"], "top": decoded[f"rate{top}"]}


@torch.no_grad()
def evaluate_temporal(model: OneDVA, pairs: Tensor, device: torch.device, autocast=contextlib.nullcontext,
                      batch: int = 4) -> dict[str, float]:
    """What a temporal prior saves, on held-out clips of two consecutive chunks with every 1D token kept: at
    each rate point the bits per pixel of the second chunks coded after the first ("next") and alone, as
    key chunks ("key"); their pictures differ only by where values round.

    A model with previous frames also decodes (one step, the same noise for both) the second chunks alone
    ("alone") and seeing the last frames of its decode of the first ("previous"): their PSNR, and their pop,
    the change from the first chunk's last decoded frame to the second's first over the source's, divided by
    the same ratio inside the second chunk (1: no pop)."""
    cfg = model.cfg
    totals: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for start in range(0, pairs.shape[0], batch):
        x = pairs[start:start + batch].to(device)
        p = x.shape[0]
        chunks = torch.cat(x.split(cfg.frames, dim=2))  # the first chunks, then the second
        noise = torch.randn(chunks.shape, generator=generator).to(device)
        with autocast():
            posterior = model.encode(chunks, full_tile_geometry(cfg, 2 * p, device))
        keep = Latents.keep_mask(torch.full((2 * p,), cfg.max_1d_tokens, device=device), cfg.max_1d_tokens)
        for r in range(cfg.rate_points):
            rate = torch.full((2 * p,), float(r), device=device)
            latents, bits = model.code_chunk_pairs(posterior, keep, rate)
            _, alone, _ = model.code_latents(posterior.select(slice(p, 2 * p)), keep[p:], rate[p:])
            scores = {"next-bpp": bits[p:].sum().item(), "key-bpp": alone.sum().item()}
            if cfg.previous_frames:
                scores.update(_previous_frame_scores(model, latents, noise, chunks, autocast))
            for name, value in scores.items():
                totals[f"rate{r}-{name}"] = totals.get(f"rate{r}-{name}", 0.0) + value
    pixels = pairs.shape[0] * cfg.frames * cfg.tile * cfg.tile
    results = {name: value / pixels for name, value in totals.items() if name.endswith("-bpp")}
    for name in [n for n in totals if n.endswith("-psnr")]:
        results[name] = totals[name] / pairs.shape[0]
    for name in [n for n in totals if n.endswith("-boundary") and "-source-" not in n]:
        point, kind = name.split("-")[:2]  # the change across the boundary and inside, over the source's
        results[f"{point}-{kind}-pop"] = ((totals[name] / totals[f"{point}-source-boundary"])
                                          / (totals[f"{point}-{kind}-inside"] / totals[f"{point}-source-inside"]))
    return results


def _previous_frame_scores(model: OneDVA, latents: Latents, noise: Tensor, chunks: Tensor, autocast
                           ) -> dict[str, float]:
    """evaluate_temporal's sums over the pairs for the second chunks (the batch's second half) decoded alone
    and after the first: PSNR, and the mean change across the boundary (from the first chunk's last decoded
    frame) and inside the second chunk, of the decodes and of the source."""
    cfg, p = model.cfg, chunks.shape[0] // 2
    one_step = DecodingSchedule(1)

    def decode(rows: slice, previous: Tensor | None) -> Tensor:
        some = latents.select(rows)
        if previous is not None:
            some = dataclasses.replace(some, previous=previous,
                                       has_previous=torch.ones(p, dtype=torch.bool, device=noise.device))
        with autocast():
            return sample(lambda x, t: model.velocity(x, t, some), noise[rows], one_step).float().clamp(-1, 1)

    def changes(first: Tensor, second: Tensor) -> tuple[float, float]:
        boundary = (second[:, :, 0] - first[:, :, -1]).abs().mean().item()
        return boundary * p, (second[:, :, 1:] - second[:, :, :-1]).abs().mean().item() * p

    source = chunks.float()
    first = decode(slice(0, p), None)
    scores = dict(zip(("source-boundary", "source-inside"), changes(source[:p], source[p:])))
    for kind, previous in (("alone", None), ("previous", first[:, :, -cfg.previous_frames:])):
        second = decode(slice(p, 2 * p), previous)
        mse = (second - source[p:]).pow(2).flatten(1).mean(1)
        scores[f"{kind}-psnr"] = (10 * torch.log10(4 / mse.clamp(min=1e-10))).sum().item()  # range 2: [-1, 1]
        scores[f"{kind}-boundary"], scores[f"{kind}-inside"] = changes(first, second)
    return scores


def decode_held_out(model: OneDVA, clips: Tensor, schedule: DecodingSchedule, device: torch.device, metrics,
                    autocast, batch: int, cases, kept_clips: int = SAMPLE_CLIPS
                    ) -> tuple[dict, dict[str, Tensor], dict[str, float]]:
    """Encode the clips a batch at a time and decode each of `cases(posterior, b)` ((name, latents, bits or
    None) per case) from the same noise. Returns each case's `metrics(reference frames, decoded frames)`
    (a dict of means over frames, here averaged over all the clips), its first `kept_clips` decoded clips
    (for sample grids; the others are scored and let go, so memory does not grow with the cases) and its
    total bits."""
    cfg = model.cfg
    decoded: dict[str, list[Tensor]] = {}
    sums: dict[str, dict[str, float]] = {}
    bits: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for start in range(0, clips.shape[0], batch):
        x0 = clips[start:start + batch].to(device)
        b = x0.shape[0]
        with autocast():
            posterior = model.encode(x0, full_tile_geometry(cfg, b, device))
        noise = torch.randn(x0.shape, generator=generator).to(device)
        reference = video_frames(x0.float())
        for name, latents, case_bits in cases(posterior, b):
            with autocast():
                out = sample(lambda x, t: model.velocity(x, t, latents), noise, schedule).float().clamp(-1, 1)
            scores = metrics(reference, video_frames(out))
            sums[name] = {k: sums.get(name, {}).get(k, 0.0) + v * b for k, v in scores.items()}
            if start < kept_clips:
                decoded.setdefault(name, []).append(out[: kept_clips - start].cpu())
            bits[name] = bits.get(name, 0.0) + (case_bits.sum().item() if case_bits is not None else 0.0)
    results = {name: {k: v / clips.shape[0] for k, v in total.items()} for name, total in sums.items()}
    return results, {name: torch.cat(parts) for name, parts in decoded.items()}, bits


@torch.no_grad()
def ldm_validation_loss(model: OneDVA, ldm: LatentDiT, stats: LatentStats, clips: Tensor, device: torch.device,
                        batch: int = 4) -> float:
    """The LDM's flow-matching loss on held-out latents, at t = 0.25, 0.5, 0.75 with fixed noise."""
    cfg = model.cfg
    generator = torch.Generator().manual_seed(0)
    losses = []
    for start in range(0, clips.shape[0], batch):
        x0 = clips[start:start + batch].to(device)
        z0 = stats.normalise(model.encode(x0, full_tile_geometry(cfg, x0.shape[0], device)).means().float())
        for level in (0.25, 0.5, 0.75):
            eps = torch.randn(z0.shape, generator=generator).to(device)
            t = torch.full((z0.shape[0],), level, device=device)
            losses.append((ldm(mix(z0, eps, level), t) - velocity_target(z0, eps)).pow(2).mean().item())
    return float(np.mean(losses))


def save_samples(folder: Path, step: int, videos: dict[str, Tensor], clips: int = SAMPLE_CLIPS) -> None:
    """A PNG grid (per clip: one row per version, frames 0, 8, 16) and an animated GIF of clip 0."""
    to_image = model_to_frames

    rows = []
    length = next(iter(videos.values())).shape[2]
    picks = sorted({0, length // 2, length - 1})
    for clip in range(min(clips, next(iter(videos.values())).shape[0])):
        for video in videos.values():
            rows.append(np.concatenate([to_image(video[clip, :, f]) for f in picks], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(folder / f"step{step:07d}.png")
    frames = [Image.fromarray(np.concatenate([to_image(v[0, :, f]) for v in videos.values()], axis=1))
              for f in range(length)]
    frames[0].save(folder / f"step{step:07d}.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


class MetricsLog:
    """metrics.jsonl plus a line on the console, from the main process only."""

    def __init__(self, path: Path, active: bool):
        self.path, self.active = path, active
        self.last_train: dict = {}
        self.bar: Progress | None = None

    def _append(self, record: dict) -> None:
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_train(self, step: int, steps: int, recent: list[dict], samples_per_s_per_process: float, lr: float,
                    motion: MotionStats, device: torch.device) -> None:
        means = {k: torch.stack([r[k].float() for r in recent]).mean().item() for k in recent[0]}
        self.last_train = {k: round(v, 6) for k, v in means.items()}
        record = {"step": step, "time": time.time(), "lr": lr, "samples_per_s_per_gpu": samples_per_s_per_process,
                  **means, "motion_mu": float(motion.mu), "motion_sigma": float(motion.sigma)}
        if device.type == "cuda":
            record["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        self._append(record)
        parts = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k not in ("loss", "grad_norm"))
        memory = f" mem {record['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in record else ""
        self.note(f"step {step}/{steps} loss {means['loss']:.4g} ({parts}) |g| {means['grad_norm']:.3g} "
                  f"lr {lr:.2e} {samples_per_s_per_process:.1f} samples/s/proc{memory}")

    def write_val(self, step: int, results: dict, gpu_minutes: float) -> None:
        self._append({"step": step, "time": time.time(), "gpu_minutes": round(gpu_minutes, 2), "val": results})
        text = " | ".join(f"{k}: " + (f"{v['bpp']:.4f} bpp " if "bpp" in v else "")
                          + f"PSNR {v['psnr']:.2f} SSIM {v['ssim']:.3f} LPIPS {v['lpips']:.3f}"
                          if isinstance(v, dict) else f"{k} {v:.4g}" for k, v in results.items())
        self.note(f"val step {step}: {text}")

    def note(self, text: str) -> None:
        if self.active:
            (self.bar.console.print if self.bar is not None else print)(text)

    @contextlib.contextmanager
    def progress(self, start: int, steps: int):
        """A rich progress bar (samples/s, loss) on a terminal; plain log lines elsewhere."""
        if not (self.active and sys.stdout.isatty()):
            yield lambda rate: None
            return
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
        with Progress(*columns) as bar:
            self.bar = bar
            task = bar.add_task("training", total=steps, completed=start, info="")
            yield lambda rate: bar.update(task, advance=1, info=f"{rate:.1f} samples/s")
            self.bar = None

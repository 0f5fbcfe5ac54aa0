"""Training configuration: one dataclass, the paper's defaults per stage, a TOML file, overrides.

Precedence, lowest first: the dataclass defaults, the stage's defaults below, a
TOML config file (`--config`), then options on the command line (`--lr`,
`--set key=value`, ...).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from onedva_codec.model.config import ModelConfig, get_config

from .stages import Stage, get_stage


@dataclass
class TrainConfig:
    stage: str = "stage1"
    model: str = "s"  # model config name, for a run that starts from scratch
    model_changes: str = ""  # from scratch only: fields of that config to change, e.g. "head_channels=16,dec_depth=8"
    data: str = "pack"  # training pack folder (odva-train data)
    out: str = "runs/stage1"  # run folder: checkpoints, metrics.jsonl, samples
    init: str = ""  # previous stage's run folder or checkpoint, or a model folder, to start from
    ldm: str = ""  # decoder-ft: checkpoint of the ldm stage

    steps: int = 10_000
    batch: int = 32  # global: split over all processes
    lr: float = 5e-5
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup: int = 500
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    ema: float = 0.999
    bf16: bool = True  # autocast on CUDA
    fsdp: bool = False  # shard parameters (FSDP2) instead of replicating them (DDP)
    seed: int = 0
    workers: int = 8
    photo_share: float = 0.5  # share of pseudo-video samples

    # Losses: total = w_diff L_diff + w_perc L_perc + w_kl L_KL + w_repa L_REPA + w_align L_align + w_rate R
    #   + w_temporal L_temporal
    w_diff: float = 10.0
    w_perc: float = 0.1
    w_kl: float = 1e-4
    w_repa: float = 0.1
    w_align: float = 0.0
    w_rate: float = 0.0  # R: bits per pixel of the kept latents under a learned density (latents = "quantized")
    # L_temporal (losses.temporal_loss): the decode's frame-to-frame change against the source's, also from the
    # frame before the chunk where the decoder saw it; weighted as L_diff (per rate point for v3 models). Errors
    # that jump from frame to frame are what a viewer sees as motion in steps and a pop at every chunk.
    w_temporal: float = 0.0
    # v3 models (rate_points > 0): one lambda per rate point, the weight of MSE in 0..255 units against
    # bits per pixel; the loss of a sample at rate point r is lambda_r MSE + bpp (+ w_perc LPIPS ...),
    # w_diff and w_rate do not apply
    rd_lambdas: str = "3e-5,1e-4,3e-4,1e-3,3e-3,1e-2"
    x0_weight_cap: float = 400.0  # cap of L_diff's weight 1 / t^2 (400 is t = 0.05; 5 is Min-SNR-like)
    # What the decoder is conditioned on: "kl" posterior samples, or "quantized": the posterior means
    # plus uniform noise one quantization step wide (quant_step in latent units), as learned image
    # codecs train; the exported card then quantizes with mean 0, std 1 and that step.
    latents: str = "kl"
    perceptual_net: str = "alexnet"  # LPIPS network for the perceptual loss
    perceptual_frames: int = 4  # frames per clip that enter the perceptual loss
    # The perceptual loss on samples below t = 1 only: the one-step decoder stays MSE-optimal (PSNR) while
    # the refining steps learn to draw detail
    perc_below_one: bool = False
    repa_block: int = 2  # decoder block (from 0) whose output is aligned with the teacher, ~1/3 of depth
    repa_groups: int = 2  # temporal groups per clip aligned (each costs one teacher pass)

    # Noise level and latent dropout
    t_mode: str = "one"  # "one": t = 1 always (stage 1); "logit-normal": t = sigmoid(N(0, 1))
    t_one_share: float = 0.1  # logit-normal mode: share of samples at t = 1
    # Share of the samples below t = 1 noised from the decoder's own one-step estimate instead of the clip,
    # as the refining sampler noises it back to t0 (the model otherwise never sees that input in training)
    refine_share: float = 0.0
    kept_lengths: str = "all"  # 1D tokens kept: "all", "motion" (driven by the motion score) or "uniform"
    full_share: float = 0.1  # motion or uniform: share keeping every 1D latent
    none_share: float = 0.1  # motion or uniform: share keeping none (structural only)
    motion_momentum: float = 0.99  # EMA of the motion-score statistics

    # decoder-ft: what the decoder is conditioned on
    quant_step: float = 0.5  # the codec's quantization step: latent standard deviations, or latent units
                             # where latents = "quantized"
    quantized_share: float = 0.5  # samples conditioned on quantized latents
    ldm_share: float = 0.25  # samples conditioned on the LDM's predicted clean latents
    ldm_t_max: float = 0.5  # noise level up to which the LDM's prediction is used

    # ldm: the latent DiT
    ldm_width: int = 256
    ldm_depth: int = 4
    ldm_heads: int = 4

    # Grow an --init model folder or checkpoint into this model config (e.g. a v2 model into "v3"): weights of
    # equal shape are copied, a wider latent keeps the old channels first and its new channels start silent
    grow_into: str = ""

    # Bookkeeping
    log_every: int = 20
    val_every: int = 500
    ckpt_every: int = 500
    max_minutes: float = 0.0  # wall-clock budget; 0 for none. Saves before it runs out.
    stop_at: int = 0  # stop (and save) after this step although the schedule spans `steps`; 0: run to the end
    val_steps: int = 1  # decoding steps for validation
    refine_from: float = 1.0  # multi-step decoding refines the one-step estimate from this t (exported too)
    val_clips: int = 16  # at most this many held-out clips

    @property
    def stage_spec(self) -> Stage:
        return get_stage(self.stage)

    @property
    def lambdas(self) -> list[float]:
        """rd_lambdas as numbers, one per rate point of a v3 model."""
        try:
            values = [float(v) for v in self.rd_lambdas.split(",")]
        except ValueError:
            raise ValueError(f"rd_lambdas takes numbers separated by commas, not {self.rd_lambdas!r}") from None
        if any(v <= 0 for v in values) or values != sorted(values):
            raise ValueError(f"rd_lambdas must be positive and rising, not {self.rd_lambdas!r}")
        return values

    def validate(self) -> None:
        stage = self.stage_spec
        if self.t_mode not in ("one", "logit-normal"):
            raise ValueError(f"t_mode must be 'one' or 'logit-normal', not {self.t_mode!r}")
        if not 0.0 <= self.refine_share <= 1.0:
            raise ValueError(f"refine_share must be in [0, 1], not {self.refine_share}")
        if self.kept_lengths not in ("all", "motion", "uniform"):
            raise ValueError(f"kept_lengths must be all, motion or uniform, not {self.kept_lengths!r}")
        if self.latents not in ("kl", "quantized"):
            raise ValueError(f"latents must be kl or quantized, not {self.latents!r}")
        if self.w_rate > 0 and self.latents != "quantized":
            raise ValueError("the rate term (w_rate) needs latents = quantized")
        if stage.needs_init and not self.init:
            raise ValueError(f"{self.stage} starts from a previous stage's checkpoint: give --init")
        if stage.conditioning == "codec-mix" and self.ldm_share > 0 and not self.ldm:
            raise ValueError(f"{self.stage} with ldm_share > 0 needs the ldm stage's checkpoint: give --ldm")
        if self.model_changes and self.init:
            raise ValueError("model_changes applies to a run from scratch; a run with --init keeps its model "
                             "(or grows into another: grow_into)")
        if self.grow_into and not self.init:
            raise ValueError("grow_into grows the --init model into another config: give --init")
        mcfg = model_config(self.grow_into or self.model, "" if self.grow_into else self.model_changes)
        if mcfg.rate_distortion and len(self.lambdas) != mcfg.rate_points:
            raise ValueError(f"rd_lambdas has {len(self.lambdas)} values for the {mcfg.rate_points} rate points of "
                             f"model {mcfg.name}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_config(name: str, changes: str = "") -> ModelConfig:
    """A named model config with some fields changed: model_config("s", "head_channels=16,dec_depth=8")."""
    config = get_config(name)
    if not changes.strip():
        return config
    values = {}
    for change in changes.split(","):
        key, sep, text = (part.strip() for part in change.partition("="))
        if not sep or _field_type(ModelConfig, key) is None or key == "name":
            raise ValueError(f"model_changes takes field=value pairs of the model config, not {change.strip()!r}")
        values[key] = _parse(ModelConfig, key, text)
    return dataclasses.replace(config, name=f"{name}({changes.replace(' ', '')})", **values)


def _field_type(cls: type, name: str) -> str | None:
    """The annotation of a dataclass field, as written (these modules defer annotations), or None."""
    return {f.name: f.type for f in dataclasses.fields(cls)}.get(name)


def _parse(cls: type, name: str, text: str):
    """Text from the command line, parsed to the type of field `name` of dataclass `cls`."""
    kind = _field_type(cls, name)
    if kind is None:
        raise ValueError(f"unknown setting {name!r}")
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} takes true or false, not {text!r}")
        return text.lower() in ("true", "1", "yes")
    return {"int": int, "float": float}.get(kind, str)(text)


def resolve(stage: str, config_file: str | None, overrides: dict, settings: list[str]) -> TrainConfig:
    """Build a stage's config from its defaults, a TOML file, explicit options and key=value settings."""
    values: dict = {"stage": stage, "out": f"runs/{stage}", **get_stage(stage).defaults}
    if config_file:
        values.update(tomllib.loads(Path(config_file).read_text()))
    values.update({k: v for k, v in overrides.items() if v is not None})
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep:
            raise ValueError(f"--set takes key=value, not {setting!r}")
        values[key.strip()] = _parse(TrainConfig, key.strip(), text.strip())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**values)
    cfg.stage = stage
    cfg.validate()
    return cfg


def from_dict(values: dict) -> TrainConfig:
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


def save(cfg: TrainConfig, path: Path) -> None:
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")



def load_values(path: Path) -> dict:
    """The settings a run folder's config.json recorded."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a run folder?")
    return json.loads(path.read_text())

"""A model is a folder: `model.safetensors` (bf16), `prior.safetensors` and `card.json`.

The card names the config and its values, the SHA-256 of the weights file (which
every .odva file records, so that a file is never decoded by a model it was not
encoded with), the entropy prior's identity (its SHA-256, recorded in every file
too: the range coder needs exactly the encoder's tables), the latent statistics
used to normalise latents before quantization, the motion-score statistics used
by rate control, the quantization step and the default decoding schedule.
Anything else a training run wants to keep (stages, losses, data) goes under
"training" and is carried verbatim.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..bitstream.container import FileHeader
from ..bitstream.hyperprior_coding import ENTROPY_CODER as HYPERPRIOR_CODER
from ..bitstream.hyperprior_coding import HyperpriorCoder, HyperpriorTables
from ..bitstream.latent_coding import ENTROPY_CODER, Quantizer, TileCoder
from ..bitstream.prior import EntropyPrior
from ..errors import FormatError, InputError, ModelMismatchError, WeightsError
from ..video.atomic import atomic_output
from ..video.geometry import TileGrid
from .config import ModelConfig
from .network import OneDVA, token_homes
from .schedule import DecodingSchedule

WEIGHTS_FILE = "model.safetensors"
WEIGHT_FORMATS = ("bf16", "int8")
_INT8_SCALE = ".int8_scale"  # the per-row scale of an int8 tensor is stored under its name plus this
_INT8_MIN_SIZE = 4096  # smaller tensors (biases, norms, embeddings of a few rows) stay bf16
PRIOR_FILE = "prior.safetensors"
CARD_FILE = "card.json"
CARD_FORMAT = "odva-model"
CARD_VERSION = 2  # 2 added the entropy prior


@dataclass
class ModelCard:
    config: ModelConfig
    latent_mean: list[float]
    latent_std: list[float]
    motion_mu: float
    motion_sigma: float
    quant_step: float = 0.5
    sampling: DecodingSchedule = DecodingSchedule()  # how its files decode unless the caller asks otherwise
    weights_sha256: str = ""
    weights_format: str = "bf16"  # or "int8": each matrix row scaled to int8 by its largest magnitude
    prior_sha256: str = ""
    prior_fit: dict = field(default_factory=dict)  # how the prior was fitted, informative
    training: dict = field(default_factory=dict)
    # A v3 model's `--quality` ladder, as measured (`odva-train ladder`): [rate point, mean share of 1D tokens]
    # rows for qualities evenly spaced from 0 to 1; empty: ratecontrol's default ladder
    rate_ladder: list[list[float]] = field(default_factory=list)

    def schedule(self, steps: int | None = None) -> DecodingSchedule:
        """How to decode: this model's schedule, with the caller's steps if given."""
        return self.sampling.with_steps(steps)

    def quantizer(self) -> Quantizer:
        """What the encoder applies to every latent of this model."""
        return Quantizer(self.quant_step, tuple(self.latent_mean), tuple(self.latent_std))

    def to_json(self) -> dict:
        return {
            "format": CARD_FORMAT,
            "format_version": CARD_VERSION,
            "config": self.config.to_dict(),
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": self.weights_sha256,
            "weights_format": self.weights_format,
            "entropy_prior": {"file": PRIOR_FILE, "sha256": self.prior_sha256, "fit": self.prior_fit},
            "latent_stats": {"mean": self.latent_mean, "std": self.latent_std},
            "motion_stats": {"mu": self.motion_mu, "sigma": self.motion_sigma},
            "quantization": {"step": self.quant_step, **({"ladder": self.rate_ladder} if self.rate_ladder else {})},
            "sampling": {"default_steps": self.sampling.steps, "refine_from": self.sampling.refine_from},
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict) -> "ModelCard":
        if data.get("format") == CARD_FORMAT and data.get("format_version") == 1:
            raise ValueError("it is a version-1 card, from before entropy priors; fit one with "
                             "`odva-train prior MODEL_DIR --data PACK`")
        if data.get("format") != CARD_FORMAT or data.get("format_version") != CARD_VERSION:
            raise ValueError(f"not an {CARD_FORMAT} v{CARD_VERSION} card")
        return cls(
            config=ModelConfig.from_dict(data["config"]),
            latent_mean=[float(v) for v in data["latent_stats"]["mean"]],
            latent_std=[float(v) for v in data["latent_stats"]["std"]],
            motion_mu=float(data["motion_stats"]["mu"]),
            motion_sigma=float(data["motion_stats"]["sigma"]),
            quant_step=float(data["quantization"]["step"]),
            sampling=DecodingSchedule(int(data["sampling"]["default_steps"]),
                                      float(data["sampling"].get("refine_from", 1.0))),
            weights_sha256=str(data["weights_sha256"]),
            weights_format=str(data.get("weights_format", "bf16")),
            prior_sha256=str(data["entropy_prior"]["sha256"]),
            prior_fit=dict(data["entropy_prior"].get("fit", {})),
            training=dict(data.get("training", {})),
            rate_ladder=checked_ladder(data["quantization"].get("ladder", []),
                                       ModelConfig.from_dict(data["config"]).rate_points),
        )


def checked_ladder(rows: object, rate_points: int) -> list[list[float]]:
    """A card's ladder, checked: rows of [rate point within the model's, share of 1D tokens in 0..1]."""
    if rows in ([], None):
        return []
    valid = (rate_points > 0 and isinstance(rows, list) and len(rows) >= 2
             and all(isinstance(row, list) and len(row) == 2 and all(isinstance(v, (int, float)) for v in row)
                     and 0 <= row[0] <= rate_points - 1 and 0 <= row[1] <= 1 for row in rows))
    if not valid:
        raise ValueError("its quantization ladder is not rows of [rate point, share of 1D tokens]")
    return [[float(point), float(share)] for point, share in rows]


@dataclass
class LoadedModel:
    """What a model is, wherever it runs: the network, its card and its entropy prior (and the range
    coder of that prior), and the folder they came from."""

    model: OneDVA
    card: ModelCard
    prior: EntropyPrior | HyperpriorTables  # the second for a v3 model (config rate_points > 0)
    path: Path
    tile_coder: TileCoder | HyperpriorCoder = field(init=False)

    def __post_init__(self) -> None:
        self.tile_coder = tile_coder(self.prior, self.card.config)

    @property
    def cfg(self) -> ModelConfig:
        return self.card.config

    @property
    def model_id(self) -> str:
        """What a file records and a decoder checks: config name and weights hash."""
        return f"{self.card.config.name}-{self.card.weights_sha256[:16]}"

    def quantizer(self) -> Quantizer:
        """The card's quantizer: what the encoder applies to every latent."""
        return self.card.quantizer()

    @property
    def entropy_coder(self) -> str:
        """The entropy coder its files name: `hyperprior-v1` for a v3 model, `range-prior-v1` before."""
        return HYPERPRIOR_CODER if self.cfg.rate_distortion else ENTROPY_CODER

    def decode_count(self, kept: int) -> int:
        """What the tile coder's decode takes for a tile keeping `kept` 1D tokens: the tile's tokens (a
        v1/v2 model's symbols) or the kept count itself (a v3 model's planes)."""
        return kept if self.cfg.rate_distortion else self.cfg.structural_tokens + kept


def tile_coder(prior: EntropyPrior | HyperpriorTables, cfg: ModelConfig) -> TileCoder | HyperpriorCoder:
    """The range coder of a model's tiles under its prior."""
    if not isinstance(prior, HyperpriorTables):
        return TileCoder(prior)
    group, position = token_homes(cfg)
    slot_homes = ((group + 1) * cfg.structural_tokens + position).numpy()
    return HyperpriorCoder(prior, slot_homes, cfg.latent_channels, cfg.grid // 2)


def default_weights_dir() -> Path:
    """$ODVA_WEIGHTS if set, else the weights/ folder that ships with the package.

    A wheel carries that folder inside the package (pyproject.toml maps it there);
    a source checkout or editable install finds it beside the package.
    """
    if os.environ.get("ODVA_WEIGHTS"):
        return Path(os.environ["ODVA_WEIGHTS"])
    package = Path(__file__).resolve().parents[1]  # onedva_codec/
    bundled = package / "shipped_weights"
    return bundled if bundled.is_dir() else package.parent / "weights"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored(state: dict[str, torch.Tensor], weights_format: str) -> dict[str, torch.Tensor]:
    """A state dict as the weights file holds it: bf16, or matrices as int8 rows with a scale each."""
    if weights_format not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weights format {weights_format!r}; one of {', '.join(WEIGHT_FORMATS)}")
    out = {}
    for name, value in state.items():
        value = value.detach().float().cpu()
        if weights_format == "int8" and value.ndim >= 2 and value.numel() >= _INT8_MIN_SIZE:
            rows = value.flatten(1)
            scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
            out[name] = torch.round(rows / scale[:, None]).to(torch.int8).reshape(value.shape).contiguous()
            out[name + _INT8_SCALE] = scale.contiguous()
        else:
            out[name] = value.to(torch.bfloat16).contiguous()
    return out


def _restored(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `_stored`, in float32."""
    state = {}
    for name, value in tensors.items():
        if name.endswith(_INT8_SCALE):
            continue
        scale = tensors.get(name + _INT8_SCALE)
        value = value.float()
        state[name] = value if scale is None else (value.flatten(1) * scale.float()[:, None]).reshape(value.shape)
    return state


def save_model(model: OneDVA, card: ModelCard, prior: EntropyPrior | HyperpriorTables, folder: str | Path
               ) -> ModelCard:
    """Write `model` (as `card.weights_format` says), its prior and its card to `folder`; returns the
    card with the hashes filled in."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = _stored(model.state_dict(), card.weights_format)
    with atomic_output(folder / WEIGHTS_FILE, force=True) as tmp:
        save_file(tensors, str(tmp), metadata={"config": card.config.name})
    card.weights_sha256 = file_sha256(folder / WEIGHTS_FILE)
    card.config = model.cfg
    return save_prior(prior, card, folder)


def save_prior(prior: EntropyPrior | HyperpriorTables, card: ModelCard, folder: str | Path) -> ModelCard:
    """Write (or replace) a model folder's prior and its card; the weights stay as they are.

    Files coded under the old prior no longer decode with this folder: they name its hash.
    """
    folder = Path(folder)
    problem = _prior_misfit(prior, card.config)
    if problem:
        raise ValueError(problem)
    with atomic_output(folder / PRIOR_FILE, force=True) as tmp:
        prior.save(tmp)
    card.prior_sha256 = prior.sha256
    with atomic_output(folder / CARD_FILE, force=True) as tmp:
        tmp.write_text(json.dumps(card.to_json(), indent=2) + "\n")
    return card


def check_decodable(header: FileHeader, loaded: LoadedModel) -> None:
    """Refuse, with the reason, a file the loaded model cannot decode: other weights, other latent
    geometry, another entropy coder or prior, or a tile layout this odva would not make."""
    card, cfg = loaded.card, loaded.card.config
    if header.model_sha256 != card.weights_sha256:
        raise ModelMismatchError(
            f"this file was encoded with model {header.model_config}-{header.model_sha256[:16]}, but the "
            f"loaded weights are {loaded.model_id} ({loaded.path}); pass --weights with the model it was made with")
    if (header.chunk_frames, header.tile_size, header.latent_channels, header.structural_tokens,
            header.max_1d_tokens) != (cfg.frames, cfg.tile, cfg.latent_channels, cfg.structural_tokens,
                                      cfg.max_1d_tokens):
        raise ModelMismatchError("the file's latent geometry does not match the loaded model")
    if header.entropy_coder != loaded.entropy_coder:
        raise FormatError(f"this file uses entropy coder {header.entropy_coder!r}, which model {loaded.model_id} "
                          f"cannot read (it reads {loaded.entropy_coder!r})")
    if header.prior_sha256 != card.prior_sha256:
        raise ModelMismatchError(
            f"this file was coded under entropy prior {header.prior_sha256[:16]}, but the loaded model "
            f"{loaded.model_id} has prior {card.prior_sha256[:16]}; pass --weights with the model folder it was "
            "made with")
    if header.key_interval and not cfg.temporal_prior:
        raise FormatError(f"this file's chunks depend on the ones before, which model {loaded.model_id} cannot read")
    planned = TileGrid.plan(header.height, header.width, header.tile_size, header.tile_overlap)
    if (tuple(header.tile_ys), tuple(header.tile_xs)) != (planned.ys, planned.xs):
        raise FormatError("the file's tile layout differs from this odva's; it cannot be decoded")


def load_model(folder: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder (default: `default_weights_dir()`), checking the weights against the card."""
    is_default = folder is None
    folder = default_weights_dir() if folder is None else Path(folder)
    card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
    if not card_path.is_file() or not weights_path.is_file():
        if is_default:
            raise WeightsError(f"no trained weights in {folder} yet ({WEIGHTS_FILE} and {CARD_FILE} are missing); "
                               "pass --weights DIR to use another model")
        raise WeightsError(f"{folder} is not a model folder: it needs {WEIGHTS_FILE} and {CARD_FILE}")
    try:
        card = ModelCard.from_json(json.loads(card_path.read_text()))
    except (ValueError, KeyError, TypeError, InputError) as exc:
        raise WeightsError(f"{card_path} is not a valid model card: {exc}") from None
    model = load_network(folder, card, device)
    return LoadedModel(model, card, _load_prior(folder / PRIOR_FILE, card), folder)


def load_network(folder: Path, card: ModelCard, device: str | torch.device = "cpu") -> OneDVA:
    """The network of a model folder, checked against the card's hash, in eval mode."""
    weights_path = folder / WEIGHTS_FILE
    actual = file_sha256(weights_path)
    if actual != card.weights_sha256:
        raise WeightsError(f"{weights_path} does not match its card (sha256 {actual[:16]}, card says "
                           f"{card.weights_sha256[:16]}); the model folder is damaged")
    model = OneDVA(card.config)
    try:
        model.load_state_dict(_restored(load_file(str(weights_path))))
    except (RuntimeError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{weights_path} does not fit config {card.config.name!r}: {first_line}") from None
    return model.to(device).eval().requires_grad_(False)  # the codec never trains it; a search needs no weight grads


def _prior_misfit(prior: EntropyPrior | HyperpriorTables, cfg: ModelConfig) -> str:
    """Why `prior` cannot code the latents of a model of `cfg`, or ""."""
    if cfg.rate_distortion:
        planes = (1 + cfg.max_1d_tokens // cfg.structural_tokens) * cfg.latent_channels
        if not isinstance(prior, HyperpriorTables):
            return "a v3 model needs a hyperprior entropy model"
        if (prior.decoder.planes, len(prior.z_tables)) != (planes, cfg.hyper_channels):
            return (f"the hyperprior predicts {prior.decoder.planes} planes from {len(prior.z_tables)} channels, "
                    f"the model has {planes} and {cfg.hyper_channels}")
        return ""
    if not isinstance(prior, EntropyPrior):
        return "a v1/v2 model needs a fitted prior"
    if prior.index.shape != (cfg.structural_tokens + cfg.max_1d_tokens, cfg.latent_channels):
        return (f"the prior covers {prior.index.shape} latent values, the model "
                f"({cfg.structural_tokens} + {cfg.max_1d_tokens}, {cfg.latent_channels})")
    return ""


def _load_prior(path: Path, card: ModelCard) -> EntropyPrior | HyperpriorTables:
    if not path.is_file():
        raise WeightsError(f"{path} is missing: the model folder has no entropy prior")
    try:
        prior = (HyperpriorTables if card.config.rate_distortion else EntropyPrior).load(path)
    except (ValueError, KeyError, OSError, FormatError) as exc:
        raise WeightsError(f"{path} is not a valid entropy prior: {exc}") from None
    if prior.sha256 != card.prior_sha256:
        raise WeightsError(f"{path} does not match its card (prior {prior.sha256[:16]}, card says "
                           f"{card.prior_sha256[:16]}); the model folder is damaged")
    if _prior_misfit(prior, card.config):
        raise WeightsError(f"{path} does not fit config {card.config.name!r}: {_prior_misfit(prior, card.config)}")
    return prior

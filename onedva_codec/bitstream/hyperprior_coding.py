"""A v3 model's entropy model as it ships: exact integer arithmetic and integer tables.

The hyperprior (model/hyperprior.py) predicts, from the rounded hyper-latent z, a
mean and a scale for every latent value. An encoder and a decoder must derive the
same predictions bit for bit, on any two machines, or the range coder desynchronises.
So the exported hyper decoder is integer arithmetic:

* its weights are integers of at most 15 bits, each output channel scaled by a power
  of two of its own, its biases integers at the same scale;
* a convolution is an im2col gather and one matrix product in float64 (numpy's BLAS):
  every product and every partial sum is an integer below 2**53, so the result is
  exact whatever the order of summation, on any CPU, at any batch size (no FFT or
  Winograd algorithm is involved, which would round). It runs where tiles are
  entropy coded, on the CPU, in numpy: coding workers touch no torch;
* activations are requantized by a power of two and floored (exact), ReLU is a clamp.

Its outputs are a mean in 1/MEAN_STEPS of a rounding step and the index of a scale in
SCALE_LEVELS log-spaced scales from SCALE_MIN to SCALE_MAX: the affine map from the
network's log-scale to that index is folded into the last layer at export.

Symbols are coded with constriction's range coder under integer frequency tables
that sum to 2**PRECISION (the v2 prior's convention): one table per hyper-latent
channel (a zero-mean Gaussian of the channel's learned scale) and one per scale
level for the latent values, all over the full symbol range -127..127, so that no
value needs an escape. The tables and the integer network are stored together in
the model's prior file; its SHA-256 is the entropy model's identity.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import constriction
import numpy as np
from safetensors.numpy import load_file, save_file

from ..errors import FormatError
from .container import HYPERPRIOR_CODER
from .prior import SYMBOL_LIMIT, TOTAL, frequencies

if TYPE_CHECKING:
    import torch

SCALE_MIN = 0.11  # smallest scale of a latent value's Gaussian, in rounding steps
SCALE_MAX = 64.0
SCALE_LEVELS = 64
MEAN_STEPS = 16  # predicted means are multiples of 1/16 of a rounding step
WEIGHT_LIMIT = (1 << 15) - 1
ACTIVATION_LIMIT = (1 << 15) - 1
SUM_BITS = 8  # a temporal prior's two parts are added at 1/256 of an output unit, then rounded
ENTROPY_CODER = HYPERPRIOR_CODER  # what a v3 model's files name in their header


def scale_levels() -> np.ndarray:
    """The SCALE_LEVELS scales the tables are built for, log-spaced."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def scale_index_step() -> float:
    """Natural-log distance between neighbouring scale levels."""
    return (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)


def gaussian_table(scale: float) -> np.ndarray:
    """Integer frequencies of round(N(0, scale)) over -127..127, summing to TOTAL."""
    edges = (np.arange(-SYMBOL_LIMIT, SYMBOL_LIMIT + 2) - 0.5) / scale
    cdf = 0.5 * np.array([math.erfc(-e / math.sqrt(2)) for e in edges])
    return frequencies(np.diff(cdf))


def _power_of_two_exponent(limit: float, largest: np.ndarray) -> np.ndarray:
    """Per channel, the largest e with largest * 2**e <= limit (0-valued channels get 0)."""
    safe = np.where(largest > 0, largest, 1.0)
    return np.where(largest > 0, np.floor(np.log2(limit / safe)), 0).astype(np.int64)


@dataclass
class IntegerConv:
    """A k x k convolution (k odd, padding k // 2) with integer weights, output channel o scaled by
    2**exponent[o]."""

    weight: np.ndarray  # (out, in, 3, 3) int
    bias: np.ndarray  # (out,) int, at scale 2**(exponent + input exponent)
    exponent: np.ndarray  # (out,) int

    @classmethod
    def from_float(cls, weight: np.ndarray, bias: np.ndarray, input_exponent: int) -> "IntegerConv":
        """Quantize a float layer whose integer input is its real input times 2**input_exponent."""
        exponent = _power_of_two_exponent(WEIGHT_LIMIT, np.abs(weight).reshape(len(weight), -1).max(axis=1))
        scale = np.exp2(exponent.astype(np.float64))
        w = np.round(weight.astype(np.float64) * scale[:, None, None, None]).astype(np.int64)
        b = np.round(bias.astype(np.float64) * scale * 2.0 ** input_exponent).astype(np.int64)
        return cls(w, b, exponent)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, in, H, W) float64 integers -> (B, out, H, W) float64 integer accumulators, exact."""
        b, c, h, w = x.shape
        k = self.weight.shape[-1]
        padded = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))  # (B, in, H, W, k, k)
        columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(b, h * w, c * k * k)  # a gather: exact
        out = columns @ self._matrix + self.bias
        return out.transpose(0, 2, 1).reshape(b, -1, h, w)

    @cached_property
    def _matrix(self) -> np.ndarray:
        """The weights as the (in * k * k, out) float64 matrix the product takes, made once."""
        return np.ascontiguousarray(self.weight.reshape(len(self.weight), -1).T.astype(np.float64))


@dataclass
class IntegerHyperDecoder:
    """Rounded hyper-latent -> (mean in 1/MEAN_STEPS steps, scale index) of every latent value, exactly."""

    first: IntegerConv  # h -> 4 h at half the grid, then a pixel shuffle and ReLU
    second: IntegerConv  # h -> 2 planes: means, then scale indices
    activation_exponent: int  # hidden activations are integers of the real value times 2**this
    # a temporal prior's 1 x 1 convolution of the previous chunk's restored planes and their magnitudes, in
    # 1/MEAN_STEPS steps (2 planes -> 2 planes, no bias), added to the second's output; None: no temporal prior
    temporal: IntegerConv | None = None

    @classmethod
    def from_float(cls, first: torch.nn.Conv2d, second: torch.nn.Conv2d, activation_exponent: int,
                   temporal: torch.nn.Conv2d | None = None) -> "IntegerHyperDecoder":
        """The trained float hyper decoder's two convolutions (and a temporal prior's), quantized; their
        log-scale halves are first mapped to scale-index units (so that rounding gives the index)."""
        def to_units(weight: torch.Tensor, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            w = weight.detach().double().cpu().numpy().copy()
            b = np.zeros(len(w)) if bias is None else bias.copy()
            planes = len(w) // 2
            w[:planes] *= MEAN_STEPS
            b[:planes] *= MEAN_STEPS
            w[planes:] /= scale_index_step()
            b[planes:] /= scale_index_step()
            return w, b
        w2, b2 = to_units(second.weight, second.bias.detach().double().cpu().numpy())
        b2[len(w2) // 2:] -= math.log(SCALE_MIN) / scale_index_step()
        integer_temporal = None
        if temporal is not None:  # its input: restored values in 1/MEAN_STEPS steps, so 2**4 times the real ones
            integer_temporal = IntegerConv.from_float(*to_units(temporal.weight, None), int(math.log2(MEAN_STEPS)))
        return cls(IntegerConv.from_float(first.weight.detach().double().cpu().numpy(),
                                          first.bias.detach().double().cpu().numpy(), 0),
                   IntegerConv.from_float(w2, b2, activation_exponent), activation_exponent, integer_temporal)

    @property
    def planes(self) -> int:
        return len(self.second.weight) // 2

    def __call__(self, z: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, h, g, g) integer hyper-latent (and, with a temporal prior, the previous chunk's restored
        planes in 1/MEAN_STEPS steps, (B, planes, 2 g, 2 g) integers; None: a key chunk) -> mean numerators
        (divide by MEAN_STEPS) and scale indices, int64, each (B, planes, 2 g, 2 g)."""
        acc = self.first(np.asarray(z, dtype=np.float64))
        shift = np.exp2(self.activation_exponent - self.first.exponent)[:, None, None]
        hidden = np.clip(np.floor(acc * shift + 0.5), 0, ACTIVATION_LIMIT)  # ReLU, requantized: exact
        b, c, g, _ = hidden.shape  # pixel shuffle: channel 4 k + 2 i + j goes to channel k at (2 y + i, 2 x + j)
        hidden = hidden.reshape(b, c // 4, 2, 2, g, g).transpose(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * g, 2 * g)
        acc = self.second(hidden)
        shift = self.second.exponent + self.activation_exponent
        if self.temporal is None or previous is None:
            out = np.floor(acc * np.exp2(-shift)[:, None, None] + 0.5)
        else:  # both parts floored to 2**-SUM_BITS first (exact integers), their sum rounded once
            context = np.concatenate([previous, np.abs(previous)], axis=1).astype(np.float64)
            temporal_shift = self.temporal.exponent + int(math.log2(MEAN_STEPS))
            fine = (np.floor(acc * np.exp2(SUM_BITS - shift)[:, None, None])
                    + np.floor(self.temporal(context) * np.exp2(SUM_BITS - temporal_shift)[:, None, None]))
            out = np.floor(fine * 2.0 ** -SUM_BITS + 0.5)
        planes = self.planes
        mean = np.clip(out[:, :planes], -SYMBOL_LIMIT * MEAN_STEPS, SYMBOL_LIMIT * MEAN_STEPS)
        index = np.clip(out[:, planes:], 0, SCALE_LEVELS - 1)
        return mean.astype(np.int64), index.astype(np.int64)


@dataclass
class HyperpriorTables:
    """What a v3 model's files are coded with: the integer hyper decoder and the frequency tables."""

    decoder: IntegerHyperDecoder
    z_tables: np.ndarray  # (h, 255) int frequencies of -127..127, one per hyper-latent channel
    y_tables: np.ndarray  # (SCALE_LEVELS, 255) int frequencies, one per scale level

    @classmethod
    def build(cls, decoder: IntegerHyperDecoder, z_scales: np.ndarray) -> "HyperpriorTables":
        return cls(decoder, np.stack([gaussian_table(float(s)) for s in z_scales]),
                   np.stack([gaussian_table(float(s)) for s in scale_levels()]))

    def _arrays(self) -> dict[str, np.ndarray]:
        d = self.decoder
        arrays = {"z_tables": self.z_tables, "y_tables": self.y_tables,
                  "activation_exponent": np.array([d.activation_exponent])}
        convs = [("first", d.first), ("second", d.second)] + ([("temporal", d.temporal)] if d.temporal else [])
        for name, conv in convs:
            arrays.update({f"{name}.weight": conv.weight, f"{name}.bias": conv.bias,
                           f"{name}.exponent": conv.exponent})
        return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in arrays.items()}

    @cached_property
    def sha256(self) -> str:
        """The identity of the entropy model: a hash of every integer it holds, in a fixed order."""
        digest = hashlib.sha256(b"odva-hyperprior-v1")
        for name, array in sorted(self._arrays().items()):
            digest.update(name.encode() + str(array.shape).encode() + array.astype("<i8").tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Weights as int16 (they are at most 15 bits) and tables as int32, the rest as int64."""
        narrow = {"weight": np.int16, "tables": np.int32}
        save_file({name: array.astype(next((t for key, t in narrow.items() if name.endswith(key)), np.int64))
                   for name, array in self._arrays().items()}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "HyperpriorTables":
        a = {name: array.astype(np.int64) for name, array in load_file(str(path)).items()}
        def conv(name: str) -> IntegerConv:
            return IntegerConv(a[f"{name}.weight"], a[f"{name}.bias"], a[f"{name}.exponent"])
        decoder = IntegerHyperDecoder(conv("first"), conv("second"), int(a["activation_exponent"][0]),
                                      conv("temporal") if "temporal.weight" in a else None)
        tables = cls(decoder, a["z_tables"], a["y_tables"])
        if (tables.z_tables.sum(axis=1) != TOTAL).any() or (tables.y_tables.sum(axis=1) != TOTAL).any():
            raise FormatError(f"{path}: entropy tables that do not sum to 2**24")
        return tables


class HyperpriorCoder:
    """Codes one tile: the hyper-latent (channel by channel), then the kept latent values grouped by
    scale index in position order. The decoder reads z, runs the integer hyper decoder, reads y."""

    def __init__(self, tables: HyperpriorTables, slot_homes: np.ndarray, channels: int, z_side: int):
        """`slot_homes` (N,): the place of each 1D slot, in slot order, among the planes' token positions
        ((1 + group) * positions + position); `channels` latent channels per token; `z_side` the
        hyper-latent's side."""
        self.tables = tables
        self.slot_homes, self.channels = np.asarray(slot_homes, dtype=np.int64), channels
        self.z_shape = (len(tables.z_tables), z_side, z_side)
        categorical = constriction.stream.model.Categorical
        # exact frequencies summing to the coder's 2**24: it takes them as they are
        self._z_models = [categorical(row.astype(np.float64), perfect=False) for row in tables.z_tables]
        self._y_models = [categorical(row.astype(np.float64), perfect=False) for row in tables.y_tables]

    def predict(self, z: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(h, g, g) hyper-latent symbols (and the previous chunk's restored planes, for a chunk that
        depends on it) -> (planes, 2g, 2g) mean numerators and scale indices."""
        steps = None if previous is None else np.round(previous * MEAN_STEPS)[None]  # exact: multiples of 1/16
        mean, index = self.tables.decoder(z[None], steps)
        return mean[0], index[0]

    def kept_planes(self, kept_1d: int) -> np.ndarray:
        """(planes, G, G) bool: which latent values a tile keeping the first `kept_1d` 1D slots sends."""
        side = 2 * self.z_shape[1]
        tokens = np.zeros(len(self.slot_homes) + side * side, dtype=bool)
        tokens[: side * side] = True  # the structural latent
        tokens[self.slot_homes[:kept_1d]] = True
        groups = tokens.reshape(-1, 1, side, side)
        return np.broadcast_to(groups, (groups.shape[0], self.channels, side, side)).reshape(-1, side, side)

    def encode(self, z: np.ndarray, y: np.ndarray, kept_1d: int, previous: np.ndarray | None = None) -> bytes:
        """A tile from its hyper-latent symbols (h, g, g) and gained latent (planes, G, G), float: each value
        is sent as its distance to the predicted mean, rounded (and kept to -127..127). `previous`: the
        restored planes of the same tile in the chunk before, for a chunk that depends on it."""
        return self.encode_restoring(z, y, kept_1d, previous)[0]

    def encode_restoring(self, z: np.ndarray, y: np.ndarray, kept_1d: int, previous: np.ndarray | None = None
                         ) -> tuple[bytes, np.ndarray]:
        """`encode`, and the planes a decoder will restore from the bytes (what the next chunk depends on)."""
        mean, index = self.predict(z, previous)
        symbols = np.clip(np.round(y - mean / MEAN_STEPS), -SYMBOL_LIMIT, SYMBOL_LIMIT).astype(np.int64)
        kept = self.kept_planes(kept_1d)
        return self.encode_symbols(z, symbols, index, kept), _restored(symbols, mean, kept)

    def decode(self, data: bytes, kept_1d: int, previous: np.ndarray | None = None) -> np.ndarray:
        """Inverse of `encode`: the gained latent as the decoder restores it, (planes, G, G) float32,
        0 where a 1D token was not kept."""
        kept = self.kept_planes(kept_1d)
        _, y, mean = self.decode_symbols(data, self.z_shape, kept, previous)
        return _restored(y, mean, kept)

    def encode_symbols(self, z: np.ndarray, y: np.ndarray, index: np.ndarray, kept: np.ndarray) -> bytes:
        """z (h, g, g) and y (planes, G, G) int symbols in -127..127, the scale index of every y value
        (from `predict`) and a (planes, G, G) bool mask of the values sent -> the tile's bytes."""
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, model in enumerate(self._z_models):
            encoder.encode((z[channel].ravel() + SYMBOL_LIMIT).astype(np.int32), model)
        values, tables = y[kept] + SYMBOL_LIMIT, index[kept]
        order = np.argsort(tables.astype(np.int16), kind="stable")  # int16: a radix sort
        values, tables = values[order].astype(np.int32), tables[order]
        for level, start, end in _runs(tables):
            encoder.encode(values[start:end], self._y_models[level])
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode_symbols(self, data: bytes, z_shape: tuple[int, int, int], kept: np.ndarray,
                       previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of `encode_symbols`: -> z symbols, y symbols (0 where not kept) and the mean numerators."""
        if len(data) % 4:
            raise FormatError(f"latent data of {len(data)} bytes is not whole 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        try:
            per_channel = z_shape[1] * z_shape[2]
            z = np.stack([decoder.decode(model, per_channel) for model in self._z_models]).astype(np.int64)
            z = z.reshape(z_shape) - SYMBOL_LIMIT
            mean, index = self.predict(z, previous)
            tables = index[kept]
            order = np.argsort(tables.astype(np.int16), kind="stable")  # int16: a radix sort
            sorted_values = np.empty(len(tables), dtype=np.int64)
            for level, start, end in _runs(tables[order]):
                sorted_values[start:end] = decoder.decode(self._y_models[level], end - start)
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise FormatError(f"latent data does not decode ({exc})") from None
        if not decoder.maybe_exhausted():
            raise FormatError("latent data runs on past its last value")
        values = np.empty_like(sorted_values)
        values[order] = sorted_values - SYMBOL_LIMIT
        y = np.zeros(kept.shape, dtype=np.int64)
        y[kept] = values
        return z, y, mean


def _restored(symbols: np.ndarray, mean: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """(planes, G, G) float32 values a decoder restores: symbol + mean, 0 where not sent (exact: multiples
    of 1/16 below 2**8)."""
    return np.where(kept, symbols + mean / MEAN_STEPS, 0).astype(np.float32)


def _runs(sorted_tables: np.ndarray) -> list[tuple[int, int, int]]:
    """(table, start, end) of each run of equal values in a sorted array."""
    if len(sorted_tables) == 0:
        return []
    starts = np.flatnonzero(np.diff(sorted_tables)) + 1
    bounds = [0, *starts.tolist(), len(sorted_tables)]
    return [(int(sorted_tables[s]), s, e) for s, e in zip(bounds[:-1], bounds[1:])]

"""Latents to bytes and back: uniform scalar quantization, then range coding under the model's prior.

A latent value z of channel c becomes the symbol round((z - mean_c) / (std_c * step)),
clipped to [-127, 127]; mean, std and step are stored in every file's header, so a
file decodes without the model card's statistics.

A tile's symbols (structural tokens, then the kept head of the 1D tokens) are coded
with constriction's range coder (32-bit words, 24-bit probabilities) under the
integer tables of the model's `EntropyPrior` (onedva_codec/bitstream/prior.py). Values are
coded grouped by table, so that each group is one vectorised call; values outside
the prior's radius are coded as its escape symbol and then, after all the
others, as one of the 255 values -127..127. docs/format.md gives the order.

The decoder decodes exactly the number of values the chunk record announces, so
damaged data can yield wrong values but never an unbounded loop or allocation;
data the coder recognises as invalid, or left over after the last value, is a
`FormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
import torch
from torch import Tensor

from ..errors import FormatError
from .prior import SYMBOL_LIMIT, EntropyPrior, escape_table

ENTROPY_CODER = "range-prior-v1"
CODED_SIZE_MARGIN = 8  # bytes a tile may take beyond its ideal code length (seen: under 5; a test checks)


@dataclass(frozen=True)
class Quantizer:
    step: float
    mean: tuple[float, ...]  # per channel
    std: tuple[float, ...]

    @classmethod
    def in_latent_units(cls, step: float, channels: int) -> "Quantizer":
        """Rounding to `step` in the latents' own units (mean 0, std 1): what a model trained with
        quantized latents is coded with."""
        return cls(step, (0.0,) * channels, (1.0,) * channels)

    def affine(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel (mean, step) in the latents' units, on `like`'s device: symbol = (x - mean) / step."""
        mean = torch.tensor(self.mean, device=like.device, dtype=torch.float32)
        scale = torch.tensor(self.std, device=like.device, dtype=torch.float32) * self.step
        return mean, scale

    def quantize(self, latents: Tensor) -> Tensor:
        """(..., C) float latents -> (..., C) int8 symbols, on the same device."""
        mean, scale = self.affine(latents)
        symbols = torch.round((latents.float() - mean) / scale)
        return symbols.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int8)

    def dequantize(self, symbols: Tensor) -> Tensor:
        mean, scale = self.affine(symbols)
        return symbols.float() * scale + mean


def coded_size_bound(bits: np.ndarray | float) -> np.ndarray:
    """Bytes a tile of this many ideal bits takes at most once range coded."""
    return np.ceil(np.asarray(bits) / 8).astype(np.int64) + CODED_SIZE_MARGIN


class TileCoder:
    """Codes the symbols of one tile at a time under one prior; the coder's models are built once.

    A tile is coded in the prior's passes: first every value whose table is fixed, then (a lattice
    prior) the structural values whose table and prediction come from values of earlier passes.
    Within a pass values go grouped by table, in position order within a group, and the pass's
    escaped symbols follow it.
    """

    def __init__(self, prior: EntropyPrior):
        self.prior = prior
        categorical = constriction.stream.model.Categorical
        # The frequencies are exact: they already sum to the coder's 2**24, so it takes them as they are.
        self._models = [categorical(row.astype(np.float64), perfect=False) for row in prior.tables]
        self._escape_model = categorical(escape_table().astype(np.float64), perfect=False)
        self._base_tables = prior.index.ravel().astype(np.int64)
        channels = np.arange(prior.channels)
        self._pass_positions = [(rows[:, None] * prior.channels + channels).ravel() for rows in prior.passes]
        first = self._pass_positions[0]
        self._first_order = first[np.argsort(self._base_tables[first], kind="stable")]
        self._first_pass_cache: dict[int, tuple[np.ndarray, list]] = {}

    def _first_pass(self, values: int) -> tuple[np.ndarray, list[tuple[object, int, int]]]:
        """The first pass's positions in coding order and its groups, for a tile of `values` values.
        They depend on the length alone, and a video's tiles share a few dozen lengths."""
        if values not in self._first_pass_cache:
            order = self._first_order[self._first_order < values]
            self._first_pass_cache[values] = (order, self._groups(self._base_tables[order]))
        return self._first_pass_cache[values]

    def _check_shape(self, tokens: int, channels: int) -> None:
        prior = self.prior
        if channels != prior.channels or not prior.structural_tokens <= tokens <= prior.tokens:
            raise FormatError(f"a tile of {tokens} x {channels} latent values does not fit the prior "
                              f"({prior.structural_tokens}..{prior.tokens} x {prior.channels})")

    def _groups(self, tables: np.ndarray) -> list[tuple[object, int, int]]:
        """(model, start, end) of each run of one table in a pass's tables, which are sorted."""
        counts = np.bincount(tables, minlength=len(self._models))
        used = np.flatnonzero(counts)
        ends = np.cumsum(counts)[used].tolist()
        models = self._models
        return [(models[k], end - count, end) for k, count, end in zip(used.tolist(), counts[used].tolist(), ends)]

    def _context(self, flat: np.ndarray, pass_number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, tables and predictions (flat, in the pass's position order) of a contextual pass."""
        positions = self._pass_positions[pass_number]
        positions = positions[positions < flat.size]
        prediction, offset = self.prior.context(flat.reshape(-1, self.prior.channels), pass_number)
        return positions, self._base_tables[positions] + offset.ravel(), prediction.ravel()

    def encode(self, symbols: np.ndarray) -> bytes:
        """(T, C) int8 symbols, S <= T <= S + N -> the tile's bytes."""
        tokens, channels = symbols.shape
        self._check_shape(tokens, channels)
        flat = symbols.astype(np.int64).ravel()
        tables, entries = (a.ravel() for a in self.prior.codes(symbols))
        escape = 2 * self.prior.radius + 1
        encoder = constriction.stream.queue.RangeEncoder()
        for number, positions in enumerate(self._pass_positions):
            if number == 0:
                order, groups = self._first_pass(flat.size)
            else:
                positions = positions[positions < flat.size]
                order = positions[np.argsort(tables[positions].astype(np.int16), kind="stable")]  # radix sort
                groups = self._groups(tables[order])
            pass_entries = entries[order].astype(np.int32)
            for model, start, end in groups:
                encoder.encode(pass_entries[start:end], model)
            escaped = pass_entries == escape
            if escaped.any():
                encoder.encode((flat[order][escaped] + SYMBOL_LIMIT).astype(np.int32), self._escape_model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, tokens: int) -> np.ndarray:
        """Inverse of `encode`: the tile's bytes and its token count -> (T, C) int8 symbols."""
        prior = self.prior
        self._check_shape(tokens, prior.channels)
        if len(data) % 4:
            raise FormatError(f"latent data of {len(data)} bytes is not whole 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        flat = np.zeros(tokens * prior.channels, dtype=np.int64)
        try:
            self._decode_pass(decoder, flat, *self._first_pass(flat.size), 0)
            for number in range(1, len(self._pass_positions)):  # contexts come from earlier passes
                positions, tables, prediction = self._context(flat, number)
                order = np.argsort(tables.astype(np.int16), kind="stable")  # int16: a radix sort
                self._decode_pass(decoder, flat, positions[order], self._groups(tables[order]), prediction[order])
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise FormatError(f"latent data does not decode ({exc})") from None
        if not decoder.maybe_exhausted():
            raise FormatError("latent data runs on past its last value")
        return flat.astype(np.int8).reshape(tokens, prior.channels)

    def _decode_pass(self, decoder, flat: np.ndarray, positions: np.ndarray, groups: list[tuple[object, int, int]],
                     prediction: np.ndarray | int) -> None:
        entries = np.empty(len(positions), dtype=np.int32)
        for model, start, end in groups:
            entries[start:end] = decoder.decode(model, end - start)
        values = entries - self.prior.radius + prediction
        escaped = entries == 2 * self.prior.radius + 1
        if escaped.any():
            values[escaped] = decoder.decode(self._escape_model, int(escaped.sum())) - SYMBOL_LIMIT
        # A damaged stream can predict beyond the symbol range; keep what the file holds in range.
        flat[positions] = np.clip(values, -SYMBOL_LIMIT, SYMBOL_LIMIT)

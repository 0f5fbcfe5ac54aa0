"""Latents to bytes and back: uniform scalar quantization, then range coding under the model's prior.

A latent value z of channel c becomes the symbol round((z - mean_c) / (std_c * step)),
clipped to [-127, 127]; mean, std and step are stored in every file's header, so a
file decodes without the model card's statistics.

A tile's symbols (structural tokens, then the kept head of the 1D tokens) are coded
with constriction's range coder (32-bit words, 24-bit probabilities) under the
integer tables of the model's `EntropyPrior` (onedva_codec/prior.py). Values are
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
from functools import cached_property

import constriction
import numpy as np
import torch
from torch import Tensor

from .errors import FormatError
from .prior import SYMBOL_LIMIT, EntropyPrior, alphabet_entries, escape_table

ENTROPY_CODER = "range-prior-v1"
CODED_SIZE_MARGIN = 8  # bytes a tile may take beyond its ideal code length (seen: under 5; a test checks)


@dataclass(frozen=True)
class Quantizer:
    step: float
    mean: tuple[float, ...]  # per channel
    std: tuple[float, ...]

    def _scale(self, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, device=like.device, dtype=torch.float32)
        scale = torch.tensor(self.std, device=like.device, dtype=torch.float32) * self.step
        return mean, scale

    def quantize(self, latents: Tensor) -> Tensor:
        """(..., C) float latents -> (..., C) int8 symbols, on the same device."""
        mean, scale = self._scale(latents)
        symbols = torch.round((latents.float() - mean) / scale)
        return symbols.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int8)

    def dequantize(self, symbols: Tensor) -> Tensor:
        mean, scale = self._scale(symbols)
        return symbols.float() * scale + mean


def coded_size_bound(bits: np.ndarray | float) -> np.ndarray:
    """Bytes a tile of this many ideal bits takes at most once range coded."""
    return np.ceil(np.asarray(bits) / 8).astype(np.int64) + CODED_SIZE_MARGIN


class TileCoder:
    """Codes the symbols of one tile at a time under one prior; the coder's models are built once.

    A tile is coded in two passes: first every value whose table is fixed (all of them for a
    factorized prior), then the values whose table depends on a context of first-pass values.
    Within a pass values go grouped by table, in position order within a group, and the
    pass's escaped values follow it.
    """

    def __init__(self, prior: EntropyPrior):
        self.prior = prior
        categorical = constriction.stream.model.Categorical
        # The frequencies are exact: they already sum to the coder's 2**24, so it takes them as they are.
        self._models = [categorical(row.astype(np.float64), perfect=False) for row in prior.tables]
        self._escape_model = categorical(escape_table().astype(np.float64), perfect=False)

    @cached_property
    def _first_pass(self) -> np.ndarray:
        """Flat positions (token-major) of a full tile's first-pass values, in coding order. A tile
        with fewer tokens codes the ones it has in the same order."""
        positions = np.flatnonzero(~np.repeat(self.prior.contextual, self.prior.channels))
        return positions[np.argsort(self._base_tables[positions], kind="stable")]

    @cached_property
    def _second_pass(self) -> np.ndarray:
        """Flat positions of the values coded with a context, row by row (none for a factorized prior)."""
        return np.flatnonzero(np.repeat(self.prior.contextual, self.prior.channels))

    @cached_property
    def _base_tables(self) -> np.ndarray:
        return self.prior.index.ravel().astype(np.int64)

    def _check_shape(self, tokens: int, channels: int) -> None:
        prior = self.prior
        if channels != prior.channels or not prior.structural_tokens <= tokens <= prior.tokens:
            raise FormatError(f"a tile of {tokens} x {channels} latent values does not fit the prior "
                              f"({prior.structural_tokens}..{prior.tokens} x {prior.channels})")

    def _passes(self, values: int, structural: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(positions in coding order, their tables) of each pass over a tile of `values` values. The
        second pass needs the tile's (S, C) structural symbols, of which it reads the first pass's."""
        first = self._first_pass[self._first_pass < values]
        passes = [(first, self._base_tables[first])]
        if structural is not None and self.prior.context_radius:
            tables = self._base_tables[self._second_pass] + self.prior.contexts(structural).ravel()
            order = np.argsort(tables, kind="stable")
            passes.append((self._second_pass[order], tables[order]))
        return passes

    def _groups(self, tables: np.ndarray) -> list[tuple[object, int, int]]:
        """(model, start, end) of each run of one table in a pass's tables, which are sorted."""
        counts = np.bincount(tables, minlength=len(self._models))
        used = np.flatnonzero(counts)
        ends = np.cumsum(counts)[used].tolist()
        models = self._models
        return [(models[k], end - count, end) for k, count, end in zip(used.tolist(), counts[used].tolist(), ends)]

    def encode(self, symbols: np.ndarray) -> bytes:
        """(T, C) int8 symbols, S <= T <= S + N -> the tile's bytes."""
        tokens, channels = symbols.shape
        self._check_shape(tokens, channels)
        flat = symbols.astype(np.int64).ravel()
        radius = self.prior.radius
        encoder = constriction.stream.queue.RangeEncoder()
        for order, tables in self._passes(flat.size, symbols[: self.prior.structural_tokens]):
            values = flat[order]
            entries = alphabet_entries(values, radius).astype(np.int32)
            for model, start, end in self._groups(tables):
                encoder.encode(entries[start:end], model)
            escaped = entries == 2 * radius + 1
            if escaped.any():
                encoder.encode((values[escaped] + SYMBOL_LIMIT).astype(np.int32), self._escape_model)
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
            self._decode_pass(decoder, flat, *self._passes(flat.size, None)[0])
            if prior.context_radius:  # the contexts come from the first pass's values
                structural = flat[: prior.structural_tokens * prior.channels].reshape(-1, prior.channels)
                self._decode_pass(decoder, flat, *self._passes(flat.size, structural)[1])
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise FormatError(f"latent data does not decode ({exc})") from None
        if not decoder.maybe_exhausted():
            raise FormatError("latent data runs on past its last value")
        return flat.astype(np.int8).reshape(tokens, prior.channels)

    def _decode_pass(self, decoder, flat: np.ndarray, order: np.ndarray, tables: np.ndarray) -> None:
        entries = np.empty(len(order), dtype=np.int64)
        for model, start, end in self._groups(tables):
            entries[start:end] = decoder.decode(model, end - start)
        values = entries - self.prior.radius
        escaped = entries == 2 * self.prior.radius + 1
        if escaped.any():
            values[escaped] = decoder.decode(self._escape_model, int(escaped.sum())) - SYMBOL_LIMIT
        flat[order] = values

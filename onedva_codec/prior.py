"""Entropy priors: the integer probability tables a model ships with, and which table codes which value.

A prior is K tables over one alphabet, the symbols -R..R followed by an escape
symbol that stands for any value outside that range. Each table holds integer
frequencies, every one at least 1, that sum to 2**PRECISION: the probability the
range coder gives a symbol is its frequency / 2**PRECISION. The tables are fitted
once, stored as integers and used as stored, so an encoder and a decoder on any
two machines (CPU or GPU, any batch size) code with exactly the same numbers.

Which table codes a value is given by the prior's `index`, one base table number
per position and channel of a full tile, (S + N, C) for S structural tokens and N
1D tokens: one table per channel for the structural latent and one per channel
and band of 1D slots, the bands log-spaced from the head (0-1/64 N, 1/64-1/32 N,
..., 1/2-1 N), where early slots carry more.

Kind "checkerboard" adds a context for half of the structural latent, which is a
grid of neighbouring image patches and varies smoothly: the "anchor" positions
(row + column even) are coded first with their channel's table; each other
position uses table base + context, where the context is the rounded mean of its
up to four anchor neighbours in the same channel, clipped to [-c, c] and shifted
to 0..2c. Contexts are integer functions of decoded symbols, so they too are the
same everywhere. Kind "factorized" has no context. A prior whose tables are
learned in training uses the same format; a model that predicts a scale per value
would choose the table per value from a fixed scale table, a further kind.

The identity of a prior is the SHA-256 of its canonical bytes (`sha256`); every
.odva file records it and a decoder refuses a file coded under another prior.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

PRECISION = 24  # bits of the coder's probabilities: frequencies sum to 2**PRECISION
TOTAL = 1 << PRECISION
SYMBOL_LIMIT = 127  # quantized symbols lie in [-127, 127]; escaped values are coded over this range
KINDS = ("factorized", "checkerboard")
CONTEXT_RADIUS = 4  # checkerboard contexts -4..4 (a fit on held-out tiles gained nothing from more)
_BAND_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)  # upper edges of the 1D slot bands but the last
_PSEUDO_COUNT = 0.5  # per alphabet entry when fitting (Krichevsky-Trofimov), so no symbol is impossible


def frequencies(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities (..., A) -> integer frequencies (..., A), each >= 1, every row summing to TOTAL.

    Each entry gets 1 plus its share of the rest, rounded down; what rounding leaves
    goes one unit each to the entries that lost the most, ties to the lowest index.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    spare = TOTAL - p.shape[-1]
    exact = p * spare
    freq = np.floor(exact).astype(np.int64) + 1
    short = TOTAL - freq.sum(axis=-1)
    order = np.argsort(-(exact - np.floor(exact)), axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable")
    return freq + (ranks < short[..., None])


def escape_table() -> np.ndarray:
    """Frequencies of an escaped value: all 2 * SYMBOL_LIMIT + 1 values equally likely."""
    return frequencies(np.ones(2 * SYMBOL_LIMIT + 1))


def slot_bands(max_1d_tokens: int) -> np.ndarray:
    """Band number of each 1D slot: log-spaced from the head, the last band the second half."""
    edges = sorted({max(1, round(f * max_1d_tokens)) for f in _BAND_FRACTIONS})
    return np.searchsorted(np.array(edges), np.arange(max_1d_tokens), side="right")


def anchors(structural_tokens: int) -> np.ndarray:
    """(S,) True where row + column of the square structural grid is even."""
    side = math.isqrt(structural_tokens)
    rows, cols = np.divmod(np.arange(structural_tokens), side)
    return (rows + cols) % 2 == 0


def prior_index(structural_tokens: int, max_1d_tokens: int, channels: int, banded: bool,
                context_radius: int) -> np.ndarray:
    """(S + N, C) base table numbers. Tables 0..C-1 code the structural channels (their anchors, with
    a context); with a context, the other structural positions of channel c use the 2r + 1 tables
    from C + c (2r + 1); the 1D tokens follow, one table per channel and band (banded) or per channel."""
    c, width = channels, 2 * context_radius + 1
    structural = np.broadcast_to(np.arange(c), (structural_tokens, c)).copy()
    if context_radius:
        structural[~anchors(structural_tokens)] = c + np.arange(c) * width
    first_1d = c + (c * width if context_radius else 0)
    bands = slot_bands(max_1d_tokens) if banded else np.zeros(max_1d_tokens, dtype=np.int64)
    tokens_1d = first_1d + bands[:, None] * c + np.arange(c)[None]
    return np.concatenate([structural, tokens_1d]).astype(np.int16)


def alphabet_entries(symbols: np.ndarray, radius: int) -> np.ndarray:
    """Symbols -> their entry in a table: -R..R -> 0..2R, anything else -> the escape, 2R + 1."""
    symbols = symbols.astype(np.int64)
    return np.where(np.abs(symbols) > radius, 2 * radius + 1, symbols + radius)


@dataclass(frozen=True, eq=False)
class EntropyPrior:
    tables: np.ndarray  # (K, 2R + 2) int64 frequencies: symbols -R..R, then the escape
    index: np.ndarray  # (S + N, C) int16: the base table of each value of a full tile
    structural_tokens: int  # S
    context_radius: int = 0  # c: 0 for kind "factorized", > 0 for "checkerboard"

    def __post_init__(self) -> None:
        tables, index = self.tables, self.index
        if tables.ndim != 2 or tables.shape[1] < 2 or tables.shape[1] % 2:
            raise ValueError(f"prior tables must be (K, 2R + 2), not {tables.shape}")
        if (tables < 1).any() or (tables.sum(axis=1) != TOTAL).any():
            raise ValueError(f"every prior table needs frequencies >= 1 summing to 2**{PRECISION}")
        if index.ndim != 2 or not 0 < self.structural_tokens <= index.shape[0]:
            raise ValueError("the prior's index does not cover its structural tokens")
        if index.min() < 0 or index.max() + 2 * self.context_radius >= len(tables):
            raise ValueError("the prior's index names tables it does not have")
        if self.radius > SYMBOL_LIMIT or self.context_radius < 0:
            raise ValueError(f"prior radius {self.radius} or context {self.context_radius} out of range")
        if self.context_radius and math.isqrt(self.structural_tokens) ** 2 != self.structural_tokens:
            raise ValueError("a checkerboard context needs a square structural grid")

    @property
    def kind(self) -> str:
        return "checkerboard" if self.context_radius else "factorized"

    @property
    def radius(self) -> int:
        """R: the symbols -R..R have entries of their own; others are escaped."""
        return (self.tables.shape[1] - 2) // 2

    @property
    def tokens(self) -> int:
        return self.index.shape[0]

    @property
    def channels(self) -> int:
        return self.index.shape[1]

    @cached_property
    def contextual(self) -> np.ndarray:
        """(S + N,) True for the positions whose table depends on a context (decoded second)."""
        mask = np.zeros(self.tokens, dtype=bool)
        if self.context_radius:
            mask[: self.structural_tokens] = ~anchors(self.structural_tokens)
        return mask

    @cached_property
    def _neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """For each contextual position: the structural rows of its up to four anchor neighbours
        (S where there is none, a row of zeros) and how many there are."""
        side = math.isqrt(self.structural_tokens)
        s = self.structural_tokens
        rows, cols = np.divmod(np.flatnonzero(~anchors(s)), side)
        found = []
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            y, x = rows + dy, cols + dx
            inside = (y >= 0) & (y < side) & (x >= 0) & (x < side)
            found.append(np.where(inside, y * side + x, s))
        neighbours = np.stack(found, axis=1)
        return neighbours, (neighbours < s).sum(axis=1)

    def contexts(self, structural: np.ndarray) -> np.ndarray:
        """(..., S, C) structural symbols (only the anchors are read) -> (..., S', C) context of each
        contextual position, 0..2c: the mean of its anchor neighbours, rounded half up, clipped."""
        neighbours, count = self._neighbours
        padded = np.concatenate([structural.astype(np.int64), np.zeros_like(structural[..., :1, :], np.int64)],
                                axis=-2)
        total = padded[..., neighbours, :].sum(axis=-2)
        count = count[:, None]
        mean = np.floor_divide(2 * total + count, 2 * count)  # round(total / count), halves up, in integers
        return np.clip(mean, -self.context_radius, self.context_radius) + self.context_radius

    def value_tables(self, symbols: np.ndarray) -> np.ndarray:
        """(..., T, C) symbols, S <= T <= S + N -> (..., T, C) the table that codes each."""
        tables = np.broadcast_to(self.index[: symbols.shape[-2]].astype(np.int64), symbols.shape).copy()
        if self.context_radius:
            s = self.structural_tokens
            rows = np.flatnonzero(self.contextual[:s])
            tables[..., rows, :] += self.contexts(symbols[..., :s, :])
        return tables

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"odva-prior {self.kind} {PRECISION} {self.tables.shape} {self.index.shape} "
                      f"{self.structural_tokens} {self.context_radius}".encode())
        digest.update(self.tables.astype("<i8").tobytes())
        digest.update(self.index.astype("<i2").tobytes())
        return digest.hexdigest()

    @cached_property
    def symbol_bits(self) -> np.ndarray:
        """(K, 2R + 2) ideal code length of each symbol under each table; the escape entry includes
        the escaped value's own code."""
        bits = PRECISION - np.log2(self.tables.astype(np.float64))
        bits[:, -1] += PRECISION - np.log2(float(escape_table().min()))
        return bits

    def token_bits(self, symbols: np.ndarray | torch.Tensor) -> np.ndarray:
        """(..., T, C) symbols, S <= T <= S + N -> (..., T) ideal bits of each token under this prior."""
        symbols = symbols.cpu().numpy() if isinstance(symbols, torch.Tensor) else np.asarray(symbols)
        entries = alphabet_entries(symbols, self.radius)
        return self.symbol_bits[self.value_tables(symbols), entries].sum(axis=-1)

    def save(self, path: str | Path) -> None:
        save_file({"tables": self.tables.astype(np.int64), "index": self.index.astype(np.int16)}, str(path),
                  metadata={"kind": self.kind, "precision": str(PRECISION),
                            "structural_tokens": str(self.structural_tokens),
                            "context_radius": str(self.context_radius)})

    @classmethod
    def load(cls, path: str | Path) -> "EntropyPrior":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            metadata = f.metadata() or {}
        if metadata.get("kind") not in KINDS:
            raise ValueError(f"unknown prior kind {metadata.get('kind')!r}; known: {', '.join(KINDS)}")
        if metadata.get("precision") != str(PRECISION):
            raise ValueError(f"prior precision {metadata.get('precision')} is not {PRECISION}")
        tensors = load_file(str(path))
        prior = cls(tensors["tables"].astype(np.int64), tensors["index"].astype(np.int16),
                    int(metadata["structural_tokens"]), int(metadata["context_radius"]))
        if prior.kind != metadata["kind"]:
            raise ValueError(f"prior kind {metadata['kind']!r} does not match its context radius")
        return prior


def _fitted(symbols: np.ndarray, structural_tokens: int, banded: bool, context_radius: int) -> EntropyPrior:
    """A prior of the given layout whose tables are smoothed histograms of (n, S + N, C) symbols."""
    _, tokens, channels = symbols.shape
    radius = int(min(max(np.abs(symbols).max(), 1), SYMBOL_LIMIT))
    index = prior_index(structural_tokens, tokens - structural_tokens, channels, banded, context_radius)
    uniform = frequencies(np.ones((int(index.max()) + 2 * context_radius + 1, 2 * radius + 2)))
    layout = EntropyPrior(uniform, index, structural_tokens, context_radius)
    counts = np.zeros(uniform.shape)
    np.add.at(counts, (layout.value_tables(symbols).ravel(), alphabet_entries(symbols, radius).ravel()), 1.0)
    return EntropyPrior(frequencies(counts + _PSEUDO_COUNT), index, structural_tokens, context_radius)


def fit_prior(symbols: np.ndarray, structural_tokens: int) -> tuple[EntropyPrior, dict]:
    """Fit a prior to (n, S + N, C) quantized symbols of full tiles.

    The radius is the largest magnitude seen. Whether the 1D tokens get one table per
    slot band or one for all, and whether the structural latent gets a checkerboard
    context, is decided on tiles the fit did not see: each layout is fitted on one
    half and scored on the other, and the best is refitted on all.
    Returns the prior and a report of that choice (held-out bits per value of each layout).
    """
    symbols = np.asarray(symbols).astype(np.int64)
    if symbols.ndim != 3 or symbols.shape[0] < 2:
        raise ValueError("fitting a prior needs symbols of at least two tiles, shaped (n, S + N, C)")
    square = math.isqrt(structural_tokens) ** 2 == structural_tokens
    half = len(symbols) // 2
    fit, held = symbols[:half], symbols[half:]
    scores = {}
    for banded in (False, True):
        for context in (0, CONTEXT_RADIUS) if square else (0,):
            prior = _fitted(fit, structural_tokens, banded, context)
            scores[(banded, context)] = float(prior.token_bits(held).sum()) / held.size
    banded, context = min(scores, key=scores.get)
    prior = _fitted(symbols, structural_tokens, banded, context)
    report = {"radius": prior.radius, "kind": prior.kind, "bands": "log-spaced" if banded else "one",
              "tiles": len(symbols),
              "held_out_bits_per_value": {f"{'banded' if b else 'one band'}, context {c}": round(v, 4)
                                          for (b, c), v in scores.items()}}
    return prior, report

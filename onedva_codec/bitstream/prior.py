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
KINDS = ("factorized", "lattice")
ACTIVITY_EDGES = (0, 1, 3, 7)  # neighbours' max - min: 0 | 1 | 2-3 | 4-7 | 8+ -> activity 0..4
ACTIVITIES = len(ACTIVITY_EDGES) + 1
_ACTIVITY_EDGES = np.array(ACTIVITY_EDGES)
MAGNITUDE_EDGES = (0, 1, 3)  # a reference token's |symbol|: 0 | 1 | 2-3 | 4+ -> magnitude 0..3
MAGNITUDES = len(MAGNITUDE_EDGES) + 1
_MAGNITUDE_EDGES = np.array(MAGNITUDE_EDGES)
_BAND_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)  # upper edges of the 1D slot bands but the last
_PSEUDO_COUNT = 0.5  # per alphabet entry when fitting (Krichevsky-Trofimov), so no symbol is impossible
_NEIGHBOURS = {1: ((-1, -1), (-1, 1), (1, -1), (1, 1)),  # class 1 sees the class-0 diagonals
               2: ((-1, 0), (1, 0), (0, -1), (0, 1))}  # class 2 sees its four sides, of class 0 and 1


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


def lattice_classes(structural_tokens: int) -> np.ndarray:
    """(S,) class of each position of the square structural grid: 0 where row and column are both
    even, 1 where both are odd, 2 where one is (coded in that order)."""
    side = math.isqrt(structural_tokens)
    rows, cols = np.divmod(np.arange(structural_tokens), side)
    return np.where(rows % 2 == cols % 2, rows % 2, 2)


def prior_index(structural_tokens: int, max_1d_tokens: int, channels: int, banded: bool, lattice: bool,
                referenced: np.ndarray | None = None) -> np.ndarray:
    """(S + N, C) base table numbers. Tables 0..C-1 code the structural channels (under a lattice prior,
    their class-0 positions); a lattice prior's class k of channel c uses the ACTIVITIES tables from
    C + ((k - 1) C + c) ACTIVITIES; the 1D tokens follow, one table per channel and band (banded)
    or per channel; then, where `referenced` (N,) marks 1D slots with a reference token, MAGNITUDES
    tables per channel and band for those."""
    c = channels
    structural = np.broadcast_to(np.arange(c), (structural_tokens, c)).copy()
    first_1d = c
    if lattice:
        classes = lattice_classes(structural_tokens)
        for k in (1, 2):
            structural[classes == k] = c + ((k - 1) * c + np.arange(c)) * ACTIVITIES
        first_1d = c + 2 * c * ACTIVITIES
    bands = slot_bands(max_1d_tokens) if banded else np.zeros(max_1d_tokens, dtype=np.int64)
    per_channel = bands[:, None] * c + np.arange(c)[None]
    tokens_1d = first_1d + per_channel
    if referenced is not None and referenced.any():
        first_referenced = first_1d + (int(bands.max()) + 1) * c
        tokens_1d[referenced] = first_referenced + per_channel[referenced] * MAGNITUDES
    return np.concatenate([structural, tokens_1d]).astype(np.int16)


def group_zero_references(home_group: np.ndarray, home_position: np.ndarray, structural_tokens: int) -> np.ndarray:
    """(S + N,) reference rows for 1D tokens with homes: each token of a later temporal group refers to the
    token of the same position in the first group, coded before it (-1 for the rest). Motion makes a
    position's residuals large in every group at once, so the first one's size predicts the others'."""
    home_group, home_position = np.asarray(home_group), np.asarray(home_position)
    slot_of = {(0, int(p)): slot for slot, (g, p) in enumerate(zip(home_group, home_position)) if g == 0}
    reference = np.full(structural_tokens + len(home_group), -1, dtype=np.int64)
    for slot, (g, p) in enumerate(zip(home_group, home_position)):
        if g != 0 and slot_of.get((0, int(p)), slot) < slot:
            reference[structural_tokens + slot] = structural_tokens + slot_of[(0, int(p))]
    return reference


def alphabet_entries(values: np.ndarray, radius: int) -> np.ndarray:
    """Values -> their entry in a table: -R..R -> 0..2R, anything else -> the escape, 2R + 1."""
    values = values.astype(np.int64)
    return np.where(np.abs(values) > radius, 2 * radius + 1, values + radius)


@dataclass(frozen=True, eq=False)
class EntropyPrior:
    tables: np.ndarray  # (K, 2R + 2) int64 frequencies: entries -R..R, then the escape
    index: np.ndarray  # (S + N, C) int16: the base table of each value of a full tile
    structural_tokens: int  # S
    kind: str = "factorized"  # or "lattice": structural values coded in three passes, with contexts
    # (S + N,) int16: the earlier row whose symbol's size is each 1D token's context (-1: none), or None
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        tables, index = self.tables, self.index
        if self.kind not in KINDS:
            raise ValueError(f"unknown prior kind {self.kind!r}; known: {', '.join(KINDS)}")
        if tables.ndim != 2 or tables.shape[1] < 2 or tables.shape[1] % 2:
            raise ValueError(f"prior tables must be (K, 2R + 2), not {tables.shape}")
        if (tables < 1).any() or (tables.sum(axis=1) != TOTAL).any():
            raise ValueError(f"every prior table needs frequencies >= 1 summing to 2**{PRECISION}")
        if index.ndim != 2 or not 0 < self.structural_tokens <= index.shape[0]:
            raise ValueError("the prior's index does not cover its structural tokens")
        if self.kind == "lattice" and math.isqrt(self.structural_tokens) ** 2 != self.structural_tokens:
            raise ValueError("a lattice prior needs a square structural grid")
        if self.reference is not None:
            rows = np.flatnonzero(self.reference >= 0)
            if (self.reference.shape != (index.shape[0],) or (rows < self.structural_tokens).any()
                    or (self.reference[rows] >= rows).any() or (self.reference[self.reference[rows]] >= 0).any()):
                raise ValueError("a prior's references must point from 1D tokens to earlier ones without one")
        extra = {"lattice": ACTIVITIES - 1, "reference": MAGNITUDES - 1}
        highest = [int(index[rows].max()) + (extra[self.pass_kinds[k]] if k else 0)
                   for k, rows in enumerate(self.passes) if len(rows)]
        if index.min() < 0 or max(highest) >= len(tables):
            raise ValueError("the prior's index names tables it does not have")
        if self.radius > SYMBOL_LIMIT:
            raise ValueError(f"prior radius {self.radius} exceeds the symbol range {SYMBOL_LIMIT}")

    @property
    def radius(self) -> int:
        """R: the values -R..R have entries of their own; others are escaped."""
        return (self.tables.shape[1] - 2) // 2

    @property
    def tokens(self) -> int:
        return self.index.shape[0]

    @property
    def channels(self) -> int:
        return self.index.shape[1]

    @cached_property
    def passes(self) -> list[np.ndarray]:
        """The token rows coded in each pass, in row order: first every row without a context, then
        (lattice) the structural rows of class 1, then of class 2, then (with references) the 1D tokens
        that have a reference."""
        context = np.zeros(self.tokens, dtype=np.int64)  # 0: none; 1, 2: lattice class; 3: reference
        if self.kind == "lattice":
            context[: self.structural_tokens] = lattice_classes(self.structural_tokens)
        if self.reference is not None:
            context[self.reference >= 0] = 3
        return [np.flatnonzero(context == k) for k in range(4) if k == 0 or (context == k).any()]

    @cached_property
    def pass_kinds(self) -> list[str]:
        """What gives each pass its contexts: "none" (the first), "lattice" or "reference"."""
        kinds = ["none"] + ["lattice", "lattice"] * (self.kind == "lattice")
        return kinds + ["reference"] * (len(self.passes) - len(kinds))

    @cached_property
    def _neighbours(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For passes 1 and 2: each position's up to four neighbours of earlier passes, as structural
        rows twice over (where the grid ends: row S, a row of zeros, for sums; the first neighbour
        again, for the max and min), and how many there are."""
        side = math.isqrt(self.structural_tokens)
        found = []
        for k, offsets in _NEIGHBOURS.items():
            rows, cols = np.divmod(self.passes[k], side)
            rows_of = np.stack([np.where((rows + dy >= 0) & (rows + dy < side) & (cols + dx >= 0) & (cols + dx < side),
                                         (rows + dy) * side + cols + dx, -1) for dy, dx in offsets], axis=1)
            present = rows_of >= 0
            first = rows_of[np.arange(len(rows_of)), present.argmax(axis=1)]
            found.append((np.where(present, rows_of, self.structural_tokens),
                          np.where(present, rows_of, first[:, None]), present.sum(axis=1)[:, None]))
        return found

    def context(self, symbols: np.ndarray, pass_number: int) -> tuple[np.ndarray, np.ndarray]:
        """(..., T, C) symbols, of which the earlier passes' are read -> (..., n, C) prediction and table
        offset of each row of the pass below T. Lattice: the mean of the row's neighbours rounded half
        up, and the bucket of their spread (max - min) among ACTIVITY_EDGES. Reference: no prediction,
        and the bucket of the reference token's |symbol| among MAGNITUDE_EDGES."""
        if self.pass_kinds[pass_number] == "reference":
            rows = self.passes[pass_number]
            rows = rows[rows < symbols.shape[-2]]
            size = np.abs(symbols.astype(np.int64)[..., self.reference[rows], :])
            return np.zeros_like(size), np.searchsorted(_MAGNITUDE_EDGES, size, side="left")
        for_sums, for_extremes, count = self._neighbours[pass_number - 1]
        structural = symbols[..., : self.structural_tokens, :].astype(np.int64)
        padded = np.concatenate([structural, np.zeros_like(structural[..., :1, :])], axis=-2)
        total = padded[..., for_sums, :].sum(axis=-2)
        prediction = np.floor_divide(2 * total + count, 2 * count)
        near = structural[..., for_extremes, :]
        spread = near.max(axis=-2) - near.min(axis=-2)
        return prediction, np.searchsorted(_ACTIVITY_EDGES, spread, side="left")

    def codes(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., T, C) symbols, S <= T <= S + N -> the table and the entry that code each value (..., T, C).
        A value with a context is coded as its difference from the prediction; an escape stands for a
        symbol (or difference) beyond the radius, and the escaped symbol itself follows it."""
        tables = np.broadcast_to(self.index[: symbols.shape[-2]].astype(np.int64), symbols.shape).copy()
        coded = symbols.astype(np.int64).copy()
        for k in range(1, len(self.passes)):
            rows = self.passes[k][self.passes[k] < symbols.shape[-2]]
            prediction, offset = self.context(symbols, k)
            tables[..., rows, :] += offset
            coded[..., rows, :] -= prediction
        return tables, alphabet_entries(coded, self.radius)

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"odva-prior {self.kind} {PRECISION} {self.tables.shape} {self.index.shape} "
                      f"{self.structural_tokens}".encode())
        digest.update(self.tables.astype("<i8").tobytes())
        digest.update(self.index.astype("<i2").tobytes())
        if self.reference is not None:
            digest.update(self.reference.astype("<i2").tobytes())
        return digest.hexdigest()

    @cached_property
    def symbol_bits(self) -> np.ndarray:
        """(K, 2R + 2) ideal code length of each entry under each table; the escape entry includes
        the escaped symbol's own code."""
        bits = PRECISION - np.log2(self.tables.astype(np.float64))
        bits[:, -1] += PRECISION - np.log2(float(escape_table().min()))
        return bits

    def token_bits(self, symbols: np.ndarray | torch.Tensor) -> np.ndarray:
        """(..., T, C) symbols, S <= T <= S + N -> (..., T) ideal bits of each token under this prior."""
        symbols = symbols.cpu().numpy() if isinstance(symbols, torch.Tensor) else np.asarray(symbols)
        tables, entries = self.codes(symbols)
        return self.symbol_bits[tables, entries].sum(axis=-1)

    def save(self, path: str | Path) -> None:
        tensors = {"tables": self.tables.astype(np.int64), "index": self.index.astype(np.int16)}
        if self.reference is not None:
            tensors["reference"] = self.reference.astype(np.int16)
        save_file(tensors, str(path), metadata={"kind": self.kind, "precision": str(PRECISION),
                                                "structural_tokens": str(self.structural_tokens)})

    @classmethod
    def load(cls, path: str | Path) -> "EntropyPrior":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            metadata = f.metadata() or {}
        if metadata.get("precision") != str(PRECISION):
            raise ValueError(f"prior precision {metadata.get('precision')} is not {PRECISION}")
        tensors = load_file(str(path))
        reference = tensors["reference"].astype(np.int64) if "reference" in tensors else None
        return cls(tensors["tables"].astype(np.int64), tensors["index"].astype(np.int16),
                   int(metadata["structural_tokens"]), metadata.get("kind", ""), reference)


def _fitted(symbols: np.ndarray, structural_tokens: int, banded: bool, lattice: bool,
            reference: np.ndarray | None) -> EntropyPrior:
    """A prior of the given layout whose tables are smoothed histograms of (n, S + N, C) symbols."""
    _, tokens, channels = symbols.shape
    radius = int(min(max(np.abs(symbols).max(), 1), SYMBOL_LIMIT))
    kind = "lattice" if lattice else "factorized"
    referenced = None if reference is None else reference[structural_tokens:] >= 0
    index = prior_index(structural_tokens, tokens - structural_tokens, channels, banded, lattice, referenced)
    spare = max(ACTIVITIES if lattice else 1, MAGNITUDES if reference is not None else 1)
    uniform = frequencies(np.ones((int(index.max()) + spare, 2 * radius + 2)))
    tables, entries = EntropyPrior(uniform, index, structural_tokens, kind, reference).codes(symbols)
    counts = np.zeros(uniform.shape)
    np.add.at(counts, (tables.ravel(), entries.ravel()), 1.0)
    return EntropyPrior(frequencies(counts + _PSEUDO_COUNT), index, structural_tokens, kind, reference)


@dataclass(frozen=True)
class PriorLayout:
    """How a prior is laid out: a table per slot band of the 1D tokens (else one for all), lattice contexts
    for the structural latent, and each 1D token's reference token's size as a context."""

    banded: bool
    lattice: bool
    referenced: bool


def fit_prior(symbols: np.ndarray, structural_tokens: int, reference: np.ndarray | None = None,
              layout: PriorLayout | None = None) -> tuple[EntropyPrior, dict]:
    """Fit a prior to (n, S + N, C) quantized symbols of full tiles.

    The radius is the largest magnitude seen. The layout (PriorLayout), unless given, is decided on
    tiles the fit did not see: each layout is fitted on one half and scored on the other, and the
    best is refitted on all. Returns the prior and a report of that choice (held-out bits per value
    of each layout).
    """
    symbols = np.asarray(symbols).astype(np.int64)
    if symbols.ndim != 3 or symbols.shape[0] < 2:
        raise ValueError("fitting a prior needs symbols of at least two tiles, shaped (n, S + N, C)")
    square = math.isqrt(structural_tokens) ** 2 == structural_tokens
    half = len(symbols) // 2
    fit, held = symbols[:half], symbols[half:]
    scores = {}
    for banded in (False, True):
        for lattice in (False, True) if square else (False,):
            for referenced in (False, True) if reference is not None else (False,):
                prior = _fitted(fit, structural_tokens, banded, lattice, reference if referenced else None)
                scores[(banded, lattice, referenced)] = float(prior.token_bits(held).sum()) / held.size
    banded, lattice, referenced = min(scores, key=scores.get) if layout is None else \
        (layout.banded, layout.lattice, layout.referenced)
    prior = _fitted(symbols, structural_tokens, banded, lattice, reference if referenced else None)
    report = {"radius": prior.radius, "kind": prior.kind, "bands": "log-spaced" if banded else "one",
              "references": referenced, "tiles": len(symbols),
              "held_out_bits_per_value": {
                  f"{'banded' if b else 'one band'}, {'lattice' if c else 'factorized'}"
                  f"{', references' if r else ''}": round(v, 4) for (b, c, r), v in scores.items()}}
    return prior, report

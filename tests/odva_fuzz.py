"""A seeded mutation fuzzer for .odva files that gets past the CRCs.

A valid file is taken apart into its records (header fields, chunk records with their tile
entries and coded bytes, audio, index); one or a few mutations are applied (a header field
replaced by a hostile value, deleted or added; a chunk or tile field changed; coded bytes flipped,
cut or grown; an index offset moved; a record's length field lied about; the file cut short), and
the file is put back together with every CRC, offset and the trailer recomputed, so that the
reader's checks beyond the CRCs are what gets tested. Used by tests/test_fuzz.py (a few thousand
inputs) and scripts/fuzz.py (as long as you like). Written from docs/format.md, not from the reader.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass

import msgpack

_PREAMBLE = struct.Struct("<4sBBH")
_RECORD_HEAD = struct.Struct("<cI")
_TRAILER = struct.Struct("<Q4s")
_CHUNK_HEAD = struct.Struct("<IHH")
_TILE_ENTRY = struct.Struct("<HeHI")

HOSTILE = [0, -1, 1, 2, 17, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, -2**63,
           0.0, -0.0, 0.5, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"), True, False, None, "", "x" * 300,
           "range-prior-v1", "0" * 64, b"\x00\xff", [], [0], [1, 0], [0] * 300, [0.0, float("nan")], {}, {"codec": 1},
           {"codec": "aac", "sample_rate": 0, "channels": 2}, {"codec": "aac"}, [[1, 2]]]


@dataclass
class Parsed:
    preamble: bytes
    header: dict
    chunks: list[list]  # [index, frames, [[kept, motion, rate, data], ...]]
    audio: bytes | None


def parse(data: bytes) -> Parsed:
    """Take a valid file apart (records in file order, as the writer lays them out)."""
    preamble, pos = data[:_PREAMBLE.size], _PREAMBLE.size
    records = []
    end = len(data) - _TRAILER.size
    while pos < end:
        kind, length = _RECORD_HEAD.unpack_from(data, pos)
        records.append((kind, data[pos + _RECORD_HEAD.size: pos + _RECORD_HEAD.size + length]))
        pos += _RECORD_HEAD.size + length + 4
    header = msgpack.unpackb(records[0][1])
    chunks, audio = [], None
    for kind, payload in records[1:]:
        if kind == b"C":
            index, frames, count = _CHUNK_HEAD.unpack_from(payload)
            entries = [list(_TILE_ENTRY.unpack_from(payload, _CHUNK_HEAD.size + i * _TILE_ENTRY.size))
                       for i in range(count)]
            at = _CHUNK_HEAD.size + count * _TILE_ENTRY.size
            tiles = []
            for kept, motion, rate, size in entries:
                tiles.append([kept, motion, rate, payload[at:at + size]])
                at += size
            chunks.append([index, frames, tiles])
        elif kind == b"A":
            audio = payload
    return Parsed(preamble, header, chunks, audio)


def _record(kind: bytes, payload: bytes, covered: bytes = b"", length: int | None = None) -> bytes:
    head = _RECORD_HEAD.pack(kind, len(payload) if length is None else length)
    return head + payload + struct.pack("<I", zlib.crc32(payload, zlib.crc32(covered + head)))


def build(p: Parsed, lie: tuple[int, int] | None = None, index_edit: tuple[int, int] | None = None,
          header: object = None) -> bytes:
    """Put a file together, every CRC and offset recomputed. `lie` = (record number, length) writes a
    false length field (with a CRC that matches it); `index_edit` = (entry, offset) moves one offset;
    `header` replaces the header map with any other value."""
    def length_for(number: int) -> int | None:
        return lie[1] if lie and lie[0] == number else None

    out = bytearray(p.preamble)
    out += _record(b"H", msgpack.packb(p.header if header is None else header), covered=p.preamble,
                   length=length_for(0))
    offsets = []
    for number, (index, frames, tiles) in enumerate(p.chunks, start=1):
        payload = _CHUNK_HEAD.pack(index & 0xFFFFFFFF, frames & 0xFFFF, len(tiles) & 0xFFFF)
        payload += b"".join(_TILE_ENTRY.pack(kept & 0xFFFF, motion, rate & 0xFFFF, len(data))
                            for kept, motion, rate, data in tiles)
        payload += b"".join(tile[3] for tile in tiles)
        offsets.append(len(out))
        out += _record(b"C", payload, length=length_for(number))
    audio_offset = 0
    if p.audio is not None:
        audio_offset = len(out)
        out += _record(b"A", p.audio, length=length_for(len(p.chunks) + 1))
    offsets.append(audio_offset)
    if index_edit:
        entry, value = index_edit
        offsets[entry % len(offsets)] = value
    index_offset = len(out)
    out += _record(b"X", b"".join(struct.pack("<Q", o) for o in offsets), length=length_for(len(p.chunks) + 2))
    out += _TRAILER.pack(index_offset, b"ODVX")
    return bytes(out)


def _copy(p: Parsed) -> Parsed:
    return Parsed(p.preamble, dict(p.header), [[i, f, [list(t) for t in tiles]] for i, f, tiles in p.chunks],
                  p.audio)


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """One mutant of a valid file: 1 to 3 structured mutations, then CRCs recomputed."""
    parsed = parse(seed)  # raises for what is not a file to take apart
    for _ in range(20):
        try:
            return _mutant(parsed, rng)
        except (OverflowError, ValueError, struct.error):  # a value no file can hold (msgpack, u16): another
            continue
    raise ValueError("no mutant of this input can be written")


def _mutant(parsed: Parsed, rng: random.Random) -> bytes:
    p = _copy(parsed)
    lie = index_edit = None
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.randrange(12)
        if kind <= 3:  # a header field gets a hostile value
            p.header[rng.choice(list(p.header))] = rng.choice(HOSTILE)
        elif kind == 4:  # a header field goes missing, or an unknown one appears
            if rng.random() < 0.5 and p.header:
                del p.header[rng.choice(list(p.header))]
            else:
                p.header[rng.choice(("extra", "future_field"))] = rng.choice(HOSTILE)
        elif kind == 5:  # a numeric header field moves a little (consistent-looking lies)
            numeric = [k for k, v in p.header.items() if type(v) is int]
            if numeric:
                key = rng.choice(numeric)
                p.header[key] = min(max(0, p.header[key] + rng.choice((-17, -1, 1, 16, 256, 4096))), 2**64 - 1)
        elif kind == 6 and p.chunks:  # a chunk's own fields
            chunk = rng.choice(p.chunks)
            field = rng.randrange(3)
            if field == 2:
                chunk[2] = chunk[2][:-1] if chunk[2] and rng.random() < 0.5 else chunk[2] + [[0, 0.0, 0, b""]]
            else:
                chunk[field] = rng.choice((0, 1, 2, 17, 2**16 - 1, 2**32 - 1))
        elif kind == 7 and p.chunks:  # a tile entry's kept count, motion score or rate point
            tile = rng.choice(rng.choice(p.chunks)[2] or [[0, 0.0, 0, b""]])
            field = rng.randrange(3)
            if field == 0:
                tile[0] = rng.choice((0, 1, 63, 64, 65, 255, 2**16 - 1))
            elif field == 1:
                tile[1] = rng.choice((float("nan"), float("inf"), -1.0, 6e4, 0.0))
            else:
                tile[2] = rng.choice((0, 1, 1024, 2047, 2048, 2049, 2**16 - 1))
        elif kind == 8 and p.chunks:  # coded bytes flipped, cut or grown
            tile = rng.choice(rng.choice(p.chunks)[2] or [[0, 0.0, 0, b""]])
            how = rng.randrange(3)
            tile[3] = (_flip(tile[3], rng) if how == 0 else tile[3][: rng.randrange(len(tile[3]) + 1)] if how == 1
                       else tile[3] + bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 4, 64)))))
        elif kind == 9:  # the audio record
            p.audio = None if p.audio is not None and rng.random() < 0.3 else _flip(p.audio or b"", rng)
        elif kind == 10:
            index_edit = (rng.randrange(64), rng.choice((0, 1, 7, 8, 100, 2**31, 2**63, 2**64 - 1)))
        else:
            lie = (rng.randrange(len(p.chunks) + 3), rng.choice((0, 1, 2**16, 2**31, 2**32 - 1)))
    data = build(p, lie, index_edit)
    if rng.random() < 0.05:  # cut short or grown at the end, after all that
        data = data[: rng.randrange(len(data))] if rng.random() < 0.5 else data + b"\x00" * rng.randrange(1, 64)
    return data

"""The .odva file: a preamble, CRC-checked records, and a trailer that finds the index.

    preamble   "ODVA", u8 major, u8 minor, u16 flags (0)
    record H   msgpack header (FileHeader)
    record C   one per chunk, in order (ChunkRecord)
    record A   optional: the audio track, as Matroska
    record X   index: u64 offset of each chunk record, then u64 offset of record A or 0
    trailer    u64 offset of record X, "ODVX"

    record     u8 kind, u32 payload length, payload, u32 CRC-32 of kind + length + payload
               (for record H, of preamble + kind + length + payload)

All integers are little-endian. docs/format.md is the specification; this module
is its reference implementation.
"""

from __future__ import annotations

import bisect
import functools
import io
import math
import re
import struct
import zlib
from dataclasses import MISSING, asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import msgpack

from ..errors import FormatError, InputError

MAGIC = b"ODVA"
TRAILER_MAGIC = b"ODVX"
VERSION = (3, 1)  # 3.1: chunks end at scene cuts, and may depend on the chunk before; 3.0: a rate point per tile,
# for v3 models; 2.0: range coding under a prior; 1.0: zstd
FLAG_CUTS = 0x0001  # the header lists scene cuts, where chunks end early: a reader without them would misplace frames
FLAG_DEPENDENT = 0x0002  # chunks between key chunks are coded knowing the one before (header key_interval)
KNOWN_FLAGS = FLAG_CUTS | FLAG_DEPENDENT
KIND_HEADER, KIND_CHUNK, KIND_AUDIO, KIND_INDEX = b"H", b"C", b"A", b"X"

_PREAMBLE = struct.Struct("<4sBBH")
_RECORD_HEAD = struct.Struct("<cI")
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<Q4s")
_CHUNK_HEAD = struct.Struct("<IHH")  # chunk index, real frames, tile count
_TILE_ENTRY = struct.Struct("<HeHI")  # kept 1D tokens, motion score (float16), rate point * RATE_UNITS, data bytes
_TILE_ENTRY_2 = struct.Struct("<HeI")  # version 2.x: no rate point
READS = (2, 3)  # the major versions this odva reads (it writes VERSION)
RATE_UNITS = 1024  # a tile's rate point is stored in 1/1024 of a point
HYPERPRIOR_CODER = "hyperprior-v1"  # the entropy coder of v3 models' files (bitstream/hyperprior_coding.py)
_OFFSET = struct.Struct("<Q")

RECORD_OVERHEAD = _RECORD_HEAD.size + _CRC.size

# What a valid file may declare (docs/format.md, "Limits"): a reader refuses anything beyond these
# before it allocates, so that a few bytes cannot ask for gigabytes.
MAX_SIDE = 8192
MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD
MAX_FRAMES = 2**31 - 1
MAX_FPS = 1000
MAX_CHUNK_FRAMES = 1024
MAX_KEY_INTERVAL = 1024
MAX_LATENT_CHANNELS = 256
MAX_TOKENS = 65536
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def chunk_layout(frames: int, length: int, cuts: Sequence[int] = ()) -> list[int]:
    """The first frame of every chunk of a video of `frames` frames cut into chunks of at most `length`,
    a new one beginning at each of the `cuts` (frames that start a shot), as video.geometry.chunk_frames
    cuts them."""
    starts, cuts, next_cut, frame = [], sorted(cuts), 0, 0
    while frame < frames:
        starts.append(frame)
        while next_cut < len(cuts) and cuts[next_cut] <= frame:
            next_cut += 1
        frame = min(frame + length, cuts[next_cut] if next_cut < len(cuts) else frames)
    return starts


@dataclass
class FileHeader:
    """Everything a decoder needs besides the weights; field by field in docs/format.md."""

    model_config: str
    model_sha256: str
    prior_sha256: str
    width: int
    height: int
    fps: Fraction
    frames: int
    chunk_frames: int
    tile_size: int
    tile_overlap: int
    tile_ys: list[int]
    tile_xs: list[int]
    latent_channels: int
    structural_tokens: int
    max_1d_tokens: int
    quant_step: float
    quant_mean: list[float]
    quant_std: list[float]
    entropy_coder: str
    seed: int
    rate: dict = field(default_factory=dict)  # how the encoder was asked to spend bits
    audio: dict | None = None  # codec, sample_rate, channels
    encoder: str = ""
    cuts: list[int] = field(default_factory=list)  # frames that start a shot, and so a chunk (FLAG_CUTS)
    # chunks from one key chunk to the next (FLAG_DEPENDENT): each but the first coded knowing the one before; 0:
    # every chunk is a key chunk
    key_interval: int = 0

    def to_bytes(self) -> bytes:
        values = asdict(self)
        values["fps"] = [self.fps.numerator, self.fps.denominator]
        # a file without them is laid out as version 3.0 lays it out, and says nothing of them
        for name in ("cuts", "key_interval"):
            if not values[name]:
                del values[name]
        return msgpack.packb(values)

    @property
    def flags(self) -> int:
        return (FLAG_CUTS if self.cuts else 0) | (FLAG_DEPENDENT if self.key_interval else 0)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FileHeader":
        """Parse and check a header: every field's type and range, and the fields against each other."""
        try:
            values = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise FormatError(f"the file header is malformed ({exc})") from None
        if not isinstance(values, dict):
            raise FormatError("the file header is malformed (not a map)")
        fps = values.get("fps")
        if not (isinstance(fps, list) and len(fps) == 2 and all(_is_int(v, 1, 2**31 - 1) for v in fps)):
            raise FormatError("the file header's fps is not a fraction of two positive integers")
        values["fps"] = Fraction(*fps)
        known = set(cls.__dataclass_fields__)
        # Newer minor versions may add fields; a reader ignores what it does not know.
        missing = sorted(k for k, f in cls.__dataclass_fields__.items()
                         if k not in values and f.default is MISSING and f.default_factory is MISSING)
        if missing:
            raise FormatError(f"the file header lacks {', '.join(missing)}")
        header = cls(**{k: v for k, v in values.items() if k in known})
        header.check()
        return header

    def check(self) -> None:
        """Refuse a header whose fields are of the wrong type, out of range or inconsistent."""
        problems = []

        def need(ok: bool, what: str) -> None:
            if not ok:
                problems.append(what)

        for name in ("model_config", "entropy_coder", "encoder"):
            need(isinstance(getattr(self, name), str) and len(getattr(self, name)) <= 256, f"{name} is not a name")
        for name in ("model_sha256", "prior_sha256"):
            need(isinstance(getattr(self, name), str) and bool(_SHA256.match(getattr(self, name))),
                 f"{name} is not a SHA-256")
        need(_is_int(self.width, 1, MAX_SIDE) and _is_int(self.height, 1, MAX_SIDE),
             f"the frame size is not 1 to {MAX_SIDE} pixels a side")
        need(0 < self.fps <= MAX_FPS, f"fps is not in (0, {MAX_FPS}]")
        need(_is_int(self.frames, 1, MAX_FRAMES), "the frame count is not positive")
        need(_is_int(self.chunk_frames, 1, MAX_CHUNK_FRAMES), "chunk_frames is out of range")
        need(_is_int(self.tile_size, 1, MAX_SIDE) and _is_int(self.tile_overlap, 0, MAX_SIDE)
             and self.tile_overlap < self.tile_size, "the tile size or overlap is out of range")
        need(_is_int(self.latent_channels, 1, MAX_LATENT_CHANNELS), "latent_channels is out of range")
        need(_is_int(self.structural_tokens, 1, MAX_TOKENS) and _is_int(self.max_1d_tokens, 0, MAX_TOKENS),
             "the token counts are out of range")
        need(_is_number(self.quant_step) and self.quant_step > 0, "quant_step is not a positive number")
        channels = self.latent_channels if _is_int(self.latent_channels, 1, MAX_LATENT_CHANNELS) else -1
        for name, positive in (("quant_mean", False), ("quant_std", True)):
            value = getattr(self, name)
            need(isinstance(value, list) and len(value) == channels
                 and all(_is_number(v) and (v > 0 or not positive) for v in value),
                 f"{name} is not {'positive ' if positive else ''}numbers, one per latent channel")
        need(_is_int(self.seed, 0, 2**63 - 1), "the seed is out of range")
        need(isinstance(self.rate, dict), "rate is not a map")
        need(isinstance(self.cuts, list) and all(_is_int(c, 1, self.frames - 1) for c in self.cuts)
             and all(a < b for a, b in zip(self.cuts, self.cuts[1:])) if _is_int(self.frames, 1, MAX_FRAMES) else True,
             "cuts are not increasing frames inside the video")
        need(_is_int(self.key_interval, 0, 0) or _is_int(self.key_interval, 2, MAX_KEY_INTERVAL),
             f"key_interval is not 2 to {MAX_KEY_INTERVAL}")
        audio = self.audio
        need(audio is None or (isinstance(audio, dict) and isinstance(audio.get("codec"), str)
                               and _is_int(audio.get("sample_rate"), 1, 10**6)
                               and _is_int(audio.get("channels"), 1, 255)),
             "audio is not a codec, sample rate and channel count")
        if not problems:  # the layout's numbers are trusted only once they are numbers
            need(_frame_fits(self.width, self.height),
                 f"the frame size {self.width}x{self.height} is over the maximum of {MAX_FRAME_PIXELS} pixels")
            for name, size in (("tile_ys", self.height), ("tile_xs", self.width)):
                need(_is_tile_origins(getattr(self, name), size, self.tile_size), f"{name} is not a tile layout")
        if problems:
            raise FormatError(f"the file header is invalid: {problems[0]}")

    @functools.cached_property
    def chunk_starts(self) -> list[int]:
        """The first frame of every chunk: every chunk_frames frames, and at every cut."""
        return chunk_layout(self.frames, self.chunk_frames, self.cuts)

    @property
    def chunk_count(self) -> int:
        """Counted shot by shot, without listing the chunks: a reader checks the count against the file's
        size before anything is allocated for them."""
        bounds = [0, *self.cuts, self.frames]
        return sum(-(-(end - start) // self.chunk_frames) for start, end in zip(bounds, bounds[1:]))

    def chunk_frames_of(self, index: int) -> int:
        """Real frames of chunk `index`."""
        starts = self.chunk_starts
        return (starts[index + 1] if index + 1 < len(starts) else self.frames) - starts[index]

    def chunks_holding(self, first: int, stop: int) -> range:
        """The chunks that hold frames first .. stop - 1."""
        starts = self.chunk_starts
        return range(bisect.bisect_right(starts, first) - 1, bisect.bisect_left(starts, stop))

    @functools.cached_property
    def key_chunks(self) -> list[int]:
        """The key chunks, which depend on no other: the first, each that starts at a cut, and after
        key_interval chunks since the last (every chunk where key_interval is 0)."""
        if not self.key_interval:
            return list(range(self.chunk_count))
        cuts, keys = set(self.cuts), []
        for index, start in enumerate(self.chunk_starts):
            if not keys or start in cuts or index - keys[-1] >= self.key_interval:
                keys.append(index)
        return keys

    def key_chunk_of(self, index: int) -> int:
        """The key chunk that chunk `index` depends on, through the chunks between (itself if it is one)."""
        keys = self.key_chunks
        return keys[bisect.bisect_right(keys, index) - 1]

    @property
    def tile_count(self) -> int:
        return len(self.tile_ys) * len(self.tile_xs)

    @property
    def duration(self) -> float:
        return float(self.frames / self.fps)


def check_frame_size(width: int, height: int) -> None:
    """Refuse frames larger than a file may hold, before any of them is read."""
    if not _frame_fits(width, height):
        raise InputError(f"frames of {width}x{height} are larger than odva codes: at most {MAX_SIDE} pixels a side "
                         f"and {MAX_FRAME_PIXELS / 1e6:.1f} megapixels (8K UHD, 7680x4320)")


def _frame_fits(width: int, height: int) -> bool:
    return max(width, height) <= MAX_SIDE and width * height <= MAX_FRAME_PIXELS


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_tile_origins(origins: object, size: int, tile: int) -> bool:
    """Increasing tile origins from 0 to the last tile's (size - tile), each tile inside the frame."""
    if not (isinstance(origins, list) and 1 <= len(origins) <= size and all(_is_int(o, 0, size) for o in origins)):
        return False
    return (origins[0] == 0 and origins[-1] == max(size - tile, 0)
            and all(a < b for a, b in zip(origins, origins[1:])))


@dataclass
class TileRecord:
    kept: int  # 1D tokens kept
    motion: float  # normalised motion score, as rate control saw it
    data: bytes  # the range-coded symbols (bitstream/latent_coding.py, or hyperprior_coding.py for a v3 model)
    rate: float = 0.0  # a v3 model's rate point (a multiple of 1 / RATE_UNITS); 0 for models without


@dataclass
class ChunkRecord:
    index: int
    frames: int  # real frames, <= chunk_frames for the last chunk
    tiles: list[TileRecord]

    def to_bytes(self) -> bytes:
        parts = [_CHUNK_HEAD.pack(self.index, self.frames, len(self.tiles))]
        parts += [_TILE_ENTRY.pack(t.kept, t.motion, round(t.rate * RATE_UNITS), len(t.data)) for t in self.tiles]
        parts += [t.data for t in self.tiles]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, major: int = VERSION[0]) -> "ChunkRecord":
        """A chunk record of a file of format `major` (2.x: tile entries without a rate point)."""
        entry = _TILE_ENTRY if major >= 3 else _TILE_ENTRY_2
        try:
            index, frames, count = _CHUNK_HEAD.unpack_from(data)
            entries = [entry.unpack_from(data, _CHUNK_HEAD.size + i * entry.size) for i in range(count)]
        except struct.error:
            raise FormatError("a chunk record is malformed") from None
        if major < 3:
            entries = [(kept, motion, 0, size) for kept, motion, size in entries]
        pos = _CHUNK_HEAD.size + count * entry.size
        tiles = []
        for kept, motion, rate, size in entries:
            tiles.append(TileRecord(kept, float(motion), data[pos:pos + size], rate / RATE_UNITS))
            pos += size
        if pos != len(data):
            raise FormatError("a chunk record's tile sizes do not add up")
        return cls(index, frames, tiles)

    @staticmethod
    def overhead(tiles: int, major: int = VERSION[0]) -> int:
        """Bytes a chunk costs in a file (of format `major`) besides its tiles' latent data."""
        return RECORD_OVERHEAD + _CHUNK_HEAD.size + tiles * (_TILE_ENTRY if major >= 3 else _TILE_ENTRY_2).size


def container_overhead(header: FileHeader, audio_bytes: int) -> int:
    """Bytes of everything in a file but the tiles' latent data: preamble, header, chunk records'
    heads and tile entries, audio, index and trailer."""
    audio = RECORD_OVERHEAD + audio_bytes if header.audio is not None else 0
    index = RECORD_OVERHEAD + _OFFSET.size * (header.chunk_count + 1)
    chunks = header.chunk_count * ChunkRecord.overhead(header.tile_count)
    return _PREAMBLE.size + RECORD_OVERHEAD + len(header.to_bytes()) + chunks + audio + index + _TRAILER.size


def _record(kind: bytes, payload: bytes, covered: bytes = b"") -> bytes:
    """A record; its CRC also covers `covered`, the bytes just before it."""
    head = _RECORD_HEAD.pack(kind, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(covered + head)))


class OdvaWriter:
    """Writes a file record by record; `finish` appends the index and trailer."""

    def __init__(self, out: BinaryIO, header: FileHeader):
        self._out = out
        self._header = header
        self._chunk_offsets: list[int] = []
        self._audio_offset = 0
        preamble = _PREAMBLE.pack(MAGIC, *VERSION, header.flags)
        out.write(preamble)
        out.write(_record(KIND_HEADER, header.to_bytes(), covered=preamble))

    def write_chunk(self, chunk: ChunkRecord) -> None:
        if chunk.index != len(self._chunk_offsets):
            raise ValueError(f"chunk {chunk.index} written out of order")
        self._chunk_offsets.append(self._out.tell())
        self._out.write(_record(KIND_CHUNK, chunk.to_bytes()))

    def write_audio(self, audio: bytes) -> None:
        self._audio_offset = self._out.tell()
        self._out.write(_record(KIND_AUDIO, audio))

    def finish(self) -> None:
        if len(self._chunk_offsets) != self._header.chunk_count:
            raise ValueError(f"{len(self._chunk_offsets)} chunks written, header promises {self._header.chunk_count}")
        index_offset = self._out.tell()
        offsets = self._chunk_offsets + [self._audio_offset]
        self._out.write(_record(KIND_INDEX, b"".join(_OFFSET.pack(o) for o in offsets)))
        self._out.write(_TRAILER.pack(index_offset, TRAILER_MAGIC))


class OdvaReader:
    """Random access to the records of an .odva file; every record's CRC is checked on read."""

    def __init__(self, source: str | Path | bytes):
        if isinstance(source, bytes):
            self.path, self._file = Path("<bytes>"), io.BytesIO(source)
        else:
            self.path = Path(source)
            if not self.path.is_file():
                raise InputError(f"{self.path} does not exist" if not self.path.exists()
                                 else f"{self.path} is not a file")
            self._file = open(self.path, "rb")
        try:
            self._parse()
        except BaseException:
            self._file.close()
            raise

    def _parse(self) -> None:
        preamble = self._file.read(_PREAMBLE.size)
        if len(preamble) < _PREAMBLE.size or preamble[:4] != MAGIC:
            raise FormatError(f"{self.path} is not an .odva file")
        _, major, minor, flags = _PREAMBLE.unpack(preamble)
        if major not in READS:
            older = " (made by an older odva: encode the source again)" if major < READS[0] else ""
            raise FormatError(f"{self.path} is .odva version {major}.{minor}; this odva reads versions "
                              f"{READS[0]}.x to {READS[-1]}.x only{older}")
        if flags & ~KNOWN_FLAGS:
            raise FormatError(f"{self.path} uses features this odva does not know (flags {flags:#06x})")
        self.version = (major, minor)
        size = self._file.seek(0, io.SEEK_END)
        if size < _PREAMBLE.size + _TRAILER.size:
            raise FormatError(f"{self.path} is truncated")
        self._file.seek(size - _TRAILER.size)
        index_offset, trailer_magic = _TRAILER.unpack(self._file.read(_TRAILER.size))
        if trailer_magic != TRAILER_MAGIC or index_offset >= size:
            raise FormatError(f"{self.path} is truncated or damaged: its index is missing")
        self.file_size = size
        try:
            self.header = FileHeader.from_bytes(self._read_record(_PREAMBLE.size, KIND_HEADER, covered=preamble))
        except FormatError as exc:
            raise FormatError(f"{self.path}: {exc}") from None
        if self.header.flags != flags:
            raise FormatError(f"{self.path} is damaged: its flags and its header disagree (scene cuts, key chunks)")
        count = self.header.chunk_count
        # Every chunk record holds at least its head and tile entries: a header cannot promise more
        # chunks or tiles than the file has bytes for.
        if count * ChunkRecord.overhead(self.header.tile_count, major) > size:
            raise FormatError(f"{self.path} is damaged: its header promises more chunks than the file holds")
        index = self._read_record(index_offset, KIND_INDEX)
        if len(index) != _OFFSET.size * (count + 1):
            raise FormatError(f"{self.path} is damaged: its index does not match its header")
        offsets = [o for (o,) in _OFFSET.iter_unpack(index)]
        if any(not _PREAMBLE.size < o < index_offset for o in offsets[:count]) or \
                not (offsets[count] == 0 or _PREAMBLE.size < offsets[count] < index_offset):
            raise FormatError(f"{self.path} is damaged: its index points outside the file")
        self._chunk_offsets, self._audio_offset = offsets[:count], offsets[count]

    def _read_record(self, offset: int, kind: bytes, covered: bytes = b"") -> bytes:
        self._file.seek(offset)
        head = self._file.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            raise FormatError(f"{self.path} is truncated")
        found, length = _RECORD_HEAD.unpack(head)
        if found != kind:
            raise FormatError(f"{self.path} is damaged: expected a {kind.decode()} record at byte {offset}")
        if offset + RECORD_OVERHEAD + length > self.file_size:  # before reading: the length may be a lie
            raise FormatError(f"{self.path} is truncated or damaged: the record at byte {offset} runs past the end")
        payload = self._file.read(length)
        crc = self._file.read(_CRC.size)
        if len(payload) < length or len(crc) < _CRC.size:
            raise FormatError(f"{self.path} is truncated")
        if _CRC.unpack(crc)[0] != zlib.crc32(payload, zlib.crc32(covered + head)):
            raise FormatError(f"{self.path} is damaged: CRC mismatch in the record at byte {offset}")
        return payload

    def read_chunk(self, index: int) -> ChunkRecord:
        chunk = ChunkRecord.from_bytes(self._read_record(self._chunk_offsets[index], KIND_CHUNK), self.version[0])
        if (chunk.index != index or chunk.frames != self.header.chunk_frames_of(index)
                or len(chunk.tiles) != self.header.tile_count):
            raise FormatError(f"{self.path} is damaged: chunk {index} does not match the header")
        if any(t.kept > self.header.max_1d_tokens or not math.isfinite(t.motion) for t in chunk.tiles):
            raise FormatError(f"{self.path} is damaged: a tile of chunk {index} keeps more 1D tokens than the "
                              "header allows, or has no motion score")
        return chunk

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[ChunkRecord]:
        for index in range(start, self.header.chunk_count if stop is None else stop):
            yield self.read_chunk(index)

    def read_audio(self) -> bytes | None:
        if self.header.audio is None:
            return None
        if not self._audio_offset:
            raise FormatError(f"{self.path} is damaged: its header promises audio the index does not hold")
        return self._read_record(self._audio_offset, KIND_AUDIO)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "OdvaReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ChunkInfo:
    index: int
    frames: int
    kept: list[int]  # 1D tokens kept, per tile
    motion: list[float]  # normalised motion score, per tile
    rate: list[float]  # rate point, per tile (0 for a model without rate points)
    bytes: int  # the whole record
    latent_bytes: int  # of which the tiles' coded latents
    latent_values: int  # latent values those bytes code


INFO_SCHEMA = "odva-info/3"  # `FileInfo.to_json`'s keys and types; a new one gets a new number


@dataclass
class FileInfo:
    path: Path
    version: tuple[int, int]
    header: FileHeader
    file_size: int
    chunks: list[ChunkInfo]
    audio_bytes: int

    @property
    def bitrate(self) -> float:
        return self.file_size * 8 / self.header.duration

    @property
    def bpp(self) -> float:
        h = self.header
        return self.file_size * 8 / (h.frames * h.width * h.height)

    @property
    def latent_bytes(self) -> int:
        return sum(c.latent_bytes for c in self.chunks)

    @property
    def bits_per_latent_value(self) -> float:
        values = sum(c.latent_values for c in self.chunks)
        return self.latent_bytes * 8 / values if values else 0.0

    def to_json(self) -> dict:
        """The file described for programs (`odva info --json`): numbers as numbers, stable keys, the
        schema documented in docs/format.md ("odva info --json") and named by "schema"."""
        h = self.header
        return {
            "schema": INFO_SCHEMA, "file": str(self.path), "format_version": list(self.version),
            "bytes": self.file_size,
            "model": {"config": h.model_config, "weights_sha256": h.model_sha256,
                      "id": f"{h.model_config}-{h.model_sha256[:16]}"},
            "width": h.width, "height": h.height,
            "fps": {"numerator": h.fps.numerator, "denominator": h.fps.denominator, "value": float(h.fps)},
            "frames": h.frames, "duration_s": h.duration, "bitrate_bps": self.bitrate, "bpp": self.bpp,
            "chunk_frames": h.chunk_frames, "chunk_count": h.chunk_count, "tiles_per_chunk": h.tile_count,
            "scene_cuts": list(h.cuts), "key_interval": h.key_interval, "key_chunks": list(h.key_chunks),
            "tile": {"size": h.tile_size, "overlap": h.tile_overlap, "ys": list(h.tile_ys), "xs": list(h.tile_xs)},
            "latent": {"structural_tokens": h.structural_tokens, "max_1d_tokens": h.max_1d_tokens,
                       "channels": h.latent_channels, "quant_step": h.quant_step},
            "entropy": {"coder": h.entropy_coder, "prior_sha256": h.prior_sha256, "latent_bytes": self.latent_bytes,
                        "bits_per_latent_value": self.bits_per_latent_value},
            "rate": dict(h.rate), "seed": h.seed,
            "audio": None if h.audio is None else {**h.audio, "bytes": self.audio_bytes},
            "encoder": h.encoder,
            "chunks": [{"index": c.index, "first_frame": h.chunk_starts[c.index], "frames": c.frames, "bytes": c.bytes,
                        "latent_bytes": c.latent_bytes,
                        "kept_1d_tokens": list(c.kept), "motion": list(c.motion), "rate_point": list(c.rate)}
                       for c in self.chunks],
        }


def read_info(source: str | Path | bytes) -> FileInfo:
    """Read and check every record of a file (no model needed)."""
    with OdvaReader(source) as reader:
        chunks = []
        for chunk in reader.chunks():
            size = ChunkRecord.overhead(len(chunk.tiles), reader.version[0]) + sum(len(t.data) for t in chunk.tiles)
            h = reader.header
            values = sum((h.structural_tokens + t.kept) * h.latent_channels for t in chunk.tiles)
            chunks.append(ChunkInfo(chunk.index, chunk.frames, [t.kept for t in chunk.tiles],
                                    [t.motion for t in chunk.tiles], [t.rate for t in chunk.tiles], size,
                                    sum(len(t.data) for t in chunk.tiles),
                                    values))
        audio = reader.read_audio()
        return FileInfo(reader.path, reader.version, reader.header, reader.file_size, chunks,
                        len(audio) if audio is not None else 0)

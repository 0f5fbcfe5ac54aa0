"""Chunks that depend on the one before (a model with a temporal prior): key chunks, random access, several
devices, damage that stops at the next key chunk."""

import hashlib
from fractions import Fraction

import numpy as np
import pytest
from helpers import DATA, TINY_MODEL, TINY_V3T_MODEL, assert_damage_reported_alike, synthetic_clip
from make_reference import REFERENCE_RATE, TEMPORAL_CLIP

from onedva_codec import Codec, FormatError, InputError, RateOptions, read_info
from onedva_codec.bitstream.container import FLAG_DEPENDENT, OdvaReader


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(TINY_V3T_MODEL, device="cpu", batch_size=2)  # a chunk a batch: frames do not depend on which


def test_the_bitstream_of_dependent_chunks_is_pinned(codec):
    """Encoding the reference clip reproduces the committed file byte for byte (tests/make_reference.py);
    its chunks after the first depend on the one before."""
    reference = (DATA / "reference_v3t.odva").read_bytes()
    data = codec.encode_array(synthetic_clip(**TEMPORAL_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(reference).hexdigest()
    assert read_info(reference).header.key_chunks == [0]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthetic_clip(120, 40, 48, seed=5, speed=0.3)  # 8 chunks of 2 tiles, a slow scene


def test_chunks_between_key_chunks_depend_on_the_one_before(codec, clip):
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6))  # 25 fps: a key chunk every 6 chunks (4 s)
    with OdvaReader(data) as reader:
        header = reader.header
        assert header.key_interval == 6 and header.key_chunks == [0, 6]
        assert int.from_bytes(data[6:8], "little") & FLAG_DEPENDENT
    decoded = codec.decode_array(data, steps=1)
    assert decoded.shape == clip.shape
    alone = codec.encode_array(clip, 25, RateOptions(quality=0.6), key_interval=1)
    assert read_info(alone).header.key_interval == 0 and read_info(alone).header.key_chunks == list(range(8))
    assert alone[6:8] == b"\0\0"  # every chunk a key chunk: a file as a model without a temporal prior writes
    every_third = codec.encode_array(clip, 25, RateOptions(quality=0.6), key_interval=3)
    assert read_info(every_third).header.key_chunks == [0, 3, 6]


def test_any_frames_decode_as_in_the_whole_video(codec, clip):
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6))
    whole = codec.decode_array(data, steps=1)
    for first, stop in ((40, 45), (17, 18), (100, 120), (0, 3)):  # inside dependent chunks, and from a key chunk
        assert np.array_equal(codec.decode_array(data, steps=1, frame_range=(first, stop)), whole[first:stop])


def test_the_same_file_and_frames_with_any_batch_workers_or_devices(codec, clip):
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6))
    folder = codec.model.path
    inline = Codec(folder, device="cpu", batch_size=5, coding_workers=0)
    two = Codec(folder, device="cpu,cpu", batch_size=2, coding_workers=1)
    try:
        assert inline.encode_array(clip, 25, RateOptions(quality=0.6)) == data
        assert two.encode_array(clip, 25, RateOptions(quality=0.6)) == data
        whole = codec.decode_array(data, steps=1)
        assert np.array_equal(two.decode_array(data, steps=1), whole)
        assert np.array_equal(two.decode_array(data, steps=1, frame_range=(60, 90)), whole[60:90])
        assert_damage_reported_alike(codec, two, data)
    finally:
        two.close()


def test_damage_stops_at_the_next_key_chunk(codec, clip):
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6), key_interval=3)
    with OdvaReader(data) as reader:
        header = reader.header
        record = list(reader.chunks(1, 2))[0]
    whole = codec.decode_array(data, steps=1)
    # a damaged tile in chunk 1 (its data altered and its CRC made whole again): the chunks that depend on it
    # fail or decode otherwise, the ones from the next key chunk (3) on decode as before
    damaged = bytearray(data)
    offset = data.index(record.tiles[0].data)
    damaged[offset + 2] ^= 0x5A
    fixed = _with_chunk_crc(bytes(damaged), 1)
    try:
        broken = codec.decode_array(fixed, steps=1, frame_range=(17, 34))
        assert not np.array_equal(broken, whole[17:34])
    except FormatError:
        pass
    start = header.chunk_starts[3]
    assert np.array_equal(codec.decode_array(fixed, steps=1, frame_range=(start, 120)), whole[start:])


def _with_chunk_crc(data: bytes, index: int) -> bytes:
    """The file with chunk `index`'s record CRC recomputed, so that only the decoder can tell the damage."""
    import struct
    import zlib
    with OdvaReader(data) as reader:
        offset = reader._chunk_offsets[index]
    out = bytearray(data)
    length = struct.unpack_from("<I", out, offset + 1)[0]
    head = bytes(out[offset:offset + 5])
    payload = bytes(out[offset + 5:offset + 5 + length])
    struct.pack_into("<I", out, offset + 5 + length, zlib.crc32(payload, zlib.crc32(head)))
    return bytes(out)


def test_a_model_without_a_temporal_prior_refuses_a_key_interval():
    with pytest.raises(InputError, match="--keyint needs a model"):
        Codec(TINY_MODEL, device="cpu").encode_array(synthetic_clip(20, 40, 48), 25, RateOptions(quality=0.5),
                                                     key_interval=4)


def test_the_bench_compares_dependent_chunks_with_key_chunks_only(codec, tmp_path):
    from fractions import Fraction

    from helpers import write_video

    from onedva_codec.evaluation.bench import BenchSettings, run_bench
    clip = write_video(tmp_path / "slow.mp4", synthetic_clip(40, 40, 48, seed=5, speed=0.3), Fraction(10))
    settings = BenchSettings(qualities=(0.0, 1.0), step_sweep=(), adaptive_sweep=False, anchors=())
    result = run_bench([clip], codec, settings, features=lambda video: np.zeros((1, 1)))
    assert set(result.curves) == {"odva", "odva key chunks"}
    keys_only = [p for p in result.points if p.curve == "odva key chunks"]
    assert len(keys_only) == 2 and all(p.bytes > 0 for p in keys_only)
    assert [(row["test"], row["anchor"]) for row in result.bd_rates] == [("odva", "odva key chunks")]


def test_a_scene_cut_starts_a_key_chunk(codec):
    clip = np.concatenate([synthetic_clip(25, 40, 48, seed=1), 255 - synthetic_clip(35, 40, 48, seed=2)])
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6))
    header = read_info(data).header
    assert header.cuts == [25] and header.chunk_starts == [0, 17, 25, 42, 59]
    assert header.key_chunks == [0, 2]  # the new shot depends on nothing of the old one
    assert codec.decode_array(data, steps=1).shape == clip.shape


def test_keyint_on_the_command_line(cli, tmp_path):
    """--keyint sets the key chunks of a model with a temporal prior; another model refuses it in one line,
    writing nothing."""
    from helpers import write_video
    source = write_video(tmp_path / "slow.mp4", synthetic_clip(60, 40, 48, seed=5, speed=0.3), Fraction(25))
    result = cli("encode", source, "-o", tmp_path / "k.odva", "--keyint", "2", "--weights", TINY_V3T_MODEL)
    assert result.exit_code == 0, result.output
    assert read_info(tmp_path / "k.odva").header.key_chunks == [0, 2]
    assert "key chunks" in cli("info", tmp_path / "k.odva").stdout
    refused = cli("encode", source, "-o", tmp_path / "v2.odva", "--keyint", "2", "--weights", TINY_MODEL)
    assert refused.exit_code == 1 and refused.stderr.strip().count("\n") == 0 and "--keyint" in refused.stderr
    assert not (tmp_path / "v2.odva").exists()

"""A model whose decoder sees the previous chunk's last frames (config tiny-v3tp): a dependent chunk is drawn
after the one before, whichever frames are asked for and however many devices decode."""

import numpy as np
import pytest
import torch
from helpers import make_tiny_model, synthetic_clip

from onedva_codec import Codec, RateOptions, read_info


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny_v3tp"
    make_tiny_model(folder, config="tiny-v3tp")
    return folder


@pytest.fixture(scope="module")
def codec(folder) -> Codec:
    return Codec(folder, device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def encoded(codec) -> bytes:
    clip = synthetic_clip(60, 40, 48, seed=5, speed=0.3)  # 4 chunks of 2 tiles
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6), key_interval=3)
    assert read_info(data).header.key_chunks == [0, 3]
    return data


def test_a_dependent_chunk_is_drawn_after_the_frames_of_the_one_before(folder, encoded):
    codec = Codec(folder, device="cpu", batch_size=2)
    whole = codec.decode_array(encoded, steps=1)
    with torch.no_grad():
        codec.model.model.decoder.previous_embed.weight.zero_()  # the same model, blind to the frames before
        codec.model.model.decoder.previous_embed.bias.zero_()
    blind = codec.decode_array(encoded, steps=1)
    starts = read_info(encoded).header.chunk_starts
    for index, (start, stop) in enumerate(zip(starts, starts[1:] + [len(whole)])):
        same = np.array_equal(blind[start:stop], whole[start:stop])
        assert same == (index in (0, 3)), index  # key chunks see nothing before them


def test_any_frames_decode_as_in_the_whole_video(codec, encoded):
    whole = codec.decode_array(encoded, steps=2)
    for first, stop in ((20, 25), (40, 60), (0, 3), (51, 52)):  # inside dependent chunks, and at key chunks
        assert np.array_equal(codec.decode_array(encoded, steps=2, frame_range=(first, stop)), whole[first:stop])


def test_the_same_frames_with_any_batch_size_or_devices(codec, folder):
    """Runs of dependent chunks are decoded side by side as a batch holds them (batch 4: two runs of chunks
    of 2 tiles), in blocks that go whole to a device process: the frames do not depend on either."""
    clip = synthetic_clip(120, 32, 48, seed=6, speed=0.3)  # 8 chunks of 2 tiles, runs of 2: 4 runs
    data = codec.encode_array(clip, 25, RateOptions(quality=0.6), key_interval=2)
    whole = codec.decode_array(data, steps=1)  # batch 2: one run at a time
    side_by_side = Codec(folder, device="cpu", batch_size=4, coding_workers=0)
    assert np.array_equal(side_by_side.decode_array(data, steps=1), whole)
    assert np.array_equal(side_by_side.decode_array(data, steps=1, frame_range=(40, 100)), whole[40:100])
    two = Codec(folder, device="cpu,cpu", batch_size=4, coding_workers=1)
    try:
        assert np.array_equal(two.decode_array(data, steps=1), whole)
        assert np.array_equal(two.decode_array(data, steps=1, frame_range=(20, 120)), whole[20:])
    finally:
        two.close()


def test_damage_stops_at_the_next_key_chunk(codec, encoded):
    """A damaged tile in chunk 1: it and the chunk after it (drawn after its frames) fail or decode otherwise,
    the chunks from the next key chunk (3) on decode as before."""
    from test_temporal import _with_chunk_crc

    from onedva_codec import FormatError
    from onedva_codec.bitstream.container import OdvaReader
    whole = codec.decode_array(encoded, steps=1)
    with OdvaReader(encoded) as reader:
        record = list(reader.chunks(1, 2))[0]
        start = reader.header.chunk_starts[3]
    damaged = bytearray(encoded)
    damaged[encoded.index(record.tiles[0].data) + 2] ^= 0x5A
    fixed = _with_chunk_crc(bytes(damaged), 1)
    try:
        assert not np.array_equal(codec.decode_array(fixed, steps=1, frame_range=(17, start)), whole[17:start])
    except FormatError:
        pass
    assert np.array_equal(codec.decode_array(fixed, steps=1, frame_range=(start, len(whole))), whole[start:])

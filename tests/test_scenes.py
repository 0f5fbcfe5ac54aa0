"""Scene cuts: a chunk ends where a shot ends, so that no chunk blends two shots; files say where."""

import json
import struct
import zlib

import numpy as np
import pytest
from helpers import synthetic_clip

from onedva_codec import FormatError, RateOptions, read_info
from onedva_codec.bitstream.container import OdvaReader, chunk_layout
from onedva_codec.video.geometry import chunk_frames
from onedva_codec.video.scenes import shot_starts


def textured(height: int, width: int, seed: int) -> np.ndarray:
    """A detailed picture: smooth colour fields with noise on top."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return np.clip(coarse[:height, :width] + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def two_shots(first: int, second: int) -> np.ndarray:
    return np.concatenate([synthetic_clip(first, 48, 64, seed=1), 255 - synthetic_clip(second, 48, 64, seed=2)])


def test_a_new_shot_is_found_where_it_starts():
    assert shot_starts(two_shots(12, 20)) == [12]
    assert shot_starts(two_shots(30, 1)) == [30]  # a shot of one frame at the end counts too
    fast = synthetic_clip(40, 48, 64, seed=3, speed=4.0)
    assert shot_starts(fast) == []  # fast motion is no cut
    assert shot_starts(np.concatenate([fast, 255 - synthetic_clip(10, 48, 64, seed=2)])) == [40]  # a cut after it is


def test_a_fast_pan_a_flash_and_a_quick_transition_are_not_cuts():
    picture = textured(64, 400, seed=5)
    pan = np.stack([picture[:, 12 * t: 12 * t + 64] for t in range(25)])  # 12 pixels a frame over detail
    assert shot_starts(pan) == []
    flash = synthetic_clip(30, 48, 64, seed=1)
    flash[14] = 255  # one white frame, then the same shot
    assert shot_starts(flash) == []
    clip = two_shots(12, 20)
    clip[12] = clip[11] // 2 + clip[13] // 2  # one frame of cross-fade: one cut, not two
    assert len(shot_starts(clip)) == 1


@pytest.mark.parametrize("frames,cuts", [(40, []), (40, [10]), (40, [17]), (40, [1, 2, 3, 39]), (17, [16]), (1, [])])
def test_chunks_are_cut_as_the_format_lays_them_out(frames, cuts):
    marked = [(np.full((2, 2, 3), i, np.uint8), i in cuts) for i in range(frames)]
    chunks = list(chunk_frames(marked, 17))
    starts = chunk_layout(frames, 17, cuts)
    assert [real for _, real in chunks] == [b - a for a, b in zip(starts, starts[1:] + [frames])]
    for (chunk, real), start in zip(chunks, starts):
        assert chunk.shape[0] == 17 and (chunk[:real, 0, 0, 0].numpy() == np.arange(start, start + real)).all()
        assert (chunk[real:] == chunk[real - 1]).all()  # padded by repeating the chunk's last frame


def test_a_file_with_a_cut_keeps_the_shots_apart(codec):
    clip = two_shots(12, 20)
    data = codec.encode_array(clip, 25, RateOptions(quality=0.5))
    with OdvaReader(data) as reader:
        assert reader.version == (3, 1) and reader.header.cuts == [12]
        assert reader.header.chunk_starts == [0, 12, 29] and [c.frames for c in reader.chunks()] == [12, 17, 3]
    decoded = codec.decode_array(data, steps=1)
    assert decoded.shape == clip.shape
    assert np.array_equal(codec.decode_array(data, steps=1, frame_range=(10, 14)), decoded[10:14])
    described = read_info(data).to_json()
    assert described["scene_cuts"] == [12] and [c["first_frame"] for c in described["chunks"]] == [0, 12, 29]
    plain = codec.encode_array(clip, 25, RateOptions(quality=0.5), scene_cuts=False)
    with OdvaReader(plain) as reader:
        assert reader.header.cuts == [] and reader.header.chunk_starts == [0, 17]
    assert plain[6:8] == b"\0\0" and data[6:8] == b"\1\0"  # flag bit 0 only where there are cuts
    # The first shot decodes exactly as it does alone: nothing of the second leaks into it (at one length
    # everywhere, so that rate control treats the files alike); in 17-frame chunks it does not
    fixed = RateOptions(quality=0.5, adaptive=False)
    alone = codec.decode_array(codec.encode_array(clip[:12], 25, fixed), steps=1)
    with_cut = codec.decode_array(codec.encode_array(clip, 25, fixed), steps=1)[:12]
    without = codec.decode_array(codec.encode_array(clip, 25, fixed, scene_cuts=False), steps=1)[:12]
    assert np.array_equal(with_cut, alone) and not np.array_equal(without, alone)


def _with_header_crc(data: bytearray) -> bytes:
    length = struct.unpack_from("<I", data, 9)[0]
    struct.pack_into("<I", data, 13 + length, zlib.crc32(bytes(data[13:13 + length]), zlib.crc32(bytes(data[:13]))))
    return bytes(data)


def test_flags_and_cuts_must_agree(codec):
    data = bytearray(codec.encode_array(two_shots(12, 20), 25, RateOptions(quality=0.5)))
    unflagged = bytearray(data)
    unflagged[6] = 0  # cuts in the header, but no flag: a 3.0 reader would have misplaced frames
    with pytest.raises(FormatError, match="flags and its header disagree"):
        OdvaReader(_with_header_crc(unflagged))
    unknown = bytearray(data)
    unknown[6] = 5  # a flag this odva does not know (bit 2)
    with pytest.raises(FormatError, match="features this odva does not know"):
        OdvaReader(_with_header_crc(unknown))


def test_info_shows_the_cuts(cli, tmp_path, codec):
    coded = tmp_path / "cut.odva"
    coded.write_bytes(codec.encode_array(two_shots(12, 20), 25, RateOptions(quality=0.5)))
    shown = cli("info", coded)
    assert "frame 12" in shown.stdout and "first frame" in shown.stdout
    assert json.loads(cli("info", coded, "--json").stdout)["scene_cuts"] == [12]

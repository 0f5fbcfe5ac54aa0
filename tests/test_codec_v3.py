"""The codec with a v3 model (rate points, a hyperprior): what users rely on, as for v1/v2 models."""

from fractions import Fraction

import numpy as np
import pytest
from helpers import TINY_V3_MODEL, assert_damage_reported_alike, synthetic_clip, write_video

from onedva_codec import Codec, InputError, RateOptions, read_info


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(TINY_V3_MODEL, device="cpu")


def test_a_file_round_trips_with_its_size_rate_and_frames(codec, tmp_path):
    source = write_video(tmp_path / "odd.mp4", synthetic_clip(30, 37, 45, seed=2), Fraction(30000, 1001))
    codec.encode_file(source, tmp_path / "odd.odva", RateOptions(quality=0.6))
    info = read_info(tmp_path / "odd.odva")
    assert (info.header.width, info.header.height, info.header.frames) == (45, 37, 30)
    assert info.header.entropy_coder == "hyperprior-v1"
    result = codec.decode_file(tmp_path / "odd.odva", tmp_path / "rec.y4m")
    assert result.frames == 30


def test_quality_moves_the_rate_point_and_the_bytes_up(codec):
    clip = synthetic_clip(34, 40, 48, seed=3)
    files = [codec.encode_array(clip, 25, RateOptions(quality=q)) for q in (0.0, 0.5, 1.0)]
    assert len(files[0]) < len(files[1]) < len(files[2])
    top = codec.model.cfg.rate_points - 1
    assert [read_info(f).chunks[0].rate[0] for f in files] == [0.0, top / 2, top]


def test_a_bitrate_below_the_lowest_quality_is_refused(codec):
    with pytest.raises(InputError, match="bitrate too low"):
        codec.encode_array(synthetic_clip(20, 40, 48), 25, RateOptions(bitrate=100))


def test_the_file_does_not_depend_on_the_batch_workers_or_devices_and_decodes_the_same():
    """docs/format.md, "Determinism", for a v3 model: the integer hyper decoder makes the same tables on
    any batch and in any process."""
    clip = synthetic_clip(100, 40, 60, seed=9)  # 6 chunks of 4 tiles
    rate = RateOptions(quality=0.7)
    one = Codec(TINY_V3_MODEL, device="cpu", batch_size=3)
    data = one.encode_array(clip, 25, rate)
    assert Codec(TINY_V3_MODEL, device="cpu", batch_size=5).encode_array(clip, 25, rate) == data
    workers = Codec(TINY_V3_MODEL, device="cpu", batch_size=4, coding_workers=2)
    two = Codec(TINY_V3_MODEL, device="cpu,cpu", batch_size=3, coding_workers=1)
    try:
        assert workers.encode_array(clip, 25, rate) == data
        assert two.encode_array(clip, 25, rate) == data
        frames = one.decode_array(data, steps=2)
        assert np.array_equal(workers.decode_array(data, steps=2), frames)
        assert np.array_equal(two.decode_array(data, steps=2), frames)
        assert np.array_equal(one.decode_array(data, steps=2, frame_range=(60, 90)), frames[60:90])
        assert_damage_reported_alike(one, two, data)
    finally:
        workers.close()
        two.close()


def test_search_is_refused_for_a_v3_model_with_the_reason(codec):
    with pytest.raises(InputError, match="--search refines the latents of v1 and v2 models"):
        codec.encode_array(synthetic_clip(20, 40, 48), 25, search_steps=2)


def test_a_v3_file_is_refused_by_a_v2_model_and_the_reverse(codec):
    from helpers import TINY_MODEL
    from make_reference import REFERENCE_CLIP

    from onedva_codec import ModelMismatchError
    v2 = Codec(TINY_MODEL, device="cpu")
    with pytest.raises(ModelMismatchError, match="encoded with model tiny-v3"):
        v2.decode_array(codec.encode_array(synthetic_clip(**REFERENCE_CLIP), 25))
    with pytest.raises(ModelMismatchError, match="encoded with model tiny-"):
        codec.decode_array(v2.encode_array(synthetic_clip(**REFERENCE_CLIP), 25))

"""Token allocation: quality means what it says, motion gets more, budgets hold."""

import numpy as np
import pytest

from onedva_codec import InputError
from onedva_codec.bitstream.ratecontrol import (RateOptions, length_grid, lengths_for_bitrate, lengths_for_quality,
                                                parse_bitrate)


@pytest.mark.parametrize("text,value", [("300k", 3e5), ("1.5M", 1.5e6), ("250000", 2.5e5), ("64kbps", 6.4e4)])
def test_parse_bitrate(text, value):
    assert parse_bitrate(text) == value


@pytest.mark.parametrize("text", ["fast", "-3k", "0", "3x"])
def test_bad_bitrates_are_refused(text):
    with pytest.raises(InputError):
        RateOptions.from_text(bitrate=text)


@pytest.mark.parametrize("quality", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_mean_length_matches_quality(quality):
    motion = np.random.default_rng(0).random(200)
    for adaptive in (True, False):
        lengths = lengths_for_quality(motion, quality, 1024, adaptive)
        assert abs(lengths.mean() - quality * 1024) <= 1.0


def test_adaptive_gives_more_tokens_to_more_motion():
    motion = np.array([0.1, 0.5, 0.2, 0.9])
    adaptive = lengths_for_quality(motion, 0.4, 1024, adaptive=True)
    assert list(np.argsort(adaptive)) == list(np.argsort(motion))
    constant = lengths_for_quality(motion, 0.4, 1024, adaptive=False)
    assert len(set(constant)) == 1


def test_budget_is_met_from_below_and_closely():
    """Bytes of the units plus the container's overhead fill the target, from below."""
    rng = np.random.default_rng(1)
    grid = length_grid(1024)
    per_token = rng.uniform(1.0, 3.0, (50, 1))
    sizes = (500 + per_token * grid[None]).astype(int)
    overhead, duration = 3000, 2.0
    target = overhead + sizes[:, 0].sum() + 0.4 * (sizes[:, -1] - sizes[:, 0]).sum()
    rate = RateOptions(bitrate=target * 8 / duration)
    lengths, note = lengths_for_bitrate(rng.random(50), sizes, rate, duration, overhead, 1024)
    used = overhead + sizes[np.arange(50), np.searchsorted(grid, lengths)].sum()
    assert 0.99 * target <= used <= target and note is None


def test_budgets_below_the_floor_are_refused_and_above_the_ceiling_noted():
    sizes = np.tile(np.arange(100, 133), (3, 1))
    with pytest.raises(InputError, match="at least 2.4 kbit/s"):  # (300 + 0) bytes over 1 s
        lengths_for_bitrate(np.ones(3), sizes, RateOptions(bitrate=2000), 1.0, 0, 1024)
    with pytest.raises(InputError, match="container and audio alone need 8.0 kbit/s"):
        lengths_for_bitrate(np.ones(3), sizes, RateOptions(bitrate=7000), 1.0, 1000, 1024)
    lengths, note = lengths_for_bitrate(np.ones(3), sizes, RateOptions(bitrate=1e6), 1.0, 0, 1024)
    assert (lengths == 1024).all() and "exceeds what full quality needs" in note


def test_rate_options_take_a_quality_or_a_bitrate_not_both():
    assert RateOptions().quality == 0.5 and RateOptions(bitrate=1e5).quality is None
    for bad in (dict(quality=0.5, bitrate=1e5), dict(quality=1.5), dict(bitrate=0)):
        with pytest.raises(InputError):
            RateOptions(**bad)


def _ladder_file(bias: float):
    """A v3 encode's write and estimate, from a size that grows with the rate point and the lengths; the
    estimate is off by `bias` (as the float entropy model's ideal lengths are off a little)."""
    writes = []

    def size(point: float, lengths: np.ndarray) -> int:
        return int(1000 + 400 * point + 3 * lengths.sum())

    def write(point: float, lengths: np.ndarray) -> int:
        writes.append(point)
        return size(point, lengths)

    return writes, write, lambda point, lengths: int(size(point, lengths) * (1 + bias))


@pytest.mark.parametrize("bias", [-0.08, 0.0, 0.1])
def test_the_v3_ladder_lands_just_under_a_bitrate_in_a_few_writes(bias):
    from onedva_codec.bitstream.ratecontrol import spend_ladder
    motion = np.linspace(0.1, 2.0, 12)
    writes, write, estimate = _ladder_file(bias)
    target_bytes = 4000
    point, lengths, written, note = spend_ladder(RateOptions(bitrate=target_bytes * 8 / 2.0), motion, 2.0, 5.0, 64,
                                                 write, estimate)
    assert written <= target_bytes and written >= 0.95 * target_bytes and note is None
    assert len(writes) <= 3 and writes[-1] == point
    assert 0 < point < 5.0


def test_the_v3_ladder_says_when_the_bitrate_is_out_of_reach():
    from onedva_codec.bitstream.ratecontrol import spend_ladder
    motion = np.ones(12)
    _, write, estimate = _ladder_file(0.0)
    with pytest.raises(InputError, match="bitrate too low"):
        spend_ladder(RateOptions(bitrate=100 * 8 / 2.0), motion, 2.0, 5.0, 64, write, estimate)
    point, lengths, written, note = spend_ladder(RateOptions(bitrate=10**6), motion, 2.0, 5.0, 64, write, estimate)
    assert point == 5.0 and (lengths == 64).all() and "exceeds what full quality needs" in note

"""Token allocation: quality means what it says, motion gets more, budgets hold."""

import numpy as np
import pytest

from onedva_codec import InputError
from onedva_codec.ratecontrol import (length_grid, lengths_for_budget, lengths_for_quality,
                                      parse_bitrate)


@pytest.mark.parametrize("text,value", [("300k", 3e5), ("1.5M", 1.5e6), ("250000", 2.5e5), ("64kbps", 6.4e4)])
def test_parse_bitrate(text, value):
    assert parse_bitrate(text) == value


@pytest.mark.parametrize("text", ["fast", "-3k", "0", "3x"])
def test_bad_bitrates_are_refused(text):
    with pytest.raises(InputError):
        parse_bitrate(text)


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
    rng = np.random.default_rng(1)
    grid = length_grid(1024)
    per_token = rng.uniform(1.0, 3.0, (50, 1))
    sizes = (500 + per_token * grid[None]).astype(int)
    budget = int(sizes[:, 0].sum() + 0.4 * (sizes[:, -1] - sizes[:, 0]).sum())
    lengths = lengths_for_budget(rng.random(50), sizes, budget, 1024, adaptive=True)
    used = sizes[np.arange(50), np.searchsorted(grid, lengths)].sum()
    assert 0.99 * budget <= used <= budget


def test_budget_below_the_structural_floor_is_refused():
    sizes = np.tile(np.arange(100, 133), (3, 1))
    with pytest.raises(InputError, match="bitrate too low"):
        lengths_for_budget(np.ones(3), sizes, 200, 1024, adaptive=False)

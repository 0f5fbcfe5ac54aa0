"""odva bench on a short synthetic clip with the tiny model: every column, BD-rate, plots."""

import csv
import json
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import synthetic_clip, write_video

from onedva_codec import RateOptions
from onedva_codec.evaluation.bench import BenchSettings, bd_rate, read_clip, run_bench, write_outputs


def window_means(video: torch.Tensor) -> np.ndarray:
    """A stand-in for I3D in rFVD: per 16-frame window (8 apart), its mean level (one feature, so that
    the two windows of the test clip give a covariance of full rank). The real network is tested on its
    own (tests/test_metrics.py); here it would only cost minutes."""
    rows = [video[start:start + 16].float().mean().item() for start in range(0, video.shape[0] - 15, 8)]
    return np.array(rows).reshape(-1, 1)


@pytest.fixture(scope="module")
def result(codec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    clip = write_video(folder / "clip.mp4", synthetic_clip(26, 40, 56, seed=6), Fraction(25))
    settings = BenchSettings(qualities=(0.0, 0.5, 1.0), bitrates=(40_000,), step_sweep=(1, 2))
    outcome = run_bench([clip], codec, settings, progress=lambda done, total: PROGRESS.append((done, total)),
                        features=window_means)
    write_outputs(outcome, folder / "out")
    return outcome, folder / "out"


PROGRESS: list[tuple[int, int]] = []  # what `result`'s run reported, (points done, points in all)


@pytest.mark.slow
def test_progress_counts_points_of_a_known_total(result):
    total = len(result[0].points)
    assert PROGRESS == [(done, total) for done in range(total + 1)]


@pytest.mark.slow
def test_every_column_of_every_point_is_filled(result):
    outcome, folder = result
    rows = list(csv.DictReader(open(folder / "results.csv")))
    curves = {r["curve"] for r in rows}
    assert {"odva", "odva constant", "odva bitrate", "odva steps 1", "odva steps 2", "x264", "x265", "av1"} <= curves
    for row in rows:
        for key, value in row.items():
            assert value not in ("", "nan"), f"{row['curve']} {row['setting']}: {key} is empty"
    assert all(float(r["bpp"]) > 0 and float(r["encode_fps"]) > 0 for r in rows)


@pytest.mark.slow
def test_rate_counts_the_whole_stream(result, codec):
    """Every point's bytes are its whole file: for odva the very .odva file the codec writes."""
    outcome, folder = result
    clip = read_clip(folder.parent / "clip.mp4", None)[0]
    for p in outcome.points:
        assert (p.frames, p.width, p.height) == (26, 56, 40)
        assert p.bpp == pytest.approx(p.bytes * 8 / (26 * 56 * 40))
        assert p.kbps == pytest.approx(p.bytes * 8 / (26 / 25) / 1000)
        if p.curve == "odva":
            quality = float(p.setting.split()[-1])
            assert p.bytes == len(codec.encode_array(clip, Fraction(25), RateOptions(quality=quality)))


@pytest.mark.slow
def test_settings_are_recorded(result):
    outcome, folder = result
    data = json.loads((folder / "results.json").read_text())
    assert data["settings"]["anchors"]["x264"] == {"encoder": "libx264", "preset": "medium", "pix_fmt": "yuv420p",
                                                   "crf": [23, 28, 33, 38, 43, 48, 51]}
    assert data["settings"]["device"].startswith("CPU")
    assert [r["anchor"] for r in data["bd_rates"]] == ["x264", "x265", "av1", "odva constant"]


@pytest.mark.slow
def test_one_plot_per_metric(result):
    _, folder = result
    for metric in ("psnr", "psnr_y", "ssim", "ms_ssim", "lpips", "fvd", "vmaf"):
        assert (folder / f"rd_{metric}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_bd_rate_against_itself_is_zero(result):
    outcome, _ = result
    for metric in ("psnr", "lpips", "vmaf"):
        assert bd_rate(outcome.curves["x264"], outcome.curves["x264"], metric) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_a_curve_needing_twice_the_bits_is_plus_100():
    anchor = [{"bpp": b, "psnr": p} for b, p in [(0.01, 25.0), (0.02, 28.0), (0.04, 31.0), (0.08, 34.0)]]
    doubled = [{"bpp": 2 * r["bpp"], "psnr": r["psnr"]} for r in anchor]
    assert bd_rate(anchor, doubled, "psnr") == pytest.approx(100.0, rel=1e-6)
    disjoint = [{"bpp": r["bpp"], "psnr": r["psnr"] + 20} for r in anchor]
    assert bd_rate(anchor, disjoint, "psnr") is None


@pytest.mark.slow
def test_cli_prints_tables_and_writes_files(cli, tmp_path, monkeypatch):
    """Into a file (not a terminal) narrower than its tables, the tables come whole: no cell is cut."""
    monkeypatch.setenv("COLUMNS", "60")
    clip = write_video(tmp_path / "c.mp4", synthetic_clip(20, 32, 40), Fraction(25))
    result = cli("bench", clip, "-o", tmp_path / "out", "--qualities", "0,1", "--step-sweep", "1",
                 "--anchors", "x264", "--no-adaptive-sweep")
    assert result.exit_code == 0, result.output
    assert "BD-rate" in result.stdout and "…" not in result.stdout
    assert "quality, averaged over 1 clip(s)" in result.stdout
    assert re.search(r"│ odva +│ quality 0 +│ [0-9.]+ +│", result.stdout)  # a row of the quality table, whole
    assert "x264: libx264, preset medium, pix_fmt yuv420p, CRF 23, 28, 33, 38, 43, 48, 51" in result.stdout
    assert (tmp_path / "out" / "rd_psnr.png").exists()
    again = cli("bench", clip, "-o", tmp_path / "out")
    assert again.exit_code == 1 and "--force" in again.stderr
    assert math.isfinite(json.loads((tmp_path / "out" / "results.json").read_text())["curves"]["odva"][0]["psnr"])


def test_the_keyint_17_anchor_starts_afresh_every_17_frames():
    """x264 as odva codes chunks when each is a key chunk: a key frame every 17 frames, none in between."""
    import io

    import av

    from onedva_codec.evaluation.bench.anchors import encode_anchor
    data = encode_anchor(synthetic_clip(60, 64, 64, seed=1), Fraction(25), "x264-keyint17", 33)
    with av.open(io.BytesIO(data)) as container:
        keys = [i for i, packet in enumerate(p for p in container.demux(video=0) if p.size) if packet.is_keyframe]
    assert keys == [0, 17, 34, 51]

"""odva compare: the frame grid's size and labels, the per-frame plot, and its errors."""

from fractions import Fraction

import numpy as np
from helpers import DATA, TINY_MODEL, synthetic_clip, write_video
from PIL import Image

from onedva_codec import Codec
from onedva_codec.evaluation.compare import compare


def test_the_grid_shows_each_chosen_frame_of_each_version(cli, tmp_path):
    clip = synthetic_clip(20, 40, 48, seed=1)
    reference = write_video(tmp_path / "ref.mkv", clip, Fraction(25))
    other = write_video(tmp_path / "x264.mp4", clip, Fraction(25))  # another codec's version of it
    coded = tmp_path / "c.odva"
    Codec(TINY_MODEL, device="cpu").encode_file(reference, coded)
    result = cli("compare", reference, coded, other, "-o", tmp_path / "cmp.png", "--frames", "0,7,19")
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "cmp.png")
    assert grid.size == (48 * 3, 18 + 40 * 3)  # original, odva, x264; three frames
    assert (tmp_path / "cmp-per-frame.png").is_file()
    assert "c.odva:" in result.stderr and "bpp" in result.stderr and "dB" in result.stderr

    comparison = compare(reference, [coded, other], [0, 7, 19], lambda: Codec(TINY_MODEL, device="cpu"))
    odva, x264 = comparison.columns
    assert len(odva.psnr) == len(x264.psnr) == 20 and len(odva.shown) == 3
    assert odva.bpp == coded.stat().st_size * 8 / (20 * 40 * 48)
    decoded = Codec(TINY_MODEL, device="cpu").decode_array(coded)
    assert np.array_equal(odva.shown[1], decoded[7])
    assert odva.label.startswith("c.odva: ") and f"{odva.bpp:.4f} bpp" in odva.label
    assert x264.psnr[0] > odva.psnr[0]  # near-lossless H.264 against the tiny model


def test_bpp_counts_every_frame_of_a_longer_version(tmp_path):
    """A version longer than the reference is compared over the reference's frames, but its file's
    bits paid for all of its own: bpp divides by those."""
    clip = synthetic_clip(30, 40, 48, seed=2)
    reference = write_video(tmp_path / "ref.mkv", clip[:20], Fraction(25))
    longer = write_video(tmp_path / "longer.mkv", clip, Fraction(25))
    coded = tmp_path / "c.odva"
    Codec(TINY_MODEL, device="cpu").encode_file(longer, coded)
    comparison = compare(reference, [coded, longer], [0], lambda: Codec(TINY_MODEL, device="cpu"))
    odva, video = comparison.columns
    assert len(odva.psnr) == len(video.psnr) == 20
    assert odva.bpp == coded.stat().st_size * 8 / (30 * 40 * 48)
    assert video.bpp == longer.stat().st_size * 8 / (30 * 40 * 48)
    assert sum("has 30 frames, 20 compared" in note for note in comparison.notes) == 2


def test_compare_errors_are_one_line(cli, tmp_path):
    reference = write_video(tmp_path / "ref.mkv", synthetic_clip(20, 40, 48), Fraction(25))
    smaller = write_video(tmp_path / "small.mkv", synthetic_clip(20, 32, 32), Fraction(25))
    for args, message in [((reference, DATA / "reference.odva", "--frames", "25"), "past the 20 frames"),
                          ((reference, smaller), "is 32x32, the reference 48x40"),
                          ((reference, DATA / "reference.odva", "--frames", "a"), "cannot read --frames")]:
        result = cli("compare", *args, "-o", tmp_path / "cmp.png")
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.mkv", "small.mkv"]


def test_notes_keep_their_brackets(cli, tmp_path, monkeypatch):
    """Messages are text, not markup: "odva[bench]" stays whole."""
    from onedva_codec.evaluation import compare as comparing
    monkeypatch.setattr(comparing, "can_plot", lambda: False)
    reference = write_video(tmp_path / "ref.mkv", synthetic_clip(20, 40, 48), Fraction(25))
    result = cli("compare", reference, DATA / "reference.odva", "-o", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    assert "pip install 'odva[bench]'" in result.stderr
    assert not (tmp_path / "cmp-per-frame.png").exists()

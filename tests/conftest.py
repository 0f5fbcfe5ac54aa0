from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from helpers import TINY_MODEL, synthetic_clip, write_video
from typer.testing import CliRunner

from onedva_codec import Codec
from onedva_codec.cli import app


@pytest.fixture(scope="session")
def codec() -> Codec:
    return Codec(TINY_MODEL, device="cpu")


@pytest.fixture(scope="session")
def clip_with_audio(tmp_path_factory) -> Path:
    """2 s of 40 x 56 video at 25 fps with a stereo AAC tone."""
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return write_video(path, synthetic_clip(50, 40, 56, seed=2), Fraction(25), audio=True)


@pytest.fixture(scope="session")
def pack(tmp_path_factory) -> Path:
    """A training pack of three synthetic videos and four photos (odva-train's tests)."""
    from odva_train.pack import build_pack, folder_sources
    from PIL import Image
    root = tmp_path_factory.mktemp("data")
    (root / "videos").mkdir()
    (root / "photos").mkdir()
    for i in range(3):
        write_video(root / "videos" / f"clip{i}.mp4", synthetic_clip(30, 48, 64, seed=i, speed=1 + i))
    for i in range(4):
        Image.fromarray(synthetic_clip(1, 96, 128, seed=10 + i)[0]).save(root / "photos" / f"photo{i}.png")
    build_pack(folder_sources(root / "videos") + folder_sources(root / "photos"), root / "pack", log=lambda _: None)
    return root / "pack"


@pytest.fixture
def cli(monkeypatch):
    """Run `odva ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ODVA_WEIGHTS", str(TINY_MODEL))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run

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


@pytest.fixture
def cli(monkeypatch):
    """Run `odva ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ODVA_WEIGHTS", str(TINY_MODEL))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run

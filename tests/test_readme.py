"""The README's Python example runs as printed (on a small clip, with the tiny model)."""

import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from helpers import TINY_MODEL, synthetic_clip, write_video

README = Path(__file__).parent.parent / "README.md"


def test_the_python_example_runs(tmp_path):
    text = README.read_text().split("## From Python", 1)[1]
    example = re.search(r"```python\n(.*?)```", text, flags=re.S)[1]
    write_video(tmp_path / "in.mp4", synthetic_clip(20, 40, 56, seed=3), Fraction(25))
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ODVA_WEIGHTS": str(TINY_MODEL)})
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) > 0  # the bits per pixel of the re-encoded frames
    assert {p.name for p in tmp_path.iterdir()} >= {"out.odva", "low.odva", "rec.mp4"}

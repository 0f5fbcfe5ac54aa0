"""Crafted and mutated .odva files (CRCs recomputed) end in an OdvaError, quickly and in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DATA, TINY_MODEL, TINY_V3_MODEL, TINY_V3T_MODEL
from odva_fuzz import build, parse

from onedva_codec import FormatError, read_info

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (DATA / "reference.odva").read_bytes()


def crafted(**header) -> bytes:
    p = parse(REFERENCE)
    p.header.update(header)
    return build(p)


CRAFTED = {
    "chunk_frames=0": crafted(chunk_frames=0),
    "model_sha256=nil": crafted(model_sha256=None),
    "tile_xs=32": crafted(tile_xs=32),
    "tile_xs off the frame": crafted(tile_xs=[0, 4096]),
    "short quant_mean": crafted(quant_mean=[0.0]),
    "quant_step=NaN": crafted(quant_step=float("nan")),
    "quant_std=0": crafted(quant_std=[0.0, 1.0, 1.0, 1.0]),
    "audio without its fields": crafted(audio={"codec": "aac"}),
    "height=2^32-1": crafted(height=2**32 - 1),
    "width=2^31": crafted(width=2**31),
    "8000 x 8000 frames": crafted(width=8000, height=8000),
    "fps=0/1": crafted(fps=[0, 1]),
    "frames=2^31-1": crafted(frames=2**31 - 1),
    "header is a list": build(parse(REFERENCE), header=[1, 2, 3]),
    "index offset 2^64-1": build(parse(REFERENCE), index_edit=(0, 2**64 - 1)),
    "record length 0xFFFFFFFF": build(parse(REFERENCE), lie=(1, 2**32 - 1)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_file_is_refused_in_one_line_at_once(name):
    data = CRAFTED[name]
    started = time.perf_counter()
    with pytest.raises(FormatError) as error:
        read_info(data)
    assert time.perf_counter() - started < 1.0
    assert "\n" not in str(error.value)


def test_the_cli_refuses_a_crafted_file_with_exit_1(cli, tmp_path):
    path = tmp_path / "crafted.odva"
    path.write_bytes(CRAFTED["quant_step=NaN"])
    result = cli("info", path)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "quant_step" in result.stderr
    result = cli("decode", path, "-o", tmp_path / "out.y4m")
    assert result.exit_code == 1 and not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("weights,count", [
    (TINY_MODEL, 300), (TINY_V3_MODEL, 150), (TINY_V3T_MODEL, 100),  # the fast tier: every format, briefly
    pytest.param(TINY_MODEL, 2000, marks=pytest.mark.slow), pytest.param(TINY_V3_MODEL, 800, marks=pytest.mark.slow),
    pytest.param(TINY_V3T_MODEL, 600, marks=pytest.mark.slow)])
def test_mutated_files_end_in_odva_errors_within_bounds(weights, count):
    """A seeded run of scripts/fuzz.py: CRC-valid mutants of a model's files (v2, v3 and dependent chunks), only
    OdvaErrors, none slow."""
    command = [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--count", str(count), "--seed", "7",
               "--max-seconds", "2", "--json", "--weights", str(weights)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["inputs"] == count
    assert summary["findings"] == {}, summary["findings"]
    assert summary["peak_rss_mib"] < 1024, summary


def test_odva_info_prints_a_crafted_name_as_text(cli, tmp_path):
    """Header strings reach the terminal as they are: no console markup (or escape) is interpreted."""
    path = tmp_path / "named.odva"
    path.write_bytes(crafted(encoder="[bold red]odva[/] [link=http://x]y[/link]"))
    result = cli("info", path)
    assert result.exit_code == 0, result.output
    assert "[bold red]odva[/] [link=http://x]y[/link]" in result.stdout

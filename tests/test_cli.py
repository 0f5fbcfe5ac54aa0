"""The command line as a user meets it: help, output, and one clear line per failure."""

import signal
import subprocess
import sys
import time

import av
import pytest
from helpers import DATA, TINY_MODEL, TINY_V3_MODEL, TINY_V3T_MODEL, make_tiny_model, synthetic_clip, write_video

SAMPLE = DATA.parent.parent / "docs" / "sample.mp4"

COMMAND_OPTIONS = {
    "encode": ["--output", "--quality", "--bitrate", "--adaptive", "--seed", "--weights", "--device", "--batch",
               "--compile", "--force", "--quiet", "--search"],
    "decode": ["--output", "--steps", "--frames", "--mp4-preset", "--weights", "--device", "--batch", "--compile",
               "--gpu-noise", "--force", "--quiet"],
    "info": ["--json"],
}


def _one_line_error(result, pattern: str, code: int = 1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odva: error:"), result.stderr
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMAND_OPTIONS)
def test_help_shows_every_option_with_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    for option in COMMAND_OPTIONS[command]:
        assert option in result.stdout, option
    # Every option's own help carries an example of its use.
    assert result.stdout.count("e.g.") >= len(COMMAND_OPTIONS[command])


def test_encode_info_decode(cli, clip_with_audio, tmp_path):
    coded, rec = tmp_path / "c.odva", tmp_path / "rec.mp4"
    result = cli("encode", clip_with_audio, "-o", coded, "--quality", "0.6", "--search", "1")
    assert result.exit_code == 0, result.output
    assert "kbit/s" in result.stderr and "frames/s" in result.stderr
    info = cli("info", coded)
    assert info.exit_code == 0
    for field in ("model", "56x40", "1D tokens kept", "motion", "aac", "range-prior-v1",
                  "bits per latent value", "quality 0.6, adaptive, search 1 steps"):
        assert field in info.stdout, field
    result = cli("decode", coded, "-o", rec, "--steps", "2")
    assert result.exit_code == 0, result.output
    with av.open(str(rec)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 50


def test_mp4_preset_reaches_the_encoder(cli, tmp_path):
    fast, default = tmp_path / "fast.mp4", tmp_path / "default.mp4"
    for path, extra in [(fast, ["--mp4-preset", "ultrafast"]), (default, [])]:
        result = cli("decode", DATA / "reference.odva", "-o", path, *extra)
        assert result.exit_code == 0, result.output
    # libx264 writes its settings into the stream: ultrafast searches no subpixel motion
    assert b"subme=0" in fast.read_bytes() and b"subme=7" in default.read_bytes()
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.mp4", "--mp4-preset", "warp"),
                    "unknown H.264 preset 'warp'")
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.y4m", "--mp4-preset", "veryfast"),
                    "applies to .mp4 output only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.mp4", "fast.mp4"]


def test_gpu_noise_on_the_cpu_decodes_the_formats_stream(cli, tmp_path):
    """--gpu-noise draws the noise where the model runs: on the CPU that is the format's own stream."""
    plain, on_device = tmp_path / "plain.y4m", tmp_path / "device.y4m"
    assert cli("decode", DATA / "reference.odva", "-o", plain, "--device", "cpu").exit_code == 0
    result = cli("decode", DATA / "reference.odva", "-o", on_device, "--device", "cpu", "--gpu-noise")
    assert result.exit_code == 0, result.output
    assert on_device.read_bytes() == plain.read_bytes()


def test_info_json_is_typed_and_documented(cli):
    """Numbers as numbers, the chunks as a list, and exactly the keys docs/format.md documents."""
    import json
    import re
    result = cli("info", DATA / "reference.odva", "--json")
    data = json.loads(result.stdout)
    assert data["schema"] == "odva-info/3" and data["frames"] == 20 and data["chunk_count"] == 2
    assert (data["width"], data["height"], data["fps"]["numerator"], data["fps"]["denominator"]) == (48, 40, 25, 1)
    assert isinstance(data["bitrate_bps"], float) and isinstance(data["bytes"], int)
    assert [c["index"] for c in data["chunks"]] == [0, 1]
    assert all(isinstance(k, int) for k in data["chunks"][0]["kept_1d_tokens"])
    assert data["rate"] == {"mode": "quality", "quality": 0.5, "adaptive": True}
    documented = (DATA.parent.parent / "docs" / "format.md").read_text().split("## odva info --json")[1]
    keys = set(re.findall(r"^\| `([a-z_0-9.\[\]]+)` \|", documented, flags=re.M))

    def flat(value, prefix=""):
        for key, inner in value.items():
            yield prefix + key
            if isinstance(inner, dict) and key not in ("rate", "audio"):
                yield from flat(inner, prefix + key + ".")
    chunk_keys = {f"chunks[].{key}" for key in data["chunks"][0]}
    assert chunk_keys == {"chunks[].index", "chunks[].first_frame", "chunks[].frames", "chunks[].bytes",
                          "chunks[].latent_bytes", "chunks[].kept_1d_tokens", "chunks[].motion", "chunks[].rate_point"}
    assert set(flat(data)) | chunk_keys == keys


def test_truncated_file(cli, tmp_path):
    damaged = tmp_path / "t.odva"
    damaged.write_bytes((DATA / "reference.odva").read_bytes()[:-40])
    _one_line_error(cli("decode", damaged, "-o", tmp_path / "r.mp4"), "truncated")
    assert not (tmp_path / "r.mp4").exists()


def test_bit_flipped_file(cli, tmp_path):
    data = bytearray((DATA / "reference.odva").read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged = tmp_path / "f.odva"
    damaged.write_bytes(bytes(data))
    _one_line_error(cli("info", damaged), "damaged")
    _one_line_error(cli("decode", damaged, "-o", tmp_path / "r.mp4"), "damaged")
    assert list(tmp_path.iterdir()) == [damaged]


def test_unknown_version(cli, tmp_path):
    data = bytearray((DATA / "reference.odva").read_bytes())
    data[4] = 9
    (tmp_path / "v.odva").write_bytes(bytes(data))
    _one_line_error(cli("decode", tmp_path / "v.odva", "-o", tmp_path / "r.mp4"), "version 9")


def test_non_video_input(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not a video\n" * 10)
    _one_line_error(cli("encode", tmp_path / "notes.txt", "-o", tmp_path / "o.odva"), "not a video")
    _one_line_error(cli("encode", tmp_path / "missing.mp4", "-o", tmp_path / "o.odva"), "does not exist")
    assert not (tmp_path / "o.odva").exists()


def test_zero_frames(cli, tmp_path):
    empty = tmp_path / "empty.y4m"  # a valid header and no frame
    with av.open(str(empty), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    _one_line_error(cli("encode", empty, "-o", tmp_path / "o.odva"), "no frames")
    assert not (tmp_path / "o.odva").exists()


def test_wrong_model(cli, tmp_path):
    other = tmp_path / "other_model"
    make_tiny_model(other, seed=1)
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.mp4", "--weights", other),
                    "encoded with model tiny-")
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.mp4", "--weights", tmp_path),
                    "not a model folder")
    assert not (tmp_path / "r.mp4").exists()


def test_missing_default_weights_say_so(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("ODVA_WEIGHTS", str(tmp_path / "nothing"))
    clip = write_video(tmp_path / "c.mp4", synthetic_clip(5, 32, 32))
    _one_line_error(cli("encode", clip, "-o", tmp_path / "o.odva"), "no trained weights in")


def test_existing_output_needs_force(cli, tmp_path):
    target = tmp_path / "rec.mp4"
    target.write_bytes(b"precious")
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", target), "--force")
    assert target.read_bytes() == b"precious"
    assert cli("decode", DATA / "reference.odva", "-o", target, "--force", "-q").exit_code == 0
    assert target.stat().st_size > 8


def test_bad_options(cli, tmp_path):
    clip = write_video(tmp_path / "c.mp4", synthetic_clip(5, 32, 32))
    _one_line_error(cli("encode", clip, "-o", tmp_path / "o.odva", "--bitrate", "1k", "--quality", "0.5"),
                    "not both")
    _one_line_error(cli("encode", clip, "-o", tmp_path / "o.odva", "--bitrate", "1k"), "bitrate too low")
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.avi"), "use a .mp4, .mkv or .y4m")
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.mp4", "--frames", "5:500"),
                    "outside the video")
    _one_line_error(cli("encode", clip, "-o", tmp_path / "o.mp4"), "writes an .odva file, not .mp4: name it o.odva")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]
    assert cli("encode", clip, "-o", tmp_path / "o.mp4", "--force", "-q").exit_code == 0  # a name the user chose


@pytest.mark.parametrize("args,message", [
    (["encode", "c.mp4", "-o", "o.odva", "--bitrate", "abc"], "cannot read bitrate 'abc'"),
    (["encode", "c.mp4", "-o", "o.odva", "--bitrate", "0"], "bitrate must be positive"),
    (["decode", "r.odva", "-o", "r.mkv", "--frames", "20:5"], "END must be after START"),
    (["decode", "r.odva", "-o", "r.mkv", "--frames", "a:b"], "write it as START:END"),
    (["bench", "c.mp4", "-o", "b", "--bitrates", "1k,x"], "cannot read bitrate 'x'"),
])
def test_option_values_that_cannot_be_read_are_usage_errors(args, message):
    """Exit code 2 with the usage line, as for every usage error (README), checked before any file is read."""
    stdout, stderr = _odva(*args).communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("Usage: odva") and lines[-1].startswith("Error: Invalid value"), stderr
    assert message in lines[-1] and "Traceback" not in stderr


@pytest.mark.parametrize("command", ["encode", "decode", "info", "compare", "bench", None])
def test_help_names_arguments_and_values_plainly(cli, command):
    """No type placeholders: INPUT, not {INPUT} or INPUT <path>; --force, not --force <bool>."""
    result = cli(*([command] if command else []), "--help")
    assert result.exit_code == 0
    for placeholder in ("{", "<bool>", "<path>", "<str>", "<int", "<float", "<list"):
        assert placeholder not in result.stdout, (placeholder, result.stdout)


def test_interrupt_leaves_no_output(cli, monkeypatch, tmp_path):
    from onedva_codec import codec

    def interrupted(model, engine, reader, *args):
        yield next(iter(()), None) or (_ for _ in ()).throw(KeyboardInterrupt)

    monkeypatch.setattr(codec, "decode_frames", interrupted)
    result = cli("decode", DATA / "reference.odva", "-o", tmp_path / "r.mp4")
    _one_line_error(result, "interrupted", code=130)
    assert list(tmp_path.iterdir()) == []


def test_installed_command_runs_without_traceback(tmp_path):
    """The real entry point, in a subprocess, as a shell user runs it."""
    env = {"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"}
    odva = [sys.executable, "-m", "onedva_codec"]
    ok = subprocess.run(odva + ["info", str(DATA / "reference.odva")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "chunks" in ok.stdout
    bad = subprocess.run(odva + ["decode", str(tmp_path / "nope.odva"), "-o", str(tmp_path / "r.mp4")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"odva: error: {tmp_path / 'nope.odva'} does not exist"


def _odva(*args, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """The real `odva` process (the same entry point as the installed command), with the tiny model
    unless `env` says otherwise."""
    env = env or {"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-m", "onedva_codec", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_usage_errors_are_short_and_exit_2(tmp_path):
    for args in (["encode", "x.mp4", "-o", "y.odva", "--quality", "2"], ["decode", "x.odva", "-o", "y.mp4",
                                                                           "--steps", "10000"]):
        stdout, stderr = _odva(*args).communicate(timeout=60)
        lines = stderr.strip().splitlines()
        assert lines[0].startswith("Usage: odva") and lines[-1].startswith("Error: Invalid value"), stderr
        assert len(lines) <= 4 and "╭" not in stderr and "Traceback" not in stderr


def test_decode_refuses_to_overwrite_its_input(cli, tmp_path):
    coded = tmp_path / "clip.mkv"  # an .odva file with a video's name
    coded.write_bytes((DATA / "reference.odva").read_bytes())
    _one_line_error(cli("decode", coded, "-o", coded, "--force"), "overwrite the input")
    assert coded.read_bytes() == (DATA / "reference.odva").read_bytes()


def test_an_unwritable_folder_is_a_clean_error(cli, tmp_path):
    """/sys refuses new files even to root."""
    _one_line_error(cli("decode", DATA / "reference.odva", "-o", "/sys/odva-test.y4m"), "cannot write /sys/odva-test")


@pytest.fixture(scope="module")
def slow_decode(tmp_path_factory):
    """An .odva file that takes the tiny model many seconds to decode at 100 steps."""
    folder = tmp_path_factory.mktemp("slow")
    clip = write_video(folder / "long.mp4", synthetic_clip(170, 64, 64, seed=4))
    subprocess.run([sys.executable, "-m", "onedva_codec", "encode", str(clip), "-o", str(folder / "long.odva"),
                    "-q"], env={"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"}, check=True)
    return folder / "long.odva"


def _signal_during_decode(coded, out, signals, delay: float = 0.0):
    process = _odva("decode", coded, "-o", out, "--steps", "100", "--device", "cpu")
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.*.part")):  # the output is being written
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(delay)
    for number in signals:
        process.send_signal(number)
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


@pytest.mark.parametrize("signals,code", [([signal.SIGTERM], 143), ([signal.SIGHUP], 129),
                                          ([signal.SIGINT, signal.SIGINT], 130)])
def test_a_signal_during_decode_ends_cleanly(slow_decode, tmp_path, signals, code):
    returncode, stderr = _signal_during_decode(slow_decode, tmp_path / "rec.mkv", signals, delay=0.3)
    assert returncode == code, stderr
    assert stderr.strip().count("\n") == 0 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert "terminate called" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor its .part


def test_ctrl_c_while_starting_up_is_one_line(tmp_path):
    process = _odva("info", DATA / "reference.odva")
    time.sleep(0.15)  # torch and friends are still loading
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, 130), stderr  # 0 if it won the race
    assert "Traceback" not in stderr and stderr.strip().count("\n") == 0, stderr


@pytest.mark.parametrize("weights,reference,frames", [(TINY_MODEL, "reference.odva", 20),
                                                      (TINY_V3_MODEL, "reference_v3.odva", 20),
                                                      (TINY_V3T_MODEL, "reference_v3t.odva", 40)])
def test_pipes_carry_yuv4mpeg2_both_ways(tmp_path, weights, reference, frames):
    """odva decode -o - | odva encode -: the pipe carries the very bytes of a .y4m file, and nothing else
    (with a v1/v2 model, a v3 one and one whose chunks depend on the one before, the v3 pipes at a bitrate)."""
    reference = DATA / reference
    env = {"ODVA_WEIGHTS": str(weights), "PATH": "/usr/bin:/bin"}
    assert _odva("decode", reference, "-o", tmp_path / "file.y4m", env=env).wait(timeout=60) == 0
    odva = f"{sys.executable} -m onedva_codec"
    rate = "--bitrate 16k" if weights in (TINY_V3_MODEL, TINY_V3T_MODEL) else ""
    pipeline = (f"{odva} decode {reference} -o - 2>{tmp_path}/decode.log | tee {tmp_path}/piped.y4m | "
                f"{odva} encode - -o {tmp_path}/p.odva {rate}")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "piped.y4m").read_bytes() == (tmp_path / "file.y4m").read_bytes()
    assert f"wrote standard output: {frames} frames" in (tmp_path / "decode.log").read_text()
    from onedva_codec import read_info
    assert read_info(tmp_path / "p.odva").header.frames == frames


def test_a_yuv4mpeg2_stream_cut_inside_a_frame_is_told(tmp_path):
    """A pipe that stops mid-frame: the whole frames before it are encoded, and the user is told."""
    assert _odva("decode", DATA / "reference.odva", "-o", tmp_path / "file.y4m").wait(timeout=60) == 0
    stream = (tmp_path / "file.y4m").read_bytes()
    frame = 6 + 48 * 40 * 3  # "FRAME\n" and a 4:4:4 frame of 48 x 40
    header = stream.index(b"\n") + 1
    cut = stream[: header + 13 * frame + 1000]
    done = subprocess.run([sys.executable, "-m", "onedva_codec", "encode", "-", "-o", str(tmp_path / "c.odva")],
                          input=cut, capture_output=True, timeout=120,
                          env={"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"})
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "ended inside frame 14 (1000 of its bytes came); the 13 whole frame(s) before it were encoded" in stderr
    from onedva_codec import read_info
    assert read_info(tmp_path / "c.odva").header.frames == 13
    whole = subprocess.run([sys.executable, "-m", "onedva_codec", "encode", "-", "-o", str(tmp_path / "w.odva")],
                           input=stream[: header + 13 * frame], capture_output=True, timeout=120,
                           env={"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"})
    assert whole.returncode == 0 and b"note" not in whole.stderr, whole.stderr


def test_a_reader_that_quits_ends_the_decode_cleanly(slow_decode):
    process = subprocess.Popen(f"{sys.executable} -m onedva_codec decode {slow_decode} -o - | head -c 1000 >/dev/null",
                               shell=True, stderr=subprocess.PIPE, text=True,
                               env={"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"})
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in stderr and "Exception" not in stderr, stderr
    assert "the output pipe was closed after" in stderr


def test_standard_input_that_is_not_yuv4mpeg2_is_one_line(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "onedva_codec", "encode", "-", "-o", str(tmp_path / "x.odva")],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={"ODVA_WEIGHTS": str(TINY_MODEL), "PATH": "/usr/bin:/bin"})
    _, stderr = process.communicate(b"not a video at all", timeout=60)
    assert process.returncode == 1 and stderr.decode().count("\n") == 1 and b"YUV4MPEG2" in stderr, stderr
    assert list(tmp_path.iterdir()) == []


def test_help_usage_errors_and_info_answer_without_loading_torch():
    """Only commands that run a model import torch (over a second on two cores): --help, a usage error
    and `odva info` answer at once."""
    script = ("import sys; from typer.testing import CliRunner; from onedva_codec.cli import app\n"
              "codes = [CliRunner().invoke(app, args).exit_code for args in\n"
              "         (['--help'], ['decode'], ['info', sys.argv[1]])]\n"
              "print(codes, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script, str(DATA / "reference.odva")], capture_output=True,
                         text=True, check=True)
    assert run.stdout.split("\n")[0] == "[0, 2, 0] False"


@pytest.fixture(scope="module")
def shipped_decode(tmp_path_factory):
    """The sample clip coded by the shipped model, whose model calls take seconds on a CPU."""
    coded = tmp_path_factory.mktemp("shipped") / "sample.odva"
    subprocess.run([sys.executable, "-m", "onedva_codec", "encode", str(SAMPLE), "-o", str(coded), "-q"],
                   env={"PATH": "/usr/bin:/bin"}, check=True, timeout=300)
    return coded


@pytest.mark.parametrize("number,devices", [(signal.SIGTERM, "cpu"), (signal.SIGINT, "cpu"),
                                            (signal.SIGINT, "cpu,cpu")])
def test_a_signal_ends_a_long_decode_within_a_second(shipped_decode, tmp_path, number, devices):
    """A service manager's SIGTERM or a user's Ctrl-C, in the middle of model calls that take seconds each,
    ends the command at once (not when the chunk in flight is done), cleanly and with nothing left behind."""
    out = tmp_path / "rec.mkv"
    process = subprocess.Popen([sys.executable, "-m", "onedva_codec", "decode", str(shipped_decode), "-o", str(out),
                                "--steps", "100", "--device", devices], env={"PATH": "/usr/bin:/bin"}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(f".{out.name}.*.part")):  # the output is open: the model is at work
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(2.0)  # well into a model call (about 3 s each here)
    signalled = time.monotonic()
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert process.returncode == 128 + number and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert took < 1.5, f"{took:.1f} s from the signal to the end"
    assert list(tmp_path.iterdir()) == []

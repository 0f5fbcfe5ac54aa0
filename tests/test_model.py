"""The network and the sampler: shapes, budgets and the flow-matching contract."""

import torch

from onedva_codec.config import CONFIGS, ModelConfig
from onedva_codec.model import Latents, OneDVA, attention, count_parameters, geometry_features
from onedva_codec.sampler import euler_sample


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


def test_shipped_size_fits_30_mib_in_bf16():
    assert count_parameters(OneDVA(CONFIGS["s"])) * 2 <= 30 * 2**20


def test_attention_matches_softmax_attention():
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    assert torch.allclose(attention(q, k, v), reference, atol=1e-5)


def test_euler_follows_a_straight_flow_exactly():
    """For x_t = (1 - t) x0 + t eps the velocity eps - x0 is constant: any step count lands on x0."""
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    for steps in (1, 3, 8):
        assert torch.allclose(euler_sample(lambda x, t: eps - x0, eps, steps), x0, atol=1e-5)


def test_one_step_from_pure_noise_is_the_clean_prediction():
    """A single Euler step from t = 1 returns exactly what the decoder predicts: the stage-1 decoder."""
    cfg = CONFIGS["tiny"]
    model = _untrained_but_wired(cfg)
    video, geometry = _inputs(cfg, 1)
    post = model.encode(video, geometry)
    latents = Latents(post.structural_mean, post.tokens_1d_mean, torch.ones(1, cfg.max_1d_tokens, dtype=torch.bool))
    noise = torch.randn_like(video)
    with torch.no_grad():
        sampled = euler_sample(lambda x, t: model.velocity(x, t, latents), noise, 1)
        predicted = model.predict_clean(noise, torch.ones(1), latents)
    assert torch.allclose(sampled, predicted, atol=1e-5)

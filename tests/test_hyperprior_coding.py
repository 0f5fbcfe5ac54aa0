"""v3's shipped entropy model (bitstream/hyperprior_coding.py): the exact integer hyper decoder, its tables
and the range coding of a tile."""

import numpy as np
import pytest
import torch

from onedva_codec.bitstream.hyperprior_coding import (MEAN_STEPS, SCALE_MIN, HyperpriorTables, IntegerHyperDecoder,
                                                      scale_index_step)
from onedva_codec.errors import FormatError
from onedva_codec.model.config import CONFIGS
from onedva_codec.model.folder import tile_coder
from onedva_codec.model.network import OneDVA


def _predicting(config: str, seed: int):
    """A tiny v3 model's hyperprior whose last layers (and temporal convolution) predict something, and its
    export."""
    torch.manual_seed(seed)
    hp = OneDVA(CONFIGS[config]).hyperprior
    with torch.no_grad():
        torch.nn.init.normal_(hp.hyper_decoder[-1].weight, std=0.05)
        torch.nn.init.normal_(hp.hyper_decoder[-1].bias, std=0.5)
        if hp.temporal is not None:
            torch.nn.init.normal_(hp.temporal.weight, std=0.05)
        hp.hyper_log_scale.fill_(1.0)
    decoder = IntegerHyperDecoder.from_float(hp.hyper_decoder[0], hp.hyper_decoder[-1], 8, hp.temporal)
    return hp, HyperpriorTables.build(decoder, hp.hyper_log_scale.exp().detach().numpy())


@pytest.fixture(scope="module")
def trained_like():
    return _predicting("tiny-v3", seed=0)


def _z(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(-4, 5, (batch, CONFIGS["tiny-v3"].hyper_channels, 2, 2),
                         generator=torch.Generator().manual_seed(seed))


def test_the_integer_hyper_decoder_follows_the_float_one(trained_like):
    hp, tables = trained_like
    z = _z(8)
    mean, index = map(torch.from_numpy, tables.decoder(z.numpy()))
    with torch.no_grad():
        float_mean, float_log_scale = hp.parameters_from(z.float())
    assert (mean / MEAN_STEPS - float_mean).abs().max() < 0.05
    float_index = ((float_log_scale - np.log(SCALE_MIN)) / scale_index_step()).round().clamp(0, 63)
    assert (float_index != index).float().mean() < 0.02  # a value that lies on a rounding edge may go either way


def test_the_integer_hyper_decoder_gives_each_tile_the_same_numbers_in_any_batch(trained_like):
    _, tables = trained_like
    z = _z(6, seed=1).numpy()
    mean, index = tables.decoder(z)
    for i in range(6):
        one_mean, one_index = tables.decoder(z[i:i + 1])
        assert np.array_equal(one_mean[0], mean[i]) and np.array_equal(one_index[0], index[i])
    assert mean.dtype == np.int64 and index.dtype == np.int64


def _tile(tables: HyperpriorTables, seed: int):
    rng = np.random.default_rng(seed)
    z = _z(1, seed)[0].numpy()
    coder = tile_coder(tables, CONFIGS["tiny-v3"])
    mean, index = coder.predict(z)
    scale = np.exp(np.log(SCALE_MIN) + index * scale_index_step())
    y = np.clip(np.round(rng.normal(size=mean.shape) * scale), -127, 127).astype(np.int64)
    kept = coder.kept_planes(int(rng.integers(0, CONFIGS["tiny-v3"].max_1d_tokens)))
    return coder, z, y, mean, index, kept


def _bits(tables: np.ndarray, which: np.ndarray, symbols: np.ndarray) -> float:
    """Ideal code length of `symbols`, each under row `which` of `tables`."""
    return float(-np.log2(tables[which, symbols + 127] / 2**24).sum())


def test_a_tile_round_trips_in_about_its_ideal_size(trained_like):
    _, tables = trained_like
    for seed in range(3):
        coder, z, y, mean, index, kept = _tile(tables, seed)
        data = coder.encode_symbols(z, y, index, kept)
        z2, y2, mean2 = coder.decode_symbols(data, z.shape, kept)
        assert np.array_equal(z2, z) and np.array_equal(y2[kept], y[kept]) and np.array_equal(mean2, mean)
        assert not y2[~kept].any()
        ideal = (_bits(tables.y_tables, index[kept], y[kept])
                 + _bits(tables.z_tables, np.arange(len(z)).repeat(z[0].size), z.ravel())) / 8
        assert ideal <= len(data) <= ideal + 8


def test_damaged_tile_data_is_a_format_error(trained_like):
    _, tables = trained_like
    coder, z, y, _, index, kept = _tile(tables, 5)
    data = coder.encode_symbols(z, y, index, kept)
    with pytest.raises(FormatError, match="whole 32-bit words"):
        coder.decode_symbols(data[:-1], z.shape, kept)
    with pytest.raises(FormatError):
        coder.decode_symbols(data + bytes(4 * 64), z.shape, kept)


def test_tables_save_and_load_with_their_identity(trained_like, tmp_path):
    _, tables = trained_like
    tables.save(tmp_path / "prior.safetensors")
    loaded = HyperpriorTables.load(tmp_path / "prior.safetensors")
    assert loaded.sha256 == tables.sha256
    z = _z(2, seed=3).numpy()
    assert all(np.array_equal(a, b) for a, b in zip(loaded.decoder(z), tables.decoder(z)))


@torch.no_grad()
def test_the_values_a_tile_restores_are_the_models_own_rounding(trained_like):
    """What the codec sends and restores (numpy, integer hyper decoder) is what the model's rounding gives
    (torch, float hyper decoder), up to the means' 1/16 steps, for every kept value, and 0 elsewhere."""
    hp, tables = trained_like
    torch.manual_seed(1)
    model = OneDVA(CONFIGS["tiny-v3"]).eval()
    model.hyperprior.load_state_dict(hp.state_dict())
    coder = tile_coder(tables, model.cfg)
    structural = torch.randn(1, model.cfg.structural_tokens, model.cfg.latent_channels) * 3
    tokens_1d = torch.randn(1, model.cfg.max_1d_tokens, model.cfg.latent_channels) * 3
    kept = 23
    y = hp.to_grid(structural, tokens_1d, model.decoder.home_slot)
    keep = torch.arange(model.cfg.max_1d_tokens)[None] < kept
    mask = hp.to_grid(torch.ones_like(structural), keep[..., None].float().expand_as(tokens_1d),
                      model.decoder.home_slot)[0].numpy() > 0
    assert np.array_equal(mask, coder.kept_planes(kept))
    z = torch.round(hp.hyper_encoder(y * torch.from_numpy(mask))).numpy()[0].astype(np.int64)
    restored = coder.decode(coder.encode(z, y[0].numpy(), kept), kept)
    mean, _ = hp.parameters_from(torch.from_numpy(z[None]).float())
    expected = (torch.round(y - mean) + mean)[0].numpy()
    assert np.abs(restored - expected)[mask].max() <= 1.05  # near a rounding edge a value may take the next step
    assert np.mean(np.abs(restored - expected)[mask] < 0.05) > 0.95
    assert not restored[~mask].any()


def test_the_integer_hyper_decoder_gives_the_same_numbers_whatever_sums_them(trained_like, tmp_path):
    """Exact by construction (integer products and sums below 2**53): numpy's BLAS with one thread or
    two, and torch's own float64 matrix product (another library, another order of summation) agree bit
    for bit, as a GPU's would."""
    import subprocess
    import sys
    _, tables = trained_like
    tables.save(tmp_path / "prior.safetensors")
    z = _z(4, seed=7).numpy()
    np.save(tmp_path / "z.npy", z)
    script = ("import sys, numpy as np\n"
              "from onedva_codec.bitstream.hyperprior_coding import HyperpriorTables\n"
              "t = HyperpriorTables.load(sys.argv[1])\n"
              "mean, index = t.decoder(np.load(sys.argv[2]))\n"
              "np.save(sys.argv[3], np.stack([mean, index]))\n")
    for threads in ("1", "2"):
        env = {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "prior.safetensors"), str(tmp_path / "z.npy"),
                        str(tmp_path / f"out{threads}.npy")], check=True, env=env, timeout=120)
    one, two = np.load(tmp_path / "out1.npy"), np.load(tmp_path / "out2.npy")
    assert np.array_equal(one, two)

    def torch_conv(conv, x):  # the same integer layer through torch's float64 product
        columns = torch.nn.functional.unfold(torch.from_numpy(x), kernel_size=3, padding=1)
        weight = torch.from_numpy(conv.weight.reshape(len(conv.weight), -1).astype(np.float64))
        out = weight @ columns + torch.from_numpy(conv.bias.astype(np.float64))[:, None]
        return out.reshape(x.shape[0], -1, *x.shape[2:]).numpy()

    d = tables.decoder
    acc = torch_conv(d.first, z.astype(np.float64))
    assert np.array_equal(acc, d.first(z.astype(np.float64)))
    hidden = np.clip(np.floor(acc * np.exp2(d.activation_exponent - d.first.exponent)[:, None, None] + 0.5), 0,
                     2**15 - 1)
    hidden = torch.nn.functional.pixel_shuffle(torch.from_numpy(hidden), 2).numpy()
    assert np.array_equal(torch_conv(d.second, hidden), d.second(hidden))
    assert np.array_equal(one, np.stack(d(z)))


@pytest.fixture(scope="module")
def temporal_like():
    return _predicting("tiny-v3t", seed=1)


def test_the_temporal_prior_in_integers_follows_the_float_one_and_round_trips(temporal_like, tmp_path):
    hp, tables = temporal_like
    cfg = CONFIGS["tiny-v3t"]
    z = _z(4, seed=2)
    previous = np.round(np.random.default_rng(3).normal(0, 6, (4, hp.planes, 4, 4)) * MEAN_STEPS) / MEAN_STEPS
    mean, index = map(torch.from_numpy, tables.decoder(z.numpy(), np.round(previous * MEAN_STEPS)))
    with torch.no_grad():
        float_mean, float_log_scale = hp.parameters_from(z.float(), torch.from_numpy(previous).float())
    assert (mean / MEAN_STEPS - float_mean).abs().max() < 0.1
    float_index = ((float_log_scale - np.log(SCALE_MIN)) / scale_index_step()).round().clamp(0, 63)
    assert (float_index != index).float().mean() < 0.03
    alone, _ = tables.decoder(z.numpy())
    assert not np.array_equal(alone, mean.numpy())  # the previous chunk moves the prediction
    tables.save(tmp_path / "prior.safetensors")
    loaded = HyperpriorTables.load(tmp_path / "prior.safetensors")
    assert loaded.sha256 == tables.sha256 and loaded.decoder.temporal is not None
    coder = tile_coder(loaded, cfg)
    y = np.random.default_rng(4).normal(0, 3, (hp.planes, 4, 4))
    data, restored = coder.encode_restoring(z[0].numpy(), y, 5, previous[0].astype(np.float32))
    assert np.array_equal(coder.decode(data, 5, previous[0].astype(np.float32)), restored)
    try:  # decoded after another previous chunk, the values come out otherwise, or not at all
        wrong = coder.decode(data, 5, None)
    except FormatError:
        wrong = None
    assert wrong is None or not np.array_equal(wrong, restored)

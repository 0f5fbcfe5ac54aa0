"""Time one decoder call (`velocity`) on a batch of tiles, plain against torch.compile in several
modes, and check that each compiled model gives the same output twice. GPU only.

    python scripts/model_speed.py --weights weights --batch 16 32
    python scripts/model_speed.py --modes default --runs 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from onedva_codec.model.folder import load_model
from onedva_codec.model.network import Latents

MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="model folder (default: the shipped weights)")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("model_speed.py needs a CUDA GPU")
    device = torch.device("cuda")
    loaded = load_model(args.weights, device)
    model, cfg = loaded.model.to(device).eval(), loaded.card.config
    print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, {cfg.name}")
    for batch in args.batch:
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(batch, 3, cfg.frames, cfg.tile, cfg.tile, device=device, generator=generator)
        s, n = cfg.structural_tokens, cfg.max_1d_tokens
        values = torch.randn(batch, s + n, cfg.latent_channels, device=device, generator=generator)
        latents = Latents(values[:, :s], values[:, s:], Latents.keep_mask(torch.full((batch,), n, device=device), n))
        t = torch.full((batch,), 0.7, device=device)

        def caller(velocity):
            def call() -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    return velocity(x, t, latents).clone()
            return call

        plain = caller(model.velocity)
        reference = plain()
        variants = [("plain", plain)] + [(mode, caller(torch.compile(model.velocity, mode=mode, dynamic=False)))
                                         for mode in args.modes]
        for name, call in variants:
            start = time.perf_counter()
            first = call()
            torch.cuda.synchronize()
            compile_s = time.perf_counter() - start
            same = torch.equal(first, call())
            times = []
            for _ in range(args.runs):
                torch.cuda.synchronize()
                start = time.perf_counter()
                call()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            ms = statistics.median(times) * 1e3
            diff = (first.float() - reference.float()).abs().max().item()
            print(f"batch {batch:3d}  {name:28s} {ms:7.2f} ms a call  {ms / batch:6.3f} ms a tile  "
                  f"first call {compile_s:6.1f} s  same output twice: {same}  max |plain - this| {diff:.4f}")


if __name__ == "__main__":
    main()

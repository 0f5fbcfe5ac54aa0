"""v3 design probe: a rate-distortion trained wide latent with a hyperprior, decoder variants side by side.

A plain ViT autoencoder of v2's shape (4 x 16 x 16 encoder patches, one latent token of C channels per
patch, 5 x 16 x 16 tokens a 256 x 256 chunk), trained on lambda x MSE + bits for a fixed wall-clock
budget, one rate point per sample (a gain vector per rate point scales the latent before rounding, as
one model for every rate needs). The bits are the latent's own likelihoods under a Gaussian entropy
model whose mean and scale a small convolutional hyperprior predicts from side information (a
hyper-latent at a quarter of the grid, itself coded under a learned per-channel scale). Training adds
uniform noise for the rate and rounds straight-through for the decoder. The decoder is deterministic
(one step, MSE): what this probe asks is how much detail each decoder variant draws at equal GPU time,
not how diffusion refines it.

    python scripts/v3_probe.py --pack PACK --out OUT/base --variant base --minutes 15

writes OUT/base/result.json: per rate point, held-out bpp (ideal code length with hard rounding, side
information included) and PSNR, the unquantized ceiling, samples/s and steps; with `--eval-every M`,
OUT/base/curve.jsonl holds the same scores every M training minutes (quality against samples seen). `--size 64 --width 64
--depth 1 --minutes 0.2` is a CPU smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from onedva_codec.model.network import (EncoderBlock, patchify, replicate_first_frame, sincos_grid,  # noqa: E402
                                        unpatchify)
from train.clips import StepSampler, TrainClips, validation_clips  # noqa: E402
from train.pack import Pack  # noqa: E402

FRAMES, ENC_TP, PATCH = 17, 4, 16
LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3)  # weight of MSE in 0..255 units against bits per pixel
GAIN_START = (0.5, 0.7, 1.0, 1.4)
VARIANTS = {  # decoder temporal patch, spatial patch, output head
    "base": dict(dec_tp=2, dec_p=16, head="linear"),
    "mlp": dict(dec_tp=2, dec_p=16, head="mlp"),  # a per-token MLP head: no rank limit of width d
    "p8": dict(dec_tp=4, dec_p=8, head="linear"),  # finer decoder tokens: 4x as many, output 384 a token
}
SCALE_MIN = 0.11  # lower bound of a latent's predicted scale (as learned image codecs bound it)


def gaussian_bits(values: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """-log2 of the mass of a unit-wide bin around each value under N(mean, scale)."""
    scale = scale.clamp(min=SCALE_MIN)
    upper = torch.special.ndtr((values - mean + 0.5) / scale)
    lower = torch.special.ndtr((values - mean - 0.5) / scale)
    return -torch.log2((upper - lower).clamp(min=1e-9))


class ProbeCodec(nn.Module):
    def __init__(self, size: int, width: int, depth: int, heads: int, channels: int, hyper: int,
                 dec_tp: int, dec_p: int, head: str):
        super().__init__()
        self.size, self.channels, self.dec_tp, self.dec_p = size, channels, dec_tp, dec_p
        grid, groups = size // PATCH, (FRAMES - 1) // ENC_TP + 1
        self.grid, self.groups = grid, groups
        self.patch_embed = nn.Linear(3 * ENC_TP * PATCH * PATCH, width)
        self.register_buffer("enc_pos", sincos_grid((groups, grid, grid), width), persistent=False)
        self.encoder = nn.ModuleList(EncoderBlock(width, heads, 4.0) for _ in range(depth))
        self.enc_norm = nn.LayerNorm(width)
        self.to_latent = nn.Linear(width, channels)
        # one gain vector per rate point scales the latent before rounding (its inverse after): a larger
        # gain, a finer step; started apart so that the rate points differ from the first step
        start = torch.tensor(GAIN_START)[:, None].expand(-1, channels)
        self.gains = nn.Parameter(start.clone())
        self.inverse_gains = nn.Parameter(1 / start)
        c = groups * channels  # the hyperprior sees every temporal group of a position as channels
        self.hyper_encoder = nn.Sequential(nn.Conv2d(c, hyper * 2, 3, padding=1), nn.GELU(),
                                           nn.Conv2d(hyper * 2, hyper, 4, stride=2, padding=1))
        self.hyper_log_scale = nn.Parameter(torch.zeros(hyper))
        self.hyper_decoder = nn.Sequential(nn.ConvTranspose2d(hyper, hyper * 2, 4, stride=2, padding=1), nn.GELU(),
                                           nn.Conv2d(hyper * 2, 2 * c, 3, padding=1))
        dec_groups, dec_grid = (FRAMES - 1) // dec_tp + 1, size // dec_p
        self.dec_shape = (dec_groups, dec_grid, dec_grid)
        # each decoder token starts from the latent token whose patch holds it
        g = torch.arange(dec_groups) * dec_tp // ENC_TP if dec_tp == ENC_TP else (torch.arange(dec_groups) + 1) // 2
        y = torch.arange(dec_grid) * dec_p // PATCH
        home = (g[:, None, None] * grid + y[None, :, None]) * grid + y[None, None, :]
        self.register_buffer("home", home.flatten(), persistent=False)
        self.from_latent = nn.Linear(channels, width)
        self.register_buffer("dec_pos", sincos_grid(self.dec_shape, width), persistent=False)
        self.decoder = nn.ModuleList(EncoderBlock(width, heads, 4.0) for _ in range(depth))
        self.dec_norm = nn.LayerNorm(width)
        out = 3 * dec_tp * dec_p * dec_p
        self.head = nn.Linear(width, out) if head == "linear" else \
            nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, out))

    def encode(self, video: Tensor) -> Tensor:
        x = self.patch_embed(patchify(replicate_first_frame(video, ENC_TP - 1), ENC_TP, PATCH)) + self.enc_pos
        for block in self.encoder:
            x = block(x)
        return self.to_latent(self.enc_norm(x))  # (B, L, C)

    def decode(self, latent: Tensor) -> Tensor:
        x = self.from_latent(latent)[:, self.home] + self.dec_pos
        for block in self.decoder:
            x = block(x)
        extra = self.dec_tp - 1
        video = unpatchify(self.head(self.dec_norm(x)), self.dec_tp, self.dec_p, FRAMES + extra, self.size, self.size)
        return video[:, :, extra:]

    def _grid(self, latent: Tensor) -> Tensor:
        b = latent.shape[0]
        return latent.reshape(b, self.groups, self.grid, self.grid, self.channels).permute(0, 1, 4, 2, 3).reshape(
            b, self.groups * self.channels, self.grid, self.grid)

    def _tokens(self, grid: Tensor) -> Tensor:
        b = grid.shape[0]
        return grid.reshape(b, self.groups, self.channels, self.grid, self.grid).permute(0, 1, 3, 4, 2).reshape(
            b, -1, self.channels)

    def forward(self, video: Tensor, rate: Tensor, training: bool, quantize: bool = True) -> tuple[Tensor, Tensor]:
        """(decoded video, bits per sample) at each sample's rate point."""
        y = self.encode(video).float() * self.gains[rate][:, None]
        z = self.hyper_encoder(self._grid(y))
        z_hat = z + (torch.rand_like(z) - 0.5) if training else torch.round(z)
        z_scale = self.hyper_log_scale.exp()[None, :, None, None].expand_as(z)
        bits = gaussian_bits(z_hat, torch.zeros_like(z), z_scale).flatten(1).sum(1)
        mean, scale = self.hyper_decoder(z_hat).chunk(2, dim=1)
        mean, scale = self._tokens(mean), self._tokens(F.softplus(scale))
        rounded = torch.round(y - mean) + mean
        if training:
            bits = bits + gaussian_bits(y + (torch.rand_like(y) - 0.5), mean, scale).flatten(1).sum(1)
            y_hat = y + (rounded - y).detach()  # straight through
        else:
            bits = bits + gaussian_bits(rounded, mean, scale).flatten(1).sum(1)
            y_hat = rounded if quantize else y
        return self.decode(y_hat * self.inverse_gains[rate][:, None]), bits


def psnr_per_clip(decoded: Tensor, clips: Tensor) -> Tensor:
    """Mean over frames of each frame's PSNR, 8-bit, (B,)."""
    a = torch.round((decoded.float().clamp(-1, 1) + 1) * 127.5)
    b = torch.round((clips.float() + 1) * 127.5)
    mse = (a - b).pow(2).mean(dim=(1, 3, 4)).clamp(min=1e-10)  # (B, T)
    return (10 * torch.log10(255 ** 2 / mse)).mean(dim=1)


@torch.no_grad()
def evaluate(model: ProbeCodec, clips: Tensor, videos: int, device: torch.device, batch: int = 8) -> dict:
    model.eval()
    pixels = FRAMES * model.size * model.size
    rows = []
    for r in range(len(LAMBDAS)):
        for quantize in ((True, False) if r == len(LAMBDAS) - 1 else (True,)):
            psnrs, bits = [], []
            for start in range(0, len(clips), batch):
                x = clips[start:start + batch].to(device)
                rate = torch.full((len(x),), r, device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    decoded, b = model(x, rate, training=False, quantize=quantize)
                psnrs.append(psnr_per_clip(decoded, x).cpu())
                bits.append(b.cpu())
            psnr, bits = torch.cat(psnrs), torch.cat(bits)
            rows.append({"rate": r, "lambda": LAMBDAS[r], "quantized": quantize,
                         "bpp": float(bits.mean() / pixels), "psnr": float(psnr.mean()),
                         "bpp_videos": float(bits[:videos].mean() / pixels),
                         "psnr_videos": float(psnr[:videos].mean())})
    model.train()
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="base")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--depth", type=int, default=8, help="blocks of the encoder, and of the decoder")
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--hyper", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=float, default=0.0,
                        help="also score the held-out clips every this many training minutes (0: at the end only), "
                             "for quality against samples seen; the time spent scoring is not training time")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    pack = Pack(args.pack)
    val_videos = pack.videos("val")
    clips = validation_clips(val_videos, pack.photos("val"), FRAMES, args.size)
    n_val_videos = 4 * len(val_videos)
    data = TrainClips(pack.videos("train"), pack.photos("train"), FRAMES, args.size, args.seed)
    loader = DataLoader(data, batch_sampler=StepSampler(0, 10**9, args.batch, 0, 1), num_workers=args.workers,
                        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    model = ProbeCodec(args.size, args.width, args.depth, args.heads, args.channels, args.hyper,
                       **VARIANTS[args.variant]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    lambdas = torch.tensor(LAMBDAS, device=device)
    budget, warmup = args.minutes * 60, 200
    log = open(out / "log.jsonl", "w")
    started, step, samples, scored = None, 0, 0, 0.0
    curve = open(out / "curve.jsonl", "w")
    for batch in loader:
        if started is None:  # the clock starts with the first batch: workers' start-up is not training
            started = time.perf_counter()
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            break
        if args.eval_every and elapsed - scored >= args.eval_every * 60:
            pause = time.perf_counter()
            print(json.dumps({"step": step, "samples": samples, "train_seconds": round(elapsed, 1),
                              **evaluate(model, clips, n_val_videos, device)}), file=curve, flush=True)
            started += time.perf_counter() - pause  # scoring is not training time
            scored = elapsed
        progress = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = batch.to(device, non_blocking=True).float() / 127.5 - 1
        rate = torch.randint(0, len(LAMBDAS), (len(x),), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            decoded, bits = model(x, rate, training=True)
        mse = ((decoded.float() - x) * 127.5).pow(2).mean(dim=(1, 2, 3, 4))
        bpp = bits / (FRAMES * args.size * args.size)
        loss = (lambdas[rate] * mse + bpp).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step, samples = step + 1, samples + len(x)
        if step % 100 == 0:
            print(json.dumps({"step": step, "seconds": round(elapsed, 1), "loss": loss.item(), "lr": lr,
                              "mse": mse.mean().item(), "bpp": bpp.mean().item()}), file=log, flush=True)
    seconds = time.perf_counter() - started
    result = {"variant": args.variant, **VARIANTS[args.variant], "args": vars(args),
              "parameters": sum(p.numel() for p in model.parameters()), "steps": step,
              "train_seconds": seconds, "samples_per_second": samples / seconds,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              **evaluate(model, clips, n_val_videos, device)}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    torch.save(model.state_dict(), out / "model.pt")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

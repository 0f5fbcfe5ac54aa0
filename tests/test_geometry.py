"""Chunking and tiling: every size in, the same size out; tiled equals untiled on one tile."""

import numpy as np
import pytest
import torch
from helpers import synthetic_clip

from onedva_codec.bitstream.noise import unit_noise
from onedva_codec.model.network import Latents, geometry_features
from onedva_codec.model.sampler import sample
from onedva_codec.model.schedule import DecodingSchedule
from onedva_codec.video.geometry import TileGrid, chunk_frames
from onedva_codec.video.pixels import model_to_video, video_to_model


@pytest.mark.parametrize("length", [1, 16, 17, 18, 40])
def test_chunks_cover_every_frame_once(length):
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(length)]
    chunks = list(chunk_frames(((f, False) for f in frames), 17))
    assert sum(real for _, real in chunks) == length
    assert all(chunk.shape == (17, 2, 2, 3) for chunk, _ in chunks)
    last, real = chunks[-1]
    assert (last[real:] == length - 1).all()  # padded by repeating the last frame
    given = []

    def allocate(shape):
        given.append(torch.zeros(shape, dtype=torch.uint8))
        return given[-1]

    # into the memory the caller gives
    stacked = [chunk for chunk, _ in chunk_frames(((f, False) for f in frames), 17, allocate)]
    assert len(stacked) == len(given) and all(chunk is mine for chunk, mine in zip(stacked, given))
    assert all(torch.equal(chunk, mine) for (chunk, _), mine in zip(chunks, given))


@pytest.mark.parametrize("height,width", [(32, 32), (20, 27), (33, 32), (45, 70), (100, 31), (64, 200)])
def test_split_then_merge_returns_the_frame(height, width):
    grid = TileGrid.plan(height, width, tile=32, overlap=8)
    video = synthetic_clip(5, height, width, seed=1)
    assembler = grid.assembler()
    for tile in grid.split(video):
        assert tile.shape == (5, 32, 32, 3)
        assembler.add(video_to_model(tile))
    assert assembler.done and np.array_equal(assembler.frames, video)
    # a tensor (as encoding cuts tiles where the model runs) gives the same tiles
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(grid.split(video), grid.split(torch.from_numpy(video))))


def test_assembling_row_by_row_equals_blending_the_whole_frame():
    """Disagreeing tiles (3 tile rows meet in some pixels): the streamed blend is the whole-frame
    weighted mean, to the level."""
    grid = TileGrid.plan(79, 70, tile=32, overlap=8)
    tiles = torch.rand(grid.count, 3, 2, 32, 32) * 2 - 1
    assembler = grid.assembler()
    for tile in tiles:
        assembler.add(tile)
    total = torch.zeros(grid.padded_size)
    blended = torch.zeros(3, 2, *grid.padded_size)
    for tile, (y, x) in zip(tiles, [(y, x) for y in grid.ys for x in grid.xs]):
        wy = torch.ones(32)
        wy[:8] = wy[:8] if y == 0 else (torch.arange(8) + 0.5) / 8
        wy[-8:] = wy[-8:] if y + 32 >= 79 else ((torch.arange(8) + 0.5) / 8).flip(0)
        wx = torch.ones(32)
        wx[:8] = wx[:8] if x == 0 else (torch.arange(8) + 0.5) / 8
        wx[-8:] = wx[-8:] if x + 32 >= 70 else ((torch.arange(8) + 0.5) / 8).flip(0)
        weight = wy[:, None] * wx[None]
        blended[..., y:y + 32, x:x + 32] += tile * weight
        total[y:y + 32, x:x + 32] += weight
    assert np.array_equal(assembler.frames, model_to_video(blended / total)[:, :79, :70])


def test_neighbouring_tiles_overlap_by_at_least_the_minimum():
    grid = TileGrid.plan(1080, 1920, tile=256, overlap=64)
    for origins in (grid.ys, grid.xs):
        assert origins[0] == 0
        gaps = np.diff(origins)
        assert (256 - gaps >= 64 - 1).all()  # rounding may take one pixel
    assert grid.ys[-1] == 1080 - 256 and grid.xs[-1] == 1920 - 256


def test_blending_hides_a_seam_between_disagreeing_tiles():
    grid = TileGrid.plan(32, 56, tile=32, overlap=8)
    assembler = grid.assembler()
    for level in (-1.0, 1.0):
        assembler.add(torch.full((3, 1, 32, 32), level))
    row = assembler.frames[0, 0, :, 0].astype(int)
    steps = row[1:] - row[:-1]
    assert row[0] == 0 and row[-1] == 255
    assert steps.min() >= 0 and steps.max() <= 255 / 8 + 1  # a ramp across the 8-pixel overlap, not a jump


@pytest.mark.parametrize("height,width", [(32, 32), (24, 19)])
def test_tiled_decode_equals_untiled_where_one_tile_covers_the_frame(codec, height, width):
    """The codec's tiling path gives exactly what the model gives on the (padded) frame itself."""
    clip = synthetic_clip(17, height, width, seed=5)
    data = codec.encode_array(clip, 25, seed=9)
    tiled = codec.decode_array(data, steps=2)

    cfg, model = codec.model.cfg, codec.model.model
    video = video_to_model(clip, codec.devices[0])
    padded = torch.nn.functional.pad(video, (0, cfg.tile - width, 0, cfg.tile - height), mode="replicate")[None]
    with torch.no_grad():
        post = model.encode(padded, geometry_features(torch.tensor([height]), torch.tensor([width]),
                                                      torch.tensor([17]), cfg))
        quant = codec.model.quantizer()
        s = quant.dequantize(quant.quantize(post.structural_mean))
        q = quant.dequantize(quant.quantize(post.tokens_1d_mean))
        kept = cfg.max_1d_tokens // 2  # quality 0.5, one unit
        latents = Latents(s, q, Latents.keep_mask(torch.tensor([kept]), cfg.max_1d_tokens))
        noise = unit_noise(9, 0, 0, (3, cfg.frames, cfg.tile, cfg.tile))[None]
        out = sample(lambda x, t: model.velocity(x, t, latents), noise, DecodingSchedule(2))
    untiled = model_to_video(out[0, :, :, :height, :width])
    assert np.array_equal(tiled, untiled)

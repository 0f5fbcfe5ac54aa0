"""The .odva bitstream: pinned bytes, every record checked, every damage reported."""

import hashlib
import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import DATA, TINY_RESIDUAL_MODEL, TINY_V3_MODEL, synthetic_clip
from make_reference import REFERENCE_CLIP, REFERENCE_RATE, REFERENCE_STEPS

from onedva_codec import Codec, FormatError, read_info
from onedva_codec.bitstream.container import ChunkRecord, TileRecord
from onedva_codec.bitstream.latent_coding import Quantizer
from onedva_codec.model.folder import default_weights_dir

REFERENCE = DATA / "reference.odva"


def test_bitstream_is_pinned(codec):
    """Encoding the reference clip reproduces the committed file byte for byte.

    If this fails, the format or the encoder changed. If that was meant, bump the
    format version where old files can no longer be read, regenerate the fixtures
    with tests/make_reference.py, and say so in the commit.
    """
    data = codec.encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(REFERENCE.read_bytes()).hexdigest()


def test_decoded_output_is_pinned(codec):
    expected = np.load(DATA / "reference_frames.npy")
    decoded = codec.decode_array(REFERENCE.read_bytes(), steps=REFERENCE_STEPS)
    assert decoded.shape == expected.shape
    diff = np.abs(decoded.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01  # float rounding may move a value by one level


def test_decoding_twice_gives_identical_frames(codec):
    data = REFERENCE.read_bytes()
    assert np.array_equal(codec.decode_array(data, steps=3), codec.decode_array(data, steps=3))


def test_random_access_equals_the_slice_of_a_full_decode(codec):
    data = REFERENCE.read_bytes()
    full = codec.decode_array(data)
    assert np.array_equal(codec.decode_array(data, frame_range=(15, 19)), full[15:19])


def test_info_reads_header_and_chunks():
    info = read_info(REFERENCE)
    h = info.header
    assert (h.width, h.height, h.frames, h.fps) == (48, 40, 20, Fraction(25))
    assert [c.frames for c in info.chunks] == [17, 3]
    assert sum(c.bytes for c in info.chunks) < info.file_size
    assert h.rate == {"mode": "quality", "quality": 0.5, "adaptive": True}


def test_every_truncation_is_reported():
    data = REFERENCE.read_bytes()
    for length in range(0, len(data), 7):
        with pytest.raises(FormatError):
            read_info(data[:length])


def test_every_flipped_byte_is_reported():
    data = bytearray(REFERENCE.read_bytes())
    for position in range(len(data)):
        damaged = data.copy()
        damaged[position] ^= 0x10
        with pytest.raises(FormatError):
            read_info(bytes(damaged))


def test_unknown_major_version_is_refused():
    data = bytearray(REFERENCE.read_bytes())
    data[4] = 4
    with pytest.raises(FormatError, match="version 4.1"):
        read_info(bytes(data))


def test_a_version_1_file_is_refused_as_made_by_an_older_odva():
    data = bytearray(REFERENCE.read_bytes())
    data[4:6] = b"\1\0"
    with pytest.raises(FormatError, match="version 1.0.*older odva"):
        read_info(bytes(data))


def test_a_version_2_file_still_decodes_with_the_model_that_made_it(codec):
    """Files of format 2.0 (tile entries without a rate point), made before 3.0 by a v1/v2 model, read
    and decode as they did: tests/data/reference_format2.odva is reference.odva as 2.0 wrote it."""
    old = (DATA / "reference_format2.odva").read_bytes()
    info = read_info(old)
    assert info.version == (2, 0) and info.file_size == len(old)
    assert sum(c.bytes for c in info.chunks) == sum(c.bytes for c in read_info(REFERENCE).chunks) - 2 * 2 * 4
    assert np.array_equal(codec.decode_array(old, steps=REFERENCE_STEPS),
                          codec.decode_array(REFERENCE.read_bytes(), steps=REFERENCE_STEPS))


def test_chunk_record_round_trip():
    chunk = ChunkRecord(3, 12, [TileRecord(5, 0.25, b"abc", 2.5), TileRecord(0, 1.5, b"", 0.0009765625)])
    assert ChunkRecord.from_bytes(chunk.to_bytes()) == chunk


def test_quantization_error_is_at_most_half_a_step():
    quant = Quantizer(0.5, (0.1, -0.2), (1.0, 2.0))
    latents = torch.randn(100, 2)
    restored = quant.dequantize(quant.quantize(latents))
    assert ((restored - latents).abs() <= torch.tensor([0.25, 0.5]) + 1e-6).all()



def test_the_shipped_models_path_is_pinned_too():
    """The bitstream of the shipped model's kind (residual 1D tokens, a lattice prior with reference
    contexts), pinned on a tiny model of that kind: tests/data/tiny_residual_model follows the layout
    weights/card.json names, and encodes the reference clip to the committed bytes."""
    shipped = json.loads((default_weights_dir() / "card.json").read_text())
    fixture = json.loads((TINY_RESIDUAL_MODEL / "card.json").read_text())
    for card in (shipped, fixture):
        assert card["config"]["tokens_1d"] == "residual"
    fit = ("kind", "bands", "references")
    assert [shipped["entropy_prior"]["fit"][k] for k in fit] == [fixture["entropy_prior"]["fit"][k] for k in fit]
    codec = Codec(TINY_RESIDUAL_MODEL, device="cpu")
    data = codec.encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    assert data == (DATA / "reference_residual.odva").read_bytes()


def test_a_v3_models_bitstream_and_decoded_output_are_pinned():
    """The v3 path (rate points, the hyperprior coded in integer arithmetic), on a tiny model of that
    kind: the reference clip encodes to the committed bytes, which decode to the committed frames."""
    codec = Codec(TINY_V3_MODEL, device="cpu")
    data = codec.encode_array(synthetic_clip(**REFERENCE_CLIP), Fraction(25), REFERENCE_RATE, seed=3)
    assert data == (DATA / "reference_v3.odva").read_bytes()
    info = read_info(data)
    assert info.header.entropy_coder == "hyperprior-v1"
    assert {rate for chunk in info.chunks for rate in chunk.rate} == {0.5 * (codec.model.cfg.rate_points - 1)}
    expected = np.load(DATA / "reference_v3_frames.npy")
    diff = np.abs(codec.decode_array(data, steps=REFERENCE_STEPS).astype(int) - expected.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01

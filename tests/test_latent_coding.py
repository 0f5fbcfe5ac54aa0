"""Entropy coding: priors that fit, tiles that round-trip, sizes that rate control can trust, damage that stops."""

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import DATA, TINY_MODEL, synthetic_clip

from onedva_codec import Codec, FormatError, ModelMismatchError, RateOptions
from onedva_codec.bitstream.container import OdvaReader, OdvaWriter
from onedva_codec.bitstream.latent_coding import TileCoder, coded_size_bound
from onedva_codec.bitstream.prior import PRECISION, EntropyPrior, escape_table, fit_prior, frequencies
from onedva_codec.model.folder import load_model, save_prior

S, N, C = 16, 64, 4  # the tiny model's tile: 16 structural tokens, 64 1D tokens, 4 channels


def _symbols(tiles: int, seed: int = 0, spread: float = 3.0, smooth: bool = True) -> np.ndarray:
    """Symbols as a trained encoder's look: a structural grid that varies smoothly from patch to
    patch (or not), and 1D tokens whose Laplace-like spread falls along the sequence."""
    rng = np.random.default_rng(seed)
    scale = np.concatenate([np.full(S, spread), np.geomspace(spread, spread / 10, N)])[:, None] * np.ones(C)
    values = rng.laplace(0, scale, (tiles, S + N, C))
    if smooth:  # a level per tile and channel, which neighbours share, plus a little of their own
        values[:, :S] = rng.laplace(0, spread, (tiles, 1, C)) + values[:, :S] / 4
    return np.clip(np.round(values), -127, 127).astype(np.int8)


@pytest.fixture(scope="module", params=["lattice", "factorized"])
def prior(request) -> EntropyPrior:
    fitted = fit_prior(_symbols(64, smooth=request.param == "lattice"), S)[0]
    assert fitted.kind == request.param
    return fitted


def test_frequencies_are_exact_and_never_zero():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.full(40, 0.05), size=30)  # many near-zero entries
    freq = frequencies(probabilities)
    assert (freq.sum(axis=1) == 1 << PRECISION).all() and (freq >= 1).all()
    assert (escape_table().sum() == 1 << PRECISION) and len(escape_table()) == 255


def test_fit_chooses_slot_bands_and_contexts_only_where_they_pay():
    _, smooth = fit_prior(_symbols(64), S)
    assert (smooth["bands"], smooth["kind"]) == ("log-spaced", "lattice")
    flat = _symbols(64, smooth=False)
    flat[:, S:] = np.round(np.random.default_rng(5).laplace(0, 3.0, (64, N, C)))  # one spread at every slot
    _, plain = fit_prior(flat, S)
    assert (plain["bands"], plain["kind"]) == ("one", "factorized")


def test_lattice_contexts_save_bits_on_a_smooth_structural_latent():
    scores = fit_prior(_symbols(64), S)[1]["held_out_bits_per_value"]
    assert scores["banded, lattice"] < scores["banded, factorized"] - 0.05 * S / (S + N)


@pytest.mark.parametrize("kept", [0, 1, 17, N])
def test_every_kept_length_round_trips(prior, kept):
    coder = TileCoder(prior)
    for tile in _symbols(5, seed=2):
        symbols = tile[: S + kept]
        assert np.array_equal(coder.decode(coder.encode(symbols), S + kept), symbols)


def test_values_beyond_the_prior_are_escaped_not_refused(prior):
    coder = TileCoder(prior)
    symbols = _symbols(1, seed=3)[0]
    assert prior.radius < 127
    symbols[0, 0], symbols[S + 2, 1], symbols[5, 3] = 127, -127, prior.radius + 1
    assert np.array_equal(coder.decode(coder.encode(symbols), S + N), symbols)


def test_coded_size_stays_within_the_bound_rate_control_uses(prior):
    coder = TileCoder(prior)
    for seed in range(20):
        tile = _symbols(1, seed=10 + seed, spread=1.0 + seed)[0]  # spreads the prior did and did not see
        for tokens in (S, S + 9, S + N):
            bits = prior.token_bits(tile[:tokens]).sum()
            size = len(coder.encode(tile[:tokens]))
            assert bits / 8 <= size <= coded_size_bound(bits)


def test_range_coding_beats_order_0_zstd_on_the_same_symbols(prior):
    import zstandard
    coder = TileCoder(prior)
    tiles = _symbols(10, seed=7)
    ours = sum(len(coder.encode(t)) for t in tiles)
    theirs = sum(len(zstandard.ZstdCompressor(level=1).compress(np.ascontiguousarray(t.T).tobytes()))
                 for t in tiles)
    assert ours < 0.9 * theirs


def test_worker_processes_code_exactly_as_the_calling_thread_and_pass_errors_back(prior):
    from onedva_codec.runtime.coding_pool import TileCoderPool
    from onedva_codec.model.config import CONFIGS
    coder, pool = TileCoder(prior), TileCoderPool(prior, CONFIGS["tiny"], workers=2)
    try:
        tiles = [tile[: S + kept] for tile, kept in zip(_symbols(12, seed=5), range(0, N + 1, 6))]
        data = list(pool.encode_all((tile,) for tile in tiles))  # more tiles than the 8 it keeps in flight
        assert data == [coder.encode(tile) for tile in tiles]
        jobs = [pool.decode(d, len(tile)) for d, tile in zip(data, tiles)]
        assert all(np.array_equal(job.result(), tile) for job, tile in zip(jobs, tiles))
        with pytest.raises(FormatError, match="32-bit words"):
            pool.decode(data[0][:-1], len(tiles[0])).result()
        # each worker runs its matrix products on one BLAS thread, however many cores the parent's BLAS uses
        assert pool._executor.submit(_blas_threads).result() == 1
    finally:
        pool.close()


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info
    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


def test_damaged_tile_data_is_a_format_error_or_wrong_values_never_a_hang(prior):
    coder = TileCoder(prior)
    symbols = _symbols(1, seed=4)[0]
    data = coder.encode(symbols)
    with pytest.raises(FormatError, match="32-bit words"):
        coder.decode(data[:-1], S + N)
    with pytest.raises(FormatError, match="past its last value"):
        coder.decode(data + bytes(8), S + N)
    with pytest.raises(FormatError, match="does not fit"):
        coder.decode(data, S + N + 1)
    for position in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        try:
            decoded = coder.decode(bytes(damaged), S + N)
        except FormatError:
            continue
        assert decoded.shape == (S + N, C) and decoded.dtype == np.int8


def test_prior_file_round_trip_keeps_its_identity(prior, tmp_path):
    prior.save(tmp_path / "p.safetensors")
    loaded = EntropyPrior.load(tmp_path / "p.safetensors")
    assert loaded.sha256 == prior.sha256
    assert np.array_equal(loaded.tables, prior.tables) and np.array_equal(loaded.index, prior.index)
    changed = prior.tables.copy()
    changed[0, 0] += 1
    changed[0, changed[0].argmax()] -= 1
    assert replace(prior, tables=changed).sha256 != prior.sha256


def test_a_prior_with_impossible_symbols_is_refused(prior):
    broken = prior.tables.copy()
    broken[0, 0], broken[0, 1] = 0, broken[0, 1] + broken[0, 0]
    with pytest.raises(ValueError, match=">= 1"):
        replace(prior, tables=broken)


def test_batch_size_and_threads_do_not_change_what_decodes():
    """Encode one tile at a time on one thread; decode in batches of three on two threads."""
    clip = synthetic_clip(40, 40, 72, seed=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        data = Codec(TINY_MODEL, device="cpu", batch_size=1).encode_array(clip, 25, RateOptions(quality=0.7))
        torch.set_num_threads(2)
        reference = Codec(TINY_MODEL, device="cpu", batch_size=1).decode_array(data, steps=1)
        batched = Codec(TINY_MODEL, device="cpu", batch_size=3).decode_array(data, steps=1)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(batched.astype(int) - reference.astype(int)).max() <= 1


def _rewrite(data: bytes, **changes) -> bytes:
    """The same file with some header fields changed (every CRC valid)."""
    import io
    with OdvaReader(data) as reader:
        header, chunks = replace(reader.header, **changes), list(reader.chunks())
    out = io.BytesIO()
    writer = OdvaWriter(out, header)
    for chunk in chunks:
        writer.write_chunk(chunk)
    writer.finish()
    return out.getvalue()


def test_unknown_coder_and_other_prior_get_one_clear_error(codec):
    data = (DATA / "reference.odva").read_bytes()
    with pytest.raises(FormatError, match="entropy coder 'zstd-channel-major'"):
        codec.decode_array(_rewrite(data, entropy_coder="zstd-channel-major"))
    with pytest.raises(ModelMismatchError, match="entropy prior"):
        codec.decode_array(_rewrite(data, prior_sha256="0" * 64))


def test_refitting_a_prior_keeps_the_weights_and_retires_old_files(tmp_path):
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(TINY_MODEL, folder)
    loaded = load_model(folder)
    data = Codec(loaded, device="cpu").encode_array(synthetic_clip(17, 32, 32), Fraction(25))
    prior, fit = fit_prior(_symbols(16, seed=9), S)
    card = save_prior(prior, replace(loaded.card, prior_fit=fit), folder)
    assert card.weights_sha256 == loaded.card.weights_sha256 and card.prior_sha256 == prior.sha256
    with pytest.raises(ModelMismatchError, match="entropy prior"):
        Codec(folder, device="cpu").decode_array(data)


def test_prior_identity_follows_the_format_document(prior):
    """docs/format.md: SHA-256 of a text line, then the tables (i64), the index (i16) and any reference
    (i16), little-endian."""
    import hashlib
    symbols, reference = _referenced_symbols(64)
    referenced = fit_prior(symbols, S, reference)[0]
    assert referenced.reference is not None
    for each in (prior, referenced):
        text = (f"odva-prior {each.kind} 24 {each.tables.shape} {each.index.shape} {each.structural_tokens}")
        tail = b"" if each.reference is None else each.reference.astype("<i2").tobytes()
        digest = hashlib.sha256(text.encode() + each.tables.astype("<i8").tobytes()
                                + each.index.astype("<i2").tobytes() + tail)
        assert digest.hexdigest() == each.sha256
    assert escape_table()[0] == 65794 and (escape_table()[1:] == 65793).all()


def _referenced_symbols(tiles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symbols of a model with homes whose 1D tokens are large where their first-group token is, and the
    references of tiny-homes."""
    from onedva_codec.bitstream.prior import group_zero_references
    from onedva_codec.model.config import CONFIGS
    from onedva_codec.model.network import token_homes
    group, position = (t.numpy() for t in token_homes(CONFIGS["tiny-homes"]))
    reference = group_zero_references(group, position, S)
    rng = np.random.default_rng(seed)
    activity = rng.choice([0.2, 4.0], size=(tiles, S, C))  # per position: still or moving
    scale = np.concatenate([np.full((tiles, S, C), 3.0), activity[:, position]], axis=1)
    return np.clip(np.round(rng.laplace(0, scale)), -127, 127).astype(np.int8), reference


def test_1d_tokens_coded_by_their_first_group_token_round_trip_and_save_bits():
    symbols, reference = _referenced_symbols(64)
    prior, report = fit_prior(symbols, S, reference)
    assert report["references"] and prior.reference is not None
    coder = TileCoder(prior)
    for tile in _referenced_symbols(4, seed=1)[0]:
        for kept in (0, 1, 7, 33, N):
            assert np.array_equal(coder.decode(coder.encode(tile[: S + kept]), S + kept), tile[: S + kept])
    scores = report["held_out_bits_per_value"]
    assert min(v for k, v in scores.items() if "references" in k) < 0.97 * min(
        v for k, v in scores.items() if "references" not in k)


def test_a_prior_whose_references_point_forward_is_refused():
    symbols, reference = _referenced_symbols(64)
    prior = fit_prior(symbols, S, reference)[0]
    forward = prior.reference.copy()
    rows = np.flatnonzero(forward >= 0)
    forward[rows[0]] = S + N - 1
    with pytest.raises(ValueError, match="references"):
        replace(prior, reference=forward)

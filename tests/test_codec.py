"""Round trips through real video files, as the library API does them."""

from fractions import Fraction

import av
import numpy as np
import pytest
from helpers import assert_damage_reported_alike, synthetic_clip, write_video

from onedva_codec import FormatError, InputError, OutputExistsError, RateOptions, read_info
from onedva_codec.bitstream.container import OdvaReader


def _probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return frames, video.codec_context.width, video.codec_context.height, video.average_rate, audio


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".y4m"])
def test_round_trip_keeps_frames_size_and_rate(codec, clip_with_audio, tmp_path, suffix):
    coded, rec = tmp_path / "clip.odva", tmp_path / f"rec{suffix}"
    codec.encode_file(clip_with_audio, coded, RateOptions(quality=0.6))
    result = codec.decode_file(coded, rec)
    frames, width, height, fps, audio = _probe(rec)
    assert (frames, width, height, fps) == (50, 56, 40, Fraction(25))
    assert result.frames == 50
    # Audio is carried through everywhere but in y4m, which cannot hold it.
    assert audio == (None if suffix == ".y4m" else "aac")


def test_odd_sizes_and_rational_frame_rates(codec, tmp_path):
    source = write_video(tmp_path / "odd.mp4", synthetic_clip(20, 37, 45), Fraction(30000, 1001))
    codec.encode_file(source, tmp_path / "odd.odva")
    assert read_info(tmp_path / "odd.odva").header.fps == Fraction(30000, 1001)
    codec.decode_file(tmp_path / "odd.odva", tmp_path / "odd.mp4.mp4")
    assert _probe(tmp_path / "odd.mp4.mp4")[:4] == (20, 45, 37, Fraction(30000, 1001))


def test_lossless_output_holds_exactly_what_was_decoded(codec, tmp_path):
    data = codec.encode_array(synthetic_clip(10, 32, 40), 25)
    (tmp_path / "a.odva").write_bytes(data)
    codec.decode_file(tmp_path / "a.odva", tmp_path / "a.mkv")
    with av.open(str(tmp_path / "a.mkv")) as container:
        written = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert np.array_equal(written, codec.decode_array(data))


@pytest.mark.parametrize("position", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("kind", ["v2", "v3"])
def test_bitrate_lands_within_5_percent(codec, tmp_path, position, kind):
    """A 3-second clip with audio; the whole file counts. Targets sit inside the clip's rate range. A v3
    model (rate points) searches its ladder by writing the file: never over the target."""
    from helpers import TINY_V3_MODEL

    from onedva_codec import Codec
    codec = codec if kind == "v2" else Codec(TINY_V3_MODEL, device="cpu")
    source = write_video(tmp_path / "three_s.mp4", synthetic_clip(75, 64, 80, seed=4), Fraction(25), audio=True)
    lowest = codec.encode_file(source, tmp_path / "q0.odva", RateOptions(quality=0.0)).bitrate
    highest = codec.encode_file(source, tmp_path / "q1.odva", RateOptions(quality=1.0)).bitrate
    target = lowest + position * (highest - lowest)
    result = codec.encode_file(source, tmp_path / "b.odva", RateOptions(bitrate=target))
    actual = (tmp_path / "b.odva").stat().st_size * 8 / 3.0
    assert abs(actual - target) / target < 0.05 and (kind == "v2" or actual <= target)
    assert result.bitrate == pytest.approx(actual)


def test_higher_quality_keeps_more_tokens_and_bytes(codec):
    clip = synthetic_clip(34, 40, 48)
    sizes = [len(codec.encode_array(clip, 25, RateOptions(quality=q))) for q in (0.0, 0.5, 1.0)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_existing_output_is_refused_without_force(codec, clip_with_audio, tmp_path):
    target = tmp_path / "x.odva"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        codec.encode_file(clip_with_audio, target)
    assert target.read_bytes() == b"keep me"
    codec.encode_file(clip_with_audio, target, force=True)
    assert read_info(target).header.frames == 50


def test_steps_default_to_the_card_and_must_be_1_to_100(codec):
    data = codec.encode_array(synthetic_clip(17, 32, 32), 25)
    assert np.array_equal(codec.decode_array(data), codec.decode_array(data, steps=codec.model.card.sampling.steps))
    for steps in (0, 101, 10000):
        with pytest.raises(InputError, match="1 to 100"):
            codec.decode_array(data, steps=steps)


def test_the_bitstream_does_not_depend_on_the_batch_and_decoding_repeats_exactly():
    """docs/format.md, "Determinism": on the CPU the file is the same whatever --batch (units spanning
    chunks included), and the same file decodes to the same frames every time."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    clip = synthetic_clip(40, 40, 60, seed=8)  # 2 x 2 tiles, 3 chunks: 12 units
    files = [Codec(TINY_MODEL, device="cpu", batch_size=b).encode_array(clip, 25) for b in (1, 3, 5)]
    assert files[0] == files[1] == files[2]
    codec = Codec(TINY_MODEL, device="cpu", batch_size=5)
    assert np.array_equal(codec.decode_array(files[0], steps=2), codec.decode_array(files[0], steps=2))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_search_decodes_nearer_the_source_whatever_the_batch():
    """--search refines the latents through the decoder: the same decoder makes a picture nearer the
    source of the same file size within a few percent, and the file still does not depend on --batch."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    clip = synthetic_clip(40, 40, 60, seed=8)  # 2 x 2 tiles, 3 chunks (the last one short): 12 units
    rate = RateOptions(quality=0.5)
    codec = Codec(TINY_MODEL, device="cpu", batch_size=5)
    plain, searched = codec.encode_array(clip, 25, rate), codec.encode_array(clip, 25, rate, search_steps=6)
    assert Codec(TINY_MODEL, device="cpu", batch_size=1).encode_array(clip, 25, rate, search_steps=6) == searched
    assert abs(len(searched) / len(plain) - 1) < 0.05
    assert _psnr(codec.decode_array(searched, steps=1), clip) > _psnr(codec.decode_array(plain, steps=1), clip)
    with pytest.raises(InputError, match="search steps"):
        codec.encode_array(clip, 25, rate, search_steps=-1)


def test_the_library_checks_the_audio_record_too(codec, clip_with_audio, tmp_path):
    """decode_array does not use the audio, but a damaged audio record is a damaged file, as `odva` says."""
    coded = tmp_path / "a.odva"
    codec.encode_file(clip_with_audio, coded)
    data = bytearray(coded.read_bytes())
    matroska = data.rindex(b"\x1a\x45\xdf\xa3")  # the audio record's payload starts with Matroska's magic
    data[matroska + 20] ^= 0x40  # its CRC no longer matches
    with pytest.raises(FormatError, match="CRC"):
        codec.decode_array(bytes(data))


def test_spreading_over_several_devices_gives_the_same_file_and_frames():
    """--device cpu,cpu runs a process per "device", chunks spread in runs that fill whole batches, as
    cuda:0,1 does on GPUs: the same batches, so the same file and frames as one device. A damaged
    file's error comes out of the processes as it does out of one, and they start afresh after it."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    # two shots, so 6 chunks of 4 tiles, one of them cut short (frames 34-49); batch 3: runs of 3 chunks
    clip = np.concatenate([synthetic_clip(50, 40, 60, seed=9), 255 - synthetic_clip(50, 40, 60, seed=4)])
    one = Codec(TINY_MODEL, device="cpu", batch_size=3)
    # as on GPUs, each device process entropy-codes on worker processes of its own
    two = Codec(TINY_MODEL, device="cpu,cpu", batch_size=3, coding_workers=1)
    try:
        data = one.encode_array(clip, 25, RateOptions(quality=0.7))
        assert OdvaReader(data).header.chunk_starts == [0, 17, 34, 50, 67, 84]
        assert two.encode_array(clip, 25, RateOptions(quality=0.7)) == data
        searched = one.encode_array(clip[:40], 25, RateOptions(quality=0.7), search_steps=2)
        assert two.encode_array(clip[:40], 25, RateOptions(quality=0.7), search_steps=2) == searched
        whole = one.decode_array(data, steps=1)
        assert np.array_equal(two.decode_array(data, steps=1), whole)
        assert np.array_equal(two.decode_array(data, steps=1, frame_range=(45, 90)), whole[45:90])
        assert_damage_reported_alike(one, two, data)
        assert np.array_equal(two.decode_array(data, steps=1), whole)
    finally:
        two.close()


def test_device_processes_outlive_the_thread_that_started_them(tmp_path):
    """decode_file decodes on a background thread, which starts the device processes and ends with
    the file: the processes must serve the next file too."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    one, two = Codec(TINY_MODEL, device="cpu", batch_size=3), Codec(TINY_MODEL, device="cpu,cpu", batch_size=3)
    coded = tmp_path / "a.odva"
    coded.write_bytes(one.encode_array(synthetic_clip(100, 40, 60, seed=9), 25))
    try:
        for name in ("a.y4m", "b.y4m"):
            two.decode_file(coded, tmp_path / name, steps=1)
        one.decode_file(coded, tmp_path / "c.y4m", steps=1)
        assert (tmp_path / "a.y4m").read_bytes() == (tmp_path / "b.y4m").read_bytes() == \
            (tmp_path / "c.y4m").read_bytes()
    finally:
        two.close()


def test_compiled_model_sees_one_batch_shape_and_decodes_the_same_frames_twice(monkeypatch):
    """--compile: a video's short last batch is padded to the full batch (one graph for every batch),
    and the output is cut back. Stand-in: torch.compile with its eager backend, which traces the model
    as the real one does but compiles no kernels (that takes a minute on two CPU cores)."""
    import torch
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    real_compile, rows = torch.compile, []

    def stand_in(fn, **options):
        compiled = real_compile(fn, backend="eager", **options)

        def call(*args):
            rows.append(args[0].shape[0])
            return compiled(*args)
        return call

    monkeypatch.setattr(torch, "compile", stand_in)
    clip = synthetic_clip(40, 40, 60, seed=9)  # 18 tiles: 4 batches of 4 and a short one of 2
    plain = Codec(TINY_MODEL, device="cpu", batch_size=4)
    compiled = Codec(TINY_MODEL, device="cpu", batch_size=4, compile=True)
    data = compiled.encode_array(clip, 25, RateOptions(quality=0.7))
    first, second = compiled.decode_array(data, steps=2), compiled.decode_array(data, steps=2)
    assert set(rows) == {4} and len(rows) == 5 + 2 * 5 * 2  # encode: 5 batches; decode twice: 5 batches x 2 steps
    assert np.array_equal(first, second) and first.shape == clip.shape
    assert np.abs(first.astype(int) - plain.decode_array(data, steps=2)).max() <= 2


def test_entropy_coding_on_worker_processes_gives_the_same_files_and_frames():
    """What a GPU machine runs by default (coding_workers: half its cores)."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    clip = synthetic_clip(40, 40, 60, seed=9)
    here, workers = Codec(TINY_MODEL, device="cpu", batch_size=4), Codec(TINY_MODEL, device="cpu", batch_size=4,
                                                                          coding_workers=2)
    try:
        for rate in (RateOptions(quality=0.7), RateOptions(bitrate=20000)):
            data = here.encode_array(clip, 25, rate)
            assert workers.encode_array(clip, 25, rate) == data
        assert np.array_equal(workers.decode_array(data, steps=1), here.decode_array(data, steps=1))
    finally:
        workers.close()


def test_noise_drawn_on_the_decoding_device_is_the_formats_stream_on_the_cpu():
    """`device_noise` (odva decode --gpu-noise) draws each unit's noise where it is decoded, seeded as
    the format says; on the CPU that is the format's own stream, whatever the batching."""
    from helpers import TINY_MODEL

    from onedva_codec import Codec
    clip = synthetic_clip(40, 40, 60, seed=9)
    data = Codec(TINY_MODEL, device="cpu", batch_size=4).encode_array(clip, 25, RateOptions(quality=0.7))
    for device, batch in (("cpu", 4), ("cpu", 3), ("cpu,cpu", 2)):  # frames depend on the batch by rounding
        expected = Codec(TINY_MODEL, device="cpu", batch_size=batch).decode_array(data, steps=2)
        on_device = Codec(TINY_MODEL, device=device, batch_size=batch, device_noise=True)
        assert np.array_equal(on_device.decode_array(data, steps=2), expected)


def test_coding_workers_stay_silent_on_ctrl_c_and_end_with_their_parent(tmp_path):
    """Ctrl-C reaches every process of the group: only the parent may speak of it, and no worker outlives it."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path
    script = textwrap.dedent(f"""
        import multiprocessing, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from helpers import TINY_MODEL, synthetic_clip
        from onedva_codec import Codec, RateOptions
        codec = Codec(TINY_MODEL, device="cpu", batch_size=4, coding_workers=2)
        clip = synthetic_clip(40, 40, 60, seed=9)
        print(*(child.pid for child in multiprocessing.active_children()), flush=True)
        try:
            while True:
                codec.encode_array(clip, 25, RateOptions(quality=0.7))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers = [int(pid) for pid in process.stdout.readline().split()]
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and out.strip() == "interrupted" and err == "", err
    time.sleep(0.5)
    assert len(workers) == 2 and not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_coding_workers_end_quietly_when_an_odva_command_ends():
    """On a GPU machine every `odva` command has coding workers: when the command ends (without the
    interpreter's teardown, as `odva` ends) they end with it, and say nothing."""
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path
    script = textwrap.dedent(f"""
        import multiprocessing, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from onedva_codec import launch
        for number in launch._SIGNALS:  # as `odva` starts
            signal.signal(number, launch._on_signal)
        from helpers import TINY_MODEL, synthetic_clip
        from onedva_codec import Codec, RateOptions
        codec = Codec(TINY_MODEL, device="cpu", batch_size=4, coding_workers=2)
        codec.encode_array(synthetic_clip(40, 40, 20, seed=9), 25, RateOptions(quality=0.7))
        print(*(child.pid for child in multiprocessing.active_children()), flush=True)
        os._exit(0)  # as `odva` ends
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    workers = [int(pid) for pid in done.stdout.split()]
    assert done.returncode == 0 and done.stderr == "", done.stderr
    time.sleep(0.5)

    def running(pid: int) -> bool:  # an ended worker left to an init that does not reap is a zombie
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
        except FileNotFoundError:
            return False
    assert len(workers) == 2 and not [pid for pid in workers if running(pid)]


def test_a_reader_that_stops_early_never_waits_on_its_producer():
    """Ctrl-C mid-video closes the codec's prefetching generators; closing must not wait on a producer
    blocked on a full queue (a process that caught Ctrl-C once hung at exit this way)."""
    import threading
    import time

    from onedva_codec.runtime.prefetch import prefetch
    for items in (range(2), range(5)):  # blocked on the end marker, or on an item
        reader = prefetch(items, depth=1)
        assert next(reader) == 0
        time.sleep(0.2)  # the producer fills the queue and blocks
        closing = threading.Thread(target=reader.close)
        closing.start()
        closing.join(timeout=5)
        assert not closing.is_alive()


def test_device_lists_are_checked():
    from onedva_codec.runtime.engine import resolve_devices
    assert [d.type for d in resolve_devices("cpu,cpu")] == ["cpu", "cpu"]
    assert resolve_devices("cpu, cpu") == resolve_devices("cpu,cpu")
    for name, message in [("cuda:all", "no CUDA GPU"), ("cuda:0,1", "no CUDA GPU"), ("tpu", "unknown device")]:
        with pytest.raises(InputError, match=message):
            resolve_devices(name)


def test_progress_follows_the_model_and_adds_up_to_the_frames(codec, tmp_path):
    """Decoding reports after every model call (several per chunk at several steps), encoding after every
    batch of tiles; each adds up to the frames done, a range's frames only for a range."""
    clip = write_video(tmp_path / "c.mp4", synthetic_clip(40, 40, 56, seed=5), Fraction(25))
    encoded: list[float] = []
    codec.encode_file(clip, tmp_path / "c.odva", RateOptions(quality=0.5), progress=encoded.append)
    assert abs(sum(encoded) - 40) < 1e-9 and len(encoded) == 3  # 40 x 56: 4 tiles a chunk, batches of 4
    for frame_range, frames, chunks in ((None, 40, 3), ((10, 30), 20, 2)):
        decoded: list[float] = []
        codec.decode_file(tmp_path / "c.odva", tmp_path / "r.mkv", steps=3, frame_range=frame_range, force=True,
                          progress=decoded.append)
        assert abs(sum(decoded) - frames) < 1e-6 and len(decoded) >= 3 * chunks  # each chunk at three steps

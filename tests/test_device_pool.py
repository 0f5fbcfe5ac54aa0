"""The process per device that spreads a video over several GPUs, on "devices" of the CPU."""

import pytest
import torch
from helpers import TINY_MODEL, DoublingJob, DoublingTensorJob

from onedva_codec.runtime.device_pool import DevicePool, segment_length

ENGINE = "onedva_codec.runtime.engine:device_process_engine"


def test_runs_that_fill_whole_batches():
    assert segment_length(16, 60) == 4  # 1080p: 60 tiles a chunk, 4 chunks = 15 batches
    assert segment_length(16, 1) == 16
    assert segment_length(3, 4) == 3
    assert segment_length(4, 8) == 1


def test_items_go_out_in_runs_and_come_back_in_order_and_errors_cross_as_they_were():
    """Runs of `segment` items alternate between the processes; a long run does not hold back the
    next process; an error comes back as it was raised, and the processes are not reused after it."""
    pool = DevicePool(TINY_MODEL, [torch.device("cpu")] * 2, dict(batch_size=2), threads=1, start_engine=ENGINE)
    try:
        results = list(pool.map(DoublingJob(), range(10), segment=3, batch_items=2))
        assert [value for value, _, _ in results] == [2 * i for i in range(10)]
        pids = [pid for _, pid, _ in results]
        assert len(set(pids)) == 2  # runs of 3 alternate: 0-2, 6-8 on one process, 3-5, 9 on the other
        assert pids[0:3] == pids[6:9] == [pids[0]] * 3 and pids[3:6] == [pids[9]] * 3 and pids[0] != pids[3]
        # Runs of small tiles are up to a batch of chunks long: the second process gets its first item
        # while the first is still on its first, not after the first has worked through most of its run
        timed = list(pool.map(DoublingJob(seconds=0.15), range(16), segment=8, batch_items=2))
        assert timed[8][2] < timed[1][2] and timed[0][1] != timed[8][1]
        # runs that the items say begin where they do (chunks from a key chunk), whatever their length
        runs = list(pool.map(DoublingJob(), range(10), segment=4, batch_items=2, starts_segment=lambda i: i in (4, 5)))
        assert [value for value, _, _ in runs] == [2 * i for i in range(10)]
        pids = [pid for _, pid, _ in runs]
        assert pids[0:4] == [pids[0]] * 4 and pids[4] != pids[0] and pids[5:] == [pids[0]] * 5
        with pytest.raises(ValueError, match="item 4 is bad"):
            list(pool.map(DoublingJob(fail_at=4), range(10), segment=3, batch_items=2))
        assert pool.closed  # mid-job processes are not reused
    finally:
        pool.close()


def test_a_process_that_dies_is_one_clear_error_not_a_hang():
    pool = DevicePool(TINY_MODEL, [torch.device("cpu")] * 2, dict(batch_size=2), threads=1, start_engine=ENGINE)
    try:
        with pytest.raises(RuntimeError, match=r"the process for cpu stopped \(exit code -9\)"):
            list(pool.map(DoublingJob(die_at=5), range(10), segment=2, batch_items=2))
    finally:
        pool.close()



def test_tensors_cross_in_buffers_reused_once_let_go_and_never_while_held():
    """Chunk pixels and frames cross in shared buffers: a consumer that lets each result go is served
    by a handful of buffers each way; one that holds results (or only views of them) finds them intact."""
    pool = DevicePool(TINY_MODEL, [torch.device("cpu")] * 2, dict(batch_size=2), threads=1, start_engine=ENGINE)
    sent = set()

    def chunks(count):
        for i in range(count):
            chunk = pool.take((4, 16, 16, 3))  # filled in place, sent without a copy
            chunk.fill_(i)
            sent.add(chunk.data_ptr())
            yield chunk

    try:
        received = set()
        for i, doubled in enumerate(pool.map(DoublingTensorJob(), chunks(40), segment=2, batch_items=2)):
            assert doubled.shape == (4, 16, 16, 3) and (doubled == 2 * i).all()
            received.add(doubled.data_ptr())
        # Up to 4 chunks a process in flight, and one or two more until the next item gives them back:
        # half the count leaves room for a slow machine, and is far from one buffer for each of the 40
        assert len(sent) <= 20 and len(received) <= 20

        held = []
        for i, doubled in enumerate(pool.map(DoublingTensorJob(), chunks(20), segment=2, batch_items=2)):
            held.append(doubled[1:] if i % 3 == 0 else doubled.numpy()[2] if i % 3 == 1 else doubled)
        assert all((view == 2 * i).all() for i, view in enumerate(held))  # none overwritten while held
    finally:
        pool.close()

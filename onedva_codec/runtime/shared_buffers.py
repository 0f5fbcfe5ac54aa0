"""Shared-memory buffers that two processes pass back and forth instead of making new ones.

A tensor put on a torch.multiprocessing queue is moved into a shared segment made for it, and the
receiving process maps that segment afresh: a 1080p chunk then costs 7 to 11 ms a frame in page
faults and copies (scripts/shared_memory_speed.py), as much as a GPU takes to decode it at one step.
Here the sending side keeps buffers of its own, sends each one to a receiver once and after that only
its number. The receiver keeps every buffer mapped and hands its consumer a tensor whose end (its
last view dropped, numpy views included) gives the number back, and the sender fills that buffer
again. A sender with no free buffer makes another, so a consumer that holds on to what it got never
stalls it. In a process that runs a GPU, buffers are page-locked (`CudaPinning`), so that copies
between them and the GPU run at full speed without holding up the host.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import torch
from torch import Tensor


class CudaPinning:
    """Page-locks buffers for copies to and from a GPU (cudaHostRegister). The GPU may still be reading
    a buffer after its last view has gone, so `mark` tells when the work queued so far is done."""

    def __init__(self, device: torch.device):
        self.device = device

    def register(self, buffer: Tensor) -> None:
        code = int(torch.cuda.cudart().cudaHostRegister(buffer.data_ptr(), buffer.nbytes, 1))  # 1: for every GPU
        if code:
            raise RuntimeError(f"page-locking {buffer.nbytes} bytes of shared memory failed (CUDA error {code})")

    def unregister(self, buffer: Tensor) -> None:
        torch.cuda.cudart().cudaHostUnregister(buffer.data_ptr())

    def mark(self) -> Callable[[], bool]:
        """A test of whether the device has done everything queued on it until now."""
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event.query


@dataclass
class _Shared:
    """A tensor in buffer `number`, as it crosses. `buffer`: the buffer itself, the first time this
    receiver meets it, else None. `forget`: buffers the sender has let go of, which the receiver unmaps."""
    number: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    buffer: Tensor | None
    forget: tuple[int, ...]


class BufferSender:
    """The filling side. `returns`: a queue on which receivers give back lists of buffer numbers.

    Buffers are all of one size, that of the latest tensor: buffers of another size are let go as
    they come back (a new video's chunks), so memory follows what is being sent now."""

    def __init__(self, returns: Any, pinning: CudaPinning | None = None):
        self._returns = returns
        self._pinning = pinning
        self._buffers: dict[int, Tensor] = {}  # number -> flat uint8 tensor in shared memory
        self._free: list[int] = []  # buffers of self._nbytes that no receiver holds
        self._nbytes = 0
        self._lent: dict[int, int] = {}  # address -> number, of buffers handed out by `take`
        self._known: dict[Hashable, set[int]] = collections.defaultdict(set)  # receiver -> buffers it has mapped
        self._forget: dict[Hashable, list[int]] = collections.defaultdict(list)
        self._numbers = itertools.count()
        self._lock = threading.Lock()  # `take` runs on a reading thread, `pack` on a sending one

    def take(self, shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> Tensor:
        """An uninitialised tensor in a buffer, to be filled in place and then packed without a copy."""
        nbytes = dtype.itemsize * torch.Size(shape).numel()
        with self._lock:
            number = self._free_buffer(nbytes)
            tensor = self._buffers[number].view(dtype).view(shape)
            self._lent[tensor.data_ptr()] = number
        return tensor

    def pack(self, item: Any, receiver: Hashable = 0) -> Any:
        """The item (a tensor, a tuple holding some, or anything else, left as it is) ready to be put on a
        queue to `receiver`: each tensor in a buffer, a whole one from `take` as it is, others copied."""
        if isinstance(item, tuple):
            return tuple(self.pack(part, receiver) for part in item)
        if not isinstance(item, Tensor):
            return item
        with self._lock:
            number = self._lent.pop(item.data_ptr(), None)
            # a part of a taken buffer is copied (the buffer stays with its taker, who may still write to it)
            copy = number is None or not item.is_contiguous() or item.nbytes != self._buffers[number].nbytes
            if copy:
                number = self._free_buffer(item.nbytes)
            buffer = self._buffers[number]
            known = self._known[receiver]
            first = number not in known
            known.add(number)
            forget = tuple(self._forget.pop(receiver, ()))
        if copy:
            buffer.view(item.dtype).view(item.shape).copy_(item)
        return _Shared(number, item.dtype, tuple(item.shape), buffer if first else None, forget)

    def _free_buffer(self, nbytes: int) -> int:
        """A buffer of `nbytes` that no receiver holds, made if there is none (the lock held)."""
        self._collect()
        if nbytes != self._nbytes:
            for number in self._free:
                self._drop(number)
            self._free, self._nbytes = [], nbytes
        if self._free:
            return self._free.pop()
        number = next(self._numbers)
        self._buffers[number] = torch.empty(nbytes, dtype=torch.uint8).share_memory_()
        if self._pinning is not None:
            self._pinning.register(self._buffers[number])
        return number

    def _collect(self) -> None:
        while True:
            try:
                numbers = self._returns.get_nowait()
            except queue.Empty:
                return
            for number in numbers:
                if self._buffers[number].nbytes == self._nbytes:
                    self._free.append(number)
                else:
                    self._drop(number)

    def _drop(self, number: int) -> None:
        buffer = self._buffers.pop(number)
        if self._pinning is not None:
            self._pinning.unregister(buffer)
        for receiver, known in self._known.items():
            if number in known:
                known.discard(number)
                self._forget[receiver].append(number)


class BufferReceiver:
    """The reading side, for one sender. `returns`: the queue that sender collects buffer numbers from."""

    def __init__(self, returns: Any, pinning: CudaPinning | None = None):
        self._returns = returns
        self._pinning = pinning
        self._mapped: dict[int, Tensor] = {}
        # Filled by finalizers, which may run on any thread at any moment (even inside a queue's own
        # code, which is not reentrant): they only append, and `unpack` sends the numbers on.
        self._ended: collections.deque[int] = collections.deque()
        self._waiting: collections.deque[tuple[list[int], Callable[[], bool]]] = collections.deque()

    def unpack(self, item: Any) -> Any:
        """The item as it was packed: each tensor a view of its buffer, which goes back to the sender
        once every view of it has gone."""
        if isinstance(item, tuple):
            return tuple(self.unpack(part) for part in item)
        if not isinstance(item, _Shared):
            return item
        self.give_back()
        for number in item.forget:
            buffer = self._mapped.pop(number)
            if self._pinning is not None:
                self._pinning.unregister(buffer)
        if item.buffer is not None:
            self._mapped[item.number] = item.buffer
            if self._pinning is not None:
                self._pinning.register(item.buffer)
        # A new array object over the buffer's bytes: the tensor made from it keeps it alive from its
        # storage, so it ends with the last view of the tensor (a numpy view keeps the tensor alive)
        holder = self._mapped[item.number].numpy()
        weakref.finalize(holder, self._ended.append, item.number).atexit = False
        return torch.from_numpy(holder).view(item.dtype).view(item.shape)

    def give_back(self) -> None:
        """Send the sender the buffers whose views have all gone (and, pinned, whose copies to the GPU
        have been done: copies queued from a view before it went, so before the mark made here)."""
        ended = []
        while self._ended:
            ended.append(self._ended.popleft())
        if ended:
            self._waiting.append((ended, self._pinning.mark() if self._pinning is not None else lambda: True))
        numbers = []
        while self._waiting and self._waiting[0][1]():
            numbers.extend(self._waiting.popleft()[0])
        if numbers:
            self._returns.put(numbers)

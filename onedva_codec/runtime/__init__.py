"""How a model runs: an Engine (device, batch size, compilation, host memory), a process per device when
there are several, worker processes for range coding, shared buffers between processes, and CPU work
kept a bounded distance ahead of the model.

May import: `onedva_codec.errors`, `bitstream`, `model`. Its outputs never depend on it: the same file
and frames on every batch size and device list (docs/format.md).
"""

"""Encoding (frames to an .odva file: analysis, rate control, writing) and decoding (chunk records to
frames), as jobs that take a model (`model.folder.LoadedModel`) and an engine (`runtime.engine.Engine`)
explicitly, and the encoder-side search.

May import: `onedva_codec.errors`, `video`, `bitstream`, `model`, `runtime`.
"""

"""odva: a neural video codec with adaptive bitrate, built on One-DVA.

The library API; the `odva` command is a thin layer over it.

    from onedva_codec import Codec, RateOptions, read_info
    codec = Codec()  # the shipped weights; Codec("path/to/model") for others
    codec.encode_file("in.mp4", "out.odva", RateOptions(quality=0.6))
    codec.decode_file("out.odva", "rec.mp4", steps=8)

Names are imported on first use, so that `onedva_codec.model` and friends load on a
machine without PyAV (a training machine needs no video I/O).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Codec": "codec", "RateOptions": "ratecontrol", "EncodeResult": "encoding", "DecodeResult": "codec",
    "OdvaReader": "container", "FileHeader": "container", "FileInfo": "container", "read_info": "container",
    "load_model": "weights", "save_model": "weights", "LoadedModel": "weights", "ModelCard": "weights",
    "OdvaError": "errors", "InputError": "errors", "FormatError": "errors", "ModelMismatchError": "errors",
    "WeightsError": "errors", "OutputExistsError": "errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

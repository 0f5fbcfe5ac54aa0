"""odva: a neural video codec with adaptive bitrate, built on One-DVA.

The library API; the `odva` command is a thin layer over it.

    from onedva_codec import Codec, RateOptions, read_info
    codec = Codec()  # the shipped weights; Codec("path/to/model") for others
    codec.encode_file("in.mp4", "out.odva", RateOptions(quality=0.6))
    codec.decode_file("out.odva", "rec.mp4", steps=8)

The package, in layers; a module imports only from layers above it in this list, and never in a
circle (tests/test_architecture.py checks both):

    errors, version    what every layer may use
    video/             frames and files: video I/O, pixels, chunks and tiles, motion, atomic outputs
    bitstream/         the .odva format: container, entropy prior and range coding, noise, rate control
    model/             what a model is: config, network, sampler and schedule, the model folder
    runtime/           how it runs: Engine, a process per device, coding workers, shared buffers
    coding/            encoding and decoding jobs (model and engine given explicitly), encoder search
    codec              the library API: Codec, files and arrays in and out
    evaluation/        metrics, LPIPS, I3D, `odva compare`, `odva bench`
    cli, launch        the `odva` command and its process

Names are imported on first use, so that `onedva_codec.model.network` and friends load on a
machine without PyAV (a training machine needs no video I/O).
"""

from importlib import import_module

from .version import __version__

_EXPORTS = {
    "Codec": "codec", "RateOptions": "bitstream.ratecontrol", "EncodeResult": "coding.encoding",
    "DecodeResult": "codec", "OdvaReader": "bitstream.container", "FileHeader": "bitstream.container",
    "FileInfo": "bitstream.container", "read_info": "bitstream.container", "load_model": "model.folder",
    "save_model": "model.folder", "LoadedModel": "model.folder", "ModelCard": "model.folder",
    "OdvaError": "errors", "InputError": "errors", "FormatError": "errors", "ModelMismatchError": "errors",
    "WeightsError": "errors", "OutputExistsError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

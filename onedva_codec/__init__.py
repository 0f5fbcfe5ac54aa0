"""odva: a neural video codec with adaptive bitrate, built on One-DVA.

The library API; the `odva` command is a thin layer over it.

    from onedva_codec import Codec, RateOptions, read_info
    codec = Codec()  # the shipped weights; Codec("path/to/model") for others
    codec.encode_file("in.mp4", "out.odva", RateOptions(quality=0.6))
    codec.decode_file("out.odva", "rec.mp4", steps=8)
"""

__version__ = "0.1.0"

from .codec import Codec, DecodeResult, EncodeResult, RateOptions  # noqa: E402
from .container import FileHeader, FileInfo, OdvaReader, read_info  # noqa: E402
from .errors import (FormatError, InputError, ModelMismatchError, OdvaError,  # noqa: E402
                     OutputExistsError, WeightsError)
from .weights import LoadedModel, ModelCard, load_model, save_model  # noqa: E402

__all__ = [
    "Codec", "RateOptions", "EncodeResult", "DecodeResult", "OdvaReader", "FileHeader", "FileInfo", "read_info",
    "load_model", "save_model", "LoadedModel", "ModelCard",
    "OdvaError", "InputError", "FormatError", "ModelMismatchError", "WeightsError", "OutputExistsError",
]

"""The version every file's header records as its encoder."""

__version__ = "0.1.0"

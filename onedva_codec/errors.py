"""Errors a user can act on. The CLI prints each as one line and exits non-zero."""


class OdvaError(Exception):
    """Base class: the message is complete and fit to show a user as is."""


class InputError(OdvaError):
    """The input video or an argument is unusable (unreadable, no frames, bad option)."""


class FormatError(OdvaError):
    """An .odva file is truncated, corrupted, or of an unknown version."""


class ModelMismatchError(OdvaError):
    """An .odva file was encoded with other weights than the ones loaded."""


class WeightsError(OdvaError):
    """A model folder is missing, incomplete or damaged."""


class OutputExistsError(OdvaError):
    """The output exists and --force was not given."""

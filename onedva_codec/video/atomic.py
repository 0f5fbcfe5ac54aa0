"""Outputs appear whole or not at all: write to a temp file beside, then rename."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import InputError, OdvaError, OutputExistsError


def check_output_path(path: Path, force: bool, source: str | Path | bytes | None = None) -> None:
    """Refuse an output that is a folder, exists (without force), has no folder, or is the input."""
    if isinstance(source, (str, Path)) and Path(source).resolve() == path.resolve():
        raise InputError("the output would overwrite the input")
    if path.is_dir():
        raise OdvaError(f"{path} is a folder, not a file")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise OdvaError(f"cannot write {path}: folder {path.parent} does not exist")


@contextmanager
def atomic_output(path: str | Path, force: bool = False, source: str | Path | bytes | None = None) -> Iterator[Path]:
    """Yield a temp path in the same folder; on success it replaces `path`.

    On any exception, Ctrl-C included, the temp file is removed and `path` is left
    as it was.
    """
    path = Path(path)
    check_output_path(path, force, source)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:  # a read-only folder or file system, no permission
        raise OdvaError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""The files a user or a model names: read from regular files only, within their size; written where writable.

The rule (spec/model.md, "Files refquant reads"): a path must name a regular file (after symlinks).
A FIFO, a device, a socket or a directory is refused after ``os.stat`` and before it is opened, so
no read ever blocks; the file is then opened non-blocking and checked again, so one swapped in
between is refused too. A byte range is checked against the file's size before anything is read.
``.npy``/``.npz`` files load without pickles, JSON must be UTF-8 and nest within Python's recursion
limit. Every failure raises the caller's :class:`~refquant.errors.RefquantError` subclass, naming
the file and the problem; nothing read from the file is echoed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import RefquantError

__all__ = [
    "regular_size", "open_regular", "read_regular", "load_npy", "load_npz", "load_json", "parse_json", "check_writable",
]

#: what numpy raises for a damaged, truncated or pickled .npy/.npz
_ARRAY_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)

_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def _reason(exc: BaseException) -> str:
    """The OS's reason, or the first line of the exception's message (numpy's go on with advice)."""
    return getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]


def _refuse_irregular(mode: int, path, what: str, error: type[RefquantError]) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
        raise error(f"{what} '{path}' is {kind}, not a regular file; refusing to read it")


def regular_size(path: str | os.PathLike, what: str, error: type[RefquantError] = RefquantError) -> int:
    """The size of ``path`` when it is a regular file; anything else (missing, a FIFO, a device, a NUL in
    the name) raises ``error``."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {_reason(exc)}") from None
    except ValueError:  # a NUL in the path, shown escaped
        raise error(f"cannot read {what} {str(path)!r}: the path contains a NUL byte") from None
    _refuse_irregular(status.st_mode, path, what, error)
    return status.st_size


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, what: str, error: type[RefquantError] = RefquantError) -> Iterator[BinaryIO]:
    """``path`` opened for binary reading, when :func:`regular_size` accepts it."""
    regular_size(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {_reason(exc)}") from None
    handle = os.fdopen(fd, "rb")
    with handle:
        _refuse_irregular(os.fstat(fd).st_mode, path, what, error)
        yield handle


def read_regular(
    path: str | os.PathLike,
    what: str,
    error: type[RefquantError] = RefquantError,
    *,
    offset: int = 0,
    length: int | None = None,
) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (to the end when None), checked against its size first."""
    with open_regular(path, what, error) as handle:
        size = os.fstat(handle.fileno()).st_size
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise error(f"{what} '{path}' holds {size} bytes; offset {offset} and length {length} reach past its end")
        try:
            handle.seek(offset)
            data = handle.read(length)
        except OSError as exc:
            raise error(f"cannot read {what} '{path}': {_reason(exc)}") from None
        except MemoryError:
            raise error(f"{what} '{path}': {length} bytes to read do not fit in memory") from None
    if len(data) != length:
        raise error(f"{what} '{path}' changed while it was read ({len(data)} of {length} bytes)")
    return data


def load_npy(path: str | os.PathLike, what: str, error: type[RefquantError] = RefquantError) -> np.ndarray:
    """The one array of an ``.npy`` file; an ``.npz`` archive, a pickle or a damaged file raises ``error``."""
    with open_regular(path, what, error) as handle:
        try:
            loaded = np.load(handle, allow_pickle=False)
        except _ARRAY_ERRORS as exc:
            raise error(f"{what} '{path}' is not a readable .npy array: {_reason(exc)}") from None
        if not isinstance(loaded, np.ndarray):
            loaded.close()
            raise error(f"{what} '{path}' is an .npz archive; one .npy array is expected here")
    return loaded


def load_npz(path: str | os.PathLike, what: str, error: type[RefquantError] = RefquantError) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read now; a pickle, a plain ``.npy`` or a damaged archive
    raises ``error``."""
    with open_regular(path, what, error) as handle:
        try:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                raise error(f"{what} '{path}' is an .npy array; an .npz archive is expected here")
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        except _ARRAY_ERRORS as exc:
            raise error(f"{what} '{path}' is not a readable .npz archive: {_reason(exc)}") from None


def parse_json(text: bytes | str, what: str, error: type[RefquantError] = RefquantError):
    """The JSON document in ``text``; invalid UTF-8, invalid JSON and nesting deeper than Python
    recurses raise ``error``."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise error(f"{what} nests JSON too deeply to read") from None


def load_json(path: str | os.PathLike, what: str, error: type[RefquantError] = RefquantError):
    """The JSON document in the regular file ``path`` (:func:`parse_json`)."""
    return parse_json(read_regular(path, what, error), f"{what} '{path}'", error)


def check_writable(path: str, flag: str, *, directory: bool) -> Path:
    """``path`` as a Path, or an error naming ``flag`` when it is no place to write an output.

    A directory (``directory``) exists, or its nearest existing ancestor is a writable directory (the
    missing folders are created when it is written). A file exists and is no directory (a device such
    as /dev/stdout is fine), or its folder exists and is a writable directory.
    """
    target = Path(path)
    if "\0" in path:
        raise RefquantError(f"{flag} {path!r}: a path cannot contain a NUL byte")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == target:
        if directory and not target.is_dir():
            raise RefquantError(f"{flag} {path}: exists and is not a directory")
        if not directory and target.is_dir():
            raise RefquantError(f"{flag} {path}: is a directory, not a file")
    elif not existing.is_dir():
        raise RefquantError(f"{flag} {path}: '{existing}' is not a directory")
    elif not directory and existing != target.parent:
        raise RefquantError(f"{flag} {path}: the folder '{target.parent}' does not exist")
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        raise RefquantError(f"{flag} {path}: '{existing}' is not writable")
    return target

"""Files that are either the old complete version or the new complete version, never half of one.

Every writer of the project (checkpoints, prediction files, features, lists, figures, converted
weights, generated videos) goes through :func:`atomic_path`: the new content goes to a hidden temp
file beside the target, which is fsynced and renamed over the target once complete (the rename is
atomic on POSIX), then the folder entry is fsynced. A failure, a ``KeyboardInterrupt`` or a kill
leaves the target as it was and no temp file behind (a kill leaves at most a hidden
``.<name>.<pid>.<hex>.tmp`` that :func:`is_temp_name` recognises).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file :func:`atomic_path` made (a save that was killed)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Makes a rename in ``directory`` durable. Some filesystems cannot fsync a folder (EINVAL,
    ENOTSUP): the rename has happened, so that is not an error."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], temp: str | os.PathLike[str] | None = None, sync: bool = True
) -> Iterator[Path]:
    """Yields a temp path beside ``path`` for a writer that takes a path (safetensors, PyAV, PIL,
    a folder); on a clean exit it is fsynced and renamed over ``path``, on any exception removed.

    The parent folder is created. A folder written at the temp path replaces an absent or empty
    ``path`` (rename(2) refuses a non-empty one). ``temp``: a fixed temp name instead of a unique
    hidden one, for a resumable job whose rerun overwrites what a killed run left (``<name>.part``).
    ``sync=False``: atomic but not fsynced, for files that are cheap to make again (generated data),
    where thousands of fsyncs would cost more than the writing.
    """
    with _replacing(path, sync=sync, temp=temp) as tmp:
        yield tmp


@contextmanager
def _replacing(
    path: str | os.PathLike[str],
    sync: bool,
    sync_file: bool = True,
    temp: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = (
        Path(temp)
        if temp is not None
        else path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    )
    renamed = False
    try:
        yield tmp
        if sync and sync_file and tmp.is_file():
            _fsync_file(tmp)
        os.replace(tmp, path)
        renamed = True
        if sync:
            fsync_dir(path.parent)
    finally:
        # also on KeyboardInterrupt: never leave a half-written temp behind (and once renamed, touch
        # nothing: an unlink of the gone name fails on a folder that turned read-only meanwhile)
        if not renamed:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Runs ``write(f)`` on a binary file that becomes ``path`` only once complete.

    The file is created with mode 0o666 (not mkstemp's 0o600), so it honours the umask as an
    ordinary ``open`` would.
    """
    with _replacing(path, sync=True, sync_file=False) as tmp:  # the file is fsynced here, through its fd
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` (UTF-8, ``\\n`` line ends as given) to ``path``, whole or not at all."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))

"""Exceptions raised by the data pipeline."""

from __future__ import annotations

import os


class AnnotationError(ValueError):
    """A list file cannot be used; the message names the file and, where it applies, the line."""

    def __init__(self, list_file: str | os.PathLike[str], line: int | None, reason: str) -> None:
        where = f"{os.fspath(list_file)}:{line}" if line is not None else os.fspath(list_file)
        super().__init__(f"{where}: {reason}")
        self.list_file = os.fspath(list_file)
        self.line = line
        self.reason = reason


class VideoDecodeError(RuntimeError):
    """One video file or frame folder could not be read.

    Decoder back-ends translate their own exceptions into this one, so the datasets catch exactly
    one type (and never mask bugs in the transforms by catching broad errors around them).
    """


class BadDataError(RuntimeError):
    """Too many samples in this process failed to load (see ``max_bad_fraction``)."""


# what the data tools (prepare / check / transcode) report in one line rather than a traceback:
# a list they cannot use, a folder they cannot read or write
TOOL_ERRORS: tuple[type[BaseException], ...] = (AnnotationError, BadDataError, OSError)

"""Annotation list files (VideoMAE format).

Two layouts, one sample per line, space separated, no header:

- video list:        ``<path> <label>``
- frame-folder list: ``<dir> <num_frames> <label>``

The label (and, for frame folders, the frame count) are the *last* fields, so paths may contain
spaces. Relative paths are resolved against ``root`` when given, else against the list file's
directory. Paths are only ever used as file-system paths (never handed to a shell).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from common.files import atomic_write_text

from .errors import AnnotationError

ListFormat = Literal["auto", "video", "frames"]
LIST_FORMATS: tuple[str, ...] = ("auto", "video", "frames")
SPLITS: tuple[str, ...] = ("train", "val", "test")
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv",
)  # fmt: skip
# Plain decimal integers only: int() would also accept "1_0", "+3" or non-ASCII digits.
_INT = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class VideoRecord:
    """One annotated sample.

    Attributes:
        path: file-system path of the video file or frame folder (resolved, never shell-quoted).
        label: class index as written in the list.
        num_frames: frame count from a frame-folder list; ``None`` for a video file.
        source: ``"<list file>:<line>"``, for messages.
    """

    path: str
    label: int
    num_frames: int | None
    source: str

    @property
    def video_id(self) -> str:
        """Base name without extension (the id the multi-view merge groups by)."""
        name = os.path.basename(os.path.normpath(self.path))
        stem, ext = os.path.splitext(name)
        return stem if ext.lower() in VIDEO_EXTENSIONS else name


def split_list_file(data_path: str | os.PathLike[str], split: str) -> str:
    """``<data_path>/<split>.csv`` for ``split`` in train / val / test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return os.path.join(os.fspath(data_path), f"{split}.csv")


def read_annotation_list(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    list_format: ListFormat = "auto",
    nb_classes: int | None = None,
) -> list[VideoRecord]:
    """Parse a list file into records.

    Args:
        list_file: the list to read.
        root: prefix for relative paths; defaults to the list file's directory.
        list_format: ``"video"``, ``"frames"`` or ``"auto"`` (decided from the first sample: a
            frame-folder line has two trailing integers and a path without a video extension).
        nb_classes: when given, every label must lie in ``[0, nb_classes)``; ``None`` leaves labels
            unchecked (pre-training ignores them).

    Raises:
        AnnotationError: on a malformed line, non-UTF-8 bytes, a bad label, or an empty list.
    """
    if list_format not in LIST_FORMATS:
        raise ValueError(f"list_format must be one of {LIST_FORMATS}, got {list_format!r}")
    list_file = os.fspath(list_file)
    with open(list_file, "rb") as handle:
        raw_lines = handle.read().split(b"\n")
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(list_file))

    records: list[VideoRecord] = []
    for line_no, raw in enumerate(raw_lines, start=1):
        text = _decode_line(raw, list_file, line_no).strip()
        if not text:
            continue
        if list_format == "auto":
            list_format = _guess_format(text)
        path, num_frames, label = _parse_line(text, list_format, list_file, line_no)
        if nb_classes is not None and not 0 <= label < nb_classes:
            raise AnnotationError(list_file, line_no, f"label {label} is outside [0, {nb_classes - 1}]")
        records.append(VideoRecord(os.path.join(base, path), label, num_frames, f"{list_file}:{line_no}"))
    if not records:
        raise AnnotationError(list_file, None, "the list contains no samples")
    return records


def _decode_line(raw: bytes, list_file: str, line_no: int) -> str:
    try:
        # utf-8-sig drops a byte-order mark, which some editors write at the start of the file.
        return raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise AnnotationError(
            list_file, line_no, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
        ) from None


def _guess_format(text: str) -> ListFormat:
    fields = text.rsplit(maxsplit=2)
    if (
        len(fields) == 3
        and _INT.fullmatch(fields[1])
        and _INT.fullmatch(fields[2])
        and not fields[0].lower().endswith(VIDEO_EXTENSIONS)
    ):
        return "frames"
    return "video"


def _parse_line(
    text: str, list_format: ListFormat, list_file: str, line_no: int
) -> tuple[str, int | None, int]:
    """Split one non-empty line into (path, num_frames or None, label)."""
    expected = "'<path> <label>'" if list_format == "video" else "'<dir> <num_frames> <label>'"
    fields = text.rsplit(maxsplit=1 if list_format == "video" else 2)
    if len(fields) != (2 if list_format == "video" else 3):
        raise AnnotationError(list_file, line_no, f"expected {expected}, got {text!r}")
    label = _parse_int(fields[-1], "label", expected, list_file, line_no)
    if label < 0:
        # Never valid, even where nb_classes is unknown (pre-training lists).
        raise AnnotationError(list_file, line_no, f"label {label} is negative")
    num_frames = None
    if list_format == "frames":
        num_frames = _parse_int(fields[1], "num_frames", expected, list_file, line_no)
        if num_frames < 1:
            raise AnnotationError(list_file, line_no, f"num_frames must be at least 1, got {num_frames}")
    return fields[0], num_frames, label


def _parse_int(field: str, name: str, expected: str, list_file: str, line_no: int) -> int:
    if not _INT.fullmatch(field):
        raise AnnotationError(list_file, line_no, f"{name} {field!r} is not an integer (expected {expected})")
    return int(field)


def format_record(path: str, label: int, num_frames: int | None = None) -> str:
    """One list line (no newline): ``<path> <label>``, or ``<dir> <num_frames> <label>`` for frames.

    Raises:
        ValueError: ``path`` cannot be read back from a list (line breaks, leading or trailing
            white space).
    """
    if "\n" in path or "\r" in path or path != path.strip():
        raise ValueError(f"{path!r} cannot be written to a list file (line break or edge white space)")
    return f"{path} {label}" if num_frames is None else f"{path} {num_frames} {label}"


def write_text_atomic(path: str | os.PathLike[str], lines: list[str]) -> str:
    """Write ``lines`` (one per line) to ``path`` whole or not at all (`common.files.atomic_write_text`)."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return os.fspath(path)

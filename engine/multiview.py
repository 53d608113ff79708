"""Multi-clip × multi-crop test: per-rank view files and their merge into top-1 / top-5.

Each rank writes one text file in the reference format (fixture README §6)::

    <header line, ignored by the merge>
    <video_id> [v0, v1, ..., vK-1] <label> <chunk> <crop>

:func:`merge_views` reads all rank files, softmaxes each view's logits (float64), drops
duplicated views (DistributedSampler pads the last batch by repeating samples), averages
the kept views per video and scores the mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from common.files import atomic_write_text

__all__ = ["MergeResult", "format_view_line", "merge_views", "softmax_f64", "write_rank_file"]

Dedupe = Literal["pair", "reference"]


def format_view_line(
    video_id: str,
    logits: torch.Tensor | np.ndarray | Sequence[float],
    label: int | torch.Tensor,
    chunk: int | torch.Tensor,
    crop: int | torch.Tensor,
) -> str:
    """One view line, ``"<video_id> [v0, v1, ...] <label> <chunk> <crop>\\n"``.

    The logits are written as python's ``str()`` of a list of floats, exactly as the reference
    (a float16 / float32 tensor keeps its exact value). ``logits`` is ``[K]``.

    Raises:
        ValueError: a video id with ``[``, ``]`` or a newline, or logits that are not 1-D.
    """
    if not video_id or any(c in video_id for c in "[]\n\r"):
        raise ValueError(f"video id {video_id!r} must be non-empty and contain no '[', ']' or newline")
    if isinstance(logits, torch.Tensor):
        values = logits.detach().cpu().tolist()
    elif isinstance(logits, np.ndarray):
        values = logits.tolist()
    else:
        values = [float(v) for v in logits]
    if not isinstance(values, list) or any(isinstance(v, list) for v in values):
        raise ValueError(f"logits of {video_id!r} must be 1-D [K]")
    values = [float(v) for v in values]
    return f"{video_id} {values} {int(label)} {int(chunk)} {int(crop)}\n"


def write_rank_file(path: str | os.PathLike[str], lines: Iterable[str], header: str = "") -> Path:
    """Write one rank's view lines atomically (temp file + rename), after a header line.

    The merge always skips the first line, so a header line is always written (empty when
    ``header`` is ""); the reference puts its last-batch accuracy there.
    """
    path = Path(path)
    if "\n" in header:
        raise ValueError("the header must be a single line")
    text = header + "\n" + "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return atomic_write_text(path, text)


def softmax_f64(logits: np.ndarray) -> np.ndarray:
    """Softmax of a ``[K]`` vector in float64: subtract the max, exp, divide by the sum."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


@dataclass
class MergeResult:
    """Merged multi-view scores; per-video lists follow ``video_names`` (first-seen order)."""

    top1: float
    """Top-1 accuracy over videos, percent."""
    top5: float
    """Top-5 accuracy over videos, percent."""
    video_names: list[str]
    mean_prob: np.ndarray
    """``[V, K]`` float64 mean of the kept views' softmax."""
    pred: list[int]
    label: list[int]
    """Label of each video's last kept view."""
    n_views_used: list[int]
    video_top1: list[float] = field(default_factory=list)
    """1.0 where the video's argmax is its label."""
    video_top5: list[float] = field(default_factory=list)
    """1.0 where the label is among the video's 5 highest scores."""


@dataclass
class _View:
    key: str
    name: str
    probs: np.ndarray
    label: int
    chunk: str
    crop: str
    pair: tuple[int, int]


def _parse_line(line: str, file: Path, lineno: int) -> _View:
    def bad(why: str) -> ValueError:
        return ValueError(f"{file}:{lineno}: malformed view line ({why}): {line.rstrip()!r}")

    if line.count("[") != 1 or line.count("]") != 1 or line.index("[") > line.index("]"):
        raise bad("expected exactly one '[...]' logits list")
    key, rest = line.split("[", 1)
    body, tail = rest.split("]", 1)
    fields = tail.split(" ")
    # The reference reads label/chunk/crop as the 2nd-4th fields after "]" (a single space first).
    if len(fields) != 4 or fields[0] != "" or not key.strip():
        raise bad("expected '<video_id> [logits] <label> <chunk> <crop>'")
    label, chunk, crop = fields[1:]
    try:
        values = np.array([float(v) for v in body.split(",")], dtype=np.float64)
        label_int, pair = int(label), (int(chunk), int(crop))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    return _View(key, key.strip(), softmax_f64(values), label_int, chunk, crop, pair)


def _read_views(paths: Sequence[str | os.PathLike[str]]) -> list[_View]:
    views = []
    for path in map(Path, paths):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        # Line 1 is the header; blank lines (e.g. a trailing one) carry no view.
        for lineno, raw in enumerate(lines[1:], start=2):
            line = raw.strip()
            if line:
                views.append(_parse_line(line, path, lineno))
    return views


def merge_views(paths: Sequence[str | os.PathLike[str]], dedupe: Dedupe = "pair") -> MergeResult:
    """Merge rank files (given in rank order) into per-video mean softmax and top-1 / top-5.

    Args:
        paths: the rank files.
        dedupe: ``"pair"`` drops a view whose integer (chunk, crop) pair was already seen for
            the video; ``"reference"`` reproduces the reference bit for bit, which keys on the
            string concatenation chunk+crop (so (1, 12) and (11, 2) collide) and keys videos on
            the raw text before ``[``.

    Raises:
        ValueError: malformed line (names file and line), no views at all, unknown ``dedupe``,
            or views of one video with different numbers of classes.
    """
    if dedupe not in ("pair", "reference"):
        raise ValueError(f"dedupe must be 'pair' or 'reference', got {dedupe!r}")
    kept: dict[str, list[np.ndarray]] = {}
    seen: dict[str, set[object]] = {}
    labels: dict[str, int] = {}
    names: dict[str, str] = {}
    for view in _read_views(paths):
        key = view.key if dedupe == "reference" else view.name
        pos = view.chunk + view.crop if dedupe == "reference" else view.pair
        kept.setdefault(key, [])
        names.setdefault(key, view.name)
        if pos in seen.setdefault(key, set()):
            continue
        seen[key].add(pos)
        kept[key].append(view.probs)
        labels[key] = view.label
    if not kept:
        raise ValueError(f"no view lines in {[str(p) for p in paths]}")

    means, preds, hits1, hits5 = [], [], [], []
    for key, probs in kept.items():
        if len({p.shape for p in probs}) != 1:
            raise ValueError(f"views of video {names[key]!r} have different numbers of classes")
        mean = np.mean(np.stack(probs), axis=0)
        pred = int(np.argmax(mean))
        means.append(mean)
        preds.append(pred)
        hits1.append(float(pred == labels[key]))
        hits5.append(float(labels[key] in np.argsort(-mean)[:5]))
    if len({m.shape for m in means}) != 1:
        raise ValueError("videos have different numbers of classes")
    return MergeResult(
        top1=float(np.mean(hits1) * 100),
        top5=float(np.mean(hits5) * 100),
        video_names=list(names.values()),
        mean_prob=np.stack(means),
        pred=preds,
        label=list(labels.values()),
        n_views_used=[len(p) for p in kept.values()],
        video_top1=hits1,
        video_top5=hits5,
    )

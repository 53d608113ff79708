"""Checkpoint files: atomic writes, names, rotation, the newest readable one, RNG state (reading a file:
`models.checkpoint.read_checkpoint`; what goes into one and when: `engine.checkpointer`).

A checkpoint on disk is always either the previous complete file or the new complete file:
:func:`atomic_save` writes through :func:`common.files.atomic_write` (a hidden temp file beside
the target, fsynced and renamed over it). Loading always uses ``weights_only=True``; a file that needs arbitrary
unpickling is refused, never retried unsafely.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from common.files import atomic_write, is_temp_name
from models.weights import CheckpointError, read_checkpoint

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "atomic_save",
    "get_rng_state",
    "saved_world_size",
    "set_rng_state",
]

_NUMBERED = re.compile(r"^checkpoint-(\d+)\.pth$")
_MID_EPOCH = re.compile(r"^checkpoint-(\d+)-(\d+)\.pth$")  # epoch, clips of its global order done


class _Recorder:
    """A file whose first write error is kept: torch.save's C++ writer turns one into a position
    mismatch ("unexpected pos 704 vs 598") that no longer says the disk is full or the file too large."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()


def _atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], what: str) -> Path:
    """`common.files.atomic_write`, any failure one `CheckpointError` line naming the real cause."""
    recorder: _Recorder | None = None

    def recorded(f: BinaryIO) -> None:
        nonlocal recorder
        recorder = _Recorder(f)
        write(recorder)

    try:
        return atomic_write(path, recorded)
    except Exception as exc:  # any failure (ENOSPC, EFBIG, EROFS, EACCES, unpicklable object) reads the same
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        raise CheckpointError(f"could not {what} {Path(path)}: {type(cause).__name__}: {reason}") from exc


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; the old file stays intact until the rename.

    Raises:
        CheckpointError: on any write failure (disk full, permission, ...); the temp file is
            removed and ``path`` is untouched.
    """
    return _atomic_write(path, lambda f: torch.save(obj, f), "save checkpoint to")


def _atomic_copy(src: Path, dst: Path) -> Path:
    def copy(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)

    return _atomic_write(dst, copy, f"copy {src} to")


class CheckpointManager:
    """Writes ``checkpoint-{epoch}.pth`` / ``checkpoint-best.pth`` in ``output_dir`` and rotates them.

    Args:
        output_dir: directory of the run's checkpoints.
        keep_last: numbered checkpoints to keep (the newest epochs); ``None`` keeps all.
    """

    def __init__(self, output_dir: str | os.PathLike[str], keep_last: int | None = 2) -> None:
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.output_dir = Path(output_dir)
        self.keep_last = keep_last

    @property
    def best_path(self) -> Path:
        """Path of the best checkpoint."""
        return self.output_dir / "checkpoint-best.pth"

    def path_for(self, epoch: int, clips_done: int | None = None) -> Path:
        """Path of the checkpoint of ``epoch`` (complete), or of its first ``clips_done`` clips (of the
        epoch's global order: the same name on any number of ranks, ordered by progress)."""
        if clips_done is None:
            return self.output_dir / f"checkpoint-{epoch}.pth"
        return self.output_dir / f"checkpoint-{epoch}-{clips_done}.pth"

    def mid_epoch(self) -> list[tuple[tuple[int, int], Path]]:
        """Existing mid-epoch checkpoints as ``((epoch, clips_done), path)``, oldest first."""
        return self._matching(_MID_EPOCH)

    def save_mid_epoch(self, state: dict[str, Any], epoch: int, clips_done: int) -> Path:
        """Write a mid-epoch checkpoint; keep the newest ``keep_last`` of them, none older than the
        newest complete epoch (those are superseded).

        Raises:
            CheckpointError: the write failed; nothing was rotated away.
        """
        path = self._save_or_explain(state, self.path_for(epoch, clips_done))
        self._rotate_mid_epoch()
        return path

    def _save_or_explain(self, state: dict[str, Any], path: Path) -> Path:
        """`atomic_save`; a failure's one line also says what the folder still holds."""
        try:
            return atomic_save(state, path)
        except CheckpointError as err:
            raise CheckpointError(f"{err}; {self.kept()}") from err

    def kept(self) -> str:
        """What a failure's line adds: the folder, its newest checkpoint (by name), what to do."""
        inf = float("inf")
        found = sorted([((e, inf), p) for e, p in self.numbered()] + self.mid_epoch(), key=lambda c: c[0])
        newest = (
            f"its newest checkpoint {found[-1][1].name} is intact" if found else "it holds no checkpoint yet"
        )
        return f"{self.output_dir}: {newest}; free space there (or make it writable) and relaunch the same command"

    def _rotate_mid_epoch(self) -> None:
        mids = self.mid_epoch()
        done = self.numbered()
        newest_epoch = done[-1][0] if done else -1
        keep = (
            {key for key, _ in mids[-self.keep_last :]}
            if self.keep_last is not None
            else {k for k, _ in mids}
        )
        for (epoch, batches), path in mids:
            if (epoch, batches) not in keep or epoch <= newest_epoch:
                path.unlink(missing_ok=True)

    def _matching(self, pattern: re.Pattern) -> list[tuple[tuple[int, ...], Path]]:
        """Files named like ``pattern`` as (their numbers, path), oldest first (temp files excluded)."""
        if not self.output_dir.is_dir():
            return []
        found = []
        for p in self.output_dir.iterdir():
            match = pattern.match(p.name)
            if match and p.is_file():
                found.append((tuple(int(g) for g in match.groups()), p))
        return sorted(found)

    def numbered(self) -> list[tuple[int, Path]]:
        """Existing numbered checkpoints as ``(epoch, path)``, oldest first (temp files excluded)."""
        return [(key[0], p) for key, p in self._matching(_NUMBERED)]

    def save(self, state: dict[str, Any], epoch: int, is_best: bool = False) -> Path:
        """Write the checkpoint of ``epoch`` (and the best copy), then drop old numbered ones.

        Raises:
            CheckpointError: the write failed; nothing was rotated away.
        """
        path = self._save_or_explain(state, self.path_for(epoch))
        if is_best:
            try:
                _atomic_copy(path, self.best_path)
            except CheckpointError as err:
                raise CheckpointError(f"{err}; {self.kept()}") from err
        self._rotate(keep=epoch)
        self._rotate_mid_epoch()  # the epoch is complete: its mid-epoch checkpoints are superseded
        return path

    def _rotate(self, keep: int) -> None:
        if self.keep_last is None:
            return
        existing = self.numbered()
        newest = {e for e, _ in existing[-self.keep_last :]} | {keep}
        for epoch, path in existing:
            if epoch not in newest:
                path.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        """Newest checkpoint (complete epoch or mid-epoch) that loads; unreadable ones are skipped
        with a warning. A complete epoch is newer than any mid-epoch checkpoint of it."""
        inf = float("inf")
        candidates = [((e, inf), p) for e, p in self.numbered()] + self.mid_epoch()
        for _, path in sorted(candidates, key=lambda c: c[0], reverse=True):
            try:
                # mmap: checks the archive and the pickle without reading every tensor.
                read_checkpoint(path, mmap=True)
            except CheckpointError:
                try:
                    read_checkpoint(path)  # gives the real reason (mmap also refuses non-zip files)
                except CheckpointError as exc:
                    warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
                    continue
            return path
        return None

    def cleanup_temp(self) -> list[Path]:
        """Remove temp files left by interrupted saves; returns what was removed."""
        if not self.output_dir.is_dir():
            return []
        removed = []
        for p in self.output_dir.iterdir():
            if is_temp_name(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed


def saved_world_size(ckpt: dict[str, Any]) -> int:
    """Processes that wrote ``ckpt`` (older files: one RNG state per rank)."""
    if "world_size" in ckpt:
        return int(ckpt["world_size"])
    rng = ckpt.get("rng")
    return len(rng) if isinstance(rng, list) else 1


def get_rng_state() -> dict[str, Any]:
    """RNG states of python ``random``, numpy's global generator, torch CPU and CUDA.

    Only tensors and plain python types, so the dict survives ``weights_only=True`` loading.
    """
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing entries are left alone)."""
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "numpy" in state:
        npy = state["numpy"]
        np.random.set_state(
            {
                "bit_generator": npy["bit_generator"],
                "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
                "has_gauss": npy["has_gauss"],
                "gauss": npy["gauss"],
            }
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

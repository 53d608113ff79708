"""engine.checkpoint: atomic writes, rotation, safe loading, RNG round trip."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.checkpoint as ckpt_mod
from engine.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_save,
    get_rng_state,
    set_rng_state,
)
from models.weights import extract_state_dict, read_checkpoint


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((4,), value)}, "epoch": int(value)}


def _temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


# --- atomic_save --------------------------------------------------------------------------


def test_atomic_save_roundtrip_leaves_no_temp(tmp_path: Path) -> None:
    path = atomic_save(_state(1.0), tmp_path / "sub" / "a.pth")
    assert read_checkpoint(path)["epoch"] == 1
    assert _temp_files(path.parent) == []


@pytest.mark.parametrize(
    ("err", "text"), [(errno.ENOSPC, "No space left"), (errno.EACCES, "Permission denied")]
)
def test_atomic_save_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, text: str
) -> None:
    path = tmp_path / "ckpt.pth"
    atomic_save(_state(1.0), path)
    before = path.read_bytes()

    def failing_save(obj: object, f) -> None:
        f.write(b"partial bytes")  # a half-written temp file must be cleaned up
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(CheckpointError, match=text) as info:
        atomic_save(_state(2.0), path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert _temp_files(tmp_path) == []


def test_atomic_save_rename_failure_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.pth"
    atomic_save(_state(1.0), path)

    def no_replace(src: str, dst: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(ckpt_mod.os, "replace", no_replace)
    with pytest.raises(CheckpointError, match="Permission denied"):
        atomic_save(_state(2.0), path)
    assert read_checkpoint(path)["epoch"] == 1
    assert _temp_files(tmp_path) == []


# --- read_checkpoint ----------------------------------------------------------------------


class _Exploit:
    """Unpickling this would run ``os.system`` and create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_load_refuses_pickled_callable_and_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects.*weights_only=True") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 20, "truncated"])
def test_load_corrupt_files(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save(_state(1.0), path)
        content = path.read_bytes()[:-200]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_extract_state_dict() -> None:
    w = {"a.weight": torch.ones(2)}
    for ckpt in ({"model": w, "epoch": 3}, {"module": w}, w, {"module.a.weight": w["a.weight"]}):
        got = extract_state_dict(ckpt)
        assert list(got) == ["a.weight"] and got["a.weight"] is w["a.weight"]
    with pytest.raises(CheckpointError, match="neither a state dict"):
        extract_state_dict({"epoch": 3})
    with pytest.raises(CheckpointError, match="'model'"):
        extract_state_dict({"model": [1, 2]})


# --- CheckpointManager --------------------------------------------------------------------


def test_manager_rotates_and_keeps_best(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for epoch in range(5):
        mgr.save(_state(float(epoch)), epoch, is_best=epoch == 1)
    assert [e for e, _ in mgr.numbered()] == [3, 4]
    assert read_checkpoint(mgr.best_path)["epoch"] == 1
    assert mgr.latest() == mgr.path_for(4)


def test_manager_failed_save_rotates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(_state(0.0), 0)

    def failing_save(obj: object, f) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(CheckpointError):
        mgr.save(_state(1.0), 1)
    assert [e for e, _ in mgr.numbered()] == [0]
    assert mgr.latest() == mgr.path_for(0)


def test_latest_skips_truncated_and_ignores_temp(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=None)
    mgr.save(_state(1.0), 1)
    mgr.save(_state(2.0), 2)
    newest = mgr.path_for(2)
    newest.write_bytes(newest.read_bytes()[:100])
    (tmp_path / ".checkpoint-3.pth.123.tmp").write_bytes(b"half")
    with pytest.warns(UserWarning, match="checkpoint-2.pth"):
        assert mgr.latest() == mgr.path_for(1)
    assert mgr.cleanup_temp() == [tmp_path / ".checkpoint-3.pth.123.tmp"]
    assert _temp_files(tmp_path) == []


def test_latest_empty_dir(tmp_path: Path) -> None:
    assert CheckpointManager(tmp_path / "missing").latest() is None


def test_keep_last_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)


# --- RNG ----------------------------------------------------------------------------------


def test_rng_state_roundtrip_through_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    atomic_save({"rng": get_rng_state()}, tmp_path / "rng.pth")
    first = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(read_checkpoint(tmp_path / "rng.pth")["rng"])
    second = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    assert first[:3] == second[:3]
    assert torch.equal(first[3], second[3])


def test_mid_epoch_checkpoints_order_rotation_and_supersession(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for epoch, batches in [(0, 2), (0, 4), (0, 6)]:
        manager.save_mid_epoch({"epoch": epoch, "batches_done": batches}, epoch, batches)
    assert [key for key, _ in manager.mid_epoch()] == [(0, 4), (0, 6)]  # the newest --keep_last
    assert manager.latest() == manager.path_for(0, 6)
    manager.save({"epoch": 0}, 0)  # epoch 0 complete: its mid-epoch checkpoints are superseded
    assert manager.mid_epoch() == [] and manager.latest() == manager.path_for(0)
    manager.save_mid_epoch({"epoch": 1, "batches_done": 3}, 1, 3)
    assert manager.latest() == manager.path_for(1, 3)  # epoch 1, clip 3 is newer than checkpoint-0
    assert manager.path_for(1, 3).name == "checkpoint-1-3.pth" and [e for e, _ in manager.numbered()] == [0]

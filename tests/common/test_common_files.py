"""common.files: a target is the old complete file or the new complete one, and no temp is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.files import atomic_path, atomic_write, atomic_write_text, is_temp_name


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, error: BaseException) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old\n")

    def half_then_fail(f) -> None:
        f.write(b"new, half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n" and _left(tmp_path) == ["a.txt"]


def test_path_writers_and_folders_appear_whole(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "sub" / "b.bin") as tmp:  # the parent is made
        assert is_temp_name(tmp.name) and tmp.parent == tmp_path / "sub"
        tmp.write_bytes(b"xyz")
        assert not (tmp_path / "sub" / "b.bin").exists()  # nothing under the final name before the end
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"xyz" and _left(tmp_path / "sub") == ["b.bin"]

    (tmp_path / "out").mkdir()  # an empty folder is replaced
    with atomic_path(tmp_path / "out") as tmp:
        tmp.mkdir()
        atomic_write_text(tmp / "config.json", "{}")
    assert _left(tmp_path / "out") == ["config.json"]

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "gone") as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError("writer failed")
    assert "gone" not in _left(tmp_path) and not [n for n in _left(tmp_path) if is_temp_name(n)]


def test_a_fixed_temp_name_overwrites_what_a_killed_run_left(tmp_path: Path) -> None:
    stale = tmp_path / "v.mp4.part"
    stale.write_bytes(b"half a video of a killed run")
    with atomic_path(tmp_path / "v.mp4", temp=stale, sync=False) as tmp:
        assert tmp == stale
        tmp.write_bytes(b"whole video")
    assert _left(tmp_path) == ["v.mp4"] and (tmp_path / "v.mp4").read_bytes() == b"whole video"


def test_new_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "c.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640

"""A save that fails for real, not through a patched ``torch.save``: the file-size limit (``ulimit -f``),
an output folder remounted read-only, a disk that fills up. One line naming the folder and the cause,
the newest complete checkpoint still the newest, no partial file under a final name, nothing rotated
away, and the same command resumes to the uninterrupted run's weights once the cause is gone.

The folder is a small tmpfs mounted for the test (root, as here and in CI); where mounting is not
permitted the tmpfs cases skip and the ``ulimit -f`` case runs in a plain folder.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    argv_for,
    assert_one_line_error,
    epochs_logged,
    latest,
    model_digest,
    ok,
    show,
    temp_files,
)

CASES = [
    # (fault after checkpoint-0 is in place, command it runs, the write that fails, what the line says);
    # log.txt gets epoch 1's line before its checkpoint: on a read-only folder that append fails first
    ("fsize_after_save:1", None, "save checkpoint to {out}/checkpoint-1.pth", "OSError: File too large"),
    (
        "shell_after_save:1",
        "mount -o remount,ro {out}",
        "append to {out}/log.txt",
        "OSError: Read-only file system",
    ),
    (
        "shell_after_save:1",
        # bounded (64 MiB, 4x the tmpfs): a folder that is not the tmpfs is never filled up
        "dd if=/dev/zero of={out}/fill bs=64k count=1024 status=none 2>/dev/null || true",
        "save checkpoint to {out}/checkpoint-1.pth",
        "OSError: No space left on device",
    ),
]


def _mount(out, size: str = "16m") -> bool:
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(out)]).returncode == 0
    return mounted and os.path.ismount(out)


@pytest.mark.parametrize("case", CASES, ids=["ulimit-f", "read-only", "disk-full"])
def test_a_real_failed_save_keeps_the_newest_checkpoint_and_resumes(
    case, videos, teacher_ckpt, references, forkserver, tmp_path
):
    fault, cmd, what, cause = case
    out = tmp_path / "run"
    mounted = _mount(out)
    if cmd is not None and not mounted:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        argv = argv_for(DISTILL, videos, teacher_ckpt, out, "--keep_last", "1")
        env = {"MMKD_FAULT": fault, "MMKD_FAULT_CMD": (cmd or "").format(out=out)}
        proc = forkserver.run(DISTILL, argv, env=env)
        line = assert_one_line_error(proc, "could not " + what.format(out=out), cause)
        assert f"{out}: its newest checkpoint checkpoint-0.pth is intact" in line, line
        assert proc.returncode == 1, show(proc)
        if "remount" in (cmd or ""):
            subprocess.run(["mount", "-o", "remount,rw", str(out)], check=True)
        (out / "fill").unlink(missing_ok=True)
        # the rotation (--keep_last 1) dropped nothing: checkpoint-0 is the newest, whole, and alone
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0.pth"]
        assert latest(out) == out / "checkpoint-0.pth" and temp_files(out) == []
        assert model_digest(out / "checkpoint-0.pth") == references[DISTILL]["first"]

        resumed = ok(forkserver.run(DISTILL, argv))  # the limit / the space back: the same command
        assert f"resumed from {out / 'checkpoint-0.pth'} (epoch 0)" in resumed.stdout, show(resumed)
        assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[DISTILL]["final"]
        assert epochs_logged(out) == list(range(EPOCHS))  # no half line, no epoch twice
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(out)])

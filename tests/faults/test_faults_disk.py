"""Disk full / permission denied while saving a checkpoint: a one-line error saying what and where,
the previous checkpoint intact and loadable, no temp file left, and the run resumable."""

from __future__ import annotations

import pytest
import torch

from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    FINETUNE,
    argv_for,
    assert_one_line_error,
    latest,
    model_digest,
    ok,
    show,
    temp_files,
)

CASES = [
    # (script, fault, checkpoint being written, what the message says)
    (DISTILL, "save_enospc:2", 1, "OSError: No space left on device"),  # half the bytes written, then ENOSPC
    (DISTILL, "save_eacces:2", 1, "PermissionError: Permission denied"),  # temp file cannot be created
    (DISTILL, "save_enospc:1", 0, "OSError: No space left on device"),  # the very first save
    (FINETUNE, "save_enospc:2", 1, "OSError: No space left on device"),  # with a best-checkpoint copy
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0].split('_')[1]}-{c[1].replace(':', '')}" for c in CASES])
def test_failed_save_is_one_line_and_previous_checkpoint_survives(
    case, videos, teacher_ckpt, references, forkserver, tmp_path
):
    script, fault, epoch, what = case
    out = tmp_path / "run"
    argv = argv_for(script, videos, teacher_ckpt, out)
    proc = forkserver.run(script, argv, env={"MMKD_FAULT": fault})
    target = out / f"checkpoint-{epoch}.pth"
    assert_one_line_error(proc, f"could not save checkpoint to {target}", what, exit_code=1)
    assert not target.exists() and temp_files(out) == [], sorted(p.name for p in out.iterdir())
    if epoch == 0:
        assert latest(out) is None
    else:
        previous = out / f"checkpoint-{epoch - 1}.pth"
        assert latest(out) == previous
        assert torch.load(previous, weights_only=True)["epoch"] == epoch - 1
        assert model_digest(previous) == references[script]["first"]
    resumed = ok(forkserver.run(script, argv))  # space / permission back: the same command finishes the job
    assert ("resumed from" in resumed.stdout) == (epoch > 0), show(resumed)
    assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[script]["final"]

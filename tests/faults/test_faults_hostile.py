"""Hostile files: a checkpoint carrying a pickled callable is refused and never executed; paths with
shell metacharacters in a list are only ever paths."""

from __future__ import annotations

import builtins
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.engine.conftest import distill_argv, finetune_argv
from tests.faults.harness import (
    DISTILL,
    FINETUNE,
    PRETRAIN,
    assert_no_traceback,
    assert_one_line_error,
    assert_untouched,
    log_records,
    ok,
    pretrain_argv,
    show,
)


class _ShellPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _ExecPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """Two armed checkpoints (os.system / exec) with the marker each would create when unpickled."""
    root = tmp_path_factory.mktemp("hostile")
    files = {}
    for name, payload in (("system", _ShellPayload), ("exec", _ExecPayload)):
        marker = root / f"EXECUTED_{name}"
        path = root / f"evil_{name}.pth"
        torch.save({"model": {"w": torch.zeros(2)}, "epoch": 0, "extra": payload(marker)}, path)
        files[name], files[f"{name}_marker"] = path, marker
        # the payload is live: an unsafe load runs it (proof that the tests below are not vacuous)
        proof = root / f"proof_{name}.pth"
        torch.save(payload(root / f"PROOF_{name}"), proof)
        torch.load(proof, weights_only=False)
        assert (root / f"PROOF_{name}").exists()
    return files


CASES = {
    # id: (script, option, payload, exit code)
    "finetune_option": (FINETUNE, "--finetune", "system", 2),
    "teacher_option": (DISTILL, "--path_t", "exec", 2),
    "resume_pretraining": (PRETRAIN, "--resume", "system", 2),
    "resume_distillation": (DISTILL, "--resume", "exec", 2),
    "resume_finetuning": (FINETUNE, "--resume", "system", 2),
}


def _argv(script: str, videos: Path, teacher: Path, out: Path) -> list[str]:
    if script == PRETRAIN:
        return pretrain_argv(videos, out)
    if script == DISTILL:
        return distill_argv(videos, teacher, out)
    return finetune_argv(videos, out)


@pytest.mark.parametrize("name", list(CASES))
def test_pickled_callable_in_checkpoint_is_refused_never_run(
    name, hostile, videos, teacher_ckpt, forkserver, tmp_path
):
    script, option, payload, code = CASES[name]
    out = tmp_path / "out"
    proc = forkserver.run(script, _argv(script, videos, teacher_ckpt, out) + [option, str(hostile[payload])])
    line = assert_one_line_error(proc, str(hostile[payload]), "refusing to load", exit_code=code)
    assert "system" in line or "exec" in line  # names the forbidden global
    assert not hostile[f"{payload}_marker"].exists(), "the pickled payload was executed"
    assert not list(out.glob("*.pth"))  # (--resume: args.json is written before the checkpoint is read)
    if code == 2:  # refused while building, before anything is written
        assert_untouched(out)


def test_hostile_and_garbage_files_in_output_dir_are_skipped_by_auto_resume(
    hostile, garbage_file, videos, teacher_ckpt, forkserver, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(hostile["system"], out / "checkpoint-8.pth")
    shutil.copy(hostile["exec"], out / "checkpoint-7.pth")
    shutil.copy(garbage_file, out / "checkpoint-6.pth")
    proc = ok(forkserver.run(DISTILL, distill_argv(videos, teacher_ckpt, out, "--epochs", "1")))
    assert "resumed from" not in proc.stdout
    for n in (6, 7, 8):
        assert f"skipping unreadable checkpoint: checkpoint {out / f'checkpoint-{n}.pth'}" in proc.stderr, (
            show(proc)
        )
    assert not hostile["system_marker"].exists() and not hostile["exec_marker"].exists()
    torch.load(out / "checkpoint-0.pth", weights_only=True)


def test_list_paths_with_shell_metacharacters_are_only_paths(videos, teacher_ckpt, forkserver, tmp_path):
    marker = tmp_path / "SHELL_RAN"
    cwd_marker_name = "SHELL_RAN_IN_CWD"
    good = [line.rsplit(maxsplit=1)[0] for line in (videos / "pretrain.csv").read_text().splitlines()]
    odd_dir = tmp_path / "odd"
    odd_dir.mkdir()
    # a real video whose name is full of metacharacters: it must load like any other file
    real = odd_dir / "my clip ; $(true) `true` & 'q' | x.mp4"
    shutil.copy(videos / good[0], real)
    hostile = [
        f"$(touch {marker}).mp4",
        f"`touch {marker}`.mp4",
        f"odd/clip; touch {marker}; {cwd_marker_name}.mp4",
        f"odd/a | touch {cwd_marker_name} && echo $HOME > {marker}.mp4",
    ]
    rows = [f"{videos / p} 0" for p in good[1:]] + [f"odd/{real.name} 1"] + [f"{h} 2" for h in hostile]
    lst = tmp_path / "list.csv"  # relative paths resolve against the list's folder
    lst.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    proc = ok(
        forkserver.run(
            DISTILL, distill_argv(videos, teacher_ckpt, out, "--data_path", str(lst), "--epochs", "1")
        )
    )
    assert_no_traceback(proc)
    assert not marker.exists() and not Path(f"{marker}.mp4").exists()
    for folder in (tmp_path, odd_dir, Path.cwd(), Path(__file__).resolve().parents[2]):
        assert not (folder / cwd_marker_name).exists()
    # 16 items, every one drawn: the four hostile lines failed as missing files (at least once each)
    assert log_records(out)[0]["train_bad_files"] >= len(hostile)
    for h in hostile:
        assert f"unreadable sample {tmp_path / h}" in proc.stderr, show(proc)
    assert str(real) not in proc.stderr  # the oddly named real file loaded

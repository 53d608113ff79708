"""Broken data: training completes with the broken files counted, evaluation names what it excluded,
a broken list is a one-line error naming file and line, and a mostly-broken data set stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datasets.synthetic import make_synthetic_dataset
from tests.engine.conftest import distill_argv, finetune_argv
from tests.faults.harness import (
    DISTILL,
    FINETUNE,
    assert_no_traceback,
    assert_one_line_error,
    assert_untouched,
    error_lines,
    log_records,
    ok,
    show,
)

BAD_KINDS = [
    "zero_byte", "truncated", "random_bytes", "missing", "codec", "corrupt_frames_data",
    "frames_unreadable", "frames_empty", "symlink_loop",
]  # fmt: skip


def _videos(videos: Path, split: str) -> list[tuple[str, int]]:
    rows = [line.rsplit(maxsplit=1) for line in (videos / f"{split}.csv").read_text().splitlines()]
    return [(str(videos / path), int(label)) for path, label in rows]


def _write(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p} {label}\n" for p, label in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def broken(videos, tmp_path_factory) -> dict[str, str]:
    """One broken input of each kind (plus a too-short video), keyed by kind."""
    root = tmp_path_factory.mktemp("broken")
    good = Path(_videos(videos, "train")[0][0]).read_bytes()
    paths = {kind: str(root / f"{kind}.mp4") for kind in BAD_KINDS}
    Path(paths["zero_byte"]).write_bytes(b"")
    Path(paths["truncated"]).write_bytes(good[: len(good) // 2])
    Path(paths["random_bytes"]).write_bytes(np.random.default_rng(0).bytes(30_000))
    assert b"avc1" in good
    Path(paths["codec"]).write_bytes(good.replace(b"avc1", b"zz9q"))  # a fourcc no decoder knows
    start = good.find(b"mdat") + 4  # container intact, compressed frames replaced by noise
    size = int.from_bytes(good[start - 8 : start - 4], "big")
    noise = np.random.default_rng(1).bytes(size - 8)
    Path(paths["corrupt_frames_data"]).write_bytes(good[:start] + noise + good[start - 8 + size :])
    paths["frames_unreadable"] = str(root / "frames_unreadable")  # a frame folder of undecodable images
    os.mkdir(paths["frames_unreadable"])
    for i in range(1, 25):
        Path(paths["frames_unreadable"], f"img_{i:05d}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    paths["frames_empty"] = str(root / "frames_empty")
    os.mkdir(paths["frames_empty"])
    Path(root / "loop_b.mp4").symlink_to(Path(paths["symlink_loop"]).name)
    Path(paths["symlink_loop"]).symlink_to("loop_b.mp4")
    # paths["missing"] is never created
    short = make_synthetic_dataset(
        root / "short", num_classes=1, videos_per_class=1, num_frames=3, width=48, height=40,
        val_fraction=0, test_fraction=0, workers=1,
    )  # fmt: skip
    paths["too_short"] = str(Path(short["root"]) / "videos" / "up" / "up_0000.mp4")
    return paths


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return name[:-4] if name.endswith(".mp4") else name


def _finetune_data(videos: Path, folder: Path, bad: list[str], n_train_good: int) -> Path:
    """train: n_train_good good videos + the bad ones; val / test: 3 good + the bad ones."""
    train = _videos(videos, "train")[:n_train_good]
    for i, path in enumerate(bad):
        train.insert((5 * i + 3) % (len(train) + 1), (path, i % 3))
    _write(folder / "train.csv", train)
    _write(folder / "val.csv", _videos(videos, "val") + [(p, 1) for p in bad])
    _write(folder / "test.csv", _videos(videos, "test") + [(p, 2) for p in bad])
    return folder


@pytest.mark.parametrize("kind", [*BAD_KINDS, "too_short"])
def test_finetune_counts_and_reports_each_broken_kind(kind, broken, videos, forkserver, tmp_path):
    data = _finetune_data(videos, tmp_path / "data", [broken[kind]], n_train_good=11)  # 12 = 3 full batches
    out = tmp_path / "out"
    proc = ok(forkserver.run(FINETUNE, finetune_argv(data, out)))
    assert_no_traceback(proc)
    record, final = log_records(out)[0], log_records(out)[-1]["final_test"]
    if (
        kind == "too_short"
    ):  # 3 frames: read with the last frame repeated, as the reference does; not an error
        assert record["train_bad_files"] == 0 and record["val_excluded"] == 0, record
        assert final["excluded"] == 0 and final["num_videos"] == 4
        assert "broken video" not in proc.stdout
        return
    # every training item is drawn once: the broken one failed once and was replaced by a good one
    assert record["train_bad_files"] == 1, record
    assert f"unreadable sample {broken[kind]}" in proc.stderr  # named once, as a warning
    assert record["val_excluded"] == 1 and record["val_num_videos"] == 3, record
    assert "validation: 1 broken video(s) excluded from the metric" in proc.stdout
    assert final["excluded"] == 1 and final["num_videos"] == 3, final
    assert f"test: 1 broken video(s) excluded from the metric: {_stem(broken[kind])}" in proc.stdout


def test_distillation_counts_every_broken_kind(broken, videos, teacher_ckpt, forkserver, tmp_path):
    rows = _videos(videos, "train") + [(broken[k], 0) for k in BAD_KINDS]  # 12 + 9 = 21 items, 5 batches
    lst = _write(tmp_path / "list.csv", rows)
    out = tmp_path / "out"
    argv = distill_argv(
        videos, teacher_ckpt, out, "--data_path", str(lst), "--epochs", "1", "--max_bad_fraction", "0.95"
    )
    proc = ok(forkserver.run(DISTILL, argv))
    assert_no_traceback(proc)
    assert log_records(out)[0]["train_bad_files"] >= len(BAD_KINDS) - 1  # 20 of 21 items are drawn
    assert (out / "checkpoint-0.pth").is_file()


@pytest.mark.slow
def test_broken_files_with_worker_processes(broken, videos, forkserver, tmp_path):
    """--num_workers 2: every broken kind at once, no worker dies, the counts reach the main process."""
    bad = [broken[k] for k in BAD_KINDS]
    data = _finetune_data(videos, tmp_path / "data", bad, n_train_good=11)  # 20 items
    out = tmp_path / "out"
    argv = finetune_argv(data, out, "--num_workers", "2", "--max_bad_fraction", "0.95")
    proc = ok(forkserver.run(FINETUNE, argv))
    assert_no_traceback(proc)
    for text in ("exited unexpectedly", "DataLoader worker", "Killed"):
        assert text not in proc.stdout + proc.stderr, show(proc)
    record, final = log_records(out)[0], log_records(out)[-1]["final_test"]
    assert record["train_bad_files"] >= len(bad), record
    assert record["val_excluded"] == len(bad) and final["excluded"] == len(bad), (record, final)
    assert f"test: {len(bad)} broken video(s) excluded from the metric" in proc.stdout


# ----- list-level faults: one line naming file and line, nothing written ---------------------------
LIST_FAULTS = {
    # kind: (split, line number, text of that line (bytes), words of the message)
    "missing_label": ("train", 3, b"videos/a/no_label.mp4", "expected '<path> <label>'"),
    "label_not_integer": ("train", 2, b"videos/a/x.mp4 three", "label 'three' is not an integer"),
    "label_negative": ("train", 4, b"videos/a/x.mp4 -1", "label -1 is negative"),
    "label_out_of_range": ("val", 2, b"videos/a/x.mp4 7", "label 7 is outside [0, 2]"),
    "non_utf8": ("test", 3, b"videos/a/caf\xe9\xff.mp4 1", "not valid UTF-8"),
    "frames_count_zero": ("test", 1, b"rawframes/clip_0 0 1", "num_frames must be at least 1"),
}


@pytest.mark.parametrize("kind", list(LIST_FAULTS))
def test_broken_list_is_one_line_error_naming_file_and_line(kind, videos, forkserver, tmp_path):
    split, line_no, text, words = LIST_FAULTS[kind]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "val", "test"):
        lines = [f"{p} {label}".encode() for p, label in _videos(videos, name)]
        if name == split:
            lines.insert(line_no - 1, text)
        (data / f"{name}.csv").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    proc = forkserver.run(FINETUNE, finetune_argv(data, out))
    assert_one_line_error(proc, f"{data / split}.csv:{line_no}: ", words, exit_code=1)
    assert_untouched(out)


def test_broken_pretraining_list_is_one_line_error(videos, teacher_ckpt, forkserver, tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text((videos / "pretrain.csv").read_text() + "videos/a/x.mp4 0 extra words 1.5\n")
    out = tmp_path / "out"
    proc = forkserver.run(DISTILL, distill_argv(videos, teacher_ckpt, out, "--data_path", str(lst)))
    assert_one_line_error(proc, f"{lst}:13: ", "label '1.5' is not an integer", exit_code=1)
    assert_untouched(out)


# ----- most files broken: one clear message ----------------------------------------------------------
def _mostly_broken(broken, videos, tmp_path) -> Path:
    rows = _videos(videos, "train")[:2] + [(broken[k], 0) for k in BAD_KINDS] + [(broken["missing"], 0)]
    return _write(tmp_path / "list.csv", rows)  # 2 good of 12


def test_mostly_broken_data_stops_with_one_clear_message(broken, videos, teacher_ckpt, forkserver, tmp_path):
    lst, out = _mostly_broken(broken, videos, tmp_path), tmp_path / "out"
    proc = forkserver.run(DISTILL, distill_argv(videos, teacher_ckpt, out, "--data_path", str(lst)))
    assert proc.returncode == 1, show(proc)
    assert_no_traceback(proc)
    errors = [line for line in error_lines(proc) if "error:" in line]
    assert len(errors) == 1 and "max_bad_fraction" in errors[0], show(proc)
    assert (
        error_lines(proc)[-1] == errors[0]
    )  # the last word is the error (before it: one warning per bad file)
    assert not list(out.glob("checkpoint-*.pth"))


def test_mostly_broken_data_with_workers_stops_with_one_clear_message(
    broken, videos, teacher_ckpt, forkserver, tmp_path
):
    lst, out = _mostly_broken(broken, videos, tmp_path), tmp_path / "out"
    argv = distill_argv(videos, teacher_ckpt, out, "--data_path", str(lst), "--num_workers", "2")
    proc = forkserver.run(DISTILL, argv)
    assert proc.returncode == 1, show(proc)
    assert_no_traceback(proc)
    errors = [line for line in error_lines(proc) if "error:" in line]
    assert len(errors) == 1 and "max_bad_fraction" in errors[0], show(proc)

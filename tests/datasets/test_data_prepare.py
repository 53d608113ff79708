"""datasets.prepare on miniature copies of the official UCF101 / HMDB51 / Kinetics-400 / SSv2 layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import prepare
from datasets.annotations import read_annotation_list
from engine.cli import run

ROOT = Path(__file__).resolve().parents[2]


def _touch(path: Path, data: bytes = b"video") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _prepare(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = run(prepare.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _labels(path: Path) -> dict[str, int]:
    return {
        Path(r.path).stem if r.num_frames is None else Path(r.path).name: r.label
        for r in read_annotation_list(path)
    }


@pytest.fixture
def ucf101(tmp_path: Path) -> Path:
    """Three classes; split 1 and 2 differ; the official files end lines with CRLF."""
    lists = tmp_path / "release" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    classes = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    (lists / "classInd.txt").write_bytes(b"".join(f"{i + 1} {c}\r\n".encode() for i, c in enumerate(classes)))
    # File names spell the class differently from its folder in the real set (HandStand vs Handstand).
    videos = {c: [f"v_{c.replace('Handstand', 'HandStand')}_g0{g}_c01.avi" for g in (1, 2)] for c in classes}
    for split in (1, 2, 3):
        train_group = 1 if split == 1 else 2
        train = [f"{c}/{v[train_group - 1]} {i + 1}\r\n" for i, (c, v) in enumerate(videos.items())]
        test = [f"{c}/{v[2 - train_group]}\r\n" for c, v in videos.items()]
        (lists / f"trainlist0{split}.txt").write_bytes("".join(train).encode())
        (lists / f"testlist0{split}.txt").write_bytes("".join(test).encode())
    for c, names in videos.items():
        for name in names:
            if name != "v_Archery_g02_c01.avi":  # listed, not downloaded
                _touch(tmp_path / "release" / "UCF-101" / c / name)
    _touch(tmp_path / "release" / "UCF-101" / "Archery" / "v_Archery_g09_c09.avi")  # in no list
    return tmp_path / "release"


def test_ucf101_crlf_labels_and_missing(ucf101: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "lists"
    code, stdout, _ = _prepare(capsys, "ucf101", "--root", ucf101, "--out", out)
    assert code == 0
    assert "train 3, val 2, test 2 videos of 3 classes" in stdout
    assert "1 listed but missing, 1 unlisted" in stdout
    assert _labels(out / "train.csv") == {
        "v_ApplyEyeMakeup_g01_c01": 0, "v_Archery_g01_c01": 1, "v_HandStandPushups_g01_c01": 2,
    }  # fmt: skip
    # test list: label from the class folder (0-based in classInd order), the missing video left out
    assert _labels(out / "test.csv") == {"v_ApplyEyeMakeup_g02_c01": 0, "v_HandStandPushups_g02_c01": 2}
    assert (out / "val.csv").read_text() == (out / "test.csv").read_text()
    assert (out / "classes.txt").read_text() == "0 ApplyEyeMakeup\n1 Archery\n2 HandstandPushups\n"
    report = (out / "missing.txt").read_text()
    assert "val,test v_Archery_g02_c01" in report and "v_Archery_g09_c09.avi" in report
    assert "\r" not in (out / "train.csv").read_text()


def test_ucf101_split_selection(ucf101: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "lists2"
    assert _prepare(capsys, "ucf101", "--root", ucf101, "--out", out, "--split", "2")[0] == 0
    # split 2 trains on group 2 (Archery g02 missing) and tests on group 1
    assert _labels(out / "train.csv") == {"v_ApplyEyeMakeup_g02_c01": 0, "v_HandStandPushups_g02_c01": 2}
    assert set(_labels(out / "test.csv")) == {
        "v_ApplyEyeMakeup_g01_c01",
        "v_Archery_g01_c01",
        "v_HandStandPushups_g01_c01",
    }


def test_hmdb51_splits_unused_and_videos_elsewhere(tmp_path: Path, capsys) -> None:
    splits = tmp_path / "release" / "testTrainMulti_7030_splits"
    rows = {
        "ride_bike": ["a.avi 1 ", "b.avi 2 ", "c.avi 0 "],
        "brush_hair": ["d.avi 2 ", "e.avi 1 ", "f.avi 1 "],
    }
    splits.mkdir(parents=True)
    for name, lines in rows.items():
        for split in (1, 2, 3):
            other = [line.replace(" 1 ", " 0 ") for line in lines]  # splits 2 and 3 use nothing for training
            (splits / f"{name}_test_split{split}.txt").write_text(
                "\n".join(lines if split == 1 else other) + "\n"
            )
    for video in "abcdef":
        _touch(tmp_path / "videos_flat" / f"{video}.avi")
    out = tmp_path / "lists"
    code, stdout, _ = _prepare(
        capsys, "hmdb51", "--root", tmp_path / "release", "--out", out, "--videos", tmp_path / "videos_flat"
    )
    assert code == 0, stdout
    # classes sorted by name: brush_hair 0, ride_bike 1; "0" (unused) rows in no list
    assert _labels(out / "train.csv") == {"a": 1, "e": 0, "f": 0}
    assert _labels(out / "test.csv") == {"b": 1, "d": 0}
    assert "0 listed but missing, 0 unlisted" in stdout  # c.avi is listed (unused), not unlisted
    assert (out / "classes.txt").read_text() == "0 brush_hair\n1 ride_bike\n"
    assert _prepare(capsys, "hmdb51", "--root", tmp_path, "--out", out, "--split", "2")[0] == 0
    assert (out / "train.csv").read_text() == "" and len(_labels(out / "test.csv")) == 2


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def test_kinetics400_quoted_labels_class_folders_and_flat(tmp_path: Path, capsys) -> None:
    ann = tmp_path / "k400" / "annotations"
    ann.mkdir(parents=True)
    (ann / "train.csv").write_text(
        KINETICS_HEADER
        + '"passing American football (in game)",abc-_123456,10,20,train,0\n'
        + '"massaging person\'s head",xyz,0,10,train,0\n'
        + '"dancing, ballet",gone_video1,5,15,train,0\n'  # taken down: not in the copy
    )
    (ann / "validate.csv").write_text(KINETICS_HEADER + '"massaging person\'s head",val1,30,40,validate,0\n')
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\ntest1,0,10,test\n")
    _touch(
        tmp_path / "k400" / "train" / "passing American football (in game)" / "abc-_123456_000010_000020.mp4"
    )
    _touch(tmp_path / "k400" / "train" / "massaging person's head" / "xyz_000000_000010.mp4")
    _touch(tmp_path / "k400" / "val" / "val1_000030_000040.mkv")  # flat, another container
    _touch(tmp_path / "k400" / "test" / "test1_000000_000010.mp4")  # listed in test.csv: not unlisted
    out = (
        tmp_path / "k400" / "lists"
    )  # inside --root: our own train.csv must not be mistaken for the official one
    code, stdout, _ = _prepare(capsys, "kinetics400", "--root", tmp_path / "k400", "--out", out)
    assert code == 0, stdout
    # classes sorted by name, commas and apostrophes intact
    assert (out / "classes.txt").read_text().splitlines() == [
        "0 dancing, ballet", "1 massaging person's head", "2 passing American football (in game)",
    ]  # fmt: skip
    assert _labels(out / "train.csv") == {"abc-_123456_000010_000020": 2, "xyz_000000_000010": 1}
    assert _labels(out / "val.csv") == _labels(out / "test.csv") == {"val1_000030_000040": 1}
    assert "1 listed but missing, 0 unlisted" in stdout
    assert "train gone_video1_000005_000015" in (out / "missing.txt").read_text()
    assert _prepare(capsys, "kinetics400", "--root", tmp_path / "k400", "--out", out)[0] == 0  # re-run


def _ssv2_release(root: Path) -> None:
    labels = root / "labels"
    labels.mkdir(parents=True)
    names = {"Pushing something from left to right": "0", "Putting something on a surface": "1"}
    (labels / "something-something-v2-labels.json").write_text(json.dumps(names))
    train = [
        {"id": "11", "label": "pushing a cup from left to right", "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
        {"id": "12", "label": "putting a pen on a table", "template": "Putting [something] on a surface", "placeholders": ["a pen"]},
    ]  # fmt: skip
    (labels / "something-something-v2-train.json").write_text(json.dumps(train))
    val = [{"id": "21", "label": "x", "template": "Putting [something] on a surface", "placeholders": ["x"]}]
    (labels / "something-something-v2-validation.json").write_text(json.dumps(val))
    (labels / "something-something-v2-test.json").write_text(json.dumps([{"id": "31"}]))


def test_ssv2_webm(tmp_path: Path, capsys) -> None:
    _ssv2_release(tmp_path / "ssv2")
    for vid in ("11", "12", "21", "31"):
        _touch(tmp_path / "ssv2" / "20bn-something-something-v2" / f"{vid}.webm")
    out = tmp_path / "lists"
    code, stdout, _ = _prepare(capsys, "ssv2", "--root", tmp_path / "ssv2", "--out", out)
    assert code == 0 and "0 listed but missing, 0 unlisted" in stdout
    assert _labels(out / "train.csv") == {"11": 0, "12": 1}
    assert _labels(out / "val.csv") == _labels(out / "test.csv") == {"21": 1}


def test_ssv2_frame_folders(tmp_path: Path, capsys) -> None:
    _ssv2_release(tmp_path / "ssv2")
    for vid, count in (("11", 3), ("12", 5), ("21", 2)):
        for i in range(count):
            _touch(tmp_path / "frames" / vid / f"img_{i + 1:05d}.jpg", b"jpg")
    out = tmp_path / "lists"
    code, stdout, _ = _prepare(
        capsys, "ssv2", "--root", tmp_path / "ssv2", "--out", out, "--videos", tmp_path / "frames"
    )
    assert code == 0 and "frame folders" in stdout
    records = read_annotation_list(out / "train.csv")
    assert [(Path(r.path).name, r.num_frames, r.label) for r in records] == [("11", 3, 0), ("12", 5, 1)]
    assert (out / "val.csv").read_text().split()[-2:] == ["2", "1"]


def test_duplicate_names_prefer_the_class_folder(ucf101: Path, tmp_path: Path, capsys) -> None:
    _touch(ucf101 / "copies" / "v_ApplyEyeMakeup_g01_c01.mp4")
    out = tmp_path / "lists"
    code, stdout, _ = _prepare(capsys, "ucf101", "--root", ucf101, "--out", out)
    assert code == 0 and "1 found twice" in stdout
    assert "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 0" in (out / "train.csv").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kinetics400", "--split", "2"], "--split applies to ucf101 and hmdb51 only"),
        (["ucf101", "--split", "4"], "--split must be one of (1, 2, 3)"),
        (["hmdb51"], "no <class>_test_split1.txt under"),
        (["ssv2"], "no something-something-v2-labels.json under"),
        (["ucf101", "--videos", "/nonexistent"], "--videos /nonexistent is not a folder"),
    ],
)
def test_usage_errors_are_one_line_exit_2(ucf101: Path, tmp_path: Path, capsys, argv, message) -> None:
    code, _, err = _prepare(capsys, *argv, "--root", ucf101, "--out", tmp_path / "o")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_no_video_found_names_the_folder(ucf101: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _prepare(
        capsys, "ucf101", "--root", ucf101, "--out", tmp_path / "o", "--videos", tmp_path / "empty"
    )
    assert code == 2 and "none of the 6 videos" in err and "--videos" in err


def test_entry_point(ucf101: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "datasets.prepare", "ucf101", "--root", str(ucf101), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "train.csv").is_file() and "ucf101 split 1" in proc.stdout

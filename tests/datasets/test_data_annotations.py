"""List files: both formats, path handling and every error names file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datasets import AnnotationError
from datasets.annotations import read_annotation_list, split_list_file


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_video_list_relative_to_list_dir(tmp_path: Path) -> None:
    lst = _write(tmp_path / "train.csv", "a/v1.mp4 3\n/abs/v2.mp4 0\n\n")
    records = read_annotation_list(lst)
    assert [(r.path, r.label, r.num_frames) for r in records] == [
        (os.path.join(str(tmp_path), "a/v1.mp4"), 3, None),
        ("/abs/v2.mp4", 0, None),
    ]
    assert records[0].source == f"{lst}:1"


def test_root_prefix_and_spaces_in_paths(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.csv", "my videos/clip one.mp4 7\r\n")
    (record,) = read_annotation_list(lst, root="/data/k400")
    assert record.path == "/data/k400/my videos/clip one.mp4"
    assert record.label == 7
    assert record.video_id == "clip one"


def test_shell_metacharacters_are_plain_paths(tmp_path: Path) -> None:
    name = "$(touch pwned); `id` 'q' \"d\" & | ; *.mp4"
    lst = _write(tmp_path / "l.csv", f"{name} 1\n")
    (record,) = read_annotation_list(lst)
    assert record.path == os.path.join(str(tmp_path), name)
    assert not (tmp_path / "pwned").exists()


def test_frame_folder_list_auto_detected(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.csv", "frames/vid 1 48 5\nother 30 2\n")
    records = read_annotation_list(lst)
    assert [(os.path.relpath(r.path, tmp_path), r.num_frames, r.label) for r in records] == [
        ("frames/vid 1", 48, 5),
        ("other", 30, 2),
    ]


def test_video_with_number_in_name_is_not_a_frame_folder(tmp_path: Path) -> None:
    (record,) = read_annotation_list(_write(tmp_path / "l.csv", "clip 12.mp4 3\n"))
    assert record.num_frames is None and record.path.endswith("clip 12.mp4")


def test_forced_format(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.csv", "dir 10 1\n")
    assert read_annotation_list(lst, list_format="frames")[0].num_frames == 10
    assert read_annotation_list(lst, list_format="video")[0].path.endswith("dir 10")
    with pytest.raises(ValueError, match="list_format"):
        read_annotation_list(lst, list_format="csv")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a.mp4 1\nonlyonefield\n", 2, "expected '<path> <label>'"),
        ("a.mp4 1\nb.mp4 x\n", 2, "label 'x' is not an integer"),
        ("a.mp4 1.5\n", 1, "not an integer"),
        ("a.mp4 1\n\nb.mp4 -2\n", 3, "label -2 is negative"),
        ("a.mp4 400\n", 1, r"outside \[0, 399\]"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    lst = _write(tmp_path / "bad.csv", text)
    with pytest.raises(AnnotationError, match=message) as info:
        read_annotation_list(lst, nb_classes=400)
    assert str(info.value).startswith(f"{lst}:{line}:")
    assert info.value.line == line


def test_frame_list_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r":2: expected '<dir> <num_frames> <label>'"):
        read_annotation_list(_write(tmp_path / "a.csv", "d 3 1\n4\n"), list_format="frames")
    with pytest.raises(AnnotationError, match=r":1: num_frames must be at least 1"):
        read_annotation_list(_write(tmp_path / "b.csv", "d 0 1\n"), list_format="frames")


def test_non_utf8_names_line(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.csv", b"ok.mp4 1\nbad\xff\xfe.mp4 2\n")
    with pytest.raises(AnnotationError, match=r"l\.csv:2: not valid UTF-8 \(byte 0xff at column 4\)"):
        read_annotation_list(lst)


def test_bom_and_empty_list(tmp_path: Path) -> None:
    (record,) = read_annotation_list(_write(tmp_path / "bom.csv", b"\xef\xbb\xbfv.mp4 1\n"))
    assert record.path.endswith("/v.mp4")
    with pytest.raises(AnnotationError, match="no samples"):
        read_annotation_list(_write(tmp_path / "empty.csv", "\n  \n"))


def test_labels_unchecked_without_nb_classes(tmp_path: Path) -> None:
    assert read_annotation_list(_write(tmp_path / "l.csv", "v.mp4 999\n"))[0].label == 999


def test_split_file(tmp_path: Path) -> None:
    assert split_list_file(tmp_path, "val") == os.path.join(str(tmp_path), "val.csv")
    with pytest.raises(ValueError, match="split"):
        split_list_file(tmp_path, "dev")

"""datasets.check (broken / short files, clean list) and datasets.transcode (layout, GOP, resume)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import pytest
import torch

from datasets import check, transcode
from datasets.annotations import read_annotation_list
from datasets.decoding import open_video
from engine.cli import run


def _run(main, capsys, *argv: object) -> tuple[int, str, str]:
    try:
        code = run(main, [str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own usage errors leave this way (exit code 2)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mixed_list(tmp_path: Path, synthetic: dict, bad_files: dict[str, str], short_video: str) -> Path:
    """Two good videos (relative paths), a short one, and four broken ones."""
    root = Path(synthetic["root"])
    lines = ["videos/up/up_0000.mp4 0", "videos/down/down_0000.mp4 1"]
    lines += [f"{short_video} 2"] + [
        f"{bad_files[k]} 0" for k in ("truncated", "garbage", "corrupt", "missing")
    ]
    list_file = root / f"mixed_{tmp_path.name}.csv"
    list_file.write_text("\n".join(lines) + "\n")
    yield list_file
    list_file.unlink()


@pytest.mark.parametrize("workers", [1, 2])
def test_check_reports_each_bad_file_and_writes_the_clean_list(mixed_list, tmp_path, capsys, workers) -> None:
    clean = tmp_path / "clean.csv"
    code, out, _ = _run(
        check.main, capsys, mixed_list, "--num_workers", workers, "--min_frames", 10, "--out", clean
    )
    assert code == 0
    reported = [line for line in out.splitlines() if not line.startswith("checked")]
    assert len(reported) == 5
    assert any(line.startswith("too short (5 frames") and "up_0000.mp4" in line for line in reported)
    for kind in ("truncated", "garbage", "corrupt", "missing"):
        assert any(line.startswith("broken (") and line.endswith(f"{kind}.mp4") for line in reported), kind
    assert "7 samples" in out and "2 usable, 4 broken, 1 too short" in out
    # the usable lines, unchanged (relative paths stay relative)
    assert clean.read_text() == "videos/up/up_0000.mp4 0\nvideos/down/down_0000.mp4 1\n"


def test_check_default_output_and_frame_folders(frame_folders, capsys) -> None:
    root = Path(frame_folders["root"])
    list_file = root / "frames.csv"
    list_file.write_text("clip a 30 0\nclip_b 7 1\nclip_c 10 1\nclip_d 4 0\n")
    code, out, _ = _run(check.main, capsys, list_file, "--num_workers", 1)
    assert code == 0 and "2 usable, 2 broken" in out
    assert (root / "frames.clean.csv").read_text() == "clip a 30 0\nclip_b 7 1\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/nonexistent.csv"], "does not exist"),
        (["LIST", "--min_frames", "0"], "must be at least 1"),
        (["LIST", "--out", "LIST"], "--out must differ"),
        (["LIST", "--decoder", "opencv"], "invalid choice"),
    ],
)
def test_check_usage_errors(mixed_list, capsys, argv, message) -> None:
    argv = [str(mixed_list) if a == "LIST" else a for a in argv]
    code, _, err = _run(check.main, capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_check_malformed_list_is_a_usage_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("video.mp4 notalabel\n")
    code, _, err = _run(check.main, capsys, bad)
    assert code == 2 and "bad.csv:1" in err


def _gop_structure(path: str) -> tuple[int, int, tuple[int, int]]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        return len(packets), sum(p.is_keyframe for p in packets), (stream.width, stream.height)


def test_transcode_layout_size_gop_and_same_frames(synthetic, tmp_path, capsys) -> None:
    out = tmp_path / "h264"
    code, stdout, _ = _run(
        transcode.main,
        capsys,
        synthetic["train"],
        "--out",
        out,
        "--short_side",
        32,
        "--gop",
        8,
        "--num_workers",
        2,
    )
    assert code == 0 and "transcoded 9 videos (0 already done, 0 failed)" in stdout
    new = read_annotation_list(out / "train.csv")
    old = read_annotation_list(synthetic["train"])
    assert [r.label for r in new] == [r.label for r in old]
    assert (out / "train.csv").read_text().splitlines()[
        0
    ] == "videos/up/up_0000.mp4 0"  # layout kept, relative
    frames, keys, size = _gop_structure(new[0].path)
    assert frames == 24 and keys == 3 and size == (42, 32)  # 64x48 -> short side 32, even width
    with open_video(old[0].path, "pyav") as a, open_video(new[0].path, "pyav") as b:
        assert len(a) == len(b) == 24 and b.fps == pytest.approx(a.fps)
        small = a.get_frames(range(24), size=(32, 42)).float()
        assert (b.get_frames(range(24)).float() - small).abs().mean() < 8  # same frames, same order


def test_transcode_never_upscales_and_resumes(synthetic, tmp_path, capsys) -> None:
    out = tmp_path / "copy"
    argv = [synthetic["val"], "--out", out, "--num_workers", 1]
    assert _run(transcode.main, capsys, *argv)[0] == 0
    first = read_annotation_list(out / "val.csv")
    assert _gop_structure(first[0].path)[2] == (64, 48)  # already below 320: kept
    done = {r.path: os.stat(r.path).st_mtime_ns for r in first}
    os.remove(first[1].path)  # as if the run had been killed before this one finished
    Path(first[1].path + ".part").write_bytes(b"half a video")  # its stale partial output
    code, stdout, _ = _run(transcode.main, capsys, *argv)
    assert code == 0 and "transcoded 1 videos (2 already done, 0 failed)" in stdout
    assert os.stat(first[0].path).st_mtime_ns == done[first[0].path]  # finished outputs skipped
    assert os.path.exists(first[1].path) and not any(p.endswith(".part") for p in map(str, out.rglob("*")))
    assert (out / "val.csv").read_text() == "".join(
        f"{Path(r.path).relative_to(out)} {r.label}\n" for r in first
    )


def test_transcode_leaves_out_broken_videos(synthetic, bad_files, tmp_path, capsys) -> None:
    src = tmp_path / "src"
    shutil.copytree(Path(synthetic["root"]) / "videos" / "up", src / "up")
    shutil.copy(bad_files["garbage"], src / "up" / "garbage.mp4")
    (src / "list.csv").write_text("up/up_0000.mp4 0\nup/garbage.mp4 0\n")
    code, stdout, _ = _run(
        transcode.main, capsys, src / "list.csv", "--out", tmp_path / "out", "--num_workers", 1
    )
    assert code == 0 and "1 failed" in stdout and "garbage.mp4" in stdout
    assert (tmp_path / "out" / "list.csv").read_text() == "up/up_0000.mp4 0\n"
    assert not (tmp_path / "out" / "up" / "garbage.mp4").exists()


def test_transcode_usage_errors(synthetic, frame_folders, tmp_path, capsys) -> None:
    code, _, err = _run(transcode.main, capsys, synthetic["train"], "--out", synthetic["root"])
    assert code == 2 and "holds the source videos" in err
    frames = Path(frame_folders["root"]) / "frames_only.csv"
    frames.write_text("clip_b 7 1\n")
    code, _, err = _run(transcode.main, capsys, frames, "--out", tmp_path / "o")
    assert code == 2 and "frame folders" in err
    code, _, err = _run(transcode.main, capsys, synthetic["train"], "--out", tmp_path / "o", "--gop", 0)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_transcoded_video_decodes_the_same_clip_with_both_decoders(synthetic, tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert (
        _run(transcode.main, capsys, synthetic["test"], "--out", out, "--gop", 4, "--num_workers", 1)[0] == 0
    )
    path = read_annotation_list(out / "test.csv")[0].path
    with open_video(path, "pyav") as video:
        full = video.get_frames(range(len(video)))
        indices = [13, 1, 5, 9, 21]
        assert torch.equal(video.get_frames(indices), full[indices])

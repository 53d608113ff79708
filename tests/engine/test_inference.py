"""run_inference.py: one video -> top-k labels, the mean softmax over the test views.

The classifier is a real 1-epoch fine-tuning run (vit_pico_patch8, 8 frames of 32 px, 2 clips x 2
crops recorded in its args) and its transformers export (id2label from classes.txt); the expected
probabilities come from the fine-tuning test's own dataset (`build_multiview_dataset`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import pytest
import timm
import torch

import run_inference
from datasets import build_multiview_dataset
from engine.cli import run
from engine.inference import read_class_names
from models import convert
from tests.engine.conftest import run_script


@pytest.fixture(scope="module")
def trained(finetuned: Path, tmp_path_factory) -> Path:
    """The session's fine-tuned checkpoint, its head scaled up: after one epoch it is still at
    ``--init_scale`` 1e-3, every probability about 1/3, and a mean of logits would pass for a mean of softmax."""
    out = tmp_path_factory.mktemp("inference_ft")
    ckpt = torch.load(finetuned / "checkpoint-0.pth", weights_only=True)
    for name in ("head.weight", "head.bias"):
        ckpt["model"][name] *= 100  # logits of a few units: views then differ measurably
    torch.save(ckpt, out / "sharp.pth")
    return out / "sharp.pth"


@pytest.fixture(scope="module")
def hf_folder(trained: Path, videos: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inference_hf") / "videomae-pico-cls"
    assert convert.main(["to-hf", str(trained), str(out), "--class_names", str(videos / "classes.txt")]) == 0
    return out


def _reencode(src: str, dst: Path, codec: str) -> str:
    """``src``'s frames in another container / codec."""
    with av.open(src) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
        for frame in inp.decode(video=0):
            out.mux(
                stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24"))
            )
        out.mux(stream.encode(None))
    return str(dst)


@pytest.fixture(scope="module")
def clips(videos: Path, tmp_path_factory) -> dict[str, str]:
    mp4 = str(videos / (videos / "test.csv").read_text().split()[0])
    root = tmp_path_factory.mktemp("inference_clips")
    return {
        "mp4": mp4,
        "avi": _reencode(mp4, root / "clip.avi", "mpeg4"),
        "webm": _reencode(mp4, root / "clip.webm", "libvpx-vp9"),
    }


def expected_probs(ckpt: Path, video: str, tmp_path: Path, segments: int = 2, crops: int = 2) -> torch.Tensor:
    """Mean over the test views of softmax(model(view)), through the fine-tuning test's dataset."""
    torch.manual_seed(0)
    model = timm.create_model("vit_pico_patch8", num_classes=3, all_frames=8, img_size=32).eval()
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model"], strict=True)
    listing = tmp_path / "one.csv"
    listing.write_text(f"{video} 0\n")
    views = build_multiview_dataset(
        listing, num_frames=8, sampling_rate=2, input_size=32, short_side_size=32,
        test_num_segment=segments, test_num_crop=crops,
    )  # fmt: skip
    assert len(views) == segments * crops
    with torch.no_grad():
        logits = model(torch.stack([views[i]["video"] for i in range(len(views))]))
    return logits.double().softmax(dim=-1).mean(dim=0)


def infer_json(capsys, *argv: str) -> dict:
    run_inference.main([*argv, "--json", "--device", "cpu"])
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # only the JSON object on stdout
    return json.loads(out)


def check_schema(result: dict, video: str, k: int) -> None:
    assert set(result) == {"video", "top"} and result["video"] == video
    assert len(result["top"]) == k
    for row in result["top"]:
        assert (
            set(row) == {"label", "prob"} and isinstance(row["label"], str) and isinstance(row["prob"], float)
        )


@pytest.mark.parametrize("container", ["mp4", "avi", "webm"])
def test_json_is_the_mean_softmax_over_the_recorded_views(
    trained, videos, clips, container, capsys, tmp_path
):
    """No view flags: the checkpoint's recorded 8 frames every 2, 32 px, 2 x 2 views are used."""
    video = clips[container]
    names = (videos / "classes.txt").read_text().split()
    result = infer_json(
        capsys, video, "--checkpoint", str(trained), "--class_names", str(videos / "classes.txt")
    )
    check_schema(result, video, 3)  # --topk 5 is capped at the 3 classes
    expected = expected_probs(trained, video, tmp_path)
    order = expected.argsort(descending=True).tolist()
    assert [row["label"] for row in result["top"]] == [names[i] for i in order]
    assert [row["prob"] for row in result["top"]] == pytest.approx(expected[order].tolist(), abs=1e-6)
    assert sum(row["prob"] for row in result["top"]) == pytest.approx(1.0, abs=1e-9)


def test_view_flags_and_topk(trained, clips, capsys, tmp_path):
    video = clips["mp4"]
    argv = ["--checkpoint", str(trained), "--test_num_segment", "3", "--test_num_crop", "1", "--topk", "2"]
    result = infer_json(capsys, video, *argv)
    check_schema(result, video, 2)
    expected = expected_probs(trained, video, tmp_path, segments=3, crops=1)
    order = expected.argsort(descending=True).tolist()[:2]
    assert [row["label"] for row in result["top"]] == [f"class_{i}" for i in order]  # no names anywhere
    assert [row["prob"] for row in result["top"]] == pytest.approx(expected[order].tolist(), abs=1e-6)


def test_transformers_folder_gives_architecture_and_id2label(
    trained, hf_folder, videos, clips, capsys, tmp_path
):
    """No --model, no --class_names: config.json names the architecture, frames, size and labels."""
    video = clips["avi"]
    names = (videos / "classes.txt").read_text().split()
    views = ["--sampling_rate", "2", "--test_num_segment", "2", "--test_num_crop", "2"]  # not in config.json
    result = infer_json(capsys, video, "--checkpoint", str(hf_folder), *views, "--topk", "3")
    check_schema(result, video, 3)
    expected = expected_probs(trained, video, tmp_path)
    got = {row["label"]: row["prob"] for row in result["top"]}
    assert set(got) == set(names)
    assert [got[n] for n in names] == pytest.approx(expected.tolist(), abs=1e-5)


def test_text_output(trained, videos, clips, capsys):
    run_inference.main(
        [clips["mp4"], "--checkpoint", str(trained), "--class_names", str(videos / "classes.txt")]
    )
    head, *rows = capsys.readouterr().out.strip().splitlines()
    assert "2 clips x 2 crops" in head and "8 frames every 2" in head
    probs = [float(r.split()[1]) for r in rows]
    assert len(rows) == 3 and probs == sorted(probs, reverse=True)
    assert {r.split()[2] for r in rows} == set((videos / "classes.txt").read_text().split())


def test_bare_state_dict_needs_model(trained, clips, capsys, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"model": torch.load(trained, weights_only=True)["model"]}, bare)
    assert run(run_inference.main, [clips["mp4"], "--checkpoint", str(bare), "--json"]) != 0
    assert "pass --model" in capsys.readouterr().err
    argv = [
        "--checkpoint", str(bare), "--model", "vit_pico_patch8", "--num_frames", "8", "--input_size", "32",
        "--sampling_rate", "2", "--test_num_segment", "2", "--test_num_crop", "2",
    ]  # fmt: skip
    result = infer_json(capsys, clips["mp4"], *argv)
    expected = expected_probs(trained, clips["mp4"], tmp_path)
    assert sorted(r["prob"] for r in result["top"]) == pytest.approx(sorted(expected.tolist()), abs=1e-6)


@pytest.mark.parametrize(
    "case, words",
    [
        ("unreadable_video", "cannot be read"),
        ("missing_video", "No such file"),
        ("missing_checkpoint", "does not exist"),
        ("other_architecture", "does not fit the model"),
        ("pretraining_checkpoint", "without a classifier head"),
        ("name_count", "lists 2 names but the classifier has 3 classes"),
        ("unknown_zoo_name", "model-zoo name"),
        ("bad_topk", "--topk must be >= 1"),
    ],
)
def test_bad_inputs_one_line(case, words, trained, teacher_ckpt, clips, capfd, tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(os.urandom(4096))
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    video, ckpt, extra = clips["mp4"], str(trained), []
    if case == "unreadable_video":
        video = str(garbage)
    elif case == "missing_video":
        video = str(tmp_path / "nope.mp4")
    elif case == "missing_checkpoint":
        ckpt = str(tmp_path / "nope.pth")
    elif case == "other_architecture":
        extra = ["--model", "vit_nano_patch8"]
    elif case == "pretraining_checkpoint":
        ckpt = str(teacher_ckpt)
    elif case == "name_count":
        extra = ["--class_names", str(two)]
    elif case == "unknown_zoo_name":
        ckpt = "videomae-b-k400-ft9999"
    elif case == "bad_topk":
        extra = ["--topk", "0"]
    assert run(run_inference.main, [video, "--checkpoint", ckpt, "--device", "cpu", *extra]) != 0
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and words in lines[0], err


def test_hub_id_without_network_is_one_line(clips):
    """A fresh process, as a user runs it: no traceback, non-zero exit, nothing downloaded."""
    proc = run_script(
        "run_inference.py", [clips["mp4"], "--checkpoint", "hf://mmkd-tests/no-such-model", "--json"],
        timeout=120, env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_inference.py: error: hf://mmkd-tests/no-such-model")


def test_class_name_files(tmp_path):
    formats = {
        "names.txt": "up\n\ndown\nsideways\n",
        "map.json": '{"\\"down\\"": 1, "\\"up\\"": 0, "\\"sideways\\"": 2}',  # Kinetics label map, quoted
        "id2label.json": '{"2": "sideways", "0": "up", "1": "down"}',
        "list.json": '["up", "down", "sideways"]',
        "labels.csv": "id,name\n1,down\n0,up\n2,sideways\n",
    }
    for name, text in formats.items():
        (tmp_path / name).write_text(text)
        assert read_class_names(str(tmp_path / name)) == ["up", "down", "sideways"], name
    (tmp_path / "gap.json").write_text('{"up": 0, "down": 2}')
    with pytest.raises(run_inference.UsageError, match="not 0 .. 1"):
        read_class_names(str(tmp_path / "gap.json"))

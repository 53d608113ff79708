"""The reference's visualisation command lines run through our entry points, on tiny stand-ins.

Data: the command line each public script runs, copied from MCG-NJU/VideoMAE ``vis.sh`` (its
``run_videomae_vis.py`` takes ``img_path save_path model_path`` as positionals) and from
xiaojieli0903/MaskAgain at 205696d29b12e76f2047d0f25876bf72dc5d2298 ``scripts/vis_kd.sh`` (its
``run_vis.py``, the same positionals). ``${VAR}`` are the scripts' own placeholders, filled with a
generated video and a tiny checkpoint; the architecture and the clip size are swapped for tiny ones
(`TINY`, `CLIP`), every other flag is the script's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import models  # noqa: F401
from datasets import build_mask_generator
from engine.cli import run
from engine.visualize import load_clip, selection_maps, videomae_frames
from models.targets import IMAGENET_MEAN, IMAGENET_STD, patchify, pixel_target
from tests.engine.conftest import ROOT

REFERENCE = {
    "VideoMAE:vis.sh": (
        "run_videomae_vis.py",
        "--mask_ratio 0.9 --mask_type tube --decoder_depth 4 --model pretrain_videomae_base_patch16_224 "
        "${VIDEO_PATH} ${OUTPUT_DIR} ${MODEL_PATH}",
    ),
    "MaskAgain:scripts/vis_kd.sh": (
        "run_vis.py",
        "--mask_ratio 0.0 --num_k 10 --idx 118 --idx_f 0 --mask_type tube --decoder_depth 0 --model $AREC "
        "${VIDEO_PATH} ${OUTPUT_DIR} ${MODEL_PATH}",
    ),
}
TINY = {
    "pretrain_videomae_base_patch16_224": "pretrain_videomae_nano_patch8",
    "$AREC": "pretrain_videomae_nano_patch8",  # MaskAgain's AREC='pretrain_videomae_base_patch16_224'
    "--decoder_depth 4": "--decoder_depth 1",  # the tiny checkpoint's decoder
}
# 8 frames; vis_kd.sh's --idx 118 needs 119 tokens per slice: 96 px / patch 8 = 12 x 12
CLIP = {
    "run_videomae_vis.py": "--input_size 32 --num_frames 8 --sampling_rate 2 --device cpu",
    "run_vis.py": "--input_size 96 --num_frames 8 --sampling_rate 2 --device cpu",
}


def reference_argv(source: str, files: dict[str, str], mask_type: str = "tube") -> list[str]:
    entry, line = REFERENCE[source]
    for old, new in TINY.items():
        line = line.replace(old, new)
    for name, value in files.items():
        line = line.replace("${" + name + "}", shlex.quote(value))
    line = line.replace("--mask_type tube", f"--mask_type {mask_type}")
    return [*shlex.split(line), *CLIP[entry].split()]


@pytest.fixture
def video(videos) -> Path:
    return sorted((videos / "videos").rglob("*.mp4"))[0]


def _model(checkpoint: Path, **kw) -> torch.nn.Module:
    """The tiny model built and loaded by hand (not through the entry points' loader)."""
    model = timm.create_model("pretrain_videomae_nano_patch8", num_frames=8, **kw)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    return model.eval()


def _mask(mask_type: str, grid: tuple[int, int, int], ratio: float) -> torch.Tensor:
    return torch.from_numpy(build_mask_generator(mask_type, grid, ratio)(np.random.default_rng(0)))


def _expected_reconstruction(model, clip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden tubes' pixels [N_mask, q*p*p, 3] in [0, 255]: the prediction with its tube's mean and
    std put back, computed from `models.targets.pixel_target` (the training target) alone."""
    p, q = model.patch_size, model.tubelet_size
    with torch.no_grad():
        pred = model(clip[None], mask[None])[0].reshape(-1, q * p * p, 3)
    raw = pixel_target(clip[None], mask[None], p, q, normalize=False)[0].reshape(-1, q * p * p, 3)
    std = raw.var(dim=1, unbiased=True, keepdim=True).sqrt() + 1e-6
    return (pred * std + raw.mean(dim=1, keepdim=True)).clamp(0, 1) * 255


def _tubes(frames: np.ndarray, p: int, q: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [N, q*p*p, 3]."""
    return patchify(torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float(), p, q)[0]


@pytest.mark.parametrize("mask_type", ["tube", "random"])
def test_videomae_vis_command_line(mask_type, video, teacher_ckpt, tmp_path):
    from run_videomae_vis import main

    out = tmp_path / "vis"
    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(out), "MODEL_PATH": str(teacher_ckpt)}
    written = main(reference_argv("VideoMAE:vis.sh", files, mask_type))

    names = {f"{kind}_img{i}.jpg" for kind in ("ori", "mask", "rec") for i in range(8)}  # every frame
    assert {Path(p).name for p in written} == names and set(os.listdir(out)) == names
    for path, frame in written.items():
        image = Image.open(path)
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (32, 32)
        # JPEG's loss only (quality 95, 4:4:4)
        assert np.abs(np.asarray(image, dtype=float) - frame).mean() < 3

    model = _model(teacher_ckpt, img_size=32, decoder_depth=1)
    clip = load_clip(str(video), 8, 2, 32)
    mask = _mask(mask_type, model.encoder.grid_size, 0.9)
    assert int(mask.sum()) == (int(0.9 * 16) * 4 if mask_type == "tube" else int(0.9 * 64))
    tube_like = bool((mask.reshape(4, 16) == mask[:16]).all())
    assert tube_like == (mask_type == "tube")
    frames = {kind: np.stack([written[str(out / f"{kind}_img{i}.jpg")] for i in range(8)]) for kind in ("ori", "mask", "rec")}  # fmt: skip
    pixels = clip * torch.tensor(IMAGENET_STD).view(3, 1, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    np.testing.assert_array_equal(
        frames["ori"], (pixels.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)
    )

    ori, masked, rec = (_tubes(frames[k], 8, 2) for k in ("ori", "mask", "rec"))
    assert torch.equal(masked[mask], torch.zeros_like(masked[mask]))  # hidden tubes black, all of them
    assert torch.equal(masked[~mask], ori[~mask])  # and nothing else touched
    assert (rec[~mask] - ori[~mask]).abs().max() <= 1  # visible tubes: the frames
    torch.testing.assert_close(rec[mask], _expected_reconstruction(model, clip, mask), atol=1.01, rtol=0)
    assert (rec[mask] - ori[mask]).abs().mean() > 5  # a random decoder's guess, not the frames


@pytest.mark.parametrize("normalize_target", [True, False])
def test_reconstruction_inverts_the_pixel_target(normalize_target, video):
    """A decoder that predicts the training target exactly reconstructs the frames exactly."""

    class Oracle(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.encoder = model, model.encoder
            self.patch_size, self.tubelet_size = model.patch_size, model.tubelet_size

        def forward(self, x, mask):
            return pixel_target(x, mask, 8, 2, normalize=normalize_target)

    model = timm.create_model("pretrain_videomae_nano_patch8", img_size=32, num_frames=8, decoder_depth=1)
    clip = load_clip(str(video), 8, 2, 32)
    mask = _mask("random", model.encoder.grid_size, 0.75)
    frames = videomae_frames(Oracle(model), clip, mask, normalize_target)
    assert np.abs(frames["rec"].astype(int) - frames["ori"]).max() <= 1


def _student(tmp_path: Path) -> Path:
    """An MMKD distillation output: encoder-only student + alignment heads."""
    torch.manual_seed(1)
    student = timm.create_model("pretrain_videomae_nano_patch8", decoder_depth=0, img_size=32, num_frames=8)
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    state["heads.hint.weight"] = torch.zeros(4, 4)
    path = tmp_path / "student.pth"
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize("checkpoint", ["student", "videomae"])
def test_maskagain_vis_kd_command_line(checkpoint, video, teacher_ckpt, tmp_path):
    from run_vis import main

    weights = _student(tmp_path) if checkpoint == "student" else teacher_ckpt
    out = tmp_path / "vis"
    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(out), "MODEL_PATH": str(weights)}
    written = main(reference_argv("MaskAgain:scripts/vis_kd.sh", files))
    stems = {"frames", "mask", "grid", "student_mm_global", "student_mm_local", "student_mm_hint"}
    assert {Path(p).name for p in written} == {f"{s}.png" for s in stems} == set(os.listdir(out))
    for path in written:  # --decoder_depth 0: no reconstruction; 4 tubes of 96 px per row
        if not path.endswith("grid.png"):
            assert Image.open(path).size == written[path] == (4 * (96 + 2) + 2, 96 + 14 + 2)


def _topk_mean(logits: torch.Tensor, k: int) -> torch.Tensor:
    """softmax, keep each head's k largest, renormalise, mean over heads: [H, P] -> [P]."""
    attn = logits.softmax(-1)
    kth = attn.topk(k, dim=-1).values[:, -1:]
    attn = attn * (attn >= kth)
    return (attn / attn.sum(-1, keepdim=True)).mean(0)


def test_run_vis_random_mask(video, teacher_ckpt, tmp_path):
    """Random masks (slices of different sizes): --idx counts the visible tokens of slice --idx_f, and
    MM-local is the top-k inside each slice's visible tokens."""
    from run_vis import main

    argv = ["--video", str(video), "--output_dir", str(tmp_path / "vis"), "--model_path", str(teacher_ckpt),
            "--model", "pretrain_videomae_nano_patch8", "--mask_type", "random", "--mask_ratio", "0.5",
            "--idx", "1", "--idx_f", "2", "--num_k", "3", *CLIP["run_videomae_vis.py"].split()]  # fmt: skip
    written = main(argv)
    assert {"student_reconstruction.png", "student_mm_local.png", "mask.png"} <= {
        Path(p).name for p in written
    }

    model = _model(teacher_ckpt, img_size=32, decoder_depth=1)
    clip, mask = load_clip(str(video), 8, 2, 32), _mask("random", (4, 4, 4), 0.5)
    per_slice = (~mask).reshape(4, 16).sum(1)
    assert len(set(per_slice.tolist())) > 1  # the slices differ: a tube-only reading would not do
    query = int(per_slice[:2].sum()) + 1
    maps = selection_maps(model, clip, mask, query, 3, 10)
    with torch.no_grad():
        logits = model.encode(clip[None], mask[None], return_attention=True).attn_logits[0, :, query]
    slice_of = torch.nonzero(~mask).squeeze(1) // 16
    local = maps["local"].reshape(-1)[~mask.numpy()]
    for t in range(4):
        keys = slice_of == t
        torch.testing.assert_close(torch.from_numpy(local)[keys], _topk_mean(logits[:, keys], 3))
    torch.testing.assert_close(
        torch.from_numpy(maps["global"].reshape(-1)[~mask.numpy()]), _topk_mean(logits, 3)
    )
    assert not maps["local"].reshape(-1)[mask.numpy()].any()


def test_vis_kd_sh_takes_maskagain_names(video, teacher_ckpt, tmp_path):
    """MaskAgain's variables (VIDEO_PATH, OUTPUT_PREFIX, MODEL_PATH, AREC) drive our vis_kd.sh, whose
    command line then runs through run_vis.py with MaskAgain's settings passed on."""
    from run_vis import main

    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_LOG"\n')
    stub.chmod(0o755)
    ours = ("VIDEO", "OUTPUT_DIR", "CHECKPOINT", "MODEL", "TEACHER")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(
        PYTHON=str(stub), STUB_LOG=str(tmp_path / "argv.txt"), VIDEO_PATH=str(video),
        OUTPUT_PREFIX=str(tmp_path / "vis"), MODEL_PATH=str(teacher_ckpt), AREC="pretrain_videomae_nano_patch8",
    )  # fmt: skip
    extra = ["--mask_ratio", "0.0", "--idx", "118", "--idx_f", "0", *CLIP["run_vis.py"].split()]
    proc = subprocess.run(["bash", str(ROOT / "scripts/vis_kd.sh"), *extra], env=env, capture_output=True, text=True, timeout=20)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.txt").read_text().splitlines()[1:]  # [0] is run_vis.py
    written = main(argv)
    assert {Path(p).name for p in written} >= {"student_mm_global.png", "student_reconstruction.png"}


@pytest.mark.parametrize(
    ("entry", "change", "expected"),
    [
        ("run_videomae_vis.py", {"VIDEO_PATH": "missing.mp4"}, "does not exist"),
        ("run_videomae_vis.py", {"pretrain_videomae_nano_patch8": "pretrain_videomae_pico_patch8"}, "does not fit the model"),
        ("run_videomae_vis.py", {"--decoder_depth 1": "--decoder_depth 2"}, "has a 1-block decoder"),
        ("run_videomae_vis.py", {"--decoder_depth 1": "--decoder_depth 0"}, "nothing to reconstruct"),
        ("run_videomae_vis.py", {"--device cpu": "--device gpu"}, "--device 'gpu' is not a device"),
        ("run_videomae_vis.py", {"MODEL_PATH": None}, "give the checkpoint"),
        ("run_vis.py", {"--idx 118": "--idx 144"}, "--idx must be < 144"),
        ("run_vis.py", {"--idx_f 0": "--idx_f 4"}, "--idx_f < 4"),
        ("run_vis.py", {"pretrain_videomae_nano_patch8": "pretrain_videomae_pico_patch8"}, "does not fit the model"),
    ],
)  # fmt: skip
def test_bad_inputs_one_line(entry, change, expected, video, teacher_ckpt, tmp_path, capsys):
    import run_videomae_vis
    import run_vis

    source = "VideoMAE:vis.sh" if entry == "run_videomae_vis.py" else "MaskAgain:scripts/vis_kd.sh"
    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(tmp_path / "vis"), "MODEL_PATH": str(teacher_ckpt)}
    if "VIDEO_PATH" in change:
        files["VIDEO_PATH"] = str(tmp_path / change["VIDEO_PATH"])
    argv = reference_argv(source, files)
    if change.get("MODEL_PATH", 1) is None:
        argv.remove(str(teacher_ckpt))
    line = " ".join(argv)
    for old, new in change.items():
        if new is not None and old not in files:
            line = line.replace(old, new)
    main = run_videomae_vis.main if entry == "run_videomae_vis.py" else run_vis.main
    capsys.readouterr()
    assert run(main, line.split()) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "vis").exists()  # nothing written


def test_device_cuda_without_gpu_falls_back(video, teacher_ckpt, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: cuda is used, tested by test_device_cuda")
    from run_videomae_vis import main

    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(tmp_path / "vis"), "MODEL_PATH": str(teacher_ckpt)}
    argv = [a if a != "cpu" else "cuda:0" for a in reference_argv("VideoMAE:vis.sh", files)]
    assert len(main(argv)) == 24
    assert "CUDA requested but not available; running on the CPU." in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_cuda(video, teacher_ckpt, tmp_path):
    from run_videomae_vis import main

    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(tmp_path / "vis"), "MODEL_PATH": str(teacher_ckpt)}
    on = {
        d: main([a if a != "cpu" else d for a in reference_argv("VideoMAE:vis.sh", files)])
        for d in ("cpu", "cuda")
    }
    for path, frame in on["cpu"].items():
        assert np.abs(frame.astype(int) - on["cuda"][path]).max() <= 2  # TF32 / kernel rounding

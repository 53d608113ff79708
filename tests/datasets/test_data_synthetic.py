"""The generated data set: layout, decodability, determinism, no class cue in a single frame, learnable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from datasets import decoding
from datasets.decoding import open_video
from datasets.synthetic import main, make_synthetic_dataset
from datasets.synthetic_scene import MOTIONS, SCENES, CameraRenderer, class_names, motion_track


def test_layout(synthetic) -> None:
    root = Path(synthetic["root"])
    assert synthetic["classes"] == ["up", "down", "sideways"]
    assert Path(synthetic["classes_file"]).read_text().split() == ["up", "down", "sideways"]
    counts = {}
    for split in ("train", "val", "test", "pretrain"):
        lines = Path(synthetic[split]).read_text().splitlines()
        counts[split] = len(lines)
        for line in lines:
            path, label = line.rsplit(" ", 1)
            assert not os.path.isabs(path) and (root / path).is_file()
            assert synthetic["classes"][int(label)] in path
    assert counts == {"train": 9, "val": 3, "test": 3, "pretrain": 9}


@pytest.mark.parametrize(
    "decoder",
    ["pyav", pytest.param("decord", marks=pytest.mark.skipif(decoding.decord is None, reason="no decord"))],
)
def test_videos_decode(synthetic, video_path: str, decoder: str) -> None:
    with open_video(video_path, decoder) as video:
        assert len(video) == 24
        frames = video.get_frames(range(24))
    assert frames.shape == (24, 48, 64, 3)
    assert frames.float().std() > 20  # real content, not a blank video


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_deterministic_and_independent_of_workers(tmp_path: Path, scene: str) -> None:
    # Long and large enough for x264's rate control to matter (its macroblock-tree made runs differ).
    kwargs = {"num_classes": 2, "videos_per_class": 6, "num_frames": 32, "width": 96, "height": 72, "seed": 7,
              "scene": scene}  # fmt: skip
    one = make_synthetic_dataset(tmp_path / "a", workers=1, **kwargs)
    two = make_synthetic_dataset(tmp_path / "b", workers=2, **kwargs)

    def digest(root: str) -> dict[str, str]:
        files = sorted(p for p in Path(root).rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digest(one["root"]) == digest(two["root"])
    other = make_synthetic_dataset(tmp_path / "c", workers=1, **{**kwargs, "seed": 8})
    assert digest(other["root"]) != digest(one["root"])


def test_cli(tmp_path: Path, capsys) -> None:
    main(["--out", str(tmp_path), "--num_classes", "2", "--videos_per_class", "1", "--frames", "4",
          "--size", "32x24", "--val_fraction", "0", "--test_fraction", "0", "--speed", "2", "--workers", "1"])  # fmt: skip
    assert "wrote 2 videos" in capsys.readouterr().out
    with open_video(tmp_path / "videos" / "down" / "down_0000.mp4", "pyav") as video:
        assert video.get_frames([0]).shape == (1, 24, 32, 3)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--size", "32by24"])


def _key_frames(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        packets = sorted((p for p in container.demux(video=0) if p.size), key=lambda p: p.pts)
        return [i for i, p in enumerate(packets) if p.is_keyframe]


def test_gop_writes_fast_decoding_videos_of_the_same_scenes(tmp_path: Path, capsys) -> None:
    """``--gop N``: a key frame every N frames and x264's fastdecode tune, as ``datasets.transcode``
    writes; the same frames to within compression noise, fixed by the seed.
    Without it, x264's defaults (one key frame in a video this short), as before."""
    kwargs = {"num_classes": 2, "videos_per_class": 2, "num_frames": 32, "width": 96, "height": 72, "seed": 3,
              "speed": 2, "scene": "camera", "val_fraction": 0, "test_fraction": 0, "workers": 1}  # fmt: skip
    plain = make_synthetic_dataset(tmp_path / "plain", **kwargs)
    fast = make_synthetic_dataset(tmp_path / "fast", gop=16, **kwargs)
    again = make_synthetic_dataset(tmp_path / "again", gop=16, **{**kwargs, "workers": 2})
    roots = [Path(result["root"]) for result in (plain, fast, again)]
    for line in Path(plain["train"]).read_text().splitlines():
        rel = line.rsplit(" ", 1)[0]
        plain_video, fast_video, again_video = (root / rel for root in roots)
        assert _key_frames(plain_video) == [0]
        assert _key_frames(fast_video) == [0, 16]
        assert fast_video.read_bytes() == again_video.read_bytes()
        with open_video(plain_video, "pyav") as a, open_video(fast_video, "pyav") as b:
            assert len(a) == len(b) == 32
            x, y = a.get_frames(range(32)).float(), b.get_frames(range(32)).float()
        assert (x - y).abs().mean() < 4.0  # compression noise (~2.3 grey levels), not another scene
        assert (x[1:] - x[:-1]).abs().mean() > 8.0  # ... while the scene moves ~15 levels per frame
    main(["--out", str(tmp_path / "cli"), "--num_classes", "1", "--videos_per_class", "1", "--frames", "8",
          "--size", "32x24", "--val_fraction", "0", "--test_fraction", "0", "--workers", "1", "--gop", "4"])  # fmt: skip
    assert _key_frames(tmp_path / "cli" / "videos" / "up" / "up_0000.mp4") == [0, 4]
    # --gop 1, the quickstart's videos: every frame a key frame
    main(["--out", str(tmp_path / "intra"), "--num_classes", "1", "--videos_per_class", "1", "--frames", "8",
          "--size", "32x24", "--val_fraction", "0", "--test_fraction", "0", "--workers", "1", "--gop", "1"])  # fmt: skip
    assert _key_frames(tmp_path / "intra" / "videos" / "up" / "up_0000.mp4") == list(range(8))
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--gop", "-1"])
    assert "--gop must be 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="gop must be"):
        make_synthetic_dataset(tmp_path / "bad", gop=-2)


@pytest.mark.parametrize(
    "flags, message",
    [(["--speed", "0"], "speed must be positive"), (["--size", "33x24"], "size must be even"),
     (["--frames", "1"], "at least 2 frames"), (["--val_fraction", "0.6", "--test_fraction", "0.6"], "no training video")],
)  # fmt: skip
def test_cli_bad_values_are_one_usage_line(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--workers", "1", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's usage, then one error line
    assert "error:" in last and message in last and "Traceback" not in err


def test_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        make_synthetic_dataset(tmp_path, width=33, height=24)
    with pytest.raises(ValueError, match="no training video"):
        make_synthetic_dataset(tmp_path, videos_per_class=2, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="speed"):
        make_synthetic_dataset(tmp_path, speed=0)
    with pytest.raises(ValueError, match="scene must be one of"):
        make_synthetic_dataset(tmp_path, scene="studio")
    with pytest.raises(ValueError, match="speed"):
        motion_track(0, 8, 32, 32, np.random.default_rng(0), speed=-1)


def test_class_names_extend_with_speed() -> None:
    names = class_names(23)
    assert names[:10] == list(MOTIONS) and names[10] == "up_x2" and names[22] == "sideways_x3"
    assert len(set(names)) == 23


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_single_frame_state_does_not_depend_on_class(speed: float) -> None:
    """Position, angle and size of the shape in any one frame follow the same law for every class."""
    width, height, frames = 128, 96, 32
    stats = []
    for class_id in range(len(MOTIONS)):
        states = []
        for seed in range(1500):
            rng = np.random.default_rng((seed, class_id))
            track = motion_track(class_id, frames, width, height, rng, speed)
            t = seed % frames  # a different frame each time: first, middle and last frames alike
            states.append([track.x[t] % width / width, track.y[t] % height / height,
                           track.angle[t] % (2 * np.pi) / (2 * np.pi), np.log(track.radius[t])])  # fmt: skip
        states = np.array(states)
        stats.append(np.concatenate([states.mean(0), states.std(0)]))
    stats = np.array(stats)
    # Uniform laws: mean 0.5 / std 0.29 for the wrapped coordinates; the log-size law is shared too.
    assert np.abs(stats[:, :3] - 0.5).max() < 0.04
    assert np.abs(stats[:, 4:7] - 0.289).max() < 0.03
    assert np.ptp(stats[:, 3]) < 0.04 and np.ptp(stats[:, 7]) < 0.03


def test_motion_is_visible_between_frames_and_steps_are_small() -> None:
    width, height, frames = 128, 96, 32
    for class_id, motion in enumerate(MOTIONS):
        track = motion_track(class_id, frames, width, height, np.random.default_rng(0))
        moved = np.hypot(np.diff(track.x), np.diff(track.y))
        resized = np.abs(np.diff(np.log(track.radius)))
        turned = np.abs(np.diff(track.angle))
        assert moved.mean() > 1 or resized.mean() > 0.008 or turned.mean() > 0.05, motion
        # Small steps (outside the size wrap-around) keep the motion followable by small kernels.
        assert moved.max() < 3 and turned.max() < 0.15 and np.median(resized) < 0.05, motion
    up = motion_track(0, frames, width, height, np.random.default_rng(0))
    assert (np.diff(up.y) < 0).all()


def test_speed_multiplies_every_motion() -> None:
    width, height, frames = 128, 96, 32
    for class_id, motion in enumerate(MOTIONS):
        slow, fast = (
            motion_track(class_id, frames, width, height, np.random.default_rng(0), s) for s in (1, 2)
        )
        for field in ("x", "y", "angle"):
            a, b = getattr(slow, field), getattr(fast, field)
            if motion not in ("bounce", "pulse"):  # periodic motions run twice the cycles instead
                np.testing.assert_allclose(b - b[0], 2 * (a - a[0]), atol=1e-9, err_msg=motion)
    bounce = motion_track(MOTIONS.index("bounce"), frames, width, height, np.random.default_rng(0), 2)
    assert np.ptp(bounce.y) > 0.25 * height  # still the full amplitude: twice the cycles, not a cut-off


def test_grow_and_shrink_rarely_jump() -> None:
    """A wrapped size looks like a sudden opposite motion: most videos at speed 1 have none."""
    frames, jumps = 64, 0
    for class_id in (MOTIONS.index("grow"), MOTIONS.index("shrink")):
        for seed in range(200):
            track = motion_track(class_id, frames, 128, 96, np.random.default_rng((seed, class_id)))
            jumps += np.abs(np.diff(np.log(track.radius))).max() > 0.2
    assert 0.25 < jumps / 400 < 0.5  # 40 % of the range per video with a uniform phase: ~40 % jump


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_quickstart_data_is_learnable_from_motion(tmp_path: Path, scene: str) -> None:
    """A tiny 3D CNN that sees only frame differences (so needs two frames) learns the quickstart's
    data (camera scene; the object scene too): 5 classes, 96x72, 32 frames at speed 2, clips of 8
    frames at stride 2 seen at 32 px."""
    torch.manual_seed(0)
    classes, frames, stride, clip = 5, 32, 2, 8
    lists = make_synthetic_dataset(
        tmp_path, num_classes=classes, videos_per_class=24, num_frames=frames, width=96, height=72, speed=2,
        seed=0, val_fraction=1 / 3, test_fraction=0, workers=1, scene=scene,
    )  # fmt: skip

    def motion_clips(split: str, starts: range) -> tuple[torch.Tensor, torch.Tensor]:
        videos, labels = [], []
        for line in Path(lists[split]).read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            with open_video(tmp_path / path, "pyav") as video:
                for start in starts:
                    index = range(start, start + clip * stride, stride)
                    videos.append(video.get_frames(index, size=(32, 42)))  # [T, H, W, 3]
                    labels.append(int(label))
        x = torch.stack(videos).permute(0, 4, 1, 2, 3).float() / 255  # [N, 3, T, H, W]
        return x[:, :, 1:] - x[:, :, :-1], torch.tensor(labels)  # still scenes give zeros

    x_train, y_train = motion_clips("train", range(0, frames - clip * stride + 1, 4))
    x_val, y_val = motion_clips("val", range(0, frames - clip * stride + 1, 8))
    model = nn.Sequential(
        nn.Conv3d(3, 8, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)), nn.GELU(),
        nn.Conv3d(8, 16, 3, stride=(1, 2, 2), padding=1), nn.GELU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(16, classes),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scale = x_train.std()
    for _ in range(600):
        batch = torch.randint(len(y_train), (16,))
        x = x_train[batch] / scale
        x = torch.where(torch.rand(16, 1, 1, 1, 1) < 0.5, x.flip(-1), x)  # classes are flip-symmetric
        loss = F.cross_entropy(model(x), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(x_val / scale).argmax(1) == y_val).float().mean().item()
    assert accuracy > 2.5 / classes, accuracy  # chance is 1 / classes; it reaches ~0.8


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_rendered_first_frames_look_alike_across_classes(scene: str) -> None:
    """Mean colour and spread of a first frame have overlapping distributions for every class."""
    per_class = []
    for class_id in range(len(MOTIONS)):
        means = [
            SCENES[scene](class_id, 16, 64, 48, np.random.default_rng((seed, class_id)))
            .frames(0, 1)[0]
            .mean()
            for seed in range(40)
        ]
        per_class.append((np.mean(means), np.std(means)))
    centres, spreads = np.array(per_class).T
    assert np.ptp(centres) < 1.5 * spreads.mean()


def _best_shift(a: np.ndarray, b: np.ndarray, reach: int = 6) -> tuple[int, int]:
    """The whole-pixel (rows, columns) roll of image ``a`` that matches image ``b`` best."""
    shifts = [(r, c) for r in range(-reach, reach + 1) for c in range(-reach, reach + 1)]
    errors = [np.abs(np.roll(a, k, axis=(0, 1)).astype(int) - b).mean() for k in shifts]
    return shifts[int(np.argmin(errors))]


def test_camera_scene_moves_the_whole_view_as_the_class_says() -> None:
    """Pans shift every pixel (content up in "up", down in "down", sideways in "sideways"); a zoom keeps
    the centre still while the picture changes."""
    width, height, frames = 64, 48, 16
    for seed in range(3):
        for class_id, motion in enumerate(MOTIONS[:5]):
            video = CameraRenderer(
                class_id, frames, width, height, np.random.default_rng((seed, class_id)), 2.0
            )
            first, last = video.frames(0, 2)  # ~3.6 px of travel apart
            rows, cols = _best_shift(first, last)
            if motion == "up":
                assert rows < 0 and cols == 0, (motion, rows, cols)
            elif motion == "down":
                assert rows > 0 and cols == 0, (motion, rows, cols)
            elif motion == "sideways":
                assert rows == 0 and cols != 0, (motion, rows, cols)
            else:  # grow / shrink: a zoom about the centre
                assert np.abs(first.astype(int) - last).mean() > 5, motion
                centre = (slice(height // 2 - 1, height // 2 + 1), slice(width // 2 - 1, width // 2 + 1))
                assert np.abs(first[centre].astype(int) - last[centre]).mean() < 20, motion


def test_camera_scene_wraps_without_a_seam() -> None:
    """The scene is a torus: the step from the last column / row to the first is an ordinary step."""
    scene = CameraRenderer(0, 2, 96, 72, np.random.default_rng(0)).world.astype(int)
    for axis in (0, 1):
        steps = np.abs(np.diff(scene, axis=axis, append=np.take(scene, [0], axis=axis))).mean(
            axis=(1 - axis, 2)
        )
        assert steps[-1] < np.percentile(steps, 95) + 1e-9, axis

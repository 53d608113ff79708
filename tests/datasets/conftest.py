"""Session-wide generated videos for the data tests (small, so the folder runs in seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.synthetic import make_synthetic_dataset

NUM_CLASSES = 3
FRAMES = 24
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """3 classes × 5 videos of 24 frames at 64x48 (train 3 / val 1 / test 1 per class)."""
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(
        out, num_classes=NUM_CLASSES, videos_per_class=5, num_frames=FRAMES, width=WIDTH, height=HEIGHT,
        seed=3, workers=1,
    )  # fmt: skip


@pytest.fixture(scope="session")
def video_path(synthetic: dict[str, object]) -> str:
    return os.path.join(str(synthetic["root"]), "videos", "up", "up_0000.mp4")


@pytest.fixture(scope="session")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 5-frame video, shorter than any clip."""
    out = tmp_path_factory.mktemp("short")
    lists = make_synthetic_dataset(
        out, num_classes=1, videos_per_class=1, num_frames=5, width=WIDTH, height=HEIGHT,
        val_fraction=0, test_fraction=0, workers=1,
    )  # fmt: skip
    return os.path.join(str(lists["root"]), "videos", "up", "up_0000.mp4")


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory: pytest.TempPathFactory, video_path: str) -> dict[str, str]:
    """One broken input of every kind the pipeline must survive, keyed by kind."""
    root = tmp_path_factory.mktemp("bad")
    good = Path(video_path).read_bytes()
    paths = {
        kind: str(root / f"{kind}.mp4") for kind in ("empty", "truncated", "garbage", "codec", "corrupt")
    }
    Path(paths["empty"]).write_bytes(b"")
    Path(paths["truncated"]).write_bytes(good[: len(good) // 2])  # moov atom is at the end: lost
    Path(paths["garbage"]).write_bytes(np.random.default_rng(0).bytes(20_000))
    Path(paths["codec"]).write_bytes(good.replace(b"avc1", b"xq9z"))  # no decoder for this fourcc
    # Container intact, compressed frames replaced by noise: opens, then every decoder fails.
    payload = good.find(b"mdat") + 4
    end = payload - 8 + int.from_bytes(good[payload - 8 : payload - 4], "big")
    noise = np.random.default_rng(1).bytes(end - payload - 4)
    Path(paths["corrupt"]).write_bytes(good[: payload + 4] + noise + good[end:])
    paths["missing"] = str(root / "missing.mp4")
    loop_a, loop_b = root / "loop_a.mp4", root / "loop_b.mp4"
    loop_a.symlink_to(loop_b.name)
    loop_b.symlink_to(loop_a.name)
    paths["symlink_loop"] = str(loop_a)
    paths["directory"] = str(root / "not_a_video.mp4")  # an empty folder named like a video
    os.mkdir(paths["directory"])
    return paths


@pytest.fixture(scope="session")
def frame_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Frame-folder data: two good folders (30 and 7 frames), one with corrupt images, one empty."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)

    def folder(name: str, count: int) -> Path:
        path = root / name
        path.mkdir()
        for i in range(count):
            image = (rng.random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
            image[..., 0] = i * 8  # frame number readable from the red channel
            Image.fromarray(image).save(path / f"img_{i + 1:05d}.png")
        return path

    long, short, broken = folder("clip a", 30), folder("clip_b", 7), folder("clip_c", 10)
    for i in range(3, 11):  # every frame but the first two is unreadable
        (broken / f"img_{i:05d}.png").write_bytes(b"not an image")
    (root / "clip_d").mkdir()
    return {"root": root, "long": long, "short": short, "broken": broken, "empty": root / "clip_d"}

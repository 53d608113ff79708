"""A generated action-recognition data set: H.264 videos whose class is a motion.

``python -m datasets.synthetic --out DIR --num_classes N --videos_per_class M --frames F
--size WxH --seed S`` writes ``DIR/videos/<class>/<class>_<i>.mp4`` (libx264, yuv420p) and the
VideoMAE lists ``train.csv``, ``val.csv``, ``test.csv``, ``pretrain.csv`` (the train videos) with
paths relative to DIR, plus ``classes.txt``. Output is fixed by the seed (every video has its own
generator; x264 runs single-threaded, without macroblock-tree) and does not depend on the number
of workers or the run. ``--gop N`` writes them as ``datasets.transcode`` does (a key frame every N
frames, x264's ``fastdecode`` tune, no B-frame pyramid): the same scenes; ``--gop 1`` (every frame a
key frame, the quickstart's videos) lets a clip decode only its own frames (scripts/quickstart.py
says why that setting).
See :mod:`datasets.synthetic_scene` for why a single frame does not reveal the class.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import av
import numpy as np

from common.files import atomic_path

from .synthetic_scene import SCENES, class_names
from .transcode import fast_decode_options

_CHUNK = 16  # frames rendered at once: bounds memory at large sizes


@dataclass(frozen=True)
class _VideoJob:
    path: str
    class_id: int
    index: int
    seed: int
    num_frames: int
    width: int
    height: int
    fps: int
    speed: float
    scene: str = "object"
    gop: int = 0


def _write_video(job: _VideoJob) -> None:
    rng = np.random.default_rng((job.seed, job.class_id, job.index))
    scene = SCENES[job.scene](job.class_id, job.num_frames, job.width, job.height, rng, job.speed)
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    # a killed run never leaves a truncated video under the final name (not fsynced: generated again at will)
    part = atomic_path(job.path, temp=job.path + ".part", sync=False)
    with part as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=job.fps)
        stream.width, stream.height, stream.pix_fmt = job.width, job.height, "yuv420p"
        # threads=1 and no macroblock-tree rate control: with mbtree, x264's output differed between
        # runs (same frames, same settings), so the data set was not fixed by the seed.
        if job.gop:
            stream.options = fast_decode_options(23, job.gop, "mbtree=0")
        else:
            stream.options = {"crf": "23", "preset": "fast", "threads": "1", "x264-params": "mbtree=0"}
        for start in range(0, job.num_frames, _CHUNK):
            for image in scene.frames(start, min(start + _CHUNK, job.num_frames)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def _split_counts(videos_per_class: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_val, n_test = round(videos_per_class * val_fraction), round(videos_per_class * test_fraction)
    n_train = videos_per_class - n_val - n_test
    if n_train < 1 or min(val_fraction, test_fraction) < 0:
        raise ValueError(
            f"{videos_per_class} videos per class leave no training video with val_fraction={val_fraction} "
            f"and test_fraction={test_fraction}"
        )
    return n_train, n_val, n_test


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    *,
    num_classes: int = 6,
    videos_per_class: int = 20,
    num_frames: int = 64,
    width: int = 128,
    height: int = 96,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    fps: int = 25,
    speed: float = 1.0,
    workers: int | None = None,
    scene: str = "object",
    gop: int = 0,
) -> dict[str, object]:
    """Render and encode the data set; returns the list paths and class names.

    Args:
        speed: multiplies every motion's rate (see :func:`datasets.synthetic_scene.motion_track`);
            raise it when the clips a model sees cover a small part of each video.
        scene: ``object`` (a shape moves over a still background) or ``camera`` (the whole view
            pans / rolls / zooms over a still scene); see :mod:`datasets.synthetic_scene`.

    Returns:
        ``{"root", "train", "val", "test", "pretrain", "classes_file": paths, "classes": [names]}``.
    """
    if width % 2 or height % 2 or min(width, height) < 16:
        raise ValueError(f"size must be even and at least 16 px (yuv420p), got {width}x{height}")
    if num_frames < 2:
        raise ValueError("a motion needs at least 2 frames")
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if gop < 0:
        raise ValueError(f"gop must be 0 (x264's default) or a positive key-frame interval, got {gop}")
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {sorted(SCENES)}, got {scene!r}")
    names = class_names(num_classes)
    counts = _split_counts(videos_per_class, val_fraction, test_fraction)
    out_dir = os.fspath(out_dir)
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    jobs = []
    for class_id, name in enumerate(names):
        for index in range(videos_per_class):
            rel = f"videos/{name}/{name}_{index:04d}.mp4"
            split = "train" if index < counts[0] else "val" if index < counts[0] + counts[1] else "test"
            rows[split].append(f"{rel} {class_id}")
            job = _VideoJob(
                os.path.join(out_dir, rel),
                class_id,
                index,
                seed,
                num_frames,
                width,
                height,
                fps,
                speed,
                scene,
                gop,
            )
            jobs.append(job)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_video, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_video(job)
    result: dict[str, object] = {"root": out_dir, "classes": names}
    for split, lines in {**rows, "pretrain": rows["train"]}.items():
        result[split] = _write_lines(os.path.join(out_dir, f"{split}.csv"), lines)
    result["classes_file"] = _write_lines(os.path.join(out_dir, "classes.txt"), names)
    return result


def _write_lines(path: str, lines: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x96, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num_classes", type=int, default=6)
    parser.add_argument("--videos_per_class", type=int, default=20)
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--size", type=_parse_size, default=(128, 96), help="WIDTHxHEIGHT, even numbers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val_fraction", type=float, default=0.2)
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument(
        "--speed", type=float, default=1.0, help="motion rate multiplier (2: twice the travel per video)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--scene", choices=sorted(SCENES), default="object",
        help="object: a shape moves over a still background; camera: the whole view pans / rolls / zooms",
    )  # fmt: skip
    parser.add_argument(
        "--gop", type=int, default=0,
        help="0: x264's defaults; N: a key frame every N frames, fast-decoding settings (as datasets.transcode)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.gop < 0:
        parser.error(f"--gop must be 0 (x264's defaults) or a positive key-frame interval, got {args.gop}")
    try:
        result = make_synthetic_dataset(
            args.out,
            num_classes=args.num_classes,
            videos_per_class=args.videos_per_class,
            num_frames=args.frames,
            width=args.size[0],
            height=args.size[1],
            seed=args.seed,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            fps=args.fps,
            speed=args.speed,
            workers=args.workers,
            scene=args.scene,
            gop=args.gop,
        )
    except ValueError as err:  # a value the generator refuses: one usage line naming it
        parser.error(str(err))
    print(f"wrote {args.num_classes * args.videos_per_class} videos and lists under {result['root']}")


if __name__ == "__main__":
    main()

"""torchcodec's decode (NVDEC on ``--device cuda``) against PyAV's CPU decode, on long-GOP files.

``python benchmarks/torchcodec_check.py [--device cuda] [--videos 4] [--frames 300] [--size 340x256]
[--clips 64] [--atol 3] [--min_within 0.99]`` writes ``--videos`` Kinetics-like files (one key
frame, B-frames: :mod:`benchmarks.make_long_gop_videos`), then reads the same random 16x4 clips
with :class:`~datasets.decoding_torchcodec.TorchCodecVideo` on ``--device`` and with
:class:`~datasets.decoding.PyAVVideo` (one thread), a reader opened per clip as a dataset worker
does (one untimed warm-up clip first: the CUDA context and NVDEC set-up).

Prints ONE JSON line: clips/s of each, and how far torchcodec's frames are from PyAV's (max and
mean absolute difference, fraction of values within ``--atol``). Frames match when at least
``--min_within`` of the values are within ``--atol`` (default 3: NVDEC's output is bit-exact, its
RGB conversion is not FFmpeg's; torchcodec's own tests allow 2-3 against its CPU frames, which are
PyAV's); on the CPU they must be equal. Exit 1 when they do not match. Where torchcodec cannot load
or ``--device cuda`` has no CUDA, the line carries ``"skip"`` with the reason and the exit status is
0 (``gpu_check.sh`` reports it as SKIP).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.make_long_gop_videos import write_video  # noqa: E402
from datasets.decoding import PyAVVideo  # noqa: E402
from datasets.decoding_torchcodec import TorchCodecVideo, torchcodec_problem  # noqa: E402

CLIP_FRAMES, STRIDE = 16, 4  # the distillation recipe's clip


def why_not(device: str) -> str | None:
    """``None`` when torchcodec can decode on ``device`` here, else why not (one line)."""
    problem = torchcodec_problem()
    if problem is not None:
        return problem
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "torchcodec's CUDA decode needs CUDA (no CUDA device here)"
    return None


def clips(lengths: dict[str, int], count: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """``count`` (path, frame indices) 16x4 clips at random starts, the videos in turn."""
    rng = random.Random(seed)
    paths = sorted(lengths)
    out = []
    for i in range(count):
        path = paths[i % len(paths)]
        start = rng.randrange(0, lengths[path] - CLIP_FRAMES * STRIDE + 1)
        out.append((path, list(range(start, start + CLIP_FRAMES * STRIDE, STRIDE))))
    return out


def read_all(
    reader: type, todo: list[tuple[str, list[int]]], **kwargs: str
) -> tuple[list[torch.Tensor], float]:
    """Each clip with a reader opened for it; (frames on the CPU, clips/s of the reading alone)."""
    with reader(todo[0][0], **kwargs) as video:  # warm-up
        video.get_frames(todo[0][1])
    frames, seconds = [], 0.0
    for path, indices in todo:
        start = time.perf_counter()
        with reader(path, **kwargs) as video:
            clip = video.get_frames(indices)
        if clip.is_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        frames.append(clip.cpu())
    return frames, len(todo) / seconds


def difference(ours: list[torch.Tensor], reference: list[torch.Tensor], atol: int) -> dict[str, float]:
    """Max / mean absolute difference and the fraction of values within ``atol``, over every clip."""
    worst, total, within, values = 0, 0.0, 0, 0
    for a, b in zip(ours, reference):
        if a.shape != b.shape:
            raise SystemExit(
                f"torchcodec_check: torchcodec gave frames {tuple(a.shape)}, PyAV {tuple(b.shape)}"
            )
        diff = (a.int() - b.int()).abs()
        worst = max(worst, int(diff.max()))
        total += float(diff.sum(dtype=torch.float64))
        within += int((diff <= atol).sum())
        values += diff.numel()
    return {"max_abs_diff": worst, "mean_abs_diff": round(total / values, 4), "within_atol": within / values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torchcodec's device: cuda (NVDEC) or cpu")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300, help="frames per video (one key frame)")
    parser.add_argument("--size", default="340x256", help="WIDTHxHEIGHT")
    parser.add_argument("--clips", type=int, default=64, help="16x4 clips timed per decoder")
    parser.add_argument("--atol", type=int, default=3, help="tolerance per value (uint8) against PyAV")
    parser.add_argument("--min_within", type=float, default=0.99, help="fraction of values within --atol")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    if min(args.videos, args.clips) < 1 or args.frames < CLIP_FRAMES * STRIDE:
        parser.error(f"--videos and --clips must be at least 1, --frames at least {CLIP_FRAMES * STRIDE}")
    result: dict[str, object] = {"check": "torchcodec_decode", "device": args.device}
    problem = why_not(args.device)
    if problem is not None:
        print(json.dumps({**result, "skip": problem}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"clip_{i:02d}.mp4") for i in range(args.videos)]
        for seed, path in enumerate(paths):
            write_video(path, seed, width, height, args.frames, 25)
        todo = clips(dict.fromkeys(paths, args.frames), args.clips)
        ours, ours_rate = read_all(TorchCodecVideo, todo, device=args.device)
        reference, pyav_rate = read_all(PyAVVideo, todo)
    exact = args.device == "cpu"
    diff = difference(ours, reference, 0 if exact else args.atol)
    match = diff["within_atol"] == 1.0 if exact else diff["within_atol"] >= args.min_within
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    result.update(
        gpu=gpu, videos=f"{args.videos} x {args.frames} frames, {args.size}, one key frame", clips=args.clips,
        clips_per_s={"torchcodec": round(ours_rate, 1), "pyav_cpu_1_thread": round(pyav_rate, 1)},
        atol=0 if exact else args.atol, min_within=1.0 if exact else args.min_within, **diff, match=match,
    )  # fmt: skip
    print(json.dumps(result))
    return 0 if match else 1


if __name__ == "__main__":
    sys.exit(main())

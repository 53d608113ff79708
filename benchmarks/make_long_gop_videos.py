"""Videos shaped like ffmpeg-resized UCF101 / Kinetics files, for ``bench_data.py --csv``.

``python benchmarks/make_long_gop_videos.py --out DIR [--videos 12] [--size 320x240] [--frames 250]``
writes ``DIR/videos/clip_XX.mp4`` and ``DIR/list.csv``: libx264 with ffmpeg's defaults (preset
medium, crf 23, B-frames with pyramid) and its default key-frame interval of 250, i.e. ONE key frame
in a 10 s clip, as the real sets have after ``ffmpeg -vf scale=...``. The content is a panning
textured background with moving blobs and sensor grain, so a frame costs about as much to decode
as a real one (the training set generator's flat scenes decode several times faster and flatter
the decoder comparison).
"""

from __future__ import annotations

import argparse
import os

import av
import numpy as np


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth-ish colour texture ``[H, W, 3]`` uint8 (noise summed over a few scales)."""
    out = np.zeros((height, width, 3), np.float32)
    for scale in (1, 2, 8, 32):
        small = rng.random((height // scale + 2, width // scale + 2, 3)).astype(np.float32)
        big = np.repeat(np.repeat(small, scale, 0), scale, 1)[:height, :width]
        out += big * (1.0 if scale < 8 else scale / 8.0)
    return (out / out.max() * 230).astype(np.uint8)


def write_video(path: str, seed: int, width: int, height: int, frames: int, fps: int) -> None:
    rng = np.random.default_rng(seed)
    background = _texture(rng, height * 2, width * 2)
    blobs = rng.random((4, 4)) * [width, height, 3, 3] - [0, 0, 1.5, 1.5]  # x, y, vx, vy
    yy, xx = np.mgrid[0:height, 0:width]
    tmp = path + ".part"
    with av.open(tmp, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        for t in range(frames):
            x0, y0 = int(t * 1.2) % width, int(t * 0.5) % height  # slow camera pan
            image = background[y0 : y0 + height, x0 : x0 + width].astype(np.int16)
            for blob in blobs:
                blob[:2] += blob[2:]
                inside = (xx - blob[0] % width) ** 2 + (yy - blob[1] % height) ** 2 < 400
                image[inside] = 255 - image[inside]
            image += rng.integers(-6, 7, image.shape, dtype=np.int16)  # grain
            frame = av.VideoFrame.from_ndarray(image.clip(0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.makedirs(os.path.join(args.out, "videos"), exist_ok=True)
    lines = []
    for i in range(args.videos):
        rel = f"videos/clip_{i:02d}.mp4"
        write_video(os.path.join(args.out, rel), i, width, height, args.frames, args.fps)
        lines.append(f"{rel} 0\n")
    with open(os.path.join(args.out, "list.csv"), "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    print(f"wrote {args.videos} videos and {os.path.join(args.out, 'list.csv')}")


if __name__ == "__main__":
    main()

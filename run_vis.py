"""Visualise what MMKD distils for one video: masked frames, reconstruction, MM-global / MM-local
attention of a query token and the MM-hint token selection, for a student and a teacher side by side.

    python run_vis.py --video v.mp4 --output_dir vis/ --model_path student.pth --teacher_path teacher.pth \
        --model pretrain_videomae_small_patch16_224 --model_t pretrain_videomae_base_patch16_224
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import timm
import torch
import torchvision.transforms.v2.functional as TF

import models  # noqa: F401
from datasets import build_mask_generator
from datasets.decoding import open_video
from engine.args import UsageError
from engine.cli import run
from engine.visualize import (
    masked_frames,
    overlay,
    reconstruct,
    selection_maps,
    stack_rows,
    strip,
    to_uint8_frames,
)
from models.targets import IMAGENET_MEAN, IMAGENET_STD
from models.weights import read_state_dict


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", "--img_path", dest="video", required=True)
    p.add_argument("--output_dir", "--save_path", dest="output_dir", required=True)
    p.add_argument("--model_path", required=True, help="student (or any) checkpoint")
    p.add_argument("--teacher_path", default=None, help="second checkpoint shown beside the first")
    p.add_argument("--model", default="pretrain_videomae_small_patch16_224")
    p.add_argument("--model_t", default="pretrain_videomae_base_patch16_224")
    p.add_argument(
        "--idx", type=int, default=20, help="query token within its temporal slice's visible tokens"
    )
    p.add_argument("--idx_f", type=int, default=3, help="temporal slice of the query token")
    p.add_argument("--num_k", type=int, default=10)
    p.add_argument("--num_f", type=int, default=10)
    p.add_argument("--kd_T", type=float, default=1.0)
    p.add_argument("--mask_type", default="tube", choices=("tube",))
    p.add_argument("--mask_ratio", type=float, default=0.9)
    p.add_argument("--num_frames", type=int, default=16)
    p.add_argument("--sampling_rate", type=int, default=4)
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decoder", default="auto", choices=("auto", "decord", "pyav"))
    args = p.parse_args(argv)
    if not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video!r} does not exist")
    return args


def load_clip(args) -> torch.Tensor:
    """Centre clip, short side resized to --input_size and centre-cropped: [3, T, S, S] normalised."""
    with open_video(args.video, args.decoder) as reader:
        n = len(reader)
        span = args.num_frames * args.sampling_rate
        start = max(0, (n - span) // 2)
        idx = np.minimum(start + np.arange(args.num_frames) * args.sampling_rate, n - 1)
        frames = reader.get_frames(idx.tolist()).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    frames = TF.center_crop(TF.resize(frames, args.input_size, antialias=True), [args.input_size] * 2)
    x = TF.normalize(frames.float() / 255, IMAGENET_MEAN, IMAGENET_STD)
    return x.permute(1, 0, 2, 3)


def load_model(name: str, path: str, args) -> models.PretrainVisionTransformer:
    state = read_state_dict(path)
    state = {k.removeprefix("student."): v for k, v in state.items() if not k.startswith("heads.")}
    depth = len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")})
    model = timm.create_model(name, decoder_depth=depth, img_size=args.input_size, num_frames=args.num_frames)
    if depth == 0:
        state = {k: v for k, v in state.items() if not k.startswith("encoder.norm.")}
    model.load_state_dict(state, strict=True)
    return model.eval()


def main(argv=None) -> dict:
    args = parse(argv)
    video = load_clip(args)
    pairs = [("student", args.model, args.model_path)]
    if args.teacher_path:
        pairs.append(("teacher", args.model_t, args.teacher_path))
    nets = {label: load_model(name, path, args) for label, name, path in pairs}
    first = next(iter(nets.values()))
    grid, tubelet = first.encoder.grid_size, first.tubelet_size
    mask = torch.as_tensor(
        build_mask_generator(args.mask_type, grid, args.mask_ratio)(np.random.default_rng(args.seed))
    )
    visible_per_slice = int((~mask[: grid[1] * grid[2]]).sum())
    if not 0 <= args.idx < visible_per_slice or not 0 <= args.idx_f < grid[0]:
        raise UsageError(
            f"--idx must be < {visible_per_slice} and --idx_f < {grid[0]} for this clip and mask"
        )
    query = args.idx_f * visible_per_slice + args.idx
    frames = to_uint8_frames(video)
    os.makedirs(args.output_dir, exist_ok=True)
    rows = {
        "frames": strip(frames[::tubelet][: grid[0]], "input frames"),
        "mask": strip(masked_frames(frames, mask, grid, tubelet), "visible tokens"),
    }
    for label, net in nets.items():
        if net.decoder_depth:
            rec = to_uint8_frames(reconstruct(net, video, mask))
            rows[f"{label}_reconstruction"] = strip(
                rec[::tubelet][: grid[0]], f"{label}: VideoMAE reconstruction"
            )
        maps = selection_maps(net, video, mask, query, args.num_k, args.num_f, args.kd_T)
        for name, m in maps.items():
            rows[f"{label}_mm_{name}"] = strip(overlay(frames, m, tubelet), f"{label}: MM-{name}")
    rows["grid"] = stack_rows(list(rows.values()))
    written = {}
    for name, image in rows.items():
        path = os.path.join(args.output_dir, f"{name}.png")
        image.save(path)
        written[path] = image.size
    grid_path = os.path.join(args.output_dir, "grid.png")
    print(f"wrote {len(written)} images to {args.output_dir} (combined: {grid_path})")
    return written


if __name__ == "__main__":
    sys.exit(run(main))

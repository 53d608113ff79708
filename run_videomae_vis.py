"""VideoMAE's reconstruction figure for one video: the original, masked and reconstructed frames.

VideoMAE's command line (its ``vis.sh``) runs unchanged:

    python run_videomae_vis.py --mask_ratio 0.9 --mask_type tube --decoder_depth 4 \
        --model pretrain_videomae_base_patch16_224 video.mp4 vis/ checkpoint.pth

For every frame i of the clip it writes ``ori_img{i}.jpg`` (the frame), ``mask_img{i}.jpg`` (the
hidden tubes black) and ``rec_img{i}.jpg`` (the visible tubes, and the decoder's prediction of the
hidden ones, un-normalised with each tube's own mean and std when the model learnt normalised pixels).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

from engine.args import OneLineParser
from engine.args_compat import ReferenceBool
from engine.cli import run
from engine.visualize import (
    add_vis_arguments,
    draw_mask,
    finish_vis_arguments,
    load_clip,
    load_pretrain_model,
    pick_device,
    save_image,
    videomae_frames,
)
from models.weights import CheckpointError

# the reference's file names, per frame i
NAMES = {"ori": "ori_img{}.jpg", "mask": "mask_img{}.jpg", "rec": "rec_img{}.jpg"}
DIFFERENCE = (
    "note: the frames are the centred clip (--num_frames every --sampling_rate), short side resized to "
    "--input_size, then centre-cropped, JPEG quality 95; the reference reads frames 60, 62, ..., 90, crops "
    "without resizing and writes PIL's quality 75"
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    # the reference's defaults (random masking at 0.75, ViT-B)
    add_vis_arguments(p, mask_type="random", mask_ratio=0.75, model="pretrain_videomae_base_patch16_224")
    p.add_argument(
        "--normlize_target",
        "--normalize_target",
        dest="normlize_target",
        action=ReferenceBool,
        default=True,
        help="the model predicts per-tube normalised pixels (VideoMAE's default); --no-normlize_target: raw pixels",
    )
    return finish_vis_arguments(p.parse_intermixed_args(argv))


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Returns {path written: the uint8 [H, W, 3] frame it holds (before JPEG compression)}."""
    args = parse(argv)
    device = pick_device(args.device)
    model = load_pretrain_model(
        args.model, args.model_path, img_size=args.input_size, num_frames=args.num_frames,
        decoder_depth=args.decoder_depth, drop_path=args.drop_path,
    ).to(device)  # fmt: skip
    if model.decoder_depth == 0:
        raise CheckpointError(
            f"{args.model_path} has no decoder (an MMKD student, or --decoder_depth 0): nothing to "
            "reconstruct; draw its attention with run_vis.py"
        )
    video = load_clip(args.video, args.num_frames, args.sampling_rate, args.input_size, args.decoder)
    mask = draw_mask(args.mask_type, model.encoder.grid_size, args.mask_ratio, args.seed)
    frames = videomae_frames(model, video.to(device), mask.to(device), args.normlize_target)
    print(DIFFERENCE)
    os.makedirs(args.output_dir, exist_ok=True)
    written = {}
    for kind, name in NAMES.items():
        for i, frame in enumerate(frames[kind]):
            path = os.path.join(args.output_dir, name.format(i))
            save_image(Image.fromarray(frame), path)
            written[path] = frame
    hidden = int(mask.sum())
    print(
        f"wrote {len(written)} frames to {args.output_dir} (ori_img / mask_img / rec_img 0..{args.num_frames - 1}; "
        f"{args.mask_type} mask, {hidden} of {mask.numel()} tokens hidden)"
    )
    return written


if __name__ == "__main__":
    sys.exit(run(main))

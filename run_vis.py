"""Visualise what MMKD distils for one video: masked frames, reconstruction, MM-global / MM-local
attention of a query token and the MM-hint token selection, for a student and a teacher side by side.

    python run_vis.py --video v.mp4 --output_dir vis/ --model_path student.pth --teacher_path teacher.pth \
        --model pretrain_videomae_small_patch16_224 --model_t pretrain_videomae_base_patch16_224

MaskAgain's command line (its ``scripts/vis_kd.sh``) runs unchanged too:

    python run_vis.py --mask_ratio 0.0 --num_k 10 --idx 118 --idx_f 0 --mask_type tube --decoder_depth 0 \
        --model pretrain_videomae_base_patch16_224 v.mp4 vis/ student.pth
"""

from __future__ import annotations

import argparse
import os
import sys

from engine.args import OneLineParser, UsageError
from engine.args_compat import UNUSED
from engine.cli import run
from engine.visualize import (
    add_vis_arguments,
    draw_mask,
    finish_vis_arguments,
    load_clip,
    load_pretrain_model,
    masked_frames,
    overlay,
    pick_device,
    query_token,
    reconstruct,
    save_image,
    selection_maps,
    stack_rows,
    strip,
    to_uint8,
    to_uint8_frames,
)

DIFFERENCE = (
    "note: the maps are labelled strips (one image per tube, heads averaged) in frames.png ... grid.png; "
    "the reference's run_vis.py drew head 0 per frame with matplotlib (att_globle{f}.jpg, att_frame{f}.jpg, "
    "feature{f}.jpg)"
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    add_vis_arguments(p, mask_type="tube", mask_ratio=0.9, model="pretrain_videomae_small_patch16_224")
    g = p.add_argument_group("MMKD")
    g.add_argument("--teacher_path", default=None, help="second checkpoint shown beside the first")
    g.add_argument("--model_t", default="pretrain_videomae_base_patch16_224")
    g.add_argument(
        "--idx", type=int, default=20, help="query token within its temporal slice's visible tokens"
    )
    g.add_argument("--idx_f", type=int, default=3, help="temporal slice of the query token")
    g.add_argument("--num_k", type=int, default=10)
    g.add_argument("--num_f", type=int, default=10)
    g.add_argument("--kd_T", type=float, default=1.0)
    g.add_argument("--module_path", default=None, help=f"{UNUSED} (MaskAgain's run_vis.py never reads it)")
    args = finish_vis_arguments(p.parse_intermixed_args(argv))
    if args.teacher_path is not None and not os.path.exists(args.teacher_path):
        raise UsageError(f"--teacher_path {args.teacher_path!r} does not exist")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = pick_device(args.device)
    pairs = [("student", args.model, args.model_path, args.decoder_depth)]
    if args.teacher_path:
        pairs.append(("teacher", args.model_t, args.teacher_path, None))
    nets = {
        label: load_pretrain_model(
            name, path, img_size=args.input_size, num_frames=args.num_frames, decoder_depth=depth,
            drop_path=args.drop_path,
        ).to(device)
        for label, name, path, depth in pairs
    }  # fmt: skip
    first = next(iter(nets.values()))
    grid, tubelet = first.encoder.grid_size, first.tubelet_size
    if any((n.encoder.grid_size, n.tubelet_size) != (grid, tubelet) for n in nets.values()):
        raise UsageError(
            "--model and --model_t must share patch and tubelet sizes: one mask is drawn for both"
        )
    video = load_clip(args.video, args.num_frames, args.sampling_rate, args.input_size, args.decoder)
    video = video.to(device)
    mask = draw_mask(args.mask_type, grid, args.mask_ratio, args.seed).to(device)
    query = query_token(mask, grid, args.idx_f, args.idx)
    frames = to_uint8_frames(video)
    print(DIFFERENCE)
    os.makedirs(args.output_dir, exist_ok=True)
    rows = {
        "frames": strip(frames[::tubelet][: grid[0]], "input frames"),
        "mask": strip(masked_frames(frames, mask, grid, tubelet), "visible tokens"),
    }
    for label, net in nets.items():
        if net.decoder_depth:
            rec = to_uint8(reconstruct(net, video, mask))
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
        save_image(image, path)
        written[path] = image.size
    grid_path = os.path.join(args.output_dir, "grid.png")
    print(f"wrote {len(written)} images to {args.output_dir} (combined: {grid_path})")
    return written


if __name__ == "__main__":
    sys.exit(run(main))

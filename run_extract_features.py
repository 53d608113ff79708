"""Frozen features of every video of a list: multi-view pooled encoder features, for linear probes.

    python run_extract_features.py --model vit_base_patch16_224 --finetune ckpt.pth --data_path train.csv \
        --output_dir feats/train --test_num_segment 2 --test_num_crop 3
    torchrun --nproc_per_node=8 run_extract_features.py ...   # one shard file per rank, merged by rank 0

Writes OUTPUT_DIR/features.safetensors (features [N, C] float32, [N, T' x C] with --pool temporal;
labels [N] int64), index.csv and broken.txt; a relaunched run reuses the finished shards.
"""

from __future__ import annotations

import os
import sys

import torch

from datasets import build_multiview_dataset
from engine.args import OneLineParser, UsageError
from engine.cli import run
from engine.distributed import DistEnv, init_distributed
from engine.feature_args import POOLING_HELP, add_model_and_clip_args, clip_settings, validate_clip_args
from engine.features import build_feature_encoder, extract_features
from engine.precision import autocast_context


def parse(argv: list[str] | None) -> object:
    p = OneLineParser(description=__doc__.splitlines()[0], epilog=POOLING_HELP, allow_abbrev=False)
    add_model_and_clip_args(p, "list file of videos (<path> <label> per line)")
    args = validate_clip_args(p.parse_args(argv))
    if not args.data_path:
        p.error("--data_path is required: the list file of videos")
    return args


def extract(args, env: DistEnv, data_path: str, output_dir: str) -> dict:
    """Builds the encoder and the views of ``data_path`` and extracts into ``output_dir``."""
    if not os.path.isfile(data_path):
        raise UsageError(
            f"--data_path {data_path!r} is not a file; give a list of videos (<path> <label> per line)"
        )
    torch.manual_seed(args.seed)  # a random network is the same on every rank
    dataset = build_multiview_dataset(
        data_path, root=args.data_root, nb_classes=args.nb_classes, num_frames=args.num_frames,
        sampling_rate=args.sampling_rate, input_size=args.input_size, short_side_size=args.short_side_size,
        test_num_segment=args.test_num_segment, test_num_crop=args.test_num_crop, decoder=args.decoder,
        list_format=args.list_format, normalize=False,
    )  # fmt: skip
    model, report = build_feature_encoder(
        args.model, args.finetune, num_frames=args.num_frames, input_size=args.input_size
    )
    print(f"encoder {args.model}: {report}")
    result = extract_features(
        model, dataset, output_dir, env, settings=clip_settings(args), batch_size=args.batch_size,
        num_workers=args.num_workers, autocast=lambda: autocast_context(env.device, args.precision),
        shard_size=args.shard_size, pool=args.pool,
    )  # fmt: skip
    if result:
        print(
            f"wrote {result['path']}: {result['videos']} videos x {result['dim']} features, "
            f"{result['broken']} broken (broken.txt), {result['resumed_shards']} shard(s) reused"
        )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    return extract(args, init_distributed(args.device, args.dist_url), args.data_path, args.output_dir)


if __name__ == "__main__":
    sys.exit(run(main))

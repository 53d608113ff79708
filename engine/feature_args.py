"""Arguments of frozen-feature extraction (run_extract_features.py, and run_linear_probe.py on the fly).

Names and meanings are those of run_class_finetuning.py, validated the same way (one-line `UsageError`).
"""

from __future__ import annotations

import argparse
import os

from datasets.decoding import DECODERS
from engine.args import PRECISIONS, UsageError, _writable_dir, check_decoder_flag
from engine.features import POOLS

POOLING_HELP = (
    "features (--pool mean): the mean of the last block's tokens over the whole clip, then the classifier's "
    "fc_norm LayerNorm -- learnt for fine-tuned checkpoints; at its initial weight 1 / bias 0 (a plain "
    "LayerNorm) for pre-training and distilled checkpoints, whose encoder norm is not used; then averaged over "
    "the views. --pool temporal: the mean over space of each temporal slice (num_frames / tubelet), each slice "
    "through the same fc_norm, the slices concatenated in time order ([N, T' x C]): for classes told apart by "
    "the direction of a motion, which a mean over the whole clip erases"
)


def add_model_and_clip_args(p: argparse.ArgumentParser, list_help: str) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", default="vit_base_patch16_224", help="vit_* classifier name of the encoder's size"
    )
    g.add_argument("--nb_classes", type=int, default=None, help="when given, every label must be below it")
    g.add_argument(
        "--pool",
        choices=POOLS,
        default="mean",
        help="mean: over all tokens [N, C]; temporal: over space per temporal slice, concatenated [N, T' x C]",
    )
    g.add_argument(
        "--finetune",
        default="",
        help="weights: a pre-training / distillation / fine-tuning checkpoint (.pth, .safetensors) or a "
        "transformers VideoMAE folder; empty = a randomly initialised network (seeded by --seed)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--data_path", default=None, help=list_help)
    g.add_argument("--data_root", "--root", dest="data_root", default=None, help="prefix for relative paths")
    g.add_argument("--num_frames", type=int, default=16)
    g.add_argument("--sampling_rate", type=int, default=4)
    g.add_argument("--input_size", type=int, default=224)
    g.add_argument("--short_side_size", type=int, default=None, help="default: --input_size")
    g.add_argument("--test_num_segment", type=int, default=5, help="clips per video")
    g.add_argument("--test_num_crop", type=int, default=3, help="crops per clip")
    g.add_argument("--decoder", choices=DECODERS, default="auto")
    g.add_argument("--list_format", choices=("auto", "video", "frames"), default="auto")
    g = p.add_argument_group("runtime")
    g.add_argument("--batch_size", type=int, default=32, help="views per forward pass")
    g.add_argument("--num_workers", type=int, default=10)
    g.add_argument("--output_dir", required=True)
    g.add_argument("--device", default="cuda", help="cuda or cpu (falls back to cpu without CUDA)")
    g.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="default: bf16 on a GPU, fp32 on a CPU"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--shard_size", type=int, default=256, help="videos per resumable shard")
    g.add_argument("--dist_url", default="env://")
    g.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="ignored: taken from torchrun")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def validate_clip_args(args: argparse.Namespace) -> argparse.Namespace:
    check_decoder_flag(args.decoder)
    for name in (
        "num_frames",
        "sampling_rate",
        "test_num_segment",
        "test_num_crop",
        "batch_size",
        "shard_size",
    ):
        _check(getattr(args, name) >= 1, f"--{name} must be >= 1, got {getattr(args, name)}")
    _check(args.num_workers >= 0, f"--num_workers must be >= 0, got {args.num_workers}")
    if args.short_side_size is None:
        args.short_side_size = args.input_size
    _check(
        args.short_side_size >= args.input_size,
        f"--short_side_size {args.short_side_size} is smaller than --input_size {args.input_size}",
    )
    if args.nb_classes is not None:
        _check(args.nb_classes >= 1, f"--nb_classes must be >= 1, got {args.nb_classes}")
    if args.finetune:
        from models import zoo

        _check(
            os.path.exists(args.finetune) or zoo.is_zoo_source(args.finetune),
            f"--finetune {args.finetune!r} does not exist; give a checkpoint file or transformers folder, "
            "a model-zoo name (`python -m models.zoo list`), hf://org/name[@revision] or a URL",
        )
    _check(
        _writable_dir(args.output_dir),
        f"--output_dir {args.output_dir!r} is not writable; choose a folder you can write to",
    )
    cuda = args.device.startswith("cuda")
    if args.precision is None:
        import torch

        args.precision = "bf16" if cuda and torch.cuda.is_available() else "fp32"
    _check(args.precision != "fp16" or cuda, "--precision fp16 needs --device cuda; use bf16 or fp32 on CPU")
    return args


def clip_settings(args: argparse.Namespace) -> dict:
    """Everything that changes a feature (the shard fingerprint), checkpoint identity included."""
    weights = args.finetune
    stamp = None
    if weights:
        target = weights if os.path.isfile(weights) else os.path.join(weights, "config.json")
        st = os.stat(target)
        stamp = (os.path.abspath(weights), st.st_size, st.st_mtime_ns)
    keys = ("model", "num_frames", "sampling_rate", "input_size", "short_side_size", "test_num_segment",
            "test_num_crop", "precision", "shard_size", "pool")  # fmt: skip
    return {
        "weights": stamp,
        "seed": args.seed if not weights else None,
        **{k: getattr(args, k) for k in keys},
    }

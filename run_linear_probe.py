"""Linear probe on frozen features (MAE's protocol): top-1 / top-5 of a linear classifier on val.

# from features written by run_extract_features.py
python run_linear_probe.py --train_features feats/train --val_features feats/val --output_dir probe/
# or extracted on the fly from a checkpoint (train.csv / val.csv of --data_path)
python run_linear_probe.py --model vit_base_patch16_224 --finetune ckpt.pth --data_path k400/ --output_dir probe/
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from engine.args import OneLineParser, UsageError
from engine.cli import run
from engine.distributed import init_distributed
from engine.feature_args import POOLING_HELP, add_model_and_clip_args, validate_clip_args
from engine.features import FEATURES_FILE, load_features
from engine.logger import append_json_line
from engine.probe import train_probe
from run_extract_features import extract


def parse(argv: list[str] | None):
    p = OneLineParser(description=__doc__.splitlines()[0], epilog=POOLING_HELP, allow_abbrev=False)
    add_model_and_clip_args(
        p, "folder holding train.csv and the --val_split list (for on-the-fly extraction)"
    )
    g = p.add_argument_group("linear probe")
    g.add_argument(
        "--train_features", default=None, help="features.safetensors (or its folder) of the train split"
    )
    g.add_argument(
        "--val_features", default=None, help="features.safetensors (or its folder) of the val split"
    )
    g.add_argument("--val_split", choices=("val", "test"), default="val", help="list scored when extracting")
    g.add_argument("--epochs", type=int, default=90)
    g.add_argument("--probe_batch_size", type=int, default=256, help="features per step")
    g.add_argument(
        "--blr",
        type=float,
        default=0.1,
        help="base lr: lr = blr * probe_batch_size / 256 (MAE: 0.1 at 16384; small sets need ~10 with LARS)",
    )
    g.add_argument("--warmup_epochs", type=int, default=10)
    g.add_argument("--opt", choices=("lars", "sgd"), default="lars")
    args = validate_clip_args(p.parse_args(argv))
    given = (args.train_features is not None, args.val_features is not None)
    if any(given) and not all(given):
        p.error("--train_features and --val_features go together")
    if not any(given) and not args.data_path:
        p.error("give --train_features / --val_features, or --data_path (and --finetune) to extract them")
    if args.epochs < 1 or args.probe_batch_size < 2 or args.blr <= 0 or args.warmup_epochs < 0:
        p.error("--epochs >= 1, --probe_batch_size >= 2, --blr > 0 and --warmup_epochs >= 0 are required")
    return args


def _features_path(path: str) -> str:
    path = os.path.join(path, FEATURES_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist; write it with run_extract_features.py")
    return path


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    out = Path(args.output_dir)
    if args.train_features is None:  # extract both splits first (resumable, torchrun-aware)
        env = init_distributed(args.device, args.dist_url)
        paths = {}
        for split in ("train", args.val_split):
            folder = out / f"features_{split}"
            extract(args, env, os.path.join(args.data_path, f"{split}.csv"), str(folder))
            paths[split] = str(folder / FEATURES_FILE)
        if not env.is_main:
            return {}
        args.train_features, args.val_features = paths["train"], paths[args.val_split]
    train = load_features(_features_path(args.train_features))
    val = load_features(_features_path(args.val_features))
    if train[0].shape[1] != val[0].shape[1]:
        raise UsageError(f"train features have {train[0].shape[1]} channels, val features {val[0].shape[1]}")
    num_classes = args.nb_classes or int(max(train[1].max(), val[1].max())) + 1
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "log.txt"
    log_file.unlink(missing_ok=True)
    result = train_probe(
        train, val, num_classes, epochs=args.epochs, batch_size=args.probe_batch_size, blr=args.blr,
        warmup_epochs=args.warmup_epochs, opt=args.opt, seed=args.seed,
        log=lambda rec: append_json_line(log_file, rec),
    )  # fmt: skip
    torch.save({"model": result.pop("state_dict"), "num_classes": num_classes}, out / "probe.pth")
    final = {**result, "num_train": len(train[1]), "num_val": len(val[1]), "num_classes": num_classes}
    append_json_line(log_file, {"final": final})
    print(
        f"linear probe: top-1 {final['top1']:.2f}  top-5 {final['top5']:.2f}  (best top-1 {final['best_top1']:.2f}) "
        f"on {final['num_val']} videos, {num_classes} classes, trained on {final['num_train']}"
    )
    (out / "result.json").write_text(json.dumps(final, indent=2))
    return final


if __name__ == "__main__":
    sys.exit(run(main))

"""VideoMAE pre-training: reconstruct the pixels of tube-masked clips (spec §3).

torchrun --nproc_per_node=8 run_mae_pretraining.py --data_path train.csv --model pretrain_videomae_base_patch16_224 ...
"""

from __future__ import annotations

import argparse
import sys

from engine import args as cli_args
from engine.build import build_masked_clips, build_pretrain_model
from engine.cli import run
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import PretrainTask


def build_task(args: argparse.Namespace) -> PretrainTask:
    return PretrainTask(build_pretrain_model(args), normalize_target=args.normlize_target)


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli_args.parse("pretrain", argv)
    env = setup(args)
    task = build_task(args)
    dataset = build_masked_clips(args, task.model)
    loader = make_loader(dataset, args, env, train=True)
    prepare_output(args, env)
    return Trainer(args, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

"""MMKD: distil a VideoMAE-pre-trained teacher into a student on masked clips (spec §4).

torchrun --nproc_per_node=8 run_mmkd_distill.py --data_path train.csv --path_t videomae_vitb.pth ...
"""

from __future__ import annotations

import argparse
import sys

from engine import args as cli_args
from engine.build import build_distill, build_masked_clips
from engine.cli import run
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import DistillTask


def build_task(args: argparse.Namespace) -> DistillTask:
    """Student + alignment heads (trained) and the strictly loaded, frozen teacher."""
    student, teacher, heads, report = build_distill(args)
    print(f"teacher {args.model_t} from {args.path_t}: {report}")
    return DistillTask(student, teacher, heads, teacher_precision=args.teacher_precision)


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli_args.parse("distill", argv)
    env = setup(args)
    task = build_task(args)
    dataset = build_masked_clips(args, task.student)
    loader = make_loader(dataset, args, env, train=True)
    prepare_output(args, env)
    return Trainer(args, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

"""MMKD: distil a VideoMAE-pre-trained teacher into a student on masked clips (spec §4).

torchrun --nproc_per_node=8 run_mmkd_distill.py --data_path train.csv --path_t videomae_vitb.pth ...
"""

from __future__ import annotations

import sys
from functools import partial

from engine import args as cli_args
from engine.build import build_distill, build_masked_clips
from engine.cli import run
from engine.precision import autocast_context
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import DistillTask


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli_args.parse("distill", argv)
    env = setup(args)
    student, teacher, heads, report = build_distill(args)
    print(f"teacher {args.model_t} from {args.path_t}: {report}")
    teacher_autocast = partial(autocast_context, env.device, args.teacher_precision)
    task = DistillTask(student, teacher, heads, teacher_autocast=teacher_autocast)
    dataset = build_masked_clips(args, student)
    loader = make_loader(dataset, args, env, train=True)
    prepare_output(args, env)
    return Trainer(args, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

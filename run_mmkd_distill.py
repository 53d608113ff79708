"""MMKD: distil a VideoMAE-pre-trained teacher into a student on masked clips (spec §4).

torchrun --nproc_per_node=8 run_mmkd_distill.py --data_path train.csv --path_t videomae_vitb.pth ...
"""

from __future__ import annotations

import sys

from engine import args as cli_args
from engine.build import build_distill, build_masked_clips
from engine.cli import run
from engine.config import DistillConfig
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import DistillTask


def build_task(cfg: DistillConfig) -> DistillTask:
    """Student + alignment heads (trained) and the strictly loaded, frozen teacher."""
    student, teacher, heads, report = build_distill(cfg)
    print(f"teacher {cfg.teacher.model_t} from {cfg.teacher.path_t}: {report}")
    return DistillTask(student, teacher, heads, teacher_precision=cfg.teacher.teacher_precision)


def main(argv: list[str] | None = None) -> list[dict]:
    cfg = cli_args.parse("distill", argv)
    env = setup(cfg)
    task = build_task(cfg)
    dataset = build_masked_clips(cfg, task.student)
    loader = make_loader(dataset, cfg, env, train=True)
    prepare_output(cfg, env)
    return Trainer(cfg, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

"""VideoMAE pre-training: reconstruct the pixels of tube-masked clips (spec §3).

torchrun --nproc_per_node=8 run_mae_pretraining.py --data_path train.csv --model pretrain_videomae_base_patch16_224 ...
"""

from __future__ import annotations

import sys

from engine import args as cli_args
from engine.build import build_masked_clips, build_pretrain_model
from engine.cli import run
from engine.config import PretrainConfig
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import PretrainTask


def build_task(cfg: PretrainConfig) -> PretrainTask:
    model = build_pretrain_model(cfg.model, cfg.data, cfg.mae.decoder_depth)
    return PretrainTask(model, normalize_target=cfg.mae.normlize_target)


def main(argv: list[str] | None = None) -> list[dict]:
    cfg = cli_args.parse("pretrain", argv)
    env = setup(cfg)
    task = build_task(cfg)
    dataset = build_masked_clips(cfg, task.model)
    loader = make_loader(dataset, cfg, env, train=True)
    prepare_output(cfg, env)
    return Trainer(cfg, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

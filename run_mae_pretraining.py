"""VideoMAE pre-training: reconstruct the pixels of tube-masked clips (spec §3).

torchrun --nproc_per_node=8 run_mae_pretraining.py --data_path train.csv --model pretrain_videomae_base_patch16_224 ...
"""

from __future__ import annotations

import sys

from datasets import build_pretraining_dataset
from engine import args as cli_args
from engine.build import build_pretrain_model
from engine.cli import run
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import PretrainTask


def main(argv: list[str] | None = None) -> list[dict]:
    args = cli_args.parse("pretrain", argv)
    env = setup(args)
    model = build_pretrain_model(args)
    task = PretrainTask(model, normalize_target=args.normlize_target)
    dataset = build_pretraining_dataset(
        args.data_path,
        root=args.data_root,
        num_frames=args.num_frames,
        sampling_rate=args.sampling_rate,
        input_size=args.input_size,
        patch_size=model.patch_size,
        tubelet_size=model.tubelet_size,
        mask_type=args.mask_type,
        mask_ratio=args.mask_ratio,
        decoder=args.decoder,
        max_bad_fraction=args.max_bad_fraction,
        seed=args.seed,
    )
    loader = make_loader(dataset, args, env, train=True)
    prepare_output(args, env)
    return Trainer(args, env, task, loader).fit()


if __name__ == "__main__":
    sys.exit(run(main))

"""Fine-tuning with one-clip validation each epoch and a multi-view test at the end (spec §5, §6).

torchrun --nproc_per_node=8 run_class_finetuning.py --data_path k400/ --finetune ckpt.pth ...
python run_class_finetuning.py ... --eval             # the reference's: test --resume / the newest checkpoint
python run_class_finetuning.py ... --validate_only    # one-clip validation of --finetune only
python run_class_finetuning.py ... --test             # multi-view test of --finetune only
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch
from timm.data import Mixup
from torch.utils.data import Dataset

from datasets import build_dataset
from engine import args as cli_args
from engine.build import build_classifier
from engine.cli import run
from engine.config import FinetuneConfig, FinetuneSection
from engine.evaluation import eval_source, evaluate, load_for_eval, multiview_test
from engine.logger import append_json_line
from engine.precision import autocast_context
from engine.runner import Trainer, make_loader, prepare_output, setup
from engine.tasks import FinetuneTask, clip_erasing


def build_mixup(ft: FinetuneSection, nb_classes: int) -> Mixup | None:
    if not (ft.mixup > 0 or ft.cutmix > 0 or ft.cutmix_minmax is not None):
        return None
    return Mixup(
        mixup_alpha=ft.mixup,
        cutmix_alpha=ft.cutmix,
        cutmix_minmax=ft.cutmix_minmax,
        prob=ft.mixup_prob,
        switch_prob=ft.mixup_switch_prob,
        mode=ft.mixup_mode,
        label_smoothing=ft.smoothing,
        num_classes=nb_classes,
    )


def build_splits(cfg: FinetuneConfig) -> dict[str, tuple[Dataset, int]]:
    """The splits this run needs: train (unless --eval / --test / --validate_only), val (for
    --validate_only or between training epochs unless --disable_eval_during_finetuning), test
    (unless --validate_only).

    Clips stay uint8 in every split: they are normalised per batch on the device (by `FinetuneTask`
    for training, which also runs random erasing, ``--reprob``, there; by the eval loops otherwise).
    """
    d, ft = cfg.data, cfg.finetune
    data = dict(
        data_path=d.data_path,
        root=d.data_root,
        nb_classes=ft.nb_classes,
        num_frames=d.num_frames,
        sampling_rate=d.sampling_rate,
        input_size=d.input_size,
        short_side_size=ft.short_side_size,
        decoder=d.decoder,
        list_format=ft.list_format,
        max_bad_fraction=d.max_bad_fraction,
        seed=cfg.run.seed,
        normalize=False,
    )
    splits = {}
    evaluation_only = ft.eval or ft.test or ft.validate_only
    if not evaluation_only:
        splits["train"] = build_dataset(
            d.data_set,
            "train",
            num_sample=ft.num_sample,
            auto_augment=None if ft.aa.lower() in ("", "none") else ft.aa,
            **data,
        )
    if ft.validate_only or not (evaluation_only or ft.disable_eval_during_finetuning):
        splits["val"] = build_dataset(d.data_set, "val", **data)
    if not ft.validate_only:
        splits["test"] = build_dataset(
            d.data_set,
            "test",
            test_num_segment=ft.test_num_segment,
            test_num_crop=ft.test_num_crop,
            **data,
        )
    return splits


def build_task(cfg: FinetuneConfig, nb_classes: int, device: torch.device | str = "cpu") -> FinetuneTask:
    """The classifier (from --finetune, if given) with its criterion, random erasing on ``device``,
    mixup and layer-wise lr decay."""
    model, report = build_classifier(cfg, nb_classes)
    print(f"model {cfg.model.model} ({nb_classes} classes): {report}")
    ft = cfg.finetune
    return FinetuneTask(
        model,
        build_mixup(ft, nb_classes),
        ft.smoothing,
        layer_decay=ft.layer_decay,
        erasing=clip_erasing(ft.reprob, device),
    )


def reference_eval(cfg: FinetuneConfig, env, model, loader, autocast) -> dict:
    """``--eval`` as in VideoMAE / MMKD (spec §8): the checkpoint ``auto_load_model`` would load,
    per-rank ``<output_dir>/<rank>.txt`` view files, merged on rank 0, the reference's result line,
    ``{"Final top-1", "Final Top-5"}`` appended to log.txt; nothing is trained."""
    run, finetune = cfg.run, cfg.finetune.finetune
    source = eval_source(run)
    if source is None and not finetune:
        raise cli_args.UsageError(
            "--eval found nothing to test: no --resume, no checkpoint-*.pth in --output_dir and no --finetune"
        )
    loaded = load_for_eval(model, source) if source else f"the --finetune weights {finetune}"
    print(f"--eval: the reference's multi-view test of {loaded}, no training (one-clip validation: --validate_only)")
    out = run.output_dir or "."
    stats = multiview_test(
        model, loader, env, out, autocast, cfg.finetune.merge_dedupe, run.print_freq, folder_name=""
    )
    if env.is_main:
        # the reference's line; its N is len(dataset_test), the number of test views, ours the videos
        print(
            f"Accuracy of the network on the {stats['num_videos']} test videos: "
            f"Top-1: {stats['top1']:.2f}%, Top-5: {stats['top5']:.2f}%"
        )
        append_json_line(Path(out) / "log.txt", {"Final top-1": stats["top1"], "Final Top-5": stats["top5"]})
    return {"eval": stats, "source": source or finetune}


def main(argv: list[str] | None = None) -> dict:
    cfg = cli_args.parse("finetune", argv)
    ft = cfg.finetune
    env = setup(cfg)
    splits = build_splits(cfg)
    train_only = "train" in splits
    nb_classes = next(iter(splits.values()))[1]
    task = build_task(cfg, nb_classes, env.device)
    model = task.model
    autocast = partial(autocast_context, env.device, cfg.run.precision)
    loaders = {
        name: make_loader(ds, cfg, env, train=name == "train", shard=name == "test" or ft.dist_eval)
        for name, (ds, _) in splits.items()
    }
    prepare_output(cfg, env)
    model.to(env.device)
    results: dict = {}

    def validate(net) -> dict:
        return evaluate(net, loaders["val"], env.device, autocast, cfg.run.print_freq, reduce=ft.dist_eval)

    ema = None
    if train_only:
        evaluate_each_epoch = None if ft.disable_eval_during_finetuning else validate
        trainer = Trainer(cfg, env, task, loaders["train"], evaluate=evaluate_each_epoch)
        results["history"] = trainer.fit()
        ema = trainer.ema
    if ft.eval:
        return reference_eval(cfg, env, model, loaders["test"], autocast)
    if ft.validate_only:
        results["val"] = evaluate(
            model, loaders["val"], env.device, autocast, cfg.run.print_freq, reduce=ft.dist_eval
        )
        print(f"validation: top-1 {results['val']['acc1']:.2f}  top-5 {results['val']['acc5']:.2f}")
    if "test" in loaders:
        out = cfg.run.output_dir or "."
        nets = {"test": model} | ({"test_ema": ema.module} if ema is not None else {})
        for name, net in nets.items():  # the EMA weights are tested the same way, in their own folder
            results[name] = multiview_test(
                net, loaders["test"], env, out, autocast, ft.merge_dedupe, cfg.run.print_freq, f"{name}_views"
            )
            if env.is_main and cfg.run.output_dir and results[name]:
                append_json_line(Path(cfg.run.output_dir) / "log.txt", {f"final_{name}": results[name]})
    return results


if __name__ == "__main__":
    sys.exit(run(main))

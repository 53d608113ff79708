"""Command-line arguments of the three entry points.

Every flag of the reference (VideoMAE / MaskAgain) scripts is accepted with the same meaning, so
the paper's shell scripts run unchanged; cryptic names also get a self-explaining alias.
`validate` checks everything that can be checked before anything is built or written, and
raises `UsageError` with one line naming the option and the fix.
"""

from __future__ import annotations

import argparse
import math
import os

from common.cli import OneLineParser, UsageError
from common.cpu_gemm import resolve as resolve_cpu_gemm
from datasets.decoding import check_decoder
from engine import preempt
from engine.args_compat import check_reference_values
from engine.config import DATA_SETS, PRECISIONS, TASKS
from models import zoo
from models.distill import MMKDConfig

__all__ = [
    "DATA_SETS",
    "PRECISIONS",
    "OneLineParser",
    "UsageError",
    "build_parser",
    "parse",
    "resolve_precision",
    "validate",
]


def build_parser(mode: str) -> argparse.ArgumentParser:
    """mode: 'pretrain' | 'distill' | 'finetune'; generated from the task's typed config."""
    return TASKS[mode].build_parser()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _writable_dir(path: str) -> bool:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def check_decoder_flag(decoder: str) -> None:
    """--decoder names a decoder this machine can load (torchcodec and decord are optional)."""
    try:
        check_decoder(decoder)
    except (ImportError, ValueError) as err:
        raise UsageError(f"--decoder {decoder}: {err}") from None


def _check_readable_checkpoint(option: str, path: str) -> None:
    from models.weights import CheckpointError, read_checkpoint

    try:
        read_checkpoint(path, mmap=True)  # memory-mapped: checks the file without reading every tensor
    except CheckpointError:
        try:  # mmap refuses some valid legacy files too; a full read gives the real reason
            read_checkpoint(path)
        except CheckpointError as err:
            raise UsageError(f"{option}: {err}") from None


def resolve_precision(args: argparse.Namespace, cuda_available: bool) -> str:
    """The precision of a run: an explicit --precision wins; else fp16 for DeepSpeed on CUDA, else fp32.

    The reference fine-tuned with DeepSpeed in fp16 (its loss scaling is in
    `engine.deepspeed_utils.FP16_LOSS_SCALING`); without CUDA that falls back to fp32.
    """
    if args.precision is not None:
        return args.precision
    if not args.enable_deepspeed:
        return "fp32"
    if cuda_available and args.device.startswith("cuda"):
        return "fp16"
    print("note: --enable_deepspeed without --precision runs in fp32 here: DeepSpeed fp16 needs CUDA")
    return "fp32"


def validate(args: argparse.Namespace, mode: str) -> argparse.Namespace:
    """Checks option values and derived quantities; fills derived defaults. Writes no file.

    ``--dist_on_itp`` exports RANK / WORLD_SIZE / LOCAL_RANK from OpenMPI's variables, as the
    reference does.
    """
    import torch

    check_reference_values(args, mode)
    args.precision = resolve_precision(args, torch.cuda.is_available())
    _check(args.batch_size >= 1, f"--batch_size must be >= 1, got {args.batch_size}")
    _check(args.update_freq >= 1, f"--update_freq must be >= 1, got {args.update_freq}")
    _check(args.epochs >= 1, f"--epochs must be >= 1, got {args.epochs}")
    _check(args.lr > 0 and math.isfinite(args.lr), f"--lr must be a positive number, got {args.lr}")
    _check(args.num_frames >= 1, f"--num_frames must be >= 1, got {args.num_frames}")
    _check(args.sampling_rate >= 1, f"--sampling_rate must be >= 1, got {args.sampling_rate}")
    _check(args.num_workers >= 0, f"--num_workers must be >= 0, got {args.num_workers}")
    _check(args.save_ckpt_freq >= 1, f"--save_ckpt_freq must be >= 1, got {args.save_ckpt_freq}")
    _check(
        args.save_ckpt_freq_steps >= 0,
        f"--save_ckpt_freq_steps must be >= 0 (0: off), got {args.save_ckpt_freq_steps}",
    )
    try:
        preempt.parse_signals(args.preempt_signal)
    except ValueError as err:
        raise UsageError(f"--preempt_signal: {err}") from None
    _check(args.warmup_epochs >= 0, f"--warmup_epochs must be >= 0, got {args.warmup_epochs}")
    _check(
        0 <= args.max_bad_fraction <= 1, f"--max_bad_fraction must be in [0, 1], got {args.max_bad_fraction}"
    )
    _check(
        args.data_set in DATA_SETS,
        f"--data_set {args.data_set!r} is unknown; choose one of {', '.join(DATA_SETS)}",
    )
    if args.opt_betas is not None:
        _check(
            len(args.opt_betas) == 2, f"--opt_betas takes two numbers (e.g. 0.9 0.999), got {args.opt_betas}"
        )
    if args.clip_grad is not None:
        _check(args.clip_grad > 0, f"--clip_grad must be > 0, got {args.clip_grad}")
    if args.weight_decay_end is None:
        args.weight_decay_end = args.weight_decay
    if mode in ("pretrain", "distill"):
        _check(0 <= args.mask_ratio < 1, f"--mask_ratio must be in [0, 1), got {args.mask_ratio}")
        _check(args.num_sample >= 1, f"--num_sample must be >= 1, got {args.num_sample}")
        _check(bool(args.data_path), "--data_path is required: the list file of training videos")
        _check(
            os.path.isfile(args.data_path),
            f"--data_path {args.data_path!r} is not a file; give the list of training videos (<path> <label> per line)",
        )
    if mode == "distill":
        try:  # the config checks its values; engine.build then builds it from them
            MMKDConfig.from_args(args)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if args.decoder_depth:
            print(
                f"note: --decoder_depth {args.decoder_depth} ignored: the distillation student is encoder-only"
            )
            args.decoder_depth = 0
        _check(bool(args.path_t), "--path_t is required: the VideoMAE pre-training checkpoint of the teacher")
        _check(
            os.path.exists(args.path_t) or zoo.is_zoo_source(args.path_t),
            f"--path_t {args.path_t!r} does not exist; give the teacher's checkpoint file or transformers folder, "
            "a model-zoo name (`python -m models.zoo list`), hf://org/name[@revision] or a URL",
        )
        args.teacher_precision = args.teacher_precision or args.precision
    if mode == "pretrain":
        _check(
            args.decoder_depth >= 1,
            f"--decoder_depth must be >= 1 for pre-training, got {args.decoder_depth}",
        )
    if mode == "finetune":
        _check(
            bool(args.data_path),
            "--data_path is required: the folder holding train.csv, val.csv and test.csv",
        )
        _check(
            os.path.isdir(args.data_path),
            f"--data_path {args.data_path!r} is not a folder; give the folder holding train.csv/val.csv/test.csv",
        )
        _check(
            args.eval + args.test + args.validate_only <= 1,
            "--eval, --test and --validate_only are different evaluations; pass one of them",
        )
        if args.eval or args.test:
            needed = ["test.csv"]
        else:
            needed = ["val.csv"] if args.validate_only else ["train.csv", "val.csv"]
        if args.disable_eval_during_finetuning and not (args.test or args.eval or args.validate_only):
            needed = ["train.csv"]
        for name in needed:
            _check(
                os.path.isfile(os.path.join(args.data_path, name)),
                f"--data_path {args.data_path!r} has no {name}; create it (<path> <label> per line)",
            )
        _check(args.num_sample >= 1, f"--num_sample must be >= 1, got {args.num_sample}")
        if args.short_side_size is None:
            args.short_side_size = args.input_size
        _check(
            args.short_side_size >= args.input_size,
            f"--short_side_size {args.short_side_size} is smaller than --input_size {args.input_size}; "
            "the test crops need a short side of at least --input_size",
        )
        _check(0 < args.layer_decay <= 1, f"--layer_decay must be in (0, 1], got {args.layer_decay}")
        _check(0 <= args.smoothing < 1, f"--smoothing must be in [0, 1), got {args.smoothing}")
        _check(
            0 <= args.model_ema_decay < 1, f"--model_ema_decay must be in [0, 1), got {args.model_ema_decay}"
        )
        _check(
            args.test_num_segment >= 1 and args.test_num_crop >= 1,
            "--test_num_segment and --test_num_crop must be >= 1",
        )
        if args.finetune:
            _check(
                os.path.exists(args.finetune) or zoo.is_zoo_source(args.finetune),
                f"--finetune {args.finetune!r} does not exist; give a checkpoint file or transformers folder, "
                "a model-zoo name (`python -m models.zoo list`), hf://org/name[@revision] or a URL",
            )
        if args.nb_classes is not None:
            _check(args.nb_classes >= 1, f"--nb_classes must be >= 1, got {args.nb_classes}")
        mixup_on = args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None
        if mixup_on:
            _check(
                args.batch_size * args.num_sample % 2 == 0,
                "--mixup/--cutmix need an even number of clips per batch (batch_size * num_sample)",
            )
    if args.resume and getattr(args, "eval", False) and os.path.isdir(args.resume):
        from models.weights import deepspeed_model_file

        _check(  # --eval also tests the reference's DeepSpeed checkpoint folders
            deepspeed_model_file(args.resume) is not None,
            f"--resume {args.resume!r} is a folder without a DeepSpeed mp_rank_00_model_states.pt; "
            "give a checkpoint file or a DeepSpeed checkpoint-<epoch> folder",
        )
    elif args.resume:
        _check(
            os.path.isfile(args.resume),
            f"--resume {args.resume!r} does not exist; give a checkpoint file or drop --resume",
        )
        _check_readable_checkpoint("--resume", args.resume)
    if args.output_dir:
        _check(
            _writable_dir(args.output_dir),
            f"--output_dir {args.output_dir!r} is not writable; choose a folder you can write to",
        )
    if args.log_dir:
        _check(
            _writable_dir(args.log_dir),
            f"--log_dir {args.log_dir!r} is not writable; choose a folder you can write to",
        )
    args.cpu_gemm = resolve_cpu_gemm(args.cpu_gemm)  # the saved args name the back-end that ran
    check_decoder_flag(args.decoder)
    _check(
        args.precision != "fp16" or args.device.startswith("cuda"),
        "--precision fp16 needs --device cuda; use bf16 or fp32 on CPU",
    )
    return args


def parse(mode: str, argv: list[str] | None = None) -> argparse.Namespace:
    return validate(build_parser(mode).parse_args(argv), mode)

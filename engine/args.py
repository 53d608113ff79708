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
from common.cpu_gemm import CPU_GEMMS
from common.cpu_gemm import resolve as resolve_cpu_gemm
from datasets.decoding import DECODERS, check_decoder
from engine import preempt
from engine.args_compat import ReferenceBool, add_reference_flags, check_reference_values
from models import zoo
from models.distill import Flag, MMKDConfig, config_flags

__all__ = ["DATA_SETS", "PRECISIONS", "OneLineParser", "UsageError", "build_parser", "parse", "resolve_precision", "validate"]

DATA_SETS = ("Kinetics-400", "UCF101", "HMDB51", "SSV2")
PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _common(p: argparse.ArgumentParser, mode: str) -> None:
    g = p.add_argument_group("model")
    default_model = {
        "pretrain": "pretrain_videomae_base_patch16_224",
        "distill": "pretrain_videomae_small_patch16_224",
        "finetune": "vit_base_patch16_224",
    }[mode]
    g.add_argument(
        "--model", "--model_s", dest="model", default=default_model, help="timm model name (student)"
    )
    g.add_argument(
        "--drop_path", type=float, default=0.0 if mode != "finetune" else 0.1, help="stochastic depth"
    )
    g.add_argument("--use_checkpoint", action="store_true", help="gradient checkpointing in every block")
    g.add_argument("--attn_impl", choices=("sdpa", "eager"), default="sdpa", help="attention kernel")
    g.add_argument("--compile", action="store_true", help="torch.compile the student / teacher / classifier")
    g.add_argument(
        "--compile_mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode (with --compile)",
    )
    g.add_argument(
        "--cpu_gemm",
        choices=CPU_GEMMS,
        default="auto",
        help="float32 linear layers on a CPU: oneDNN (AVX-512 on AMD CPUs too, where MKL is AVX2), torch's BLAS, "
        "or auto: oneDNN on AMD CPUs with AVX-512 (measured 1.7x there), BLAS elsewhere",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--data_path",
        default=None,
        help="list file (pre-training/distillation) or folder with train/val/test.csv",
    )
    g.add_argument(
        "--data_root", "--root", dest="data_root", default=None, help="prefix for relative paths in the lists"
    )
    g.add_argument("--data_set", default="Kinetics-400", help=f"one of {DATA_SETS}")
    g.add_argument("--num_frames", type=int, default=16)
    g.add_argument("--sampling_rate", type=int, default=4)
    g.add_argument("--input_size", type=int, default=224)
    g.add_argument("--num_workers", type=int, default=10)
    g.add_argument("--pin_mem", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument(
        "--no_pin_mem", action="store_false", dest="pin_mem", help="reference spelling of --no-pin_mem"
    )
    g.add_argument(
        "--decoder",
        choices=DECODERS,
        default="auto",
        help="video decoding backend (auto: PyAV, decord for a file PyAV cannot read)",
    )
    g.add_argument(
        "--max_bad_fraction", type=float, default=0.5, help="stop when more than this fraction of files fail"
    )

    g = p.add_argument_group("optimisation")
    g.add_argument("--batch_size", type=int, default=64 if mode != "finetune" else 32, help="clips per GPU")
    g.add_argument(
        "--epochs", type=int, default=800 if mode == "pretrain" else (400 if mode == "distill" else 30)
    )
    g.add_argument("--opt", default="adamw")
    g.add_argument("--opt_eps", type=float, default=1e-8)
    g.add_argument("--opt_betas", type=float, nargs="+", default=None)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--clip_grad", type=float, default=None)
    g.add_argument(
        "--update_freq",
        type=int,
        default=1,
        help="gradient accumulation: one optimiser step every N batches (effective batch: "
        "batch_size x update_freq x world size)",
    )
    g.add_argument("--weight_decay", type=float, default=0.05)
    g.add_argument("--weight_decay_end", type=float, default=None)
    g.add_argument("--lr", type=float, default=1.5e-4 if mode != "finetune" else 1e-3, help="per 256 clips")
    g.add_argument("--warmup_lr", type=float, default=1e-6)
    g.add_argument("--min_lr", type=float, default=1e-5 if mode != "finetune" else 1e-6)
    g.add_argument("--warmup_epochs", type=int, default=40 if mode != "finetune" else 5)
    g.add_argument("--warmup_steps", type=int, default=-1)
    g.add_argument(
        "--no_lr_scale", action="store_true", help="use --lr as is instead of lr * total batch / 256"
    )

    g = p.add_argument_group("runtime")
    g.add_argument("--output_dir", default="", help="checkpoints, log.txt, args.json")
    g.add_argument("--log_dir", default=None, help="TensorBoard folder")
    g.add_argument("--device", default="cuda", help="cuda or cpu (falls back to cpu without CUDA)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", default="", help="checkpoint to resume from")
    g.add_argument("--auto_resume", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument(
        "--no_auto_resume",
        action="store_false",
        dest="auto_resume",
        help="reference spelling of --no-auto_resume",
    )
    g.add_argument("--start_epoch", type=int, default=0)
    g.add_argument("--save_ckpt_freq", type=int, default=20 if mode != "finetune" else 1)

    g = p.add_argument_group("long runs on clusters (preemption, time limits)")
    g.add_argument(
        "--save_ckpt_freq_steps",
        type=int,
        default=0,
        help="also write a mid-epoch checkpoint every N optimiser steps (0: off); a resumed run goes on "
        "from the next batch and ends with the weights of an uninterrupted one",
    )
    g.add_argument(
        "--preempt_signal",
        default="USR1,TERM",
        help="signals that mean 'stop soon' (comma list of USR1, USR2, TERM, INT, or none): the run writes a "
        "checkpoint at the next step and exits with code 75 (relaunch the same command to resume)",
    )
    g.add_argument(
        "--requeue",
        action="store_true",
        help="under SLURM: after a stop signal, rank 0 runs 'scontrol requeue $SLURM_JOB_ID' before exiting",
    )
    g.add_argument("--keep_last", type=int, default=2, help="numbered checkpoints kept")
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="default fp32; with --enable_deepspeed on CUDA fp16 with the reference's loss scaling",
    )
    g.add_argument("--print_freq", type=int, default=10)
    g.add_argument("--max_steps_per_epoch", type=int, default=0, help="debug: cut epochs short (0 = full)")
    g.add_argument(
        "--stop_after_epoch",
        type=int,
        default=None,
        help="end the job after this epoch (time-limited queues); resume later",
    )
    g.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms")
    g.add_argument("--enable_deepspeed", action="store_true", help="DeepSpeed engine (see --precision)")
    g.add_argument("--zero_stage", type=int, default=0, choices=(0, 1, 2))
    g.add_argument("--dist_url", default="env://")
    g.add_argument(
        "--dist_timeout",
        type=float,
        default=600.0,
        help="seconds a collective may wait for a rank, and a rank may stay silent, before every rank stops "
        "with one line naming it (a rank killed, stopped or on a hung node)",
    )
    g.add_argument(
        "--dist_on_itp",
        action="store_true",
        help="take rank / world size / local rank from OpenMPI (OMPI_COMM_WORLD_*, with MASTER_ADDR/PORT)",
    )
    g.add_argument("--world_size", type=int, default=1, help="ignored: taken from torchrun/slurm")
    g.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="ignored: taken from torchrun")
    p.set_defaults(save_ckpt=True)  # only fine-tuning has the reference's --no_save_ckpt
    add_reference_flags(p, mode)


def _masking(p: argparse.ArgumentParser, default_ratio: float) -> None:
    g = p.add_argument_group("masking")
    g.add_argument("--mask_type", default="tube", choices=("tube", "random"))
    g.add_argument("--mask_ratio", type=float, default=default_ratio)
    g.add_argument(
        "--num_sample",
        type=int,
        default=1,
        help="repeated sampling: clips (own crop and mask) per decoded video; a batch holds "
        "--batch_size x num_sample clips, while epochs, --batch_size and the lr scaling count videos",
    )


def _add_flag(g: argparse._ArgumentGroup, flag: Flag) -> None:
    """An MMKD setting as an option; its values are checked by `MMKDConfig` (see `validate`)."""
    metavar = "{" + ",".join(map(str, flag.choices)) + "}" if flag.choices else None
    g.add_argument(
        *flag.names, dest=flag.attr, type=flag.parse, default=flag.default, metavar=metavar, help=flag.help
    )


def build_parser(mode: str) -> argparse.ArgumentParser:
    """mode: 'pretrain' | 'distill' | 'finetune'."""
    desc = {
        "pretrain": "VideoMAE pre-training",
        "distill": "MMKD masked knowledge distillation",
        "finetune": "fine-tuning, validation and multi-view testing",
    }[mode]
    p = OneLineParser(description=desc, allow_abbrev=False)
    _common(p, mode)
    if mode == "pretrain":
        _masking(p, 0.75)
        g = p.add_argument_group("VideoMAE")
        g.add_argument("--decoder_depth", type=int, default=4)
        g.add_argument(
            "--normlize_target",
            "--normalize_target",
            dest="normlize_target",
            action=ReferenceBool,
            default=True,
            help="reconstruct per-patch normalised pixels",
        )
    elif mode == "distill":
        _masking(p, 0.9)
        g = p.add_argument_group("MMKD")
        g.add_argument(
            "--model_t", "--teacher_model", dest="model_t", default="pretrain_videomae_base_patch16_224"
        )
        g.add_argument(
            "--path_t",
            "--teacher_checkpoint",
            dest="path_t",
            default=None,
            help="VideoMAE checkpoint of the teacher",
        )
        for flag in config_flags():  # --distill, --alignment and every registered term's flags
            _add_flag(g, flag)
        g.add_argument("--teacher_precision", choices=PRECISIONS, default=None, help="default: --precision")
        g.add_argument(
            "--decoder_depth",
            type=int,
            default=0,
            help="ignored (reference compatibility): the student is encoder-only",
        )
        g.add_argument(
            "--normlize_target",
            action=ReferenceBool,
            default=True,
            help="accepted for reference compatibility; unused (the student is encoder-only)",
        )
        g.add_argument(
            "--onlykd",
            action=ReferenceBool,
            default=False,
            help="train the attention terms only (with hybrid: --distill onlykd)",
        )
    else:
        g = p.add_argument_group("fine-tuning")
        g.add_argument("--nb_classes", type=int, default=None)
        g.add_argument("--finetune", default="", help="pre-training / distillation / fine-tuning checkpoint")
        g.add_argument(
            "--model_key",
            default="model|module",
            help="--finetune: first of these entries holding the weights",
        )
        g.add_argument(
            "--model_prefix", default="", help="--finetune: load only keys with this prefix, stripped"
        )
        g.add_argument("--tubelet_size", type=int, default=2, help="frames per token")
        g.add_argument(
            "--short_side_size",
            type=int,
            default=None,
            help="val/test: short side resized to this before the --input_size crops (default: --input_size, "
            "224 in every recipe; a larger value crops a zoomed-in part of the frame)",
        )
        g.add_argument("--num_sample", type=int, default=2, help="repeated augmentation views per video")
        g.add_argument("--test_num_segment", type=int, default=5)
        g.add_argument("--test_num_crop", type=int, default=3)
        g.add_argument("--smoothing", type=float, default=0.1)
        g.add_argument("--mixup", type=float, default=0.0)
        g.add_argument("--cutmix", type=float, default=0.0)
        g.add_argument("--cutmix_minmax", type=float, nargs="+", default=None)
        g.add_argument("--mixup_prob", type=float, default=1.0)
        g.add_argument("--mixup_switch_prob", type=float, default=0.5)
        g.add_argument("--mixup_mode", default="batch")
        g.add_argument("--aa", default="rand-m7-n4-mstd0.5-inc1", help="RandAugment policy")
        g.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
        g.add_argument("--layer_decay", type=float, default=0.75)
        g.add_argument("--fc_drop_rate", type=float, default=0.0)
        g.add_argument("--init_scale", type=float, default=0.001)
        g.add_argument("--drop", type=float, default=0.0)
        g.add_argument("--attn_drop_rate", type=float, default=0.0)
        g.add_argument("--use_mean_pooling", action=argparse.BooleanOptionalAction, default=True)
        g.add_argument(
            "--use_cls",
            action="store_false",
            dest="use_mean_pooling",
            help="classify the first token's features",
        )
        g.add_argument(
            "--eval",
            action="store_true",
            help="the reference's evaluation: load --resume, else the newest checkpoint in --output_dir, else "
            "--finetune; multi-view test of the test list (<output_dir>/<rank>.txt), merged; no training",
        )
        g.add_argument("--validate_only", action="store_true", help="one-clip validation of --finetune only")
        g.add_argument("--test", action="store_true", help="multi-view test of --finetune only")
        g.add_argument("--dist_eval", action="store_true", help="shard validation/test over ranks")
        g.add_argument(
            "--disable_eval_during_finetuning", action="store_true", help="no validation after each epoch"
        )
        g.add_argument(
            "--save_ckpt", action=argparse.BooleanOptionalAction, default=True, help="write checkpoints"
        )
        g.add_argument(
            "--no_save_ckpt",
            action="store_false",
            dest="save_ckpt",
            help="reference spelling of --no-save_ckpt",
        )
        g.add_argument(
            "--merge_dedupe", choices=("pair", "reference"), default="pair", help="multi-view duplicate rule"
        )
        g.add_argument("--list_format", choices=("auto", "video", "frames"), default="auto")
        g = p.add_argument_group("model EMA")
        g.add_argument(
            "--model_ema",
            action="store_true",
            help="also keep an exponential moving average of the weights (saved as model_ema, validated and "
            "multi-view tested as val_ema_* / final_test_ema; resumed)",
        )
        g.add_argument("--model_ema_decay", type=float, default=0.9999, help="EMA decay per optimiser step")
        g.add_argument("--model_ema_force_cpu", action="store_true", help="keep the EMA weights on the CPU")
    return p


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

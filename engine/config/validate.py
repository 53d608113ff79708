"""Every check of a task config, in one place: what can be checked before anything is built or
written raises `UsageError` with one line naming the option and the fix; derived values (precision,
--weight_decay_end, --short_side_size, the CPU GEMM that runs) are filled in once, here.

The MMKD values are checked by the objective registry's `MMKDConfig` when the config is read
(`TaskConfig.from_namespace`); what needs the built models (token counts, widths) by `engine.build`.
"""

from __future__ import annotations

import math
import os

from common.cli import UsageError
from common.cpu_gemm import resolve as resolve_cpu_gemm
from datasets.decoding import check_decoder
from engine import preempt
from engine.args_compat import INTERPOLATIONS, export_ompi_ranks
from engine.config.sections import DATA_SETS, RunConfig
from engine.config.tasks import DistillConfig, FinetuneConfig, PretrainConfig, TaskConfig
from models import zoo


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def writable_dir(path: str) -> bool:
    """``path`` is a folder we can write in, or can be created under one."""
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


def resolve_precision(run: RunConfig, cuda_available: bool) -> str:
    """The precision of a run: an explicit --precision wins; else fp16 for DeepSpeed on CUDA, else fp32.

    The reference fine-tuned with DeepSpeed in fp16 (its loss scaling is in
    `engine.deepspeed_utils.FP16_LOSS_SCALING`); without CUDA that falls back to fp32.
    """
    if run.precision is not None:
        return run.precision
    if not run.enable_deepspeed:
        return "fp32"
    if cuda_available and run.device.startswith("cuda"):
        return "fp16"
    print("note: --enable_deepspeed without --precision runs in fp32 here: DeepSpeed fp16 needs CUDA")
    return "fp32"


def validate(cfg: TaskConfig) -> TaskConfig:
    """Checks ``cfg``'s values and fills its derived ones, in place; writes no file.

    ``--dist_on_itp`` exports RANK / WORLD_SIZE / LOCAL_RANK from OpenMPI's variables, as the
    reference does.
    """
    import torch

    run, optim, data = cfg.run, cfg.optim, cfg.data
    _check_reference_values(cfg)
    run.precision = resolve_precision(run, torch.cuda.is_available())
    _check(optim.batch_size >= 1, f"--batch_size must be >= 1, got {optim.batch_size}")
    _check(optim.update_freq >= 1, f"--update_freq must be >= 1, got {optim.update_freq}")
    _check(optim.epochs >= 1, f"--epochs must be >= 1, got {optim.epochs}")
    _check(optim.lr > 0 and math.isfinite(optim.lr), f"--lr must be a positive number, got {optim.lr}")
    _check(data.num_frames >= 1, f"--num_frames must be >= 1, got {data.num_frames}")
    _check(data.sampling_rate >= 1, f"--sampling_rate must be >= 1, got {data.sampling_rate}")
    _check(data.num_workers >= 0, f"--num_workers must be >= 0, got {data.num_workers}")
    _check(run.save_ckpt_freq >= 1, f"--save_ckpt_freq must be >= 1, got {run.save_ckpt_freq}")
    _check(
        run.save_ckpt_freq_steps >= 0,
        f"--save_ckpt_freq_steps must be >= 0 (0: off), got {run.save_ckpt_freq_steps}",
    )
    try:
        preempt.parse_signals(run.preempt_signal)
    except ValueError as err:
        raise UsageError(f"--preempt_signal: {err}") from None
    _check(optim.warmup_epochs >= 0, f"--warmup_epochs must be >= 0, got {optim.warmup_epochs}")
    _check(
        0 <= data.max_bad_fraction <= 1, f"--max_bad_fraction must be in [0, 1], got {data.max_bad_fraction}"
    )
    _check(
        data.data_set in DATA_SETS,
        f"--data_set {data.data_set!r} is unknown; choose one of {', '.join(DATA_SETS)}",
    )
    if optim.opt_betas is not None:
        _check(
            len(optim.opt_betas) == 2,
            f"--opt_betas takes two numbers (e.g. 0.9 0.999), got {optim.opt_betas}",
        )
    if optim.clip_grad is not None:
        _check(optim.clip_grad > 0, f"--clip_grad must be > 0, got {optim.clip_grad}")
    if optim.weight_decay_end is None:
        optim.weight_decay_end = optim.weight_decay
    if isinstance(cfg, PretrainConfig | DistillConfig):
        _check_masked(cfg)
    if isinstance(cfg, DistillConfig):
        _check_distill(cfg)
    if isinstance(cfg, PretrainConfig):
        _check(
            cfg.mae.decoder_depth >= 1,
            f"--decoder_depth must be >= 1 for pre-training, got {cfg.mae.decoder_depth}",
        )
    if isinstance(cfg, FinetuneConfig):
        _check_finetune(cfg)
    _check_run(cfg)
    cfg.model.cpu_gemm = resolve_cpu_gemm(cfg.model.cpu_gemm)  # the saved args name the back-end that ran
    check_decoder_flag(data.decoder)
    _check(
        run.precision != "fp16" or run.device.startswith("cuda"),
        "--precision fp16 needs --device cuda; use bf16 or fp32 on CPU",
    )
    return cfg


def _check_masked(cfg: PretrainConfig | DistillConfig) -> None:
    masking, path = cfg.masking, cfg.data.data_path
    _check(0 <= masking.mask_ratio < 1, f"--mask_ratio must be in [0, 1), got {masking.mask_ratio}")
    _check(masking.num_sample >= 1, f"--num_sample must be >= 1, got {masking.num_sample}")
    _check(bool(path), "--data_path is required: the list file of training videos")
    _check(
        os.path.isfile(path),
        f"--data_path {path!r} is not a file; give the list of training videos (<path> <label> per line)",
    )


def _check_distill(cfg: DistillConfig) -> None:
    teacher = cfg.teacher
    if teacher.decoder_depth:
        print(
            f"note: --decoder_depth {teacher.decoder_depth} ignored: the distillation student is encoder-only"
        )
        teacher.decoder_depth = 0
    _check(bool(teacher.path_t), "--path_t is required: the VideoMAE pre-training checkpoint of the teacher")
    _check(
        os.path.exists(teacher.path_t) or zoo.is_zoo_source(teacher.path_t),
        f"--path_t {teacher.path_t!r} does not exist; give the teacher's checkpoint file or transformers folder, "
        "a model-zoo name (`python -m models.zoo list`), hf://org/name[@revision] or a URL",
    )
    teacher.teacher_precision = teacher.teacher_precision or cfg.run.precision


def _check_finetune(cfg: FinetuneConfig) -> None:
    ft, path = cfg.finetune, cfg.data.data_path
    _check(bool(path), "--data_path is required: the folder holding train.csv, val.csv and test.csv")
    _check(
        os.path.isdir(path),
        f"--data_path {path!r} is not a folder; give the folder holding train.csv/val.csv/test.csv",
    )
    _check(
        ft.eval + ft.test + ft.validate_only <= 1,
        "--eval, --test and --validate_only are different evaluations; pass one of them",
    )
    if ft.eval or ft.test:
        needed = ["test.csv"]
    else:
        needed = ["val.csv"] if ft.validate_only else ["train.csv", "val.csv"]
    if ft.disable_eval_during_finetuning and not (ft.test or ft.eval or ft.validate_only):
        needed = ["train.csv"]
    for name in needed:
        _check(
            os.path.isfile(os.path.join(path, name)),
            f"--data_path {path!r} has no {name}; create it (<path> <label> per line)",
        )
    _check(ft.num_sample >= 1, f"--num_sample must be >= 1, got {ft.num_sample}")
    if ft.short_side_size is None:
        ft.short_side_size = cfg.data.input_size
    _check(
        ft.short_side_size >= cfg.data.input_size,
        f"--short_side_size {ft.short_side_size} is smaller than --input_size {cfg.data.input_size}; "
        "the test crops need a short side of at least --input_size",
    )
    _check(0 < ft.layer_decay <= 1, f"--layer_decay must be in (0, 1], got {ft.layer_decay}")
    _check(0 <= ft.smoothing < 1, f"--smoothing must be in [0, 1), got {ft.smoothing}")
    decay = cfg.ema.model_ema_decay
    _check(0 <= decay < 1, f"--model_ema_decay must be in [0, 1), got {decay}")
    _check(
        ft.test_num_segment >= 1 and ft.test_num_crop >= 1,
        "--test_num_segment and --test_num_crop must be >= 1",
    )
    if ft.finetune:
        _check(
            os.path.exists(ft.finetune) or zoo.is_zoo_source(ft.finetune),
            f"--finetune {ft.finetune!r} does not exist; give a checkpoint file or transformers folder, "
            "a model-zoo name (`python -m models.zoo list`), hf://org/name[@revision] or a URL",
        )
    if ft.nb_classes is not None:
        _check(ft.nb_classes >= 1, f"--nb_classes must be >= 1, got {ft.nb_classes}")
    if ft.mixup > 0 or ft.cutmix > 0 or ft.cutmix_minmax is not None:
        _check(
            cfg.optim.batch_size * ft.num_sample % 2 == 0,
            "--mixup/--cutmix need an even number of clips per batch (batch_size * num_sample)",
        )


def _check_run(cfg: TaskConfig) -> None:
    run = cfg.run
    evaluating = isinstance(cfg, FinetuneConfig) and cfg.finetune.eval
    if run.resume and evaluating and os.path.isdir(run.resume):
        from models.weights import deepspeed_model_file

        _check(  # --eval also tests the reference's DeepSpeed checkpoint folders
            deepspeed_model_file(run.resume) is not None,
            f"--resume {run.resume!r} is a folder without a DeepSpeed mp_rank_00_model_states.pt; "
            "give a checkpoint file or a DeepSpeed checkpoint-<epoch> folder",
        )
    elif run.resume:
        _check(
            os.path.isfile(run.resume),
            f"--resume {run.resume!r} does not exist; give a checkpoint file or drop --resume",
        )
        _check_readable_checkpoint("--resume", run.resume)
    for option, path in (("--output_dir", run.output_dir), ("--log_dir", run.log_dir)):
        if path:
            _check(writable_dir(path), f"{option} {path!r} is not writable; choose a folder you can write to")
    _check(
        run.dist_timeout > 0,
        f"--dist_timeout must be a positive number of seconds, got {run.dist_timeout}",
    )


# ----- the reference's flags whose value we cannot honour (see engine.args_compat) -----------------
def _check_reference_values(cfg: TaskConfig) -> None:
    """UsageError for a reference value we cannot honour; maps --onlykd and --dist_on_itp."""
    ref = cfg.reference
    if isinstance(cfg, PretrainConfig | DistillConfig) and ref.pretrained:
        distill = isinstance(cfg, DistillConfig)
        where = "--resume to continue a run" + (" and --path_t for the teacher" if distill else "")
        raise UsageError(
            f"--pretrained {ref.pretrained!r}: models are not loaded at creation (the reference's "
            f"factories fail on it too); drop --pretrained and use {where}"
        )
    if isinstance(cfg, DistillConfig):
        if ref.load_decoder:
            raise UsageError(
                "--load_decoder: the distillation student is encoder-only (--decoder_depth 0), there is "
                "no decoder to load; drop --load_decoder"
            )
        _resolve_onlykd(cfg)
    if isinstance(cfg, FinetuneConfig):
        if ref.remode != "pixel":
            raise UsageError(
                f"--remode {ref.remode!r}: random erasing fills with per-pixel noise only; "
                "use --remode pixel (the default), or --reprob 0 to switch erasing off"
            )
        if ref.recount != 1:
            raise UsageError(
                f"--recount {ref.recount}: random erasing erases at most one region per frame; use --recount 1"
            )
        if ref.num_segments != 1:
            raise UsageError(
                f"--num_segments {ref.num_segments}: clips are sampled as one segment (in the reference "
                "too, whose model then expects more frames than it gets); use --num_segments 1 and set --num_frames"
            )
        if ref.train_interpolation not in INTERPOLATIONS:
            raise UsageError(
                f"--train_interpolation {ref.train_interpolation!r}: RandAugment resamples bilinearly here; "
                f"use one of {', '.join(INTERPOLATIONS)}"
            )
    if cfg.run.dist_on_itp:
        export_ompi_ranks()


def _resolve_onlykd(cfg: DistillConfig) -> None:
    # the reference's --onlykd drops MM-hint and MM-relation: loss = beta * (its attention terms)
    distill = cfg.mmkd.mode  # --distill
    if not cfg.teacher.onlykd or distill == "onlykd":
        return
    if distill != "hybrid":
        raise UsageError(
            f"--onlykd with --distill {distill}: only hybrid's attention terms can be trained alone "
            "here; use --distill hybrid --onlykd (or --distill onlykd)"
        )
    print("note: --onlykd: training MM-global + MM-local only (--distill onlykd)")
    cfg.mmkd.mode = "onlykd"

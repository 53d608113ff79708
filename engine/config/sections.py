"""The sections of a training task's settings: one dataclass per concern, one field per option.

Every field carries its command-line spelling (`engine.config.fields.option`): reference names
first where the reference had them, self-explaining aliases beside them. A task
(`engine.config.tasks`) picks its sections and sets its own defaults; the MMKD section is the
objective registry's `models.distill.MMKDConfig`, whose flags the terms declare.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from common.cpu_gemm import CPU_GEMMS
from datasets.decoding import DECODERS
from engine.args_compat import INTERPOLATIONS, UNUSED, ReferenceBool
from engine.config.fields import Also, option

DATA_SETS = ("Kinetics-400", "UCF101", "HMDB51", "SSV2")
PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BOOL_FLAG = argparse.BooleanOptionalAction


@dataclass
class ModelConfig:
    """The student (or classifier) and how it executes."""

    model: str = option("", "--model", "--model_s", help="timm model name (student)")
    drop_path: float = option(0.0, "--drop_path", help="stochastic depth")
    use_checkpoint: bool = option(
        False, "--use_checkpoint", action="store_true", help="gradient checkpointing in every block"
    )
    attn_impl: str = option("sdpa", "--attn_impl", choices=("sdpa", "eager"), help="attention kernel")
    compile: bool = option(
        False, "--compile", action="store_true", help="torch.compile the student / teacher / classifier"
    )
    compile_mode: str = option(
        "default", "--compile_mode", choices=COMPILE_MODES, help="torch.compile mode (with --compile)"
    )
    cpu_gemm: str = option(
        "auto", "--cpu_gemm", choices=CPU_GEMMS,
        help="float32 linear layers on a CPU: oneDNN (AVX-512 on AMD CPUs too, where MKL is AVX2), torch's BLAS, "
        "or auto: oneDNN on AMD CPUs with AVX-512 (measured 1.7x there), BLAS elsewhere",
    )  # fmt: skip


@dataclass
class DataConfig:
    """Where the videos are and how clips are decoded."""

    data_path: str | None = option(
        None, "--data_path", help="list file (pre-training/distillation) or folder with train/val/test.csv"
    )
    data_root: str | None = option(
        None, "--data_root", "--root", help="prefix for relative paths in the lists"
    )
    data_set: str = option("Kinetics-400", "--data_set", help=f"one of {DATA_SETS}")
    num_frames: int = option(16, "--num_frames")
    sampling_rate: int = option(4, "--sampling_rate")
    input_size: int = option(224, "--input_size")
    num_workers: int = option(10, "--num_workers")
    pin_mem: bool = option(
        True, "--pin_mem", action=BOOL_FLAG,
        also=(Also(("--no_pin_mem",), "store_false", "reference spelling of --no-pin_mem"),),
    )  # fmt: skip
    decoder: str = option(
        "auto",
        "--decoder",
        choices=DECODERS,
        help="video decoding backend (auto: PyAV, decord for a file PyAV cannot read)",
    )
    max_bad_fraction: float = option(
        0.5, "--max_bad_fraction", help="stop when more than this fraction of files fail"
    )


@dataclass
class OptimConfig:
    """Batch, optimiser and schedules."""

    batch_size: int = option(64, "--batch_size", help="clips per GPU")
    epochs: int = option(800, "--epochs")
    opt: str = option("adamw", "--opt")
    opt_eps: float = option(1e-8, "--opt_eps")
    opt_betas: list[float] | None = option(None, "--opt_betas", nargs="+")
    momentum: float = option(0.9, "--momentum")
    clip_grad: float | None = option(None, "--clip_grad")
    update_freq: int = option(
        1, "--update_freq",
        help="gradient accumulation: one optimiser step every N batches (effective batch: batch_size x update_freq x world size)",
    )  # fmt: skip
    weight_decay: float = option(0.05, "--weight_decay")
    weight_decay_end: float | None = option(None, "--weight_decay_end")  # validate: --weight_decay when unset
    lr: float = option(1.5e-4, "--lr", help="per 256 clips")
    warmup_lr: float = option(1e-6, "--warmup_lr")
    min_lr: float = option(1e-5, "--min_lr")
    warmup_epochs: int = option(40, "--warmup_epochs")
    warmup_steps: int = option(-1, "--warmup_steps")
    no_lr_scale: bool = option(
        False, "--no_lr_scale", action="store_true", help="use --lr as is instead of lr * total batch / 256"
    )


LONG_RUNS = "long runs on clusters (preemption, time limits)"


@dataclass
class RunConfig:
    """Output, resuming, precision, distribution and the long-run safeguards."""

    output_dir: str = option("", "--output_dir", help="checkpoints, log.txt, args.json")
    log_dir: str | None = option(None, "--log_dir", help="TensorBoard folder")
    device: str = option("cuda", "--device", help="cuda or cpu (falls back to cpu without CUDA)")
    seed: int = option(0, "--seed")
    resume: str = option("", "--resume", help="checkpoint to resume from")
    auto_resume: bool = option(
        True, "--auto_resume", action=BOOL_FLAG,
        also=(Also(("--no_auto_resume",), "store_false", "reference spelling of --no-auto_resume"),),
    )  # fmt: skip
    start_epoch: int = option(0, "--start_epoch")
    save_ckpt_freq: int = option(20, "--save_ckpt_freq")
    save_ckpt_freq_steps: int = option(
        0, "--save_ckpt_freq_steps", group=LONG_RUNS,
        help="also write a mid-epoch checkpoint every N optimiser steps (0: off); a resumed run goes on "
        "from the next batch and ends with the weights of an uninterrupted one",
    )  # fmt: skip
    preempt_signal: str = option(
        "USR1,TERM", "--preempt_signal", group=LONG_RUNS,
        help="signals that mean 'stop soon' (comma list of USR1, USR2, TERM, INT, or none): the run writes a "
        "checkpoint at the next step and exits with code 75 (relaunch the same command to resume)",
    )  # fmt: skip
    requeue: bool = option(
        False, "--requeue", action="store_true", group=LONG_RUNS,
        help="under SLURM: after a stop signal, rank 0 runs 'scontrol requeue $SLURM_JOB_ID' before exiting",
    )  # fmt: skip
    keep_last: int = option(2, "--keep_last", group=LONG_RUNS, help="numbered checkpoints kept")
    precision: str | None = option(
        None, "--precision", choices=PRECISIONS, group=LONG_RUNS,
        help="default fp32; with --enable_deepspeed on CUDA fp16 with the reference's loss scaling",
    )  # fmt: skip
    print_freq: int = option(10, "--print_freq", group=LONG_RUNS)
    max_steps_per_epoch: int = option(
        0, "--max_steps_per_epoch", group=LONG_RUNS, help="debug: cut epochs short (0 = full)"
    )
    stop_after_epoch: int | None = option(
        None,
        "--stop_after_epoch",
        group=LONG_RUNS,
        help="end the job after this epoch (time-limited queues); resume later",
    )
    deterministic: bool = option(
        False, "--deterministic", action="store_true", group=LONG_RUNS, help="torch deterministic algorithms"
    )
    enable_deepspeed: bool = option(
        False,
        "--enable_deepspeed",
        action="store_true",
        group=LONG_RUNS,
        help="DeepSpeed engine (see --precision)",
    )
    zero_stage: int = option(0, "--zero_stage", choices=(0, 1, 2), group=LONG_RUNS)
    dist_url: str = option("env://", "--dist_url", group=LONG_RUNS)
    dist_timeout: float = option(
        600.0, "--dist_timeout", group=LONG_RUNS,
        help="seconds a collective may wait for a rank, and a rank may stay silent, before every rank stops "
        "with one line naming it (a rank killed, stopped or on a hung node)",
    )  # fmt: skip
    dist_on_itp: bool = option(
        False, "--dist_on_itp", action="store_true", group=LONG_RUNS,
        help="take rank / world size / local rank from OpenMPI (OMPI_COMM_WORLD_*, with MASTER_ADDR/PORT)",
    )  # fmt: skip
    world_size: int = option(1, "--world_size", group=LONG_RUNS, help="ignored: taken from torchrun/slurm")
    local_rank: int = option(
        -1, "--local_rank", "--local-rank", group=LONG_RUNS, help="ignored: taken from torchrun"
    )
    save_ckpt: bool = option(True)  # only fine-tuning has the reference's --no_save_ckpt


@dataclass
class MaskingConfig:
    """Tube / random masks of pre-training and distillation, and repeated sampling."""

    mask_type: str = option("tube", "--mask_type", choices=("tube", "random"))
    mask_ratio: float = option(0.75, "--mask_ratio")
    num_sample: int = option(
        1, "--num_sample",
        help="repeated sampling: clips (own crop and mask) per decoded video; a batch holds "
        "--batch_size x num_sample clips, while epochs, --batch_size and the lr scaling count videos",
    )  # fmt: skip


@dataclass
class MAEConfig:
    """VideoMAE's decoder and pixel target."""

    decoder_depth: int = option(4, "--decoder_depth")
    normlize_target: bool = option(
        True,
        "--normlize_target",
        "--normalize_target",
        action=ReferenceBool,
        help="reconstruct per-patch normalised pixels",
    )


@dataclass
class TeacherConfig:
    """The distillation teacher, and the reference's switches of the student side."""

    model_t: str = option("pretrain_videomae_base_patch16_224", "--model_t", "--teacher_model")
    path_t: str | None = option(
        None, "--path_t", "--teacher_checkpoint", help="VideoMAE checkpoint of the teacher"
    )
    teacher_precision: str | None = option(
        None, "--teacher_precision", choices=PRECISIONS, help="default: --precision"
    )
    decoder_depth: int = option(
        0, "--decoder_depth", help="ignored (reference compatibility): the student is encoder-only"
    )
    normlize_target: bool = option(
        True, "--normlize_target", action=ReferenceBool,
        help="accepted for reference compatibility; unused (the student is encoder-only)",
    )  # fmt: skip
    onlykd: bool = option(
        False,
        "--onlykd",
        action=ReferenceBool,
        help="train the attention terms only (with hybrid: --distill onlykd)",
    )


FINE_TUNING = "fine-tuning"


@dataclass
class FinetuneSection:
    """The classifier's weights and head, augmentation, evaluation."""

    nb_classes: int | None = option(None, "--nb_classes")
    finetune: str = option("", "--finetune", help="pre-training / distillation / fine-tuning checkpoint")
    model_key: str = option(
        "model|module", "--model_key", help="--finetune: first of these entries holding the weights"
    )
    model_prefix: str = option(
        "", "--model_prefix", help="--finetune: load only keys with this prefix, stripped"
    )
    tubelet_size: int = option(2, "--tubelet_size", help="frames per token")
    short_side_size: int | None = option(
        None, "--short_side_size",
        help="val/test: short side resized to this before the --input_size crops (default: --input_size, "
        "224 in every recipe; a larger value crops a zoomed-in part of the frame)",
    )  # fmt: skip
    num_sample: int = option(2, "--num_sample", help="repeated augmentation views per video")
    test_num_segment: int = option(5, "--test_num_segment")
    test_num_crop: int = option(3, "--test_num_crop")
    smoothing: float = option(0.1, "--smoothing")
    mixup: float = option(0.0, "--mixup")
    cutmix: float = option(0.0, "--cutmix")
    cutmix_minmax: list[float] | None = option(None, "--cutmix_minmax", nargs="+")
    mixup_prob: float = option(1.0, "--mixup_prob")
    mixup_switch_prob: float = option(0.5, "--mixup_switch_prob")
    mixup_mode: str = option("batch", "--mixup_mode")
    aa: str = option("rand-m7-n4-mstd0.5-inc1", "--aa", help="RandAugment policy")
    reprob: float = option(0.25, "--reprob", help="random erasing probability")
    layer_decay: float = option(0.75, "--layer_decay")
    fc_drop_rate: float = option(0.0, "--fc_drop_rate")
    init_scale: float = option(0.001, "--init_scale")
    drop: float = option(0.0, "--drop")
    attn_drop_rate: float = option(0.0, "--attn_drop_rate")
    use_mean_pooling: bool = option(
        True, "--use_mean_pooling", action=BOOL_FLAG,
        also=(Also(("--use_cls",), "store_false", "classify the first token's features"),),
    )  # fmt: skip
    eval: bool = option(
        False, "--eval", action="store_true",
        help="the reference's evaluation: load --resume, else the newest checkpoint in --output_dir, else "
        "--finetune; multi-view test of the test list (<output_dir>/<rank>.txt), merged; no training",
    )  # fmt: skip
    validate_only: bool = option(
        False, "--validate_only", action="store_true", help="one-clip validation of --finetune only"
    )
    test: bool = option(False, "--test", action="store_true", help="multi-view test of --finetune only")
    dist_eval: bool = option(
        False, "--dist_eval", action="store_true", help="shard validation/test over ranks"
    )
    disable_eval_during_finetuning: bool = option(
        False, "--disable_eval_during_finetuning", action="store_true", help="no validation after each epoch"
    )
    merge_dedupe: str = option(
        "pair", "--merge_dedupe", choices=("pair", "reference"), help="multi-view duplicate rule"
    )
    list_format: str = option("auto", "--list_format", choices=("auto", "video", "frames"))


@dataclass
class FinetuneRunConfig(RunConfig):
    """Fine-tuning's run section: it alone has the reference's --no_save_ckpt."""

    save_ckpt: bool = option(
        True, "--save_ckpt", action=BOOL_FLAG, group=FINE_TUNING, help="write checkpoints",
        also=(Also(("--no_save_ckpt",), "store_false", "reference spelling of --no-save_ckpt"),),
    )  # fmt: skip


@dataclass
class EMAConfig:
    """An exponential moving average of the weights (fine-tuning)."""

    model_ema: bool = option(
        False, "--model_ema", action="store_true",
        help="also keep an exponential moving average of the weights (saved as model_ema, validated and "
        "multi-view tested as val_ema_* / final_test_ema; resumed)",
    )  # fmt: skip
    model_ema_decay: float = option(0.9999, "--model_ema_decay", help="EMA decay per optimiser step")
    model_ema_force_cpu: bool = option(
        False, "--model_ema_force_cpu", action="store_true", help="keep the EMA weights on the CPU"
    )


# ----- the reference's flags that change nothing here, or allow one value only (see engine.args_compat)
REFERENCE = "reference compatibility"
REFERENCE_HELP = "flags of the reference scripts that change nothing here, or that allow only the value shown"
_PRETRAINED = "only '' (the default): models are not loaded at creation; use --resume"


@dataclass
class _Normalisation:
    """The reference flag every task's parser has."""

    imagenet_default_mean_and_std: bool = option(
        True, "--imagenet_default_mean_and_std", action="store_true",
        help=f"{UNUSED}: clips are always normalised with the ImageNet mean / std, as in the reference",
    )  # fmt: skip


@dataclass
class MaskedReference(_Normalisation):
    """Pre-training's reference flags (distillation adds its own)."""

    color_jitter: float = option(
        0.0, "--color_jitter", metavar="PCT", help=f"{UNUSED} (the reference never reads it)"
    )
    context_ratio: float = option(
        0.25, "--context_ratio",
        help=f"{UNUSED}: the reference reads it only for --mask_type time / timesplit, not offered here",
    )  # fmt: skip
    train_interpolation: str = option(
        "bicubic", "--train_interpolation", help=f"{UNUSED} (pre-training augmentation)"
    )
    pretrained: str = option("", "--pretrained", help=_PRETRAINED)


@dataclass
class DistillReference(MaskedReference):
    pretrained: str = option("", "--pretrained", help=_PRETRAINED + " (student) and --path_t (teacher)")
    ckpt_url: str = option("", "--ckpt_url", help=f"{UNUSED} (OpenI platform path)")
    init_epochs: int = option(30, "--init_epochs", help=f"{UNUSED} (two-stage methods)")
    is_att: bool = option(
        False, "--is_att", action=ReferenceBool,
        help=f"{UNUSED}: attention maps are computed whenever the --distill terms need them",
    )  # fmt: skip
    load_decoder: bool = option(
        False, "--load_decoder", action=ReferenceBool,
        help="only off: the distillation student is encoder-only, there is no decoder to load",
    )  # fmt: skip


@dataclass
class FinetuneReference(_Normalisation):
    color_jitter: float = option(
        0.4, "--color_jitter", metavar="PCT", help=f"{UNUSED} (the reference never reads it)"
    )
    ckpt_url: str = option("", "--ckpt_url", help=f"{UNUSED} (OpenI platform path)")
    crop_pct: float | None = option(None, "--crop_pct", help=UNUSED)
    eval_data_path: str | None = option(
        None,
        "--eval_data_path",
        help=f"{UNUSED}: val.csv / test.csv are read from --data_path, as in the reference",
    )
    resplit: bool = option(
        False, "--resplit", action="store_true", help=f"{UNUSED} (the reference never passes it on)"
    )
    train_interpolation: str = option(
        "bicubic", "--train_interpolation",
        help=f"RandAugment resampling, one of {INTERPOLATIONS}; both resample bilinearly here "
        "(torchvision has no bicubic affine on tensors)",
    )  # fmt: skip
    remode: str = option("pixel", "--remode", help="random erasing fill: only pixel (per-pixel noise)")
    recount: int = option(1, "--recount", help="random erasing regions per frame: only 1")
    num_segments: int = option(
        1, "--num_segments", help="only 1: every clip is one segment of --num_frames frames"
    )
    # added by deepspeed.add_config_arguments under --enable_deepspeed; the reference then writes its
    # own config over --deepspeed_config, so none of them changes a run
    deepspeed: bool = option(
        False, "--deepspeed", action="store_true", help=f"{UNUSED}: use --enable_deepspeed"
    )
    deepscale: bool = option(
        False, "--deepscale", action="store_true", help=f"{UNUSED}: use --enable_deepspeed"
    )
    deepspeed_config: str | None = option(
        None, "--deepspeed_config", help=f"{UNUSED}: the config is built from the flags"
    )
    deepscale_config: str | None = option(
        None, "--deepscale_config", help=f"{UNUSED}: the config is built from the flags"
    )

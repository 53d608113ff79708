"""Builds models and datasets from the parsed arguments, turning every misfit into a `UsageError`."""

from __future__ import annotations

import argparse

import timm
from torch import nn

import models  # noqa: F401  (registers our factories with timm)
from engine.args import UsageError
from models import PretrainVisionTransformer, VisionTransformer
from models.checkpoint import load_finetune_weights, load_teacher_weights
from models.distill import MMKDConfig, MMKDLoss, VisibleTokens, fit_problem
from models.weights import CheckpointError, read_state_dict


def create(name: str, option: str, **kwargs) -> nn.Module:
    """timm.create_model with our error messages (unknown name, sizes that do not divide)."""
    if not timm.is_model(name):
        ours = [
            m
            for m in timm.list_models("*videomae*") + timm.list_models("vit_*")
            if m in models.registry.__dict__
        ]
        raise UsageError(f"{option} {name!r} is unknown; choose one of {', '.join(ours)}")
    try:
        return timm.create_model(name, **kwargs)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{option} {name}: {err}; adjust --num_frames / --input_size") from None


def maybe_compile(model: nn.Module, args: argparse.Namespace) -> nn.Module:
    """With ``--compile``: ``model.compile(mode=--compile_mode)``, in place.

    In place (not ``torch.compile(model)``) so that parameter names, state dicts, checkpoints and
    the DDP / DeepSpeed wrapping stay those of the plain model; compilation happens at the first call.
    """
    if args.compile:
        model.compile(mode=args.compile_mode)
    return model


def _encoder_kwargs(args: argparse.Namespace) -> dict:
    return dict(img_size=args.input_size, num_frames=args.num_frames, use_checkpoint=args.use_checkpoint)


def build_pretrain_model(args: argparse.Namespace) -> PretrainVisionTransformer:
    model = create(
        args.model,
        "--model",
        decoder_depth=args.decoder_depth,
        drop_path_rate=args.drop_path,
        **_encoder_kwargs(args),
    )
    if not isinstance(model, PretrainVisionTransformer):
        raise UsageError(f"--model {args.model} is not a pre-training model; use a pretrain_videomae_* name")
    return maybe_compile(models.set_attn_impl(model, args.attn_impl), args)


def visible_per_slice(model: PretrainVisionTransformer, mask_type: str, mask_ratio: float) -> tuple[int, int]:
    """(visible tokens per temporal slice S, visible tokens P) for a mask of this type and ratio."""
    t, h, w = model.encoder.grid_size
    if mask_type == "tube":
        s = h * w - int(mask_ratio * h * w)
        return s, s * t
    n = t * h * w
    return 0, n - int(mask_ratio * n)


def build_distill(
    args: argparse.Namespace,
) -> tuple[PretrainVisionTransformer, PretrainVisionTransformer, MMKDLoss, str]:
    """Student, teacher (strictly loaded from --path_t) and the MMKD heads; returns the load report."""
    student = build_pretrain_model(args)
    teacher = create(
        args.model_t, "--model_t", decoder_depth=0, img_size=args.input_size, num_frames=args.num_frames
    )
    if not isinstance(teacher, PretrainVisionTransformer):
        raise UsageError(
            f"--model_t {args.model_t} is not a pre-training model; use a pretrain_videomae_* name"
        )
    s_grid, t_grid = student.encoder.patch_embed, teacher.encoder.patch_embed
    if (s_grid.patch_size, s_grid.tubelet_size) != (t_grid.patch_size, t_grid.tubelet_size):
        raise UsageError(
            f"--model {args.model} (patch {s_grid.patch_size}, tubelet {s_grid.tubelet_size}) and --model_t {args.model_t} "
            f"(patch {t_grid.patch_size}, tubelet {t_grid.tubelet_size}) do not tokenise the clip alike; pick matching models"
        )
    try:
        report = load_teacher_weights(
            teacher, read_state_dict(args.path_t, model=teacher), f"--path_t {args.path_t}"
        )
    except CheckpointError as err:
        raise UsageError(f"--path_t: {err}") from None
    cfg = MMKDConfig.from_args(args)  # the values were checked by engine.args.validate
    s, p = visible_per_slice(student, args.mask_type, args.mask_ratio)
    problem = fit_problem(cfg, VisibleTokens(args.mask_type, s, p))
    if problem:
        raise UsageError(problem)
    try:
        heads = MMKDLoss(student.encoder.embed_dim, teacher.encoder.embed_dim, cfg)
    except ValueError as err:
        raise UsageError(f"--alignment {args.alignment}: {err}") from None
    teacher = maybe_compile(models.set_attn_impl(teacher, args.attn_impl), args)
    return student, teacher, heads, report.summary()


def _with_prefix(state: dict, prefix: str) -> dict:
    """The reference's --model_prefix: weights of module ``name`` are stored under ``prefix + name``."""
    if not prefix:
        return state
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not kept:
        raise UsageError(
            f"--model_prefix {prefix!r} starts no key of --finetune ({next(iter(state))!r}, ...)"
        )
    return kept


def build_classifier(args: argparse.Namespace, nb_classes: int) -> tuple[VisionTransformer, str]:
    model = create(
        args.model,
        "--model",
        num_classes=nb_classes,
        all_frames=args.num_frames,
        img_size=args.input_size,
        drop_rate=args.drop,
        attn_drop_rate=args.attn_drop_rate,
        drop_path_rate=args.drop_path,
        fc_drop_rate=args.fc_drop_rate,
        init_scale=args.init_scale,
        tubelet_size=args.tubelet_size,
        use_mean_pooling=args.use_mean_pooling,
        use_checkpoint=args.use_checkpoint,
    )
    if not isinstance(model, VisionTransformer):
        raise UsageError(f"--model {args.model} is not a classifier; use a vit_* name")
    models.set_attn_impl(model, args.attn_impl)
    report = "trained from scratch"
    if args.finetune:
        try:
            state = read_state_dict(args.finetune, model=model, model_key=args.model_key)
            state = _with_prefix(state, args.model_prefix)
            report = load_finetune_weights(model, state, f"--finetune {args.finetune}").summary()
        except CheckpointError as err:
            raise UsageError(f"--finetune: {err}") from None
    return maybe_compile(model, args), report


def build_masked_clips(args: argparse.Namespace, model: PretrainVisionTransformer):
    """The pre-training / distillation dataset: masked clips tokenised like ``model``, ``--num_sample``
    of them per decoded video (a batch of ``--batch_size`` videos then holds batch_size x num_sample clips)."""
    from datasets import build_pretraining_dataset

    return build_pretraining_dataset(
        args.data_path,
        root=args.data_root,
        num_frames=args.num_frames,
        sampling_rate=args.sampling_rate,
        input_size=args.input_size,
        patch_size=model.patch_size,
        tubelet_size=model.tubelet_size,
        mask_type=args.mask_type,
        mask_ratio=args.mask_ratio,
        num_sample=args.num_sample,
        decoder=args.decoder,
        max_bad_fraction=args.max_bad_fraction,
        seed=args.seed,
        normalize=False,  # uint8 clips; the task normalises them on the device (engine.tasks)
    )

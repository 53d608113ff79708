"""Builds models and datasets from a task's typed config, turning every misfit into a `UsageError`."""

from __future__ import annotations

import timm
from torch import nn

import models  # noqa: F401  (registers our factories with timm)
from common.cli import UsageError
from engine.config import DataConfig, DistillConfig, FinetuneConfig, ModelConfig, PretrainConfig
from models import PretrainVisionTransformer, VisionTransformer
from models.checkpoint import load_finetune_weights, load_teacher_weights
from models.distill import MMKDLoss, VisibleTokens, fit_problem
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


def maybe_compile(model: nn.Module, settings: ModelConfig) -> nn.Module:
    """With ``--compile``: ``model.compile(mode=--compile_mode)``, in place.

    In place (not ``torch.compile(model)``) so that parameter names, state dicts, checkpoints and
    the DDP / DeepSpeed wrapping stay those of the plain model; compilation happens at the first call.
    """
    if settings.compile:
        model.compile(mode=settings.compile_mode)
    return model


def build_pretrain_model(
    settings: ModelConfig, data: DataConfig, decoder_depth: int
) -> PretrainVisionTransformer:
    """The pre-training model (``decoder_depth`` 0: the encoder-only distillation student)."""
    model = create(
        settings.model,
        "--model",
        decoder_depth=decoder_depth,
        drop_path_rate=settings.drop_path,
        img_size=data.input_size,
        num_frames=data.num_frames,
        use_checkpoint=settings.use_checkpoint,
    )
    if not isinstance(model, PretrainVisionTransformer):
        raise UsageError(
            f"--model {settings.model} is not a pre-training model; use a pretrain_videomae_* name"
        )
    return maybe_compile(models.set_attn_impl(model, settings.attn_impl), settings)


def visible_per_slice(model: PretrainVisionTransformer, mask_type: str, mask_ratio: float) -> tuple[int, int]:
    """(visible tokens per temporal slice S, visible tokens P) for a mask of this type and ratio."""
    t, h, w = model.encoder.grid_size
    if mask_type == "tube":
        s = h * w - int(mask_ratio * h * w)
        return s, s * t
    n = t * h * w
    return 0, n - int(mask_ratio * n)


def build_distill(
    cfg: DistillConfig,
) -> tuple[PretrainVisionTransformer, PretrainVisionTransformer, MMKDLoss, str]:
    """Student, teacher (strictly loaded from --path_t) and the MMKD heads; returns the load report."""
    settings, t, data = cfg.model, cfg.teacher, cfg.data
    student = build_pretrain_model(settings, data, decoder_depth=0)
    teacher = create(
        t.model_t, "--model_t", decoder_depth=0, img_size=data.input_size, num_frames=data.num_frames
    )
    if not isinstance(teacher, PretrainVisionTransformer):
        raise UsageError(f"--model_t {t.model_t} is not a pre-training model; use a pretrain_videomae_* name")
    s_grid, t_grid = student.encoder.patch_embed, teacher.encoder.patch_embed
    if (s_grid.patch_size, s_grid.tubelet_size) != (t_grid.patch_size, t_grid.tubelet_size):
        raise UsageError(
            f"--model {settings.model} (patch {s_grid.patch_size}, tubelet {s_grid.tubelet_size}) and --model_t {t.model_t} "
            f"(patch {t_grid.patch_size}, tubelet {t_grid.tubelet_size}) do not tokenise the clip alike; pick matching models"
        )
    try:
        report = load_teacher_weights(
            teacher, read_state_dict(t.path_t, model=teacher), f"--path_t {t.path_t}"
        )
    except CheckpointError as err:
        raise UsageError(f"--path_t: {err}") from None
    # the values were checked when the config was read; what needs the models' token grid and widths, here
    masking = cfg.masking
    s, p = visible_per_slice(student, masking.mask_type, masking.mask_ratio)
    problem = fit_problem(cfg.mmkd, VisibleTokens(masking.mask_type, s, p))
    if problem:
        raise UsageError(problem)
    try:
        heads = MMKDLoss(student.encoder.embed_dim, teacher.encoder.embed_dim, cfg.mmkd)
    except ValueError as err:
        raise UsageError(f"--alignment {cfg.mmkd.alignment}: {err}") from None
    teacher = maybe_compile(models.set_attn_impl(teacher, settings.attn_impl), settings)
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


def build_classifier(cfg: FinetuneConfig, nb_classes: int) -> tuple[VisionTransformer, str]:
    settings, ft = cfg.model, cfg.finetune
    model = create(
        settings.model,
        "--model",
        num_classes=nb_classes,
        all_frames=cfg.data.num_frames,
        img_size=cfg.data.input_size,
        drop_rate=ft.drop,
        attn_drop_rate=ft.attn_drop_rate,
        drop_path_rate=settings.drop_path,
        fc_drop_rate=ft.fc_drop_rate,
        init_scale=ft.init_scale,
        tubelet_size=ft.tubelet_size,
        use_mean_pooling=ft.use_mean_pooling,
        use_checkpoint=settings.use_checkpoint,
    )
    if not isinstance(model, VisionTransformer):
        raise UsageError(f"--model {settings.model} is not a classifier; use a vit_* name")
    models.set_attn_impl(model, settings.attn_impl)
    report = "trained from scratch"
    if ft.finetune:
        try:
            state = read_state_dict(ft.finetune, model=model, model_key=ft.model_key)
            state = _with_prefix(state, ft.model_prefix)
            report = load_finetune_weights(model, state, f"--finetune {ft.finetune}").summary()
        except CheckpointError as err:
            raise UsageError(f"--finetune: {err}") from None
    return maybe_compile(model, settings), report


def build_masked_clips(cfg: PretrainConfig | DistillConfig, model: PretrainVisionTransformer):
    """The pre-training / distillation dataset: masked clips tokenised like ``model``, ``--num_sample``
    of them per decoded video (a batch of ``--batch_size`` videos then holds batch_size x num_sample clips)."""
    from datasets import build_pretraining_dataset

    data, masking = cfg.data, cfg.masking
    return build_pretraining_dataset(
        data.data_path,
        root=data.data_root,
        num_frames=data.num_frames,
        sampling_rate=data.sampling_rate,
        input_size=data.input_size,
        patch_size=model.patch_size,
        tubelet_size=model.tubelet_size,
        mask_type=masking.mask_type,
        mask_ratio=masking.mask_ratio,
        num_sample=masking.num_sample,
        decoder=data.decoder,
        max_bad_fraction=data.max_bad_fraction,
        seed=cfg.run.seed,
        normalize=False,  # uint8 clips; the task normalises them on the device (engine.tasks)
    )

"""timm-registered factories: `timm.create_model(name, **overrides)` builds our video ViTs.

VideoMAE's sizes (S/B/L/H) plus two small presets (`nano`, `pico`, patch 8) that run in
milliseconds on a CPU, for tests and the quickstart. Registering `vit_*_patch16_224` replaces
timm's image ViTs of the same name, as VideoMAE does, so that reference scripts work unchanged.
"""

from __future__ import annotations

import warnings
from functools import partial

from timm.models import register_model
from torch import nn

from .vit import PretrainVisionTransformer, VisionTransformer

LN = partial(nn.LayerNorm, eps=1e-6)

# name: (width, depth, heads, decoder width, decoder heads, patch size)
SIZES = {
    "huge": (1280, 32, 16, 640, 8, 16),
    "large": (1024, 24, 16, 512, 8, 16),
    "base": (768, 12, 12, 384, 6, 16),
    "small": (384, 12, 6, 192, 3, 16),
    "nano": (64, 4, 4, 32, 2, 8),
    "pico": (32, 2, 2, 32, 2, 8),
}
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _clean(pretrained: bool, kwargs: dict) -> dict:
    if pretrained:
        raise ValueError(
            "pretrained=True is not supported: nothing is downloaded at run time; "
            "load weights from a local checkpoint (--finetune / --path_t)"
        )
    for key in _TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    return kwargs


def _build(cls: type[nn.Module], name: str, pretrained: bool, kwargs: dict, **sizes) -> nn.Module:
    """``cls`` of VideoMAE's defaults and ``sizes``, overridden by ``kwargs``, remembering them."""
    cfg = dict(img_size=224, mlp_ratio=4, qkv_bias=True, norm_layer=LN, **sizes)
    cfg.update(_clean(pretrained, kwargs))
    return _remember(cls(**cfg), name, kwargs)


def build_pretrain(size: str, pretrained: bool = False, **kwargs) -> PretrainVisionTransformer:
    width, depth, heads, dec_width, dec_heads, patch = SIZES[size]
    return _build(
        PretrainVisionTransformer, f"pretrain_videomae_{size}_{_suffix(size)}", pretrained, kwargs,
        patch_size=patch, encoder_embed_dim=width, encoder_depth=depth, encoder_num_heads=heads,
        decoder_embed_dim=dec_width, decoder_num_heads=dec_heads, decoder_depth=4,
    )  # fmt: skip


def build_finetune(size: str, pretrained: bool = False, **kwargs) -> VisionTransformer:
    width, depth, heads, _, _, patch = SIZES[size]
    return _build(
        VisionTransformer, f"vit_{size}_{_suffix(size)}", pretrained, kwargs,
        patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
    )  # fmt: skip


_PLAIN = (bool, int, float, str, type(None))


def _remember(model: nn.Module, name: str, kwargs: dict) -> nn.Module:
    """Stores how to rebuild ``model`` (as nanoGPT's checkpoints do): ``{"name", "kwargs"}``.

    Only plain values are kept (a checkpoint is read with ``weights_only=True``); a model built
    with a non-plain override (e.g. a custom ``norm_layer``) records ``None`` instead.
    """
    plain = all(
        isinstance(v, _PLAIN) or (isinstance(v, tuple | list) and all(isinstance(x, _PLAIN) for x in v))
        for v in kwargs.values()
    )
    model.model_args = {"name": name, "kwargs": dict(kwargs)} if plain else None
    return model


def model_args_of(module: nn.Module) -> dict | None:
    """The constructor arguments of the first model inside ``module`` (a task, a DDP wrapper)."""
    return next((m.model_args for m in module.modules() if getattr(m, "model_args", None)), None)


def rebuild(model_args: dict, **overrides) -> nn.Module:
    """The model that ``model_args`` (from `model_args_of` / a checkpoint) describes, freshly initialised."""
    import timm

    return timm.create_model(model_args["name"], **{**model_args["kwargs"], **overrides})


def _register(name: str, fn) -> None:
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__module__ = __name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # replacing timm's image ViT names is intended
        register_model(fn)
    globals()[name] = fn


def _suffix(size: str) -> str:
    return "patch16_224" if SIZES[size][5] == 16 else "patch8"


for _size in SIZES:
    _register(f"pretrain_videomae_{_size}_{_suffix(_size)}", partial(build_pretrain, _size))
    _register(f"vit_{_size}_{_suffix(_size)}", partial(build_finetune, _size))

PRETRAIN_MODELS = [f"pretrain_videomae_{s}_{_suffix(s)}" for s in SIZES]
FINETUNE_MODELS = [f"vit_{s}_{_suffix(s)}" for s in SIZES]

"""Optimiser construction and per-iteration schedules (MMKD_SPEC §7).

Three pieces, all matching the reference (VideoMAE / MaskAgain) numbers exactly:

* :func:`cosine_scheduler` — per-iteration cosine schedule with linear warm-up, used for
  both the learning rate and the weight decay.
* Layer-wise lr decay for fine-tuning: :func:`layer_id_for_vit`,
  :class:`LayerDecayValueAssigner` and :func:`param_groups_for_finetune`.
* :func:`build_optimizer` (timm's optimiser factory fed with our parameter groups) and
  :func:`apply_schedules`, which the training loop calls every iteration.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from timm.optim import create_optimizer_v2, get_optimizer_class, list_optimizers
from torch import nn

# devices with torch's fused Adam / AdamW / SGD kernels (torch.optim's fused implementations)
_FUSED_DEVICES = {"cpu", "cuda", "xpu", "mps"}

__all__ = [
    "LayerDecayValueAssigner",
    "apply_schedules",
    "build_optimizer",
    "cosine_scheduler",
    "layer_decay_values",
    "layer_id_for_vit",
    "param_groups",
    "param_groups_for_finetune",
]


def cosine_scheduler(
    base_value: float,
    final_value: float,
    epochs: int,
    niter_per_ep: int,
    warmup_epochs: int = 0,
    start_warmup_value: float = 0.0,
    warmup_steps: int = -1,
) -> np.ndarray:
    """Per-iteration cosine schedule with linear warm-up, bit-identical to the reference.

    The warm-up length is ``warmup_steps`` when it is > 0, else ``warmup_epochs * niter_per_ep``;
    but (as in the reference) the warm-up ramp is only built when ``warmup_epochs > 0``. The
    warm-up is ``linspace(start_warmup_value, base_value)`` with the endpoint included, so
    ``base_value`` appears twice in a row; the cosine part never reaches ``final_value``.

    Returns:
        float64 array of length ``epochs * niter_per_ep``.

    Raises:
        ValueError: where the reference's length assertion would fail (``warmup_steps > 0``
            with ``warmup_epochs == 0``, or a warm-up longer than the whole schedule).
    """
    total = epochs * niter_per_ep
    warmup_iters = warmup_steps if warmup_steps > 0 else warmup_epochs * niter_per_ep
    if warmup_iters > 0 and warmup_epochs <= 0:
        raise ValueError(
            f"cosine_scheduler: warmup_steps={warmup_steps} but warmup_epochs={warmup_epochs}; the "
            "warm-up ramp is only built when warmup_epochs > 0, so the schedule would be "
            f"{warmup_iters} iterations short of epochs*niter_per_ep={total}. Set warmup_epochs > 0 "
            "(warmup_steps then overrides its length) or warmup_steps=-1."
        )
    if warmup_iters > total:
        raise ValueError(
            f"cosine_scheduler: warm-up of {warmup_iters} iterations is longer than the whole "
            f"schedule (epochs*niter_per_ep={total})."
        )
    warmup = np.array([])
    if warmup_epochs > 0:
        warmup = np.linspace(start_warmup_value, base_value, warmup_iters)
    n_cos = total - warmup_iters
    # math.cos per element (not np.cos) and this exact operation order keep the values
    # bit-identical to the reference fixture.
    cosine = np.array(
        [
            final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / n_cos))
            for i in range(n_cos)
        ]
    )
    schedule = np.concatenate((warmup, cosine)).astype(np.float64)
    assert len(schedule) == total  # guaranteed by the checks above
    return schedule


def layer_id_for_vit(name: str, num_layers: int) -> int:
    """Layer index of a ViT parameter for layer-wise lr decay.

    Embeddings (``cls_token``, ``mask_token``, ``pos_embed``, ``patch_embed.*``) are layer 0,
    ``blocks.{i}.*`` is layer ``i + 1`` and everything else (final norm, head, rel-pos bias)
    is layer ``num_layers + 1``.
    """
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def layer_decay_values(layer_decay: float, num_layers: int) -> list[float]:
    """lr scales ``layer_decay ** (num_layers + 1 - i)`` for layer ids ``i = 0 .. num_layers + 1``."""
    return [layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]


class LayerDecayValueAssigner:
    """Maps a parameter name to its layer id and that layer's lr scale.

    Args:
        values: one lr scale per layer id, ``num_layers + 2`` entries (see
            :func:`layer_decay_values`).
    """

    def __init__(self, values: Sequence[float]) -> None:
        if len(values) < 2:
            raise ValueError(f"need at least 2 layer-decay values (embeddings + head), got {len(values)}")
        self.values = [float(v) for v in values]

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks the values were built for."""
        return len(self.values) - 2

    def get_scale(self, layer_id: int) -> float:
        """lr scale of ``layer_id``."""
        return self.values[layer_id]

    def get_layer_id(self, name: str) -> int:
        """Layer id of the parameter called ``name``."""
        return layer_id_for_vit(name, self.num_layers)


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP prefixes every name with "module.", which would put all blocks in the head layer.
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _model_skip_list(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def param_groups_for_finetune(
    model: nn.Module,
    weight_decay: float,
    skip_list: Iterable[str] = (),
    assigner: LayerDecayValueAssigner | None = None,
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: (layer id × decay / no-decay), in first-seen order.

    No weight decay for 1-D parameters (norms, biases, ``q_bias``, ``gamma_*``), names ending
    in ``.bias``, names in ``skip_list`` and names in ``model.no_weight_decay()``. Frozen
    parameters are left out. Without an assigner every group has ``lr_scale`` 1.0, giving just
    a decay and a no-decay group (pre-training / distillation).

    Returns:
        list of dicts with ``params``, ``param_names``, ``weight_decay`` and ``lr_scale``.
    """
    model = _unwrap(model)
    skip = set(skip_list) | _model_skip_list(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias") or name in skip
        layer_id = assigner.get_layer_id(name) if assigner is not None else 0
        key = (layer_id, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": assigner.get_scale(layer_id) if assigner is not None else 1.0,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return list(groups.values())


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    skip_list: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The optimiser groups of ``model`` over its *own* parameter names (the reference's rule).

    Callers pass the module that owns the names (a task passes its classifier, not itself), so the
    layer ids and ``no_weight_decay()`` names match. Layer-wise lr decay applies when
    ``layer_decay`` is set and not 1.0, over ``model.get_num_layers()`` blocks.
    """
    assigner = None
    if layer_decay is not None and layer_decay != 1.0:
        assigner = LayerDecayValueAssigner(layer_decay_values(layer_decay, _num_layers_of(_unwrap(model))))
    return param_groups_for_finetune(model, weight_decay, skip_list, assigner)


def _num_layers_of(model: nn.Module) -> int:
    if callable(getattr(model, "get_num_layers", None)):
        return int(model.get_num_layers())
    if isinstance(getattr(model, "blocks", None), nn.Module):
        return len(model.blocks)
    raise ValueError("layer_decay needs the number of blocks: give the model get_num_layers() or .blocks")


def _check_opt_name(opt: str) -> None:
    # timm names may carry a "lookahead_" prefix; the optimiser itself is the last part.
    valid = list_optimizers()
    if opt.lower().split("_")[-1] not in valid:
        raise ValueError(f"unknown optimiser {opt!r}; valid names (timm): {', '.join(valid)}")


def build_optimizer(
    model_or_groups: nn.Module | list[dict[str, Any]],
    *,
    opt: str = "adamw",
    lr: float,
    weight_decay: float,
    opt_betas: tuple[float, float] | None = None,
    opt_eps: float | None = 1e-8,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Build a timm optimiser whose groups carry ``lr_scale`` and their own weight decay.

    Args:
        model_or_groups: parameter groups (a task's ``parameter_groups``, layer decay included: see
            `param_groups`), or a module, which gets `param_groups` without layer decay.
        opt: timm optimiser name (``adamw``, ``sgd``, ``lamb``, ...).
        lr: base learning rate (``apply_schedules`` overwrites it per iteration).
        weight_decay: weight decay of groups that do not set their own.
        opt_betas / opt_eps / momentum: forwarded to the optimiser where it supports them.

    Raises:
        ValueError: unknown optimiser name.
    """
    _check_opt_name(opt)
    if isinstance(model_or_groups, nn.Module):
        groups = param_groups(model_or_groups, weight_decay)
    else:
        groups = [dict(g) for g in model_or_groups]
        for g in groups:
            g.setdefault("lr_scale", 1.0)
            g.setdefault("weight_decay", weight_decay)
    for g in groups:
        g["base_weight_decay"] = g["weight_decay"]
    kwargs: dict[str, Any] = {}
    if opt_betas is not None:
        kwargs["betas"] = tuple(opt_betas)
    if opt_eps is not None:
        kwargs["eps"] = opt_eps
    kwargs.update(_kernel_kwargs(opt, groups))
    # filter_bias_and_bn only applies to modules; our groups already encode weight decay.
    return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, momentum=momentum, **kwargs)


def _kernel_kwargs(opt: str, groups: list[dict[str, Any]]) -> dict[str, bool]:
    """``fused=True`` where the optimiser has a fused kernel for the parameters' device, else
    ``foreach=True`` where it has a multi-tensor one; nothing for the others (e.g. timm's lamb).

    The fused step reads and writes every parameter once per step instead of once per operation:
    on a 2-core CPU the ViT-S AdamW step takes 16 ms fused, 34 ms per-tensor and 50 ms foreach.
    timm forwards both keywords to the optimiser class (``foreach`` explicitly, ``fused`` through
    its ``**kwargs``); ``create_optimizer_v2`` resolves the class itself, so we ask it the same way.
    """
    name = opt.lower().split("_")[-1]
    accepted = inspect.signature(get_optimizer_class(name, bind_defaults=False)).parameters
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    floating = all(p.is_floating_point() for p in params)
    if "fused" in accepted and floating and devices and devices <= _FUSED_DEVICES:
        return {"fused": True}
    if "foreach" in accepted:
        return {"foreach": True}
    return {}


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, wd: float | None = None) -> None:
    """Set this iteration's lr (times each group's ``lr_scale``) and weight decay.

    Weight decay is only written to groups whose configured (base) weight decay is > 0, so
    no-decay groups stay at 0. ``wd=None`` leaves weight decay unchanged.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        # Groups built elsewhere lack the base value: take it from their first visit.
        base_wd = group.setdefault("base_weight_decay", group.get("weight_decay", 0.0))
        if wd is not None and base_wd > 0:
            group["weight_decay"] = wd

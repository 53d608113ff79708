"""Fitting weights into our models, with a named report of every key: the teacher (strict, spec §4)
and the fine-tuning classifier (from pre-training, distillation or fine-tuning weights).

Reading a file is `models.weights`' (`read_state_dict` for any source); ``CheckpointError``,
``read_checkpoint`` and ``extract_state_dict`` stay importable from here (older imports); the reader is models/weights.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from .weights import CheckpointError, extract_state_dict, read_checkpoint

__all__ = [
    "TEACHER_EXPECTED_UNUSED",
    "CheckpointError",
    "LoadReport",
    "describe",
    "extract_state_dict",
    "load_finetune_weights",
    "load_teacher_weights",
    "read_checkpoint",
    "to_finetune_state_dict",
]
# Parts of a pre-training / distillation checkpoint a classifier never uses.
_FINETUNE_DROPPED = ("decoder.", "encoder_to_decoder.", "mask_token", "heads.", "teacher.")
# Parts of an official pre-training checkpoint the distillation teacher leaves unused (spec §4).
TEACHER_EXPECTED_UNUSED = ("encoder.norm.", "decoder.", "encoder_to_decoder.", "mask_token")


@dataclass
class LoadReport:
    """Which keys were loaded, ignored on purpose, or did not fit."""

    loaded: list[str] = field(default_factory=list)
    expected_unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for name in ("expected_unused", "missing", "unexpected"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name.replace('_', '-')} ({len(keys)}): {_short(keys)}")
        return "; ".join(parts)


def _short(keys: list[str], limit: int = 8) -> str:
    head = ", ".join(keys[:limit])
    return head + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")


def describe(state: Mapping[str, Tensor]) -> str:
    """Human summary of an encoder state dict ('width 768, depth 12, tubelet 2, patch 16')."""
    proj = next((v for k, v in state.items() if k.endswith("patch_embed.proj.weight")), None)
    if proj is None:
        return "no patch embedding found"
    depth = len(
        {k.split("blocks.")[1].split(".")[0] for k in state if "blocks." in k and not k.startswith("decoder")}
    )
    return f"width {proj.shape[0]}, depth {depth}, tubelet {proj.shape[2]}, patch {proj.shape[3]}"


def to_finetune_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Pre-training or distillation weights -> fine-tuning model keys.

    Strips ``student.`` and ``encoder.``; drops decoder, mask token and alignment heads.
    Returns (state dict, dropped keys).
    """
    out, dropped = {}, []
    for k, v in state.items():
        name = k.removeprefix("student.")
        if name.startswith(_FINETUNE_DROPPED):
            dropped.append(k)
            continue
        out[name.removeprefix("encoder.")] = v
    return out, dropped


def _check_shapes(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{source} does not fit the model: {k} has shape {tuple(state[k].shape)} in the checkpoint "
            f"but {tuple(own[k].shape)} in the model ({len(bad)} mismatched tensors; checkpoint: {describe(state)}, "
            f"model: {describe(own)}); choose the matching --model / --model_t, --num_frames and --input_size"
        )


def load_finetune_weights(
    model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint"
) -> LoadReport:
    """Loads pre-training / distillation / fine-tuning weights into a `VisionTransformer`.

    The classifier head (and ``fc_norm``) may be missing; a head of another class count is
    dropped and reported. Any other missing encoder weight is an error.
    """
    state, dropped = to_finetune_state_dict(state)
    own = model.state_dict()
    report = LoadReport(expected_unused=dropped)
    for k in list(state):
        head_like = k.startswith(("head.", "fc_norm.", "norm."))
        if head_like and (k not in own or own[k].shape != state[k].shape):
            report.expected_unused.append(k)
            del state[k]
    _check_shapes(model, state, source)
    result = model.load_state_dict(state, strict=False)
    report.loaded = [k for k in state if k in own]
    report.unexpected = list(result.unexpected_keys)
    report.missing = list(result.missing_keys)
    missing_trunk = [k for k in report.missing if not k.startswith(("head.", "fc_norm.", "norm."))]
    if missing_trunk or report.unexpected:
        raise CheckpointError(
            f"{source} does not fit the model: missing {_short(missing_trunk) or 'none'}; "
            f"unexpected {_short(report.unexpected) or 'none'} (checkpoint: {describe(state)})"
        )
    return report


def load_teacher_weights(
    teacher: nn.Module, state: Mapping[str, Tensor], source: str = "teacher checkpoint"
) -> LoadReport:
    """Strict teacher load: everything must fit except the parts MMKD leaves unused (spec §4)."""
    state = {k.removeprefix("student."): v for k, v in state.items()}
    own = teacher.state_dict()
    report = LoadReport()
    kept = {}
    for k, v in state.items():
        if k not in own and k.startswith(TEACHER_EXPECTED_UNUSED):
            report.expected_unused.append(k)
        else:
            kept[k] = v
    _check_shapes(teacher, kept, source)
    report.missing = sorted(set(own) - set(kept))
    report.unexpected = sorted(set(kept) - set(own))
    if report.missing or report.unexpected:
        raise CheckpointError(
            f"{source} does not fit the teacher model: missing {_short(report.missing) or 'none'}; "
            f"unexpected {_short(report.unexpected) or 'none'} (checkpoint: {describe(state)}, "
            f"teacher: {describe(own)}); pass a VideoMAE pre-training checkpoint matching --model_t"
        )
    teacher.load_state_dict(kept, strict=True)
    report.loaded = sorted(kept)
    return report

"""Reading VideoMAE / MMKD checkpoints into our models, with a named report of every key.

Accepted containers: ``{"model": sd}``, ``{"module": sd}`` (DeepSpeed) or a bare state dict.
Files are always read with ``weights_only=True``: a checkpoint that needs arbitrary unpickling
is refused, never executed. The one type beyond tensors and containers that is let through is the
``argparse.Namespace`` the reference's training code stores under ``'args'`` (spec §8).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# Prefixes that wrap the model in checkpoints we produce or accept.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Parts of a pre-training / distillation checkpoint a classifier never uses.
_FINETUNE_DROPPED = ("decoder.", "encoder_to_decoder.", "mask_token", "heads.", "teacher.")
# Parts of an official pre-training checkpoint the distillation teacher leaves unused (spec §4).
TEACHER_EXPECTED_UNUSED = ("encoder.norm.", "decoder.", "encoder_to_decoder.", "mask_token")
# The globals that checkpoints written by the reference's training code pickle besides tensors and
# containers (spec §8): VideoMAE / MMKD ``utils.save_model`` / ``save_module`` store the run's
# ``argparse.Namespace`` as ``'args'``, and so may a DeepSpeed client state; everything else in those
# files (optimizer, GradScaler and DeepSpeed bookkeeping) is plain. A Namespace is rebuilt from the
# plain values of its ``__dict__`` only, so allowing it keeps the load weights-only.
REFERENCE_GLOBALS = (argparse.Namespace,)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict:
    """Loads a checkpoint on the CPU with ``weights_only=True``; one-line errors name the file.

    Missing, truncated or garbage files, and files that need arbitrary unpickling (refused,
    never retried with ``weights_only=False``) raise `CheckpointError`. The reference's
    ``argparse.Namespace`` (`REFERENCE_GLOBALS`) is allowed and returned as a plain dict.
    """
    path = os.fspath(path)
    try:
        with torch.serialization.safe_globals(list(REFERENCE_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as exc:
        # torch names a forbidden global as "GLOBAL posix.system"; corrupt files say otherwise
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or not a checkpoint: {_first_line(exc)}"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} contains pickled Python objects that are not plain tensors/containers "
            f"(e.g. {found.group(1)}); refusing to load it (weights_only=True)"
        ) from None
    # garbage bytes also break the weights-only unpickler with IndexError / struct.error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, struct.error) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated, corrupt or not a checkpoint: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    # the reference's 'args' reads like ours (a dict of plain values) from here on
    return {k: vars(v) if isinstance(v, argparse.Namespace) else v for k, v in obj.items()}


# What the reference's and DeepSpeed's checkpoint files hold beside the weights, named for the report.
_PART_NAMES = {
    "optimizer": "optimizer",
    "scaler": "loss scaler",
    "epoch": "epoch",
    "args": "args",
    "model_ema": "model_ema",
    "Align_feature": "MM-hint alignment head (Align_feature)",
    "Align_valuesum": "MM-global/local alignment head (Align_valuesum)",
}
_DEEPSPEED_KEYS = frozenset(
    "buffer_names param_shapes frozen_param_shapes shared_params frozen_param_fragments lr_scheduler "
    "data_sampler random_ltd sparse_tensor_module_names skipped_steps global_steps global_samples "
    "dp_world_size mp_world_size checkpoint_parallel_dimensions ds_config ds_version".split()
)


def left_out(ckpt: Mapping, used: str | None) -> list[str]:
    """The parts of checkpoint ``ckpt`` that reading its ``used`` entry leaves out, by name."""
    if used is None:
        return []
    deepspeed = "ds_version" in ckpt  # DeepSpeed's model-states file: its own keys in one word
    parts = [_PART_NAMES.get(k, k) for k in ckpt if k != used and not (deepspeed and k in _DEEPSPEED_KEYS)]
    return [*parts, "DeepSpeed bookkeeping"] if deepspeed else parts


def extract_state_dict(ckpt: Mapping, source: str = "checkpoint") -> dict[str, Tensor]:
    """Returns the model weights of a checkpoint (``model`` / ``module`` / bare), wrappers stripped."""
    for key in ("model", "module", "state_dict"):
        if key in ckpt:
            if not isinstance(ckpt[key], Mapping):
                raise CheckpointError(f"{source} entry {key!r} is not a state dict of tensors")
            ckpt = ckpt[key]
            break
    state = {}
    for k, v in ckpt.items():
        if not torch.is_tensor(v):
            raise CheckpointError(
                f"{source} is neither a state dict nor a dict with 'model'/'module': key {k!r} is a {type(v).__name__}"
            )
        for prefix in _WRAPPER_PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix) :]
        state[k] = v
    if not state:
        raise CheckpointError(f"{source} contains no tensors")
    return state


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

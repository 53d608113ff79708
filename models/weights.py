"""The one weights reader: every file or folder users have, as model weights in VideoMAE's key layout.

Public API:

* `read_state_dict(src, model=None, model_key=None)`: the weights of any source, wrappers stripped,
  transformers names mapped to ours. Sources: ``.pth`` / ``.pt`` / ``.bin`` checkpoints (``model`` /
  ``module`` / bare; ours and the reference's training checkpoints), DeepSpeed checkpoint folders
  (``mp_rank_00_model_states.pt``), ``.safetensors`` files, transformers VideoMAE folders
  (``config.json`` plus ``model.safetensors``, ``pytorch_model.bin`` or a sharded ``*.index.json``)
  of ``VideoMAEForPreTraining``, ``VideoMAEModel`` or ``VideoMAEForVideoClassification`` in the
  transformers <= 4 or >= 5 attention layout, model-zoo names, ``hf://org/name[@rev]`` Hub snapshots
  and URLs (`models.zoo.resolve`).
* `read_checkpoint(path)`: a whole checkpoint file (weights, optimizer, epoch, args ...), for resuming.
* `extract_state_dict(ckpt)`: the weights inside such a container.
* `recorded_metadata(src)`, `read_hf_config(folder)`, `deepspeed_model_file(folder)`: what a source
  records beside its weights, and which kind of folder it is.

Every failure is a `CheckpointError` with one line that names the file. Files are read with
``weights_only=True``: a checkpoint that needs arbitrary unpickling is refused, never executed. The
one type beyond tensors and containers let through is the ``argparse.Namespace`` the reference's
training code stores under ``'args'`` (spec §8). Fitting the weights to a model is `models.checkpoint`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import struct
from collections.abc import Mapping

import torch
from torch import Tensor, nn

# Prefixes that wrap the model in checkpoints we produce or accept.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# The globals that checkpoints written by the reference's training code pickle besides tensors and
# containers (spec §8): VideoMAE / MMKD ``utils.save_model`` / ``save_module`` store the run's
# ``argparse.Namespace`` as ``'args'``, and so may a DeepSpeed client state; everything else in those
# files (optimizer, GradScaler and DeepSpeed bookkeeping) is plain. A Namespace is rebuilt from the
# plain values of its ``__dict__`` only, so allowing it keeps the load weights-only.
REFERENCE_GLOBALS = (argparse.Namespace,)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


# transformers' weight file names, in the order from_pretrained prefers them
_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# DeepSpeed's (ZeRO stage 0-2) file of the model weights in a checkpoint tag folder
DEEPSPEED_MODEL_FILE = "mp_rank_00_model_states.pt"


def read_state_dict(
    path: str | os.PathLike, model: nn.Module | None = None, model_key: str | None = None
) -> dict[str, Tensor]:
    """The weights at ``path`` with VideoMAE's key names (wrappers stripped, CPU tensors).

    ``model``: when given and ``path`` is a transformers folder, its config.json must describe
    the same architecture (width, depth, heads, patch, tubelet, frames, image size, decoder
    sizes, pooling); otherwise `CheckpointError` names the first field that differs.
    ``model_key``: for checkpoint files, the reference's ``--model_key``: the first of its
    ``|``-separated entries that the file holds (e.g. ``model_ema``), else the whole file.
    ``path`` may also be a model-zoo name, ``hf://org/name[@revision]`` or a URL (`models.zoo.resolve`).
    """
    # here, not at the top: both take their error class from this module (and `python -m models.zoo`
    # must not import itself first)
    from . import hf
    from .zoo import resolve

    path = resolve(path)  # a zoo name, hf://org/name[@rev] or URL -> local path; a local path unchanged
    if os.path.isdir(path) and deepspeed_model_file(path):
        state = _read_weights(deepspeed_model_file(path), path, model_key)
    elif os.path.isdir(path):
        config = read_hf_config(path)
        if model is not None:
            hf.check_config(config, model, path)
        state = _read_weights(_hf_weight_file(path), path)
    else:
        state = _read_weights(path, path, model_key)
    if hf.is_hf_layout(state):
        state = hf.from_hf(state)
    return state


def recorded_metadata(src: str) -> dict:
    """What a file records beside its weights: ``model_args`` and the training ``args`` ({} for a folder)."""
    if os.path.isdir(src):
        return {}
    if src.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(src, "pt") as fh:
            raw = (fh.metadata() or {}).get("model_args")
        return {"model_args": json.loads(raw)} if raw else {}
    ckpt = read_checkpoint(src, mmap=True)
    return {"model_args": ckpt.get("model_args"), "args": ckpt.get("args") or {}}


def read_hf_config(folder: str) -> dict:
    """config.json of a transformers model folder; `CheckpointError` if missing or not VideoMAE."""
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(
            f"{folder} is a folder without config.json; give a checkpoint file or a transformers model folder"
        )
    try:
        with open(cfg_path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{cfg_path} is not readable JSON: {err}") from None
    if not isinstance(config, dict) or config.get("model_type") != "videomae":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(f"{cfg_path} describes a {kind!r} model, not a transformers VideoMAE")
    return config


def _hf_weight_file(folder: str) -> str:
    for name in _HF_WEIGHTS:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise CheckpointError(
        f"{folder} has a config.json but no weights (expected one of {', '.join(_HF_WEIGHTS)})"
    )


def _read_weights(path: str, source: str, model_key: str | None = None) -> dict[str, Tensor]:
    if path.endswith(".index.json"):
        return _read_sharded(path, source)
    if path.endswith(".safetensors"):
        return extract_state_dict(_read_safetensors(path), source)
    ckpt = read_checkpoint(path)
    used = next((k for k in (model_key or "").split("|") if k and k in ckpt), None)
    if used is None:
        used = next((k for k in ("model", "module", "state_dict") if k in ckpt), None)
    state = extract_state_dict({"model": ckpt[used]} if used else ckpt, source)
    parts = _left_out(ckpt, used)
    if parts:  # e.g. a reference training checkpoint: say what was not taken from it
        print(f"{source}: read {used!r} ({len(state)} tensors); left out: {', '.join(parts)}")
    return state


def deepspeed_model_file(folder: str) -> str | None:
    """The model-states file of a DeepSpeed checkpoint folder: a tag folder (``checkpoint-<epoch>/``
    as the reference's ``--enable_deepspeed`` runs write it) or its parent, through DeepSpeed's
    ``latest`` file."""
    tag = folder
    latest = os.path.join(folder, "latest")
    if os.path.isfile(latest):
        with open(latest, encoding="utf-8") as fh:
            tag = os.path.join(folder, fh.read().strip())
    path = os.path.join(tag, DEEPSPEED_MODEL_FILE)
    return path if os.path.isfile(path) else None


def _read_safetensors(path: str) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None


def _read_sharded(index_path: str, source: str) -> dict[str, Tensor]:
    try:
        with open(index_path, encoding="utf-8") as fh:
            weight_map: Mapping[str, str] = json.load(fh)["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index_path} is not a transformers shard index: {err}") from None
    folder = os.path.dirname(index_path)
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(_read_weights(os.path.join(folder, shard), source))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(
            f"{source}: the shards lack {len(missing)} weights named in the index, e.g. {missing[0]}"
        )
    return state


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


def _left_out(ckpt: Mapping, used: str | None) -> list[str]:
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

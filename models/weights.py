"""`read_state_dict`: model weights in VideoMAE's key layout from any file or folder users have.

Sources: ``.pth`` / ``.pt`` / ``.bin`` checkpoints (``model`` / ``module`` / bare, weights-only; the
reference's training checkpoints too), DeepSpeed checkpoint folders (``mp_rank_00_model_states.pt``),
``.safetensors`` files, and transformers VideoMAE folders (``config.json`` plus ``model.safetensors``,
``pytorch_model.bin`` or a sharded ``*.index.json``) of ``VideoMAEForPreTraining``, ``VideoMAEModel``
or ``VideoMAEForVideoClassification``, in the transformers <= 4 or >= 5 attention layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from torch import Tensor, nn

from . import hf
from .checkpoint import CheckpointError, extract_state_dict, left_out, read_checkpoint

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
    from .zoo import resolve  # here, not at the top: `python -m models.zoo` must not import itself first

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
    parts = left_out(ckpt, used)
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

"""Converts checkpoints between this project (VideoMAE layout) and transformers' VideoMAE folders.

    python -m models.convert to-hf SRC OUT_DIR [--model NAME] [--num_classes N] [--input_size N] [--num_frames N]
    python -m models.convert from-hf SRC_DIR OUT.pth|OUT.safetensors

``to-hf``: pre-training checkpoints -> ``VideoMAEForPreTraining``, distilled students ->
``VideoMAEModel`` (encoder only; the alignment heads are dropped), fine-tuned classifiers ->
``VideoMAEForVideoClassification``. Checkpoints written here record the model's constructor
arguments, so no flags are needed; other files need ``--model`` and the clip sizes.
``from-hf``: the weights in VideoMAE's layout, plus ``model_args`` to rebuild the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import Tensor, nn

from common.files import atomic_path, atomic_write_text

from . import hf, registry
from .weights import CheckpointError, read_hf_config, read_state_dict, recorded_metadata


class ConvertError(CheckpointError):
    """A conversion that cannot be done as asked; the message says what to pass."""


def source_kind(state: dict[str, Tensor]) -> str:
    if any(k.startswith("student.") for k in state):
        return "distilled"
    if any(k.startswith("decoder.") for k in state):
        return "pretraining"
    if any(k.startswith("encoder.") for k in state):
        return "encoder"
    return "classification"


def _model_state(state: dict[str, Tensor], kind: str) -> dict[str, Tensor]:
    """The weights the exported model holds: the student without its alignment heads."""
    if kind != "distilled":
        return state
    return {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}


def build_model(
    src: str, state: dict[str, Tensor], kind: str, opts: argparse.Namespace, model_args: dict | None
) -> nn.Module:
    """Our model for ``state``: from the checkpoint's ``model_args`` or from --model and the sizes."""
    sizes = {}
    if opts.input_size:
        sizes["img_size"] = opts.input_size
    if model_args and not opts.model:
        if opts.num_frames:
            sizes["num_frames" if "num_frames" in model_args["kwargs"] else "all_frames"] = opts.num_frames
        if opts.num_classes is not None:
            sizes["num_classes"] = opts.num_classes
        return registry.rebuild(model_args, **sizes)
    if not opts.model:
        raise ConvertError(
            f"{src} does not record its model's constructor arguments; pass --model (and --input_size / "
            "--num_frames / --num_classes as trained)"
        )
    classifier = kind == "classification"
    if opts.model.startswith("vit_") != classifier:
        want = "a vit_* classifier" if classifier else "a pretrain_videomae_* model"
        raise ConvertError(f"--model {opts.model}: {src} holds {kind} weights, which need {want} name")
    if classifier:
        sizes["num_classes"] = opts.num_classes if opts.num_classes is not None else len(state["head.bias"])
        sizes["use_mean_pooling"] = "fc_norm.weight" in state
        if opts.num_frames:
            sizes["all_frames"] = opts.num_frames
    else:
        sizes["decoder_depth"] = len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")})
        if opts.num_frames:
            sizes["num_frames"] = opts.num_frames
    import timm

    if not timm.is_model(opts.model):
        raise ConvertError(
            f"--model {opts.model!r} is unknown; choose one of {', '.join(registry.PRETRAIN_MODELS + registry.FINETUNE_MODELS)}"
        )
    return timm.create_model(opts.model, **sizes)


def load_strict(model: nn.Module, state: dict[str, Tensor], src: str) -> None:
    own = model.state_dict()
    if kind_has_unused_norm(model, state):
        state = {k: v for k, v in state.items() if k != "encoder.norm.weight" and k != "encoder.norm.bias"}
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if bad or missing or unexpected:
        detail = (
            f"{bad[0]} is {tuple(state[bad[0]].shape)} in the file, {tuple(own[bad[0]].shape)} in the model"
            if bad
            else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
        raise ConvertError(
            f"{src} does not fit the model: {detail}; pass the --model / sizes it was trained with"
        )
    model.load_state_dict(state, strict=True)


def kind_has_unused_norm(model: nn.Module, state: dict[str, Tensor]) -> bool:
    """An encoder-only model has no final norm; official pre-training weights carry one."""
    return getattr(model, "decoder_depth", None) == 0 and "encoder.norm.weight" in state


def _class_names(args: dict, path: str | None, n: int) -> list[str] | None:
    if path is None:
        data = args.get("data_path")
        guess = os.path.join(data, "classes.txt") if isinstance(data, str) else None
        path = guess if guess and os.path.isfile(guess) else None
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        names = [line.strip() for line in fh if line.strip()]
    if len(names) != n:
        raise ConvertError(f"--class_names {path} lists {len(names)} names for {n} classes")
    return names


def _write_folder(out_dir: str, config: dict, state: dict[str, Tensor]) -> None:
    """config.json + model.safetensors, written into a temporary sibling folder and renamed."""
    from safetensors.torch import save_file

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise ConvertError(f"{out_dir} exists and is not empty; choose a new folder")
    with atomic_path(out_dir) as tmp:  # the folder appears whole, or not at all
        tmp.mkdir()  # its files written atomically too: each is fsynced before the folder's rename
        atomic_write_text(tmp / "config.json", json.dumps(config, indent=2, sort_keys=True))
        with atomic_path(tmp / "model.safetensors") as weights:
            save_file(state, str(weights), metadata={"format": "pt"})


def to_hf_folder(src: str, out_dir: str, opts: argparse.Namespace) -> str:
    """Writes ``out_dir`` for transformers' ``from_pretrained``; returns the exported class name."""
    state = read_state_dict(src)
    kind = source_kind(state)
    state = _model_state(state, kind)
    meta = recorded_metadata(src)
    model = build_model(src, state, kind, opts, meta.get("model_args"))
    load_strict(model, state, src)
    export_state, hf_kind = hf.to_hf(model.state_dict())
    args = meta.get("args") or {}
    names = _class_names(args, opts.class_names, model.num_classes) if hf_kind == "classification" else None
    config = hf.make_config(
        model, hf_kind, norm_pix_loss=bool(args.get("normlize_target", True)), class_names=names
    )
    _write_folder(out_dir, config, export_state)
    return hf.ARCHITECTURES[hf_kind]


def from_hf_file(src_dir: str, out_path: str) -> str:
    """Writes the weights of a transformers folder in VideoMAE's layout (+ ``model_args``)."""
    if not os.path.isdir(src_dir):
        raise ConvertError(f"{src_dir} is not a folder; from-hf reads a transformers model folder")
    config = read_hf_config(src_dir)
    state = read_state_dict(src_dir)
    name, kwargs = hf.model_kwargs(config)
    model = registry.rebuild({"name": name, "kwargs": kwargs})
    load_strict(model, dict(state), src_dir)
    model_args = {"name": name, "kwargs": kwargs}
    if not out_path.endswith((".safetensors", ".pth", ".pt")):
        raise ConvertError(f"{out_path}: the output must end in .pth, .pt or .safetensors")
    with atomic_path(out_path) as tmp:
        if out_path.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in state.items()},
                str(tmp),
                metadata={"model_args": json.dumps(model_args)},
            )
        else:
            torch.save({"model": state, "model_args": model_args, "hf_config": config}, tmp)
    return name


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.convert", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("to-hf", help="our checkpoint -> transformers VideoMAE folder")
    t.add_argument("src", help="checkpoint (.pth / .safetensors) or transformers folder")
    t.add_argument("out_dir", help="new folder for config.json + model.safetensors")
    t.add_argument("--model", default=None, help="timm name; needed when SRC does not record model_args")
    t.add_argument("--num_classes", type=int, default=None)
    t.add_argument("--input_size", type=int, default=None)
    t.add_argument("--num_frames", type=int, default=None)
    t.add_argument("--class_names", default=None, help="file with one class name per line (id2label)")
    f = sub.add_parser("from-hf", help="transformers VideoMAE folder -> our checkpoint")
    f.add_argument("src_dir")
    f.add_argument("out", help="OUT.pth or OUT.safetensors")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    try:
        if opts.command == "to-hf":
            cls = to_hf_folder(opts.src, opts.out_dir, opts)
            print(f"wrote {cls} to {opts.out_dir} (config.json, model.safetensors)")
        else:
            name = from_hf_file(opts.src_dir, opts.out)
            print(f"wrote {opts.out} (VideoMAE layout; rebuild with model_args, based on {name})")
    except (CheckpointError, ValueError, TypeError) as err:
        print(f"models.convert: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

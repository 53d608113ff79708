"""One video through a trained classifier: the checkpoint's model, its class names, the test views.

`load_classifier` builds the classifier a checkpoint describes (our fine-tuning checkpoints and
`models.convert` files record ``model_args``, the reference's record ``args.model``, a transformers
``VideoMAEForVideoClassification`` folder its config.json) and loads it strictly: a head of another
class count or another architecture is an error, never a silently re-initialised layer.
`predict_video` averages the softmax of every test view (``segments`` clips x ``crops`` crops,
the fine-tuning test's sampling and transform), as the multi-view merge does (`engine.evaluation`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datasets import VideoDecodeError
from datasets.annotations import VideoRecord
from datasets.decoding import Decoder, open_video
from datasets.loading import read_clip
from datasets.sampling import ClipSampler
from datasets.transforms import build_eval_transform
from engine.args import UsageError
from engine.evaluation import video_to_device
from models import hf
from models.convert import build_model, load_strict, recorded_metadata, source_kind
from models.weights import deepspeed_model_file, read_hf_config, read_state_dict
from models.zoo import resolve

# the clip settings a training run's ``args`` records (ours and the reference's use the same names)
RECORDED = ("num_frames", "sampling_rate", "input_size", "test_num_segment", "test_num_crop")


@dataclass
class Classifier:
    """A loaded classifier and what its checkpoint tells about it."""

    model: nn.Module
    class_names: list[str] | None  # a transformers config's id2label, in class order
    recorded: dict  # RECORDED settings found in the checkpoint (training args or config.json)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def num_frames(self) -> int:
        return self.model.patch_embed.num_frames

    @property
    def input_size(self) -> int:
        return self.model.patch_embed.img_size


def load_classifier(
    src: str, model_name: str | None = None, num_frames: int | None = None, input_size: int | None = None
) -> Classifier:
    """The classifier at ``src`` (file, folder, zoo name or ``hf://`` id), in eval mode on the CPU.

    ``model_name`` / ``num_frames`` / ``input_size`` override what the checkpoint records.
    """
    local = resolve(src)
    # read_state_dict says on stdout which parts of a training checkpoint it leaves out (optimizer,
    # ...): irrelevant here, and stdout carries only the result (--json)
    with contextlib.redirect_stdout(io.StringIO()):
        state = read_state_dict(local)
    kind = source_kind(state)
    if kind != "classification" or "head.weight" not in state:
        raise UsageError(
            f"--checkpoint {src} holds {kind} weights without a classifier head; "
            "fine-tune it first (run_class_finetuning.py) or give a fine-tuned checkpoint"
        )
    model_args, recorded, names = _describe(local)
    trained_as = recorded.pop("model", None)  # the reference's args.model, when there is no model_args
    model_name = model_name or (None if model_args else trained_as)
    if not model_args and not model_name:
        raise UsageError(
            f"--checkpoint {src} does not record its architecture; pass --model (the vit_* name it was trained with)"
        )
    opts = argparse.Namespace(  # what models.convert builds from: --model, else model_args
        model=model_name,
        num_frames=num_frames or recorded.get("num_frames"),
        input_size=input_size or recorded.get("input_size"),
        num_classes=None,
    )
    try:
        model = build_model(src, state, kind, opts, model_args)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--checkpoint {src}: {err}; adjust --num_frames / --input_size") from None
    load_strict(model, state, src)
    return Classifier(model.eval().requires_grad_(False), names, recorded)


def _describe(local: str) -> tuple[dict | None, dict, list[str] | None]:
    """(model_args, recorded settings incl. ``model`` when known, id2label names) of a checkpoint."""
    if os.path.isdir(local) and not deepspeed_model_file(local):
        config = read_hf_config(local)
        name, kwargs = hf.model_kwargs(config)
        id2label = config.get("id2label") or {}
        keys = [str(i) for i in range(len(id2label))]
        names = [str(id2label[k]) for k in keys] if keys and set(keys) == set(id2label) else None
        recorded = {"num_frames": kwargs["all_frames"], "input_size": kwargs["img_size"]}
        return {"name": name, "kwargs": kwargs}, recorded, names
    meta = recorded_metadata(local)
    args = meta.get("args") or {}
    recorded = {k: args[k] for k in RECORDED if isinstance(args.get(k), int) and args[k] > 0}
    if isinstance(args.get("model"), str):
        recorded["model"] = args["model"]
    return meta.get("model_args"), recorded, None


def read_class_names(path: str) -> list[str]:
    """Class names in class order from ``path``.

    ``.json``: a list of names, ``{"name": index}`` (Kinetics label maps) or ``{"index": "name"}``
    (transformers' id2label). ``.csv``: ``index,name`` rows (a header such as ``id,name`` is skipped)
    or one name per row. Anything else: one name per line. Blank lines are skipped; names lose
    surrounding whitespace and double quotes (some Kinetics maps quote them).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--class_names {path} cannot be read: {err}") from None
    if path.lower().endswith(".json"):
        by_index = _json_names(path, text)
    elif path.lower().endswith(".csv"):
        by_index = _csv_names(path, text)
    else:
        by_index = dict(enumerate(line for line in text.splitlines() if line.strip()))
    if sorted(by_index) != list(range(len(by_index))):
        raise UsageError(
            f"--class_names {path}: the class indices are not 0 .. {len(by_index) - 1}, each once"
        )
    names = [by_index[i].strip().strip('"').strip() for i in range(len(by_index))]
    if not names:
        raise UsageError(f"--class_names {path} lists no names")
    return names


def _json_names(path: str, text: str) -> dict[int, str]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--class_names {path} is not valid JSON: {err}") from None
    if isinstance(obj, list) and all(isinstance(n, str) for n in obj):
        return dict(enumerate(obj))
    values = list(obj.values()) if isinstance(obj, dict) else []
    if values and all(isinstance(v, int) for v in values) and len(set(values)) == len(values):
        return {v: k for k, v in obj.items()}
    if isinstance(obj, dict) and all(isinstance(v, str) and _is_int(k) for k, v in obj.items()):
        return {int(k): v for k, v in obj.items()}
    raise UsageError(
        f'--class_names {path}: expected a list of names, {{"name": index}} or {{"index": "name"}}'
    )


def _csv_names(path: str, text: str) -> dict[int, str]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(f.strip() for f in r)]
    if rows and len(rows[0]) >= 2 and not _is_int(rows[0][0]):
        rows = rows[1:]  # a header (Kinetics' "id,name")
    if all(len(r) == 1 for r in rows):
        return {i: r[0] for i, r in enumerate(rows)}
    if not all(len(r) == 2 and _is_int(r[0]) for r in rows):
        raise UsageError(f"--class_names {path}: expected index,name rows or one name per row")
    return {int(r[0]): r[1] for r in rows}


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def label_names(classifier: Classifier, path: str | None) -> list[str]:
    """--class_names, else the checkpoint's id2label, else ``class_<i>``; one per class."""
    n = classifier.num_classes
    if path:
        names = read_class_names(path)
        if len(names) != n:
            raise UsageError(
                f"--class_names {path} lists {len(names)} names but the classifier has {n} classes; "
                "give one name per class, in class order"
            )
        return names
    if classifier.class_names and len(classifier.class_names) == n:
        return classifier.class_names
    return [f"class_{i}" for i in range(n)]


def check_video(path: str, decoder: Decoder = "auto") -> None:
    """`UsageError` when ``path`` is not a video file or frame folder the loader can open."""
    try:
        with _native_stderr_silenced(), open_video(path, decoder) as video:
            if len(video) < 1:
                raise VideoDecodeError(f"{path} has no frames")
    except VideoDecodeError as err:
        raise UsageError(
            f"VIDEO {path} cannot be read ({err}); give a video file (mp4, webm, avi, mkv, ...) or a folder of frames"
        ) from None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null: decord logs a file it cannot open from C++ (no log level
    silences it), and the `VideoDecodeError` it raises carries the same text into our one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@torch.no_grad()
def predict_video(
    model: nn.Module,
    path: str,
    *,
    num_frames: int,
    sampling_rate: int,
    input_size: int,
    short_side_size: int,
    segments: int,
    crops: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
    decoder: Decoder = "auto",
) -> Tensor:
    """Mean over the ``segments x crops`` views of softmax(model(view)): float64 ``[K]``.

    The views are the fine-tuning test's (`datasets.build_multiview_dataset`): ``segments`` evenly
    spaced clips of ``num_frames`` frames every ``sampling_rate``, short side -> ``short_side_size``,
    ``crops`` square crops of ``input_size`` along the long side. One forward pass per clip.
    """
    record = VideoRecord(path, 0, None, "VIDEO")  # the label is unused
    sampler = ClipSampler("test", num_frames, sampling_rate, False, segments)
    transform = build_eval_transform(input_size, short_side_size, crops, normalize=False)
    model.eval()
    probs = []
    for chunk in range(segments):
        try:
            clip = read_clip(record, sampler, decoder, chunk=chunk)  # uint8 [T, H, W, 3]
        except VideoDecodeError as err:
            raise UsageError(f"VIDEO {path} cannot be decoded: {err}") from None
        views = torch.stack([transform(clip, crop) for crop in range(crops)])  # uint8 [crops, 3, T, S, S]
        with autocast():
            logits = model(video_to_device(views, device)).float()  # [crops, K]
        probs.append(logits.double().softmax(dim=-1).cpu())  # float64, as the multi-view merge
    return torch.cat(probs).mean(dim=0)


def top_k(probs: Tensor, names: list[str], k: int) -> list[dict]:
    """``[{"label", "prob"}, ...]``: the ``k`` most probable classes (all when fewer), best first."""
    values, indices = probs.topk(min(k, len(probs)))
    return [{"label": names[i], "prob": float(p)} for p, i in zip(values.tolist(), indices.tolist())]

"""Evaluation: one-clip validation, the multi-view test, its per-rank view files and their merge,
and which checkpoint the reference's ``--eval`` tests.

- :func:`evaluate`: one clip per video, top-1 / top-5 / loss (the fine-tuning epochs' validation).
- :func:`predict_views` and :func:`multiview_test`: `test_num_segment` x `test_num_crop` views per
  video; every rank writes its views, rank 0 merges them.
- The view files (fixture README §6), one per rank, in the reference's text format::

      <header line, ignored by the merge>
      <video_id> [v0, v1, ..., vK-1] <label> <chunk> <crop>

  :func:`merge_views` reads all rank files, softmaxes each view's logits (float64), drops duplicated
  views (DistributedSampler pads the last batch by repeating samples), averages the kept views per
  video and scores the mean.
- ``--eval``: :func:`eval_source` chooses the checkpoint, :func:`load_for_eval` loads it strictly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor, nn

from common.cli import UsageError
from common.files import atomic_write_text
from engine import preempt
from engine.checkpoint import CheckpointManager
from engine.distributed import DistEnv, all_reduce_mean, barrier, broadcast_object, get_world_size
from engine.logger import MetricLogger
from models.targets import normalized
from models.weights import CheckpointError, deepspeed_model_file, read_state_dict

if TYPE_CHECKING:
    from engine.config import RunConfig


def video_to_device(video: Tensor, device: torch.device) -> Tensor:
    """Clips to ``device``; uint8 clips (what the engine's data sets return) are normalised there."""
    return normalized(video.to(device, non_blocking=True))


# one-clip validation and the multi-view prediction


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device,
    autocast,
    print_freq: int = 10,
    reduce: bool = True,
) -> dict:
    """One-clip validation. Broken videos (``valid`` False) are excluded and counted, never replaced.

    ``reduce``: the loader is sharded over ranks (``--dist_eval``), so sum the counts over ranks.
    """
    model.eval()
    meters = MetricLogger()
    correct1 = correct5 = seen = excluded = 0
    loss_sum = 0.0
    for batch in meters.log_every(loader, print_freq, "Val"):
        if preempt.stop_requested():  # local: ranks may hold different numbers of batches
            preempt.leave("validation interrupted")
        valid = torch.as_tensor(batch.get("valid", torch.ones(len(batch["label"]), dtype=torch.bool)))
        excluded += int((~valid).sum())
        if not valid.any():
            continue
        video = video_to_device(batch["video"][valid], device)
        label = torch.as_tensor(batch["label"])[valid].to(device)
        with autocast():
            logits = model(video).float()
        loss_sum += float(torch.nn.functional.cross_entropy(logits, label, reduction="sum"))
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top5[:, 0] == label).sum())
        correct5 += int((top5 == label[:, None]).any(dim=1).sum())
        seen += len(label)
    totals = torch.tensor([correct1, correct5, seen, excluded, loss_sum], dtype=torch.float64)
    if reduce:
        totals = all_reduce_mean(totals) * get_world_size()
    c1, c5, n, ex, ls = totals.tolist()
    if ex:
        print(f"validation: {int(ex)} broken video(s) excluded from the metric")
    n = max(n, 1)
    return {
        "acc1": 100 * c1 / n,
        "acc5": 100 * c5 / n,
        "loss": ls / n,
        "num_videos": int(n),
        "excluded": int(ex),
    }


@torch.no_grad()
def predict_views(
    model: nn.Module, loader: Iterable[dict], device: torch.device, autocast, print_freq: int = 10
):
    """Multi-view test: yields (video_id, logits list, label, chunk, crop) per valid view; counts broken ones."""
    model.eval()
    meters = MetricLogger()
    rows, broken = [], set()
    for batch in meters.log_every(loader, print_freq, "Test"):
        if preempt.stop_requested():
            preempt.leave(
                "multi-view test interrupted (nothing of it written); training checkpoints are complete"
            )
        valid = torch.as_tensor(batch["valid"])
        for j in torch.nonzero(~valid).flatten().tolist():
            broken.add(batch["video_id"][j])
        if not valid.any():
            continue
        with autocast():
            logits = model(video_to_device(batch["video"][valid], device)).float().cpu()
        idx = torch.nonzero(valid).flatten().tolist()
        for row, j in zip(logits, idx):
            rows.append(
                (
                    batch["video_id"][j],
                    row.tolist(),
                    int(batch["label"][j]),
                    int(batch["chunk"][j]),
                    int(batch["crop"][j]),
                )
            )
    return rows, sorted(broken)


# the view files and their merge

Dedupe = Literal["pair", "reference"]


def format_view_line(
    video_id: str,
    logits: torch.Tensor | np.ndarray | Sequence[float],
    label: int | torch.Tensor,
    chunk: int | torch.Tensor,
    crop: int | torch.Tensor,
) -> str:
    """One view line, ``"<video_id> [v0, v1, ...] <label> <chunk> <crop>\\n"``.

    The logits are written as python's ``str()`` of a list of floats, exactly as the reference
    (a float16 / float32 tensor keeps its exact value). ``logits`` is ``[K]``.

    Raises:
        ValueError: a video id with ``[``, ``]`` or a newline, or logits that are not 1-D.
    """
    if not video_id or any(c in video_id for c in "[]\n\r"):
        raise ValueError(f"video id {video_id!r} must be non-empty and contain no '[', ']' or newline")
    if isinstance(logits, torch.Tensor):
        values = logits.detach().cpu().tolist()
    elif isinstance(logits, np.ndarray):
        values = logits.tolist()
    else:
        values = [float(v) for v in logits]
    if not isinstance(values, list) or any(isinstance(v, list) for v in values):
        raise ValueError(f"logits of {video_id!r} must be 1-D [K]")
    values = [float(v) for v in values]
    return f"{video_id} {values} {int(label)} {int(chunk)} {int(crop)}\n"


def write_rank_file(path: str | os.PathLike[str], lines: Iterable[str], header: str = "") -> Path:
    """Write one rank's view lines atomically (temp file + rename), after a header line.

    The merge always skips the first line, so a header line is always written (empty when
    ``header`` is ""); the reference puts its last-batch accuracy there.
    """
    path = Path(path)
    if "\n" in header:
        raise ValueError("the header must be a single line")
    text = header + "\n" + "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return atomic_write_text(path, text)


def softmax_f64(logits: np.ndarray) -> np.ndarray:
    """Softmax of a ``[K]`` vector in float64: subtract the max, exp, divide by the sum."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


@dataclass
class MergeResult:
    """Merged multi-view scores; per-video lists follow ``video_names`` (first-seen order)."""

    top1: float
    """Top-1 accuracy over videos, percent."""
    top5: float
    """Top-5 accuracy over videos, percent."""
    video_names: list[str]
    mean_prob: np.ndarray
    """``[V, K]`` float64 mean of the kept views' softmax."""
    pred: list[int]
    label: list[int]
    """Label of each video's last kept view."""
    n_views_used: list[int]
    video_top1: list[float] = field(default_factory=list)
    """1.0 where the video's argmax is its label."""
    video_top5: list[float] = field(default_factory=list)
    """1.0 where the label is among the video's 5 highest scores."""


@dataclass
class _View:
    key: str
    name: str
    probs: np.ndarray
    label: int
    chunk: str
    crop: str
    pair: tuple[int, int]


def _parse_line(line: str, file: Path, lineno: int) -> _View:
    def bad(why: str) -> ValueError:
        return ValueError(f"{file}:{lineno}: malformed view line ({why}): {line.rstrip()!r}")

    if line.count("[") != 1 or line.count("]") != 1 or line.index("[") > line.index("]"):
        raise bad("expected exactly one '[...]' logits list")
    key, rest = line.split("[", 1)
    body, tail = rest.split("]", 1)
    fields = tail.split(" ")
    # The reference reads label/chunk/crop as the 2nd-4th fields after "]" (a single space first).
    if len(fields) != 4 or fields[0] != "" or not key.strip():
        raise bad("expected '<video_id> [logits] <label> <chunk> <crop>'")
    label, chunk, crop = fields[1:]
    try:
        values = np.array([float(v) for v in body.split(",")], dtype=np.float64)
        label_int, pair = int(label), (int(chunk), int(crop))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    return _View(key, key.strip(), softmax_f64(values), label_int, chunk, crop, pair)


def _read_views(paths: Sequence[str | os.PathLike[str]]) -> list[_View]:
    views = []
    for path in map(Path, paths):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        # Line 1 is the header; blank lines (e.g. a trailing one) carry no view.
        for lineno, raw in enumerate(lines[1:], start=2):
            line = raw.strip()
            if line:
                views.append(_parse_line(line, path, lineno))
    return views


def merge_views(paths: Sequence[str | os.PathLike[str]], dedupe: Dedupe = "pair") -> MergeResult:
    """Merge rank files (given in rank order) into per-video mean softmax and top-1 / top-5.

    Args:
        paths: the rank files.
        dedupe: ``"pair"`` drops a view whose integer (chunk, crop) pair was already seen for
            the video; ``"reference"`` reproduces the reference bit for bit, which keys on the
            string concatenation chunk+crop (so (1, 12) and (11, 2) collide) and keys videos on
            the raw text before ``[``.

    Raises:
        ValueError: malformed line (names file and line), no views at all, unknown ``dedupe``,
            or views of one video with different numbers of classes.
    """
    if dedupe not in ("pair", "reference"):
        raise ValueError(f"dedupe must be 'pair' or 'reference', got {dedupe!r}")
    kept: dict[str, list[np.ndarray]] = {}
    seen: dict[str, set[object]] = {}
    labels: dict[str, int] = {}
    names: dict[str, str] = {}
    for view in _read_views(paths):
        key = view.key if dedupe == "reference" else view.name
        pos = view.chunk + view.crop if dedupe == "reference" else view.pair
        kept.setdefault(key, [])
        names.setdefault(key, view.name)
        if pos in seen.setdefault(key, set()):
            continue
        seen[key].add(pos)
        kept[key].append(view.probs)
        labels[key] = view.label
    if not kept:
        raise ValueError(f"no view lines in {[str(p) for p in paths]}")

    means, preds, hits1, hits5 = [], [], [], []
    for key, probs in kept.items():
        if len({p.shape for p in probs}) != 1:
            raise ValueError(f"views of video {names[key]!r} have different numbers of classes")
        mean = np.mean(np.stack(probs), axis=0)
        pred = int(np.argmax(mean))
        means.append(mean)
        preds.append(pred)
        hits1.append(float(pred == labels[key]))
        hits5.append(float(labels[key] in np.argsort(-mean)[:5]))
    if len({m.shape for m in means}) != 1:
        raise ValueError("videos have different numbers of classes")
    return MergeResult(
        top1=float(np.mean(hits1) * 100),
        top5=float(np.mean(hits5) * 100),
        video_names=list(names.values()),
        mean_prob=np.stack(means),
        pred=preds,
        label=list(labels.values()),
        n_views_used=[len(p) for p in kept.values()],
        video_top1=hits1,
        video_top5=hits5,
    )


# the multi-view test


def multiview_test(
    model,
    loader,
    env: DistEnv,
    output_dir: str,
    autocast,
    dedupe: str = "pair",
    print_freq: int = 10,
    folder_name: str = "test_views",
) -> dict:
    """Scores `test_num_segment` x `test_num_crop` views per video and merges softmax averages.

    Broken videos are excluded from the metric and reported by name and count, never replaced.
    """
    rows, broken = predict_views(model, loader, env.device, autocast, print_freq)
    folder = Path(output_dir) / folder_name
    if env.is_main:
        os.makedirs(folder, exist_ok=True)
    barrier()
    write_rank_file(folder / f"{env.rank}.txt", [format_view_line(*r) for r in rows])
    broken_file = folder / f"broken_{env.rank}.txt"
    write_rank_file(broken_file, [f"{b}\n" for b in broken])
    barrier()
    if not env.is_main:
        return {}
    files = [folder / f"{r}.txt" for r in range(env.world_size)]
    absent = [f.name for f in files if not f.is_file()]
    if absent:  # ranks on other nodes wrote them into a folder rank 0 does not see
        raise UsageError(
            f"the test views of {len(absent)} rank(s) ({', '.join(absent[:4])}) are not in {folder}: every node "
            "must write into the same --output_dir; give a folder shared by all nodes"
        )
    result = merge_views(files, dedupe=dedupe)
    all_broken = sorted(
        {
            line.strip()
            for r in range(env.world_size)
            for line in (folder / f"broken_{r}.txt").read_text().splitlines()
            if line.strip()
        }
    )
    if all_broken:
        print(
            f"test: {len(all_broken)} broken video(s) excluded from the metric: {', '.join(all_broken[:10])}"
        )
    stats = {
        "top1": result.top1,
        "top5": result.top5,
        "num_videos": len(result.video_names),
        "excluded": len(all_broken),
    }
    print(
        f"multi-view test: top-1 {result.top1:.2f}  top-5 {result.top5:.2f}  over {stats['num_videos']} videos"
    )
    return stats


# the checkpoint --eval tests

_DEEPSPEED_TAG = re.compile(r"^checkpoint-(\d+)$")  # the reference's --enable_deepspeed checkpoint folders


def _epoch_of(path: Path) -> int:
    return int(path.name.removesuffix(".pth").split("-")[1])


def newest_checkpoint(output_dir: str) -> Path | None:
    """The newest checkpoint in ``output_dir`` as the reference's ``auto_load_model`` finds it:
    ``checkpoint-<epoch>.pth`` (ours, mid-epoch ones too, and the reference's) or a DeepSpeed tag
    folder ``checkpoint-<epoch>/``; unreadable files are skipped with a warning."""
    if not os.path.isdir(output_dir):
        return None
    newest = CheckpointManager(output_dir, keep_last=None).latest()
    for folder in Path(output_dir).iterdir():
        found = _DEEPSPEED_TAG.match(folder.name)
        newer = found and (newest is None or int(found[1]) > _epoch_of(newest))
        if newer and folder.is_dir() and deepspeed_model_file(str(folder)):
            newest = folder
    return newest


def eval_source(run: RunConfig) -> str | None:
    """What the reference's ``--eval`` tests (spec §8): ``--resume``, else (``--auto_resume``) the
    newest checkpoint in ``--output_dir``; None: the ``--finetune`` weights the model was built with.
    Chosen on rank 0 and broadcast, so every rank tests the same weights."""
    path = None
    if run.resume:
        path = run.resume
    elif run.auto_resume and run.output_dir:
        newest = newest_checkpoint(run.output_dir)
        path = None if newest is None else str(newest)
    return broadcast_object(path)


def load_for_eval(model: nn.Module, source: str) -> str:
    """Loads a fine-tuned classifier checkpoint (ours, the reference's, DeepSpeed's) strictly, as the
    reference's ``load_state_dict(checkpoint['model'])``: a missing or extra weight, the head
    included, is an error rather than a test of random weights. Returns a one-line summary."""
    try:
        state = read_state_dict(source, model=model, model_key="model|module")
    except CheckpointError as err:
        raise UsageError(f"--eval: {err}") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    misfit = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or misfit:
        first = (missing or unexpected or misfit)[0]
        raise UsageError(
            f"--eval: {source} is not a fine-tuned checkpoint of this classifier ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(misfit)} mis-shaped weights, e.g. {first}); pass --resume with "
            "a fine-tuning checkpoint of the same --model and --nb_classes"
        )
    model.load_state_dict(state, strict=True)
    return f"{len(state)} tensors from {source}"

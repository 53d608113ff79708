"""Frozen-feature extraction: multi-view pooled encoder features of every video of a list, resumably.

The list is cut into shards of ``shard_size`` videos; rank r computes shards r, r + W, ... and
writes each one atomically to ``<out>/shards/shard-<i>.safetensors`` (a killed run skips the
finished shards when relaunched). Rank 0 then merges them in list order into
``features.safetensors`` (``features`` [N, C] float32, ``labels`` [N] int64), ``index.csv``
(row, path, label, views used) and ``broken.txt`` (videos without one readable view: listed,
never written as zeros).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from common.files import atomic_path, atomic_write_text
from datasets import collate_batch
from datasets.classification import VideoClsEvalDataset
from engine.args import UsageError
from engine.distributed import DistEnv, barrier
from engine.evaluation import video_to_device

logger = logging.getLogger("features")
FEATURES_FILE = "features.safetensors"
POOLS = ("mean", "temporal")


def pool_features(model: nn.Module, video: Tensor, pool: str = "mean") -> Tensor:
    """[B, 3, T, H, W] -> pooled features: ``mean`` [B, C] or ``temporal`` [B, T' * C].

    ``mean`` is the classifier's own pooling (`VisionTransformer.forward_features`). ``temporal``
    averages the tokens over space only, once per temporal slice (T' = frames / tubelet), applies
    the same ``fc_norm`` to each slice and concatenates the slices in time order: a clip-wide mean
    cannot tell "up" from "down", the slices' order can.
    """
    if pool == "mean":
        return model.forward_features(video)
    tokens = model.forward_tokens(video).features  # [B, N, C], N = T' * H' * W' in time-major order
    slices = model.patch_embed.grid_size[0]
    b, n, c = tokens.shape
    per_slice = tokens.reshape(b, slices, n // slices, c).mean(2)  # [B, T', C]
    norm = model.fc_norm if model.fc_norm is not None else model.norm
    return norm(per_slice).flatten(1)  # [B, T' * C]


def fingerprint(dataset: VideoClsEvalDataset, settings: dict) -> str:
    """Identifies an extraction: the list (paths, labels) and everything that changes a feature."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for r in dataset.records:
        h.update(f"{r.path}\t{r.label}\n".encode())
    return h.hexdigest()[:16]


def _save_atomic(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _claim_folder(folder: Path, key: str, env: DistEnv) -> None:
    """Rank 0 records the fingerprint; shards of another extraction are an error, never mixed in."""
    stamp = folder / "fingerprint.txt"
    if env.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if stamp.exists() and stamp.read_text().strip() != key:
            raise UsageError(
                f"{folder} holds shards of another extraction (other list, checkpoint or clip settings); "
                "use a new --output_dir or delete that folder"
            )
        atomic_write_text(stamp, key + "\n")
    barrier()


def _extract_shard(
    model: nn.Module,
    dataset: VideoClsEvalDataset,
    videos: range,
    loader_kwargs: dict,
    device,
    autocast,
    bar,
    pool: str,
) -> dict[str, Tensor]:
    """Features of ``videos`` (list indices), each the mean of its readable views' pooled features."""
    views = dataset.num_chunks * dataset.num_crops
    items = range(videos.start * views, videos.stop * views)
    loader = DataLoader(Subset(dataset, items), shuffle=False, collate_fn=collate_batch, **loader_kwargs)
    sums: Tensor | None = None
    counts = torch.zeros(len(videos), dtype=torch.long)
    seen = 0
    for batch in loader:
        valid = torch.as_tensor(batch["valid"], dtype=torch.bool)
        n = len(valid)
        owner = (torch.arange(seen, seen + n) // views)[valid]  # position of each view's video in the shard
        seen += n
        bar.update(n)
        if not valid.any():
            continue
        with torch.no_grad(), autocast():
            video = video_to_device(batch["video"][valid], device)
            feats = pool_features(model, video, pool).float().cpu()
        if sums is None:
            sums = torch.zeros(len(videos), feats.shape[1], dtype=torch.float64)
        sums.index_add_(0, owner, feats.double())
        counts.index_add_(0, owner, torch.ones_like(owner))
    ok = counts > 0
    rows = torch.tensor(list(videos), dtype=torch.long)
    labels = torch.tensor([dataset.records[i].label for i in videos], dtype=torch.long)
    width = model.num_features * (model.patch_embed.grid_size[0] if pool == "temporal" else 1)
    dim = width if sums is None else sums.shape[1]
    features = torch.zeros(0, dim) if sums is None else (sums[ok] / counts[ok, None]).float()
    return {
        "features": features,
        "labels": labels[ok],
        "rows": rows[ok],
        "views": counts[ok],
        "broken": rows[~ok],
    }


def extract_features(
    model: nn.Module,
    dataset: VideoClsEvalDataset,
    out_dir: str | os.PathLike,
    env: DistEnv,
    *,
    settings: dict,
    batch_size: int,
    num_workers: int,
    autocast: Callable[[], AbstractContextManager],
    shard_size: int = 256,
    pool: str = "mean",
) -> dict:
    """Runs (or resumes) the extraction into ``out_dir``; returns counts on rank 0, {} elsewhere."""
    out = Path(out_dir)
    shard_dir = out / "shards"
    _claim_folder(shard_dir, fingerprint(dataset, settings), env)
    n = len(dataset.records)
    shards = [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    mine = [i for i in range(len(shards)) if i % env.world_size == env.rank]
    todo = [i for i in mine if not (shard_dir / f"shard-{i:05d}.safetensors").exists()]
    views = dataset.num_chunks * dataset.num_crops
    loader_kwargs = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=env.device.type == "cuda")
    model.eval().to(env.device)
    total = sum(len(shards[i]) for i in todo) * views
    with tqdm(
        total=total, desc="features", unit="view", disable=None if env.is_main else True, dynamic_ncols=True
    ) as bar:
        for i in todo:
            part = _extract_shard(model, dataset, shards[i], loader_kwargs, env.device, autocast, bar, pool)
            _save_atomic(
                part,
                shard_dir / f"shard-{i:05d}.safetensors",
                {"videos": f"{shards[i].start}-{shards[i].stop}"},
            )
    barrier()
    if not env.is_main:
        return {}
    return merge_shards(dataset, shard_dir, len(shards), out, skipped=len(mine) - len(todo))


def merge_shards(
    dataset: VideoClsEvalDataset, shard_dir: Path, num_shards: int, out: Path, skipped: int = 0
) -> dict:
    """Concatenates the shards in list order; writes the features, index.csv and broken.txt."""
    from safetensors.torch import load_file

    parts = [load_file(str(shard_dir / f"shard-{i:05d}.safetensors")) for i in range(num_shards)]
    cat = {k: torch.cat([p[k] for p in parts]) for k in ("features", "labels", "rows", "views", "broken")}
    _save_atomic(
        {"features": cat["features"], "labels": cat["labels"]}, out / FEATURES_FILE, {"format": "pt"}
    )
    index = [["row", "path", "label", "views"]] + [
        [row, dataset.records[i].path, dataset.records[i].label, views]
        for row, (i, views) in enumerate(zip(cat["rows"].tolist(), cat["views"].tolist()))
    ]
    atomic_write_text(out / "index.csv", _csv(index))
    broken = [dataset.records[i].path for i in cat["broken"].tolist()]
    atomic_write_text(out / "broken.txt", "".join(f"{p}\n" for p in broken))
    for path in broken:
        logger.warning("no readable view of %s: left out of the features (listed in broken.txt)", path)
    return {
        "videos": int(cat["features"].shape[0]),
        "dim": int(cat["features"].shape[1]),
        "broken": len(broken),
        "resumed_shards": skipped,
        "path": str(out / FEATURES_FILE),
    }


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def load_features(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """(features [N, C] float32, labels [N] int64) of a features.safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        data = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UsageError(f"{path} is not a readable features file: {err}") from None
    if "features" not in data or "labels" not in data:
        raise UsageError(
            f"{path} has no 'features' / 'labels' tensors; write it with run_extract_features.py"
        )
    return data["features"].float(), data["labels"].long()


def build_feature_encoder(
    model_name: str, weights: str, *, num_frames: int, input_size: int
) -> tuple[nn.Module, str]:
    """The frozen encoder as a head-less `VisionTransformer` (mean pooling + fc_norm); returns the load report."""
    from engine.build import create
    from models import VisionTransformer
    from models.checkpoint import load_finetune_weights
    from models.weights import CheckpointError, read_state_dict

    if model_name.startswith("pretrain_videomae_"):
        vit = "vit_" + model_name.removeprefix("pretrain_videomae_")
        raise UsageError(f"--model {model_name} is a pre-training name; pass the classifier name {vit}")
    model = create(model_name, "--model", num_classes=0, all_frames=num_frames, img_size=input_size)
    if not isinstance(model, VisionTransformer):
        raise UsageError(
            f"--model {model_name} is not a classifier name; use the vit_* name of the encoder's size"
        )
    if not weights:
        return model.eval(), "randomly initialised (no --finetune)"
    try:
        report = load_finetune_weights(model, read_state_dict(weights, model=model), f"--finetune {weights}")
    except CheckpointError as err:
        raise UsageError(f"--finetune: {err}") from None
    return model.eval().requires_grad_(False), report.summary()

"""Multi-view testing: every rank writes its views, rank 0 merges them (reference text format);
and the reference's ``--eval``: which checkpoint it tests, loaded strictly into the classifier."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from torch import nn

from engine.args import UsageError
from engine.checkpoint import CheckpointManager
from engine.distributed import DistEnv, barrier, broadcast_object
from engine.loop import predict_views
from engine.multiview import format_view_line, merge_views, write_rank_file
from models.weights import CheckpointError, deepspeed_model_file, read_state_dict

_DEEPSPEED_TAG = re.compile(r"^checkpoint-(\d+)$")  # the reference's --enable_deepspeed checkpoint folders


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


def eval_source(args: argparse.Namespace) -> str | None:
    """What the reference's ``--eval`` tests (spec §8): ``--resume``, else (``--auto_resume``) the
    newest checkpoint in ``--output_dir``; None: the ``--finetune`` weights the model was built with.
    Chosen on rank 0 and broadcast, so every rank tests the same weights."""
    path = None
    if args.resume:
        path = args.resume
    elif args.auto_resume and args.output_dir:
        newest = newest_checkpoint(args.output_dir)
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

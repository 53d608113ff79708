"""Multi-view testing: every rank writes its views, rank 0 merges them (reference text format)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.distributed import DistEnv, barrier
from engine.loop import predict_views
from engine.multiview import format_view_line, merge_views, write_rank_file


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
    result = merge_views([folder / f"{r}.txt" for r in range(env.world_size)], dedupe=dedupe)
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

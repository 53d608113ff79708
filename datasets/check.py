"""Find the broken videos of a list before a long run.

``python -m datasets.check LIST [--data_root DIR] [--num_workers N] [--out CLEAN_LIST]
[--min_frames N] [--decoder auto|decord|pyav]`` decodes every frame of every listed video (or frame
folder) with the decoder training uses, in N processes with a progress bar, prints one line per
unusable sample (``<reason>: <path>``: unreadable, broken, too short), writes the list without them
to CLEAN_LIST (default ``<LIST stem>.clean<ext>`` next to LIST; the lines are copied unchanged) and
ends with a summary. The exit code is 0 whatever it finds (2 for usage errors), so scripts can run
it and read the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from common.cli import OneLineParser, UsageError, run_tool

from .annotations import VideoRecord, read_annotation_list, write_text_atomic
from .decoding import DECODERS, Decoder, check_decoder, open_video
from .errors import TOOL_ERRORS, AnnotationError, VideoDecodeError

# Frames are converted at this size only: decoding is what is checked, and tiny RGB frames keep a
# whole long video in a few MB.
_PROBE_SIZE = (16, 16)


@dataclass(frozen=True)
class CheckResult:
    """Outcome for one sample: ``problem`` is ``None`` for a usable one."""

    record: VideoRecord
    num_frames: int | None
    problem: str | None


def check_record(record: VideoRecord, decoder: Decoder = "auto", min_frames: int = 1) -> CheckResult:
    """Decode every frame of ``record`` as training would; never raises for a bad file."""
    import torch

    torch.set_num_threads(1)  # one process per core already
    try:
        with open_video(record.path, decoder, record.num_frames) as video:
            count = len(video)
            if count < min_frames:
                return CheckResult(record, count, f"too short ({count} frames, --min_frames {min_frames})")
            video.get_frames(range(count), size=_PROBE_SIZE)
    except (VideoDecodeError, IndexError) as err:
        reason = " ".join(str(err).split())
        return CheckResult(record, None, f"broken ({reason})")
    return CheckResult(record, count, None)


def _check(job: tuple[VideoRecord, str, int]) -> CheckResult:
    return check_record(*job)


def check_list(
    records: list[VideoRecord], decoder: Decoder = "auto", min_frames: int = 1, num_workers: int = 1
) -> list[CheckResult]:
    """Results in list order; ``num_workers`` processes decode in parallel (1: in this process)."""
    jobs = [(r, decoder, min_frames) for r in records]
    bar = tqdm(
        total=len(jobs), desc="checking", unit="video", file=sys.stderr, dynamic_ncols=True, disable=None
    )
    try:
        if num_workers <= 1:
            results = []
            for job in jobs:
                results.append(_check(job))
                bar.update()
            return results
        with ProcessPoolExecutor(num_workers) as pool:
            results = []
            for result in pool.map(_check, jobs, chunksize=4):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()


def _source_line(record: VideoRecord) -> int:
    return int(record.source.rsplit(":", 1)[1])


def write_clean_list(list_file: str, results: list[CheckResult], out: str) -> str:
    """Copy the lines of the usable samples (unchanged: relative paths stay relative) to ``out``."""
    with open(list_file, encoding="utf-8-sig") as handle:
        lines = handle.read().split("\n")
    keep = [lines[_source_line(r.record) - 1].rstrip("\r") for r in results if r.problem is None]
    return write_text_atomic(out, keep)


def default_clean_path(list_file: str) -> str:
    stem, ext = os.path.splitext(list_file)
    return f"{stem}.clean{ext or '.csv'}"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m datasets.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("list", help="list file (<path> <label> or <dir> <num_frames> <label> per line)")
    parser.add_argument("--data_root", "--root", default=None, help="root of the list's relative paths")
    parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--out", default=None, help="clean list to write (default: <LIST stem>.clean<ext>)")
    parser.add_argument("--min_frames", type=int, default=1, help="samples with fewer frames are reported")
    parser.add_argument("--decoder", choices=DECODERS, default="auto", help="as in training (default auto)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.num_workers < 1 or args.min_frames < 1:
        raise UsageError("--num_workers and --min_frames must be at least 1")
    if not os.path.isfile(args.list):
        raise UsageError(f"list file {args.list} does not exist")
    try:
        check_decoder(args.decoder)
        records = read_annotation_list(args.list, root=args.data_root)
    except (AnnotationError, ImportError) as err:
        raise UsageError(str(err)) from None
    out = args.out or default_clean_path(args.list)
    if os.path.abspath(out) == os.path.abspath(args.list):
        raise UsageError("--out must differ from LIST (the original list is kept)")
    results = check_list(records, args.decoder, args.min_frames, args.num_workers)
    bad = [r for r in results if r.problem is not None]
    for result in bad:
        print(f"{result.problem}: {result.record.path}")
    write_clean_list(args.list, results, out)
    short = sum(r.problem.startswith("too short") for r in bad)
    print(
        f"checked {len(results)} samples of {args.list}: {len(results) - len(bad)} usable, "
        f"{len(bad) - short} broken, {short} too short; clean list: {out}"
    )


if __name__ == "__main__":
    sys.exit(run_tool(main, errors=TOOL_ERRORS))

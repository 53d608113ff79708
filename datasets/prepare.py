"""List files for the training scripts from an official data-set release.

``python -m datasets.prepare {ucf101,hmdb51,kinetics400,ssv2} --root ROOT --out OUT [--split N]
[--videos DIR]`` reads the release's annotation files under ROOT (see :mod:`datasets.official_lists`),
finds every video by its file name anywhere under DIR (default ROOT: class folders, flat folders and
other extensions all work) and writes ``OUT/{train,val,test}.csv`` (absolute paths; frame-folder
lines ``<dir> <num_frames> <label>`` when the videos are frame folders), ``OUT/classes.txt``
(``index name``), ``OUT/missing.txt`` (listed videos not found, which are left out; files no
annotation mentions; names found twice) and a one-line summary. Re-running replaces the files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field

from common.cli import OneLineParser, UsageError, run_tool

from .annotations import SPLITS, VIDEO_EXTENSIONS, format_record, write_text_atomic
from .errors import TOOL_ERRORS
from .frames import IMAGE_EXTENSIONS
from .official_lists import DATASETS, NUMBERED_SPLITS, PARSERS, OfficialLists, ReleaseError


@dataclass
class VideoIndex:
    """Videos and frame folders under a root, by name without extension.

    Attributes:
        videos: ``{stem: [paths]}`` of files with a video extension.
        frame_dirs: ``{folder name: [paths]}`` of folders that hold images.
        image_counts: ``{frame folder path: number of images}``.
    """

    videos: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    frame_dirs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    image_counts: dict[str, int] = field(default_factory=dict)


def index_videos(root: str) -> VideoIndex:
    """Walk ``root`` once (following no symlinked folders, so a loop cannot hang it)."""
    index = VideoIndex()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        images = 0
        for name in sorted(files):
            lower = name.lower()
            if lower.endswith(VIDEO_EXTENSIONS):
                index.videos[os.path.splitext(name)[0]].append(os.path.abspath(os.path.join(folder, name)))
            elif lower.endswith(IMAGE_EXTENSIONS):
                images += 1
        if images:
            path = os.path.abspath(folder)
            index.frame_dirs[os.path.basename(folder)].append(path)
            index.image_counts[path] = images
    return index


def _same_class(folder: str, class_name: str | None) -> bool:
    norm = lambda text: text.lower().replace(" ", "_").replace("-", "_")  # noqa: E731
    return class_name is not None and norm(os.path.basename(folder)) == norm(class_name)


@dataclass
class Prepared:
    """The lists as written, and what the report lists."""

    rows: dict[str, list[str]]
    missing: dict[str, list[str]]  # name -> our splits that list it
    unlisted: list[str]
    duplicates: dict[str, list[str]]  # name -> every path found (the first is used)
    frames: bool


def resolve(lists: OfficialLists, index: VideoIndex, videos_root: str) -> Prepared:
    """Match every listed name with a file (or, when no video file matches, a frame folder)."""
    names = {name for rows in lists.splits.values() for name, _ in rows}
    frames = not any(name in index.videos for name in names)
    found = index.frame_dirs if frames else index.videos
    if not any(name in found for name in names):
        raise UsageError(
            f"none of the {len(names)} videos the annotations list was found under {videos_root}: "
            "pass the folder holding the videos as --videos"
        )
    chosen: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    for name in names & found.keys():
        # On duplicates (e.g. an .avi and a transcoded .mp4) the copy in the listed class folder wins.
        candidates = sorted(
            found[name], key=lambda p: not _same_class(os.path.dirname(p), lists.folders.get(name))
        )
        chosen[name] = candidates[0]
        if len(candidates) > 1:
            duplicates[name] = candidates
    rows: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = defaultdict(list)
    for split in SPLITS:
        rows[split] = []
        for name, label in lists.splits[split]:
            if name not in chosen:
                missing[name].append(split)
                continue
            path = chosen[name]
            try:
                rows[split].append(
                    format_record(path, label, index.image_counts.get(path) if frames else None)
                )
            except ValueError:
                missing[name].append(split)
    listed = lists.listed | names
    unlisted = sorted(p for name, paths in found.items() if name not in listed for p in paths)
    return Prepared(rows, dict(missing), unlisted, duplicates, frames)


def write_outputs(out: str, lists: OfficialLists, prepared: Prepared, videos_root: str) -> None:
    """The three lists, classes.txt and missing.txt, each written atomically."""
    os.makedirs(out, exist_ok=True)
    for split, lines in prepared.rows.items():
        write_text_atomic(os.path.join(out, f"{split}.csv"), lines)
    write_text_atomic(
        os.path.join(out, "classes.txt"), [f"{i} {name}" for i, name in enumerate(lists.classes)]
    )
    report = [f"# listed in the annotations but not found under {videos_root} (left out): <splits> <name>"]
    report += [f"{','.join(splits)} {name}" for name, splits in sorted(prepared.missing.items())]
    report.append(f"# under {videos_root} but in no annotation file")
    report += prepared.unlisted
    report.append("# found more than once: <name> <path used> <other paths>")
    report += [" ".join([name, *paths]) for name, paths in sorted(prepared.duplicates.items())]
    write_text_atomic(os.path.join(out, "missing.txt"), report)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m datasets.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument(
        "--root", required=True, help="folder the release (annotations, videos) was unpacked into"
    )
    parser.add_argument("--out", required=True, help="folder for train.csv, val.csv, test.csv, classes.txt")
    parser.add_argument("--split", type=int, default=None, help="UCF101 / HMDB51 split: 1 (default), 2 or 3")
    parser.add_argument("--videos", default=None, help="search the videos here instead of under --root")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    numbered = NUMBERED_SPLITS.get(args.dataset)
    if args.split is not None and numbered is None:
        raise UsageError(f"--split applies to ucf101 and hmdb51 only; {args.dataset} has one official split")
    if numbered is not None and args.split is not None and args.split not in numbered:
        raise UsageError(f"--split must be one of {numbered} for {args.dataset}, got {args.split}")
    for flag, folder in (("--root", args.root), ("--videos", args.videos)):
        if folder is not None and not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder} is not a folder")
    split = args.split or (1 if numbered else None)
    videos_root = args.videos or args.root
    try:
        lists = PARSERS[args.dataset](args.root, split, skip=args.out)
    except ReleaseError as err:
        raise UsageError(str(err)) from None
    prepared = resolve(lists, index_videos(videos_root), videos_root)
    write_outputs(args.out, lists, prepared, videos_root)
    counts = ", ".join(f"{s} {len(prepared.rows[s])}" for s in SPLITS)
    kind = "frame folders" if prepared.frames else "videos"
    where = f" split {split}" if split else ""
    print(
        f"{args.dataset}{where}: {counts} {kind} of {len(lists.classes)} classes in {args.out}; "
        f"{len(prepared.missing)} listed but missing, {len(prepared.unlisted)} unlisted, "
        f"{len(prepared.duplicates)} found twice (see {os.path.join(args.out, 'missing.txt')})"
    )


if __name__ == "__main__":
    sys.exit(run_tool(main, errors=TOOL_ERRORS))

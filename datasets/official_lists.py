"""The annotation files of the official UCF101, HMDB51, Kinetics-400 and SSv2 releases, parsed.

Each parser takes the folder the release was unpacked into and returns :class:`OfficialLists`: the
class names (index = label), the samples of our three splits as (video name without extension,
label), and every name any official file mentions (to tell unlisted files from unused ones).
Annotation files are found by name anywhere under the root, so the usual unpacked variants work.
Formats (as published):

- UCF101 ``ucfTrainTestlist/``: ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based, CRLF),
  ``trainlist0N.txt`` (``Class/v_Class_g08_c01.avi 1``), ``testlist0N.txt`` (path only: the class
  folder names the label). Labels 0-based in classInd order; val = test = the test list.
- HMDB51 ``testTrainMulti_7030_splits/<class>_test_splitN.txt``: ``name.avi F`` with F = 1 train,
  2 test, 0 unused. Classes sorted by name; val = test.
- Kinetics-400 ``annotations/{train,validate,test}.csv``: header ``label,youtube_id,time_start,
  time_end,split[,is_cc]`` (labels may hold commas, inside quotes). Videos are
  ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>``; classes sorted by name; val = test = validate.
- SSv2 ``labels/something-something-v2-{labels,train,validation,test}.json``: the label of an entry
  is ``labels[template without "[" and "]"]``; videos ``<id>.webm`` or frame folders ``<id>/``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

DATASETS: tuple[str, ...] = ("ucf101", "hmdb51", "kinetics400", "ssv2")
NUMBERED_SPLITS: dict[str, tuple[int, ...]] = {"ucf101": (1, 2, 3), "hmdb51": (1, 2, 3)}


class ReleaseError(ValueError):
    """The release's annotation files are missing or malformed; the message says which and what to do."""


@dataclass
class OfficialLists:
    """What a release's annotation files say.

    Attributes:
        classes: class names; the label of ``classes[i]`` is ``i``.
        splits: ``{"train" | "val" | "test": [(video name without extension, label), ...]}``.
        listed: every video name any annotation file of the release mentions (used or not).
        folders: ``{video name: class folder}`` where the lists name one (preferred on duplicates).
    """

    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    listed: set[str] = field(default_factory=set)
    folders: dict[str, str] = field(default_factory=dict)


def find_file(root: str, name: str, skip: str | None = None) -> str:
    """The shortest path to a file called ``name`` under ``root`` (``skip``: a folder not to search)."""
    found = find_files(root, re.compile(re.escape(name) + r"\Z"), skip)
    if not found:
        raise ReleaseError(f"no {name} under {root}: pass the folder the release was unpacked into as --root")
    return found[0]


def find_files(root: str, pattern: re.Pattern[str], skip: str | None = None) -> list[str]:
    """Files under ``root`` whose name matches ``pattern``, shortest path first."""
    skip = os.path.abspath(skip) if skip is not None else None
    hits = []
    for folder, dirs, files in os.walk(root):
        if skip is not None and os.path.abspath(folder) == skip:
            dirs[:] = []
            continue
        hits += [os.path.join(folder, f) for f in files if pattern.match(f)]
    return sorted(hits, key=lambda p: (p.count(os.sep), p))


def _lines(path: str) -> list[str]:
    """Non-empty lines, without CR/LF (the UCF101 lists end lines with CRLF) or a byte-order mark."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return [line.strip() for line in handle.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ReleaseError(f"cannot read {path}: {err}") from None


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name.replace("\\", "/")))[0]


def parse_ucf101(root: str, split: int, skip: str | None = None) -> OfficialLists:
    """UCF101 split ``split`` (1-3) from ``ucfTrainTestlist``."""
    class_file = find_file(root, "classInd.txt", skip)
    folder = os.path.dirname(class_file)
    numbered = []
    for line_no, line in enumerate(_lines(class_file), start=1):
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise ReleaseError(f"{class_file}:{line_no}: expected '<index> <ClassName>', got {line!r}")
        numbered.append((int(fields[0]), fields[1]))
    numbered.sort()
    if [i for i, _ in numbered] != list(range(1, len(numbered) + 1)):
        raise ReleaseError(f"{class_file}: class indices must run 1..{len(numbered)}")
    classes = [name for _, name in numbered]
    by_name = {name: i for i, name in enumerate(classes)}
    lists = OfficialLists(classes, {})

    def read(kind: str, number: int) -> list[tuple[str, int]]:
        path = os.path.join(folder, f"{kind}list0{number}.txt")
        if not os.path.isfile(path):
            raise ReleaseError(f"{path} is missing: unpack the whole ucfTrainTestlist folder")
        rows = []
        for line_no, line in enumerate(_lines(path), start=1):
            fields = line.split()
            class_dir = fields[0].replace("\\", "/").split("/")[0]
            if kind == "train":
                if len(fields) != 2 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(classes):
                    raise ReleaseError(
                        f"{path}:{line_no}: expected 'Class/v_Class_gXX_cYY.avi <1..{len(classes)}>'"
                    )
                label = int(fields[1]) - 1
            elif class_dir in by_name:
                label = by_name[class_dir]
            else:
                raise ReleaseError(f"{path}:{line_no}: class folder {class_dir!r} is not in {class_file}")
            name = _stem(fields[0])
            lists.listed.add(name)
            lists.folders[name] = class_dir
            rows.append((name, label))
        return rows

    for number in NUMBERED_SPLITS["ucf101"]:  # every list, so that no listed video counts as unlisted
        for kind in ("train", "test"):
            rows = read(kind, number)
            if number == split:
                lists.splits[kind] = rows
    lists.splits["val"] = lists.splits["test"]
    return lists


_HMDB_SPLIT = re.compile(r"(.+)_test_split([123])\.txt\Z")


def parse_hmdb51(root: str, split: int, skip: str | None = None) -> OfficialLists:
    """HMDB51 split ``split`` (1-3) from ``testTrainMulti_7030_splits``."""
    files = find_files(root, _HMDB_SPLIT, skip)
    if not files:
        raise ReleaseError(
            f"no <class>_test_split1.txt under {root}: unpack test_train_splits.rar there "
            "(the testTrainMulti_7030_splits folder)"
        )
    chosen: dict[str, str] = {}
    for path in files:
        name, number = _HMDB_SPLIT.match(os.path.basename(path)).groups()
        if int(number) == split:
            chosen.setdefault(name, path)
    classes = sorted(chosen)
    lists = OfficialLists(classes, {"train": [], "test": []})
    for path in files:
        class_name, number = _HMDB_SPLIT.match(os.path.basename(path)).groups()
        for line_no, line in enumerate(_lines(path), start=1):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ReleaseError(f"{path}:{line_no}: expected '<name>.avi <0|1|2>', got {line!r}")
            name = _stem(fields[0])
            lists.listed.add(name)
            lists.folders[name] = class_name
            if int(number) == split and chosen.get(class_name) == path and fields[1] != "0":
                kind = "train" if fields[1] == "1" else "test"
                lists.splits[kind].append((name, classes.index(class_name)))
    lists.splits["val"] = lists.splits["test"]
    return lists


def kinetics_name(youtube_id: str, time_start: str, time_end: str) -> str:
    """``{youtube_id}_{time_start:06d}_{time_end:06d}`` (the names of the published clips)."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def parse_kinetics400(root: str, split: int | None = None, skip: str | None = None) -> OfficialLists:
    """Kinetics-400 from ``annotations/{train,validate,test}.csv``."""
    folder = os.path.dirname(find_file(root, "validate.csv", skip))
    tables = {}
    for kind in ("train", "validate", "test"):
        path = os.path.join(folder, f"{kind}.csv")
        if kind != "test" and not os.path.isfile(path):
            raise ReleaseError(f"{path} is missing: unpack the whole annotations folder")
        if os.path.isfile(path):
            tables[kind] = _kinetics_rows(path, labelled=kind != "test")
    classes = sorted({label for kind in ("train", "validate") for _, label in tables[kind]})
    index = {name: i for i, name in enumerate(classes)}
    lists = OfficialLists(classes, {})
    for rows in tables.values():
        for name, label in rows:
            lists.listed.add(name)
            if label:
                lists.folders[name] = label
    lists.splits["train"] = [(name, index[label]) for name, label in tables["train"]]
    lists.splits["val"] = lists.splits["test"] = [(name, index[label]) for name, label in tables["validate"]]
    return lists


def _kinetics_rows(path: str, labelled: bool) -> list[tuple[str, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            table = list(csv.DictReader(handle))  # csv: labels such as "passing American football (in game)"
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReleaseError(f"cannot read {path}: {err}") from None
    rows = []
    for line_no, row in enumerate(table, start=2):
        try:
            name = kinetics_name(row["youtube_id"], row["time_start"], row["time_end"])
            label = row["label"] if labelled else (row.get("label") or "")
        except (KeyError, TypeError, ValueError):
            raise ReleaseError(
                f"{path}:{line_no}: expected the columns label,youtube_id,time_start,time_end,split"
            ) from None
        if labelled and not label:
            raise ReleaseError(f"{path}:{line_no}: empty label")
        rows.append((name, label))
    return rows


def parse_ssv2(root: str, split: int | None = None, skip: str | None = None) -> OfficialLists:
    """Something-Something V2 from ``labels/something-something-v2-*.json``."""
    labels_file = find_file(root, "something-something-v2-labels.json", skip)
    labels, folder = _json(labels_file), os.path.dirname(labels_file)
    try:
        classes = [name for name, _ in sorted(labels.items(), key=lambda item: int(item[1]))]
    except (AttributeError, TypeError, ValueError):
        raise ReleaseError(f"{labels_file}: expected {{template: index}}") from None
    index = {name: i for i, name in enumerate(classes)}
    lists = OfficialLists(classes, {})
    for kind, ours in (("train", "train"), ("validation", "val"), ("test", None)):
        path = os.path.join(folder, f"something-something-v2-{kind}.json")
        if ours is None and not os.path.isfile(path):
            continue
        rows = []
        for entry in _json(path):
            try:
                name = str(entry["id"])
                if ours is not None:
                    rows.append((name, index[entry["template"].replace("[", "").replace("]", "")]))
            except (KeyError, TypeError, AttributeError) as err:
                raise ReleaseError(
                    f"{path}: entry {entry!r} has no id or a template not in labels.json ({err})"
                ) from None
            lists.listed.add(name)
        if ours is not None:
            lists.splits[ours] = rows
    lists.splits["test"] = lists.splits["val"]
    return lists


def _json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ReleaseError(f"{path} is missing: unpack the whole labels folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReleaseError(f"cannot read {path}: {err}") from None


PARSERS: dict[str, Callable[..., OfficialLists]] = {
    "ucf101": parse_ucf101,
    "hmdb51": parse_hmdb51,
    "kinetics400": parse_kinetics400,
    "ssv2": parse_ssv2,
}

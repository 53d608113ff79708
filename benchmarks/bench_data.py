"""Throughput of the pre-training data pipeline, ours vs the reference's costly steps.

Generates UCF-like (320x240) and Kinetics-like (340x256) H.264 videos, then measures clips/s of
decode + multi-scale crop + normalise + mask through a DataLoader with 1 and N workers, for

- ``reference``: a re-implementation of VideoMAE's pre-training loader (decord ``VideoReader`` at
  full resolution, ``get_batch(...).asnumpy()``, per-frame PIL ``fromarray`` / crop / resize,
  stack, PIL-array -> float tensor, per-channel normalise, numpy tube mask);
- ``ours_<decoder>``: :func:`datasets.build_pretraining_dataset` with that decoder, as the engine
  runs it: workers return uint8 clips and the main process normalises each batch
  (:func:`datasets.normalize_video`; in training the task does this on the device, distillation only
  for the visible tubelets), timed here on the CPU inside the measured loop.

Prints ONE JSON line: clips/s per pipeline and worker count, ``in_process_ms`` per clip without a
DataLoader (one core doing everything, normalisation included), ``cpu_ms`` (CPU time per clip of
the worker and the main process together, one-worker run: every cost wherever it is paid, incl.
inter-process transfer), and ``ratio_per_core`` = ours / reference: clips per CPU-second
(``cpu``), clips/s through one worker (``dataloader_1_worker``) and in process.
``--csv LIST`` measures the videos of a list file instead (a user's own data, e.g. long key-frame
interval files); ``--transcoded LIST2`` adds ``ours_<decoder>_transcoded`` rows (ours on the copies
:mod:`datasets.transcode` wrote, compared with the reference on the originals of ``--csv``).
Usage: ``python3 benchmarks/bench_data.py [--quick] [--workers N] [--csv LIST [--transcoded LIST2]]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets import (  # noqa: E402
    TubeMaskingGenerator,
    build_pretraining_dataset,
    collate_batch,
    normalize_video,
)
from datasets.annotations import read_annotation_list  # noqa: E402
from datasets.crops import sample_multi_scale_crop  # noqa: E402
from datasets.sampling import pretrain_indices  # noqa: E402
from datasets.synthetic import make_synthetic_dataset  # noqa: E402
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

SIZES = {"ucf_320x240": (320, 240), "kinetics_340x256": (340, 256)}


class ReferencePretrainClips(Dataset):
    """The reference pipeline's costly steps (VideoMAE ``VideoMAE`` + ``DataAugmentationForVideoMAE``).

    Frame choice, crop geometry and the mask reuse our (cheap, equivalent) functions; what is timed
    differently is how the reference decodes and transforms.
    """

    def __init__(
        self, paths: list[str], num_frames: int, stride: int, input_size: int, grid: tuple[int, int, int]
    ):
        self.paths, self.num_frames, self.stride, self.input_size = paths, num_frames, stride, input_size
        self.mask_generator = TubeMaskingGenerator(grid, 0.9)
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        import decord

        reader = decord.VideoReader(self.paths[index], num_threads=1, ctx=decord.cpu(0))
        indices = pretrain_indices(len(reader), self.num_frames, self.stride, self.rng)
        frames = reader.get_batch(indices.tolist()).asnumpy()  # full resolution
        images = [Image.fromarray(frame).convert("RGB") for frame in frames]
        box = sample_multi_scale_crop(images[0].height, images[0].width, self.input_size, self.rng)
        region = (box.left, box.top, box.left + box.width, box.top + box.height)
        size = (self.input_size, self.input_size)
        images = [np.asarray(img.crop(region).resize(size, Image.BILINEAR)) for img in images]
        stacked = np.concatenate(images, axis=2)  # [H, W, 3T]
        tensor = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)
        for channel, mean, std in zip(
            tensor, IMAGENET_MEAN * self.num_frames, IMAGENET_STD * self.num_frames
        ):
            channel.sub_(mean).div_(std)
        video = tensor.view((self.num_frames, 3) + tensor.shape[-2:]).transpose(0, 1)  # [3, T, H, W] view
        return video, self.mask_generator(self.rng)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def _unchanged(video: torch.Tensor) -> torch.Tensor:
    return video


def _batch_normalizer(where: str):
    """What the main process does with our uint8 batches (the engine: normalise on its device)."""
    if where == "none":
        return _unchanged
    device = torch.device(where)

    def prepare(video: torch.Tensor) -> torch.Tensor:
        out = normalize_video(video.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    return prepare


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc); None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def clips_per_second(
    dataset: Dataset, workers: int, clips: int, batch_size: int, collate, prepare
) -> tuple[float, float | None]:
    """(clips/s, CPU ms per clip of all processes) of one DataLoader run.

    clips/s is timed after one warm-up batch per worker (start-up is not counted). The CPU time is
    that of the workers over their whole life plus the main process over the whole loop, divided by
    every clip they made: the cost per clip wherever it was paid, independent of the worker count.
    ``prepare`` is applied to every batch's video in the main process, inside the loop.
    """
    warmup = batch_size * workers
    sampler = RandomSampler(dataset, replacement=True, num_samples=warmup + clips)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        worker_init_fn=_one_thread, prefetch_factor=2, timeout=120,
    )  # fmt: skip
    main_start = time.process_time()
    batches = iter(loader)
    pids = [w.pid for w in getattr(batches, "_workers", [])]
    total = seen = 0
    start = None
    for _ in range(len(loader)):
        batch = next(batches)
        n = len(prepare(batch["video"] if isinstance(batch, dict) else batch[0]))
        total += n
        seen += n
        if start is None and seen >= warmup:
            start, seen = time.perf_counter(), 0
    rate = seen / (time.perf_counter() - start)
    worker_cpu = [_cpu_seconds(pid) for pid in pids]  # read before the workers are shut down
    del batches
    if any(c is None for c in worker_cpu):
        return rate, None
    cpu = time.process_time() - main_start + sum(worker_cpu)
    return rate, cpu / total * 1000


def ms_per_clip_in_process(dataset: Dataset, clips: int, prepare) -> float:
    """Item time without a DataLoader (no batching / inter-process copies): the pipeline's own cost."""
    dataset[0]
    start = time.perf_counter()
    for i in range(clips):
        item = dataset[i % len(dataset)]
        prepare(item["video"] if isinstance(item, dict) else item[0])
    return (time.perf_counter() - start) / clips * 1000


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(
    pipelines: dict[str, tuple[Dataset, object, object]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Best of ``args.repeats`` interleaved rounds per pipeline (other load on the machine only slows a run)."""
    worker_counts = sorted({1, args.workers})
    best: dict[str, dict[str, float]] = {label: {} for label in pipelines}
    for _ in range(args.repeats):
        for label, (dataset, collate, prepare) in pipelines.items():
            row = best[label]
            for w in worker_counts:
                rate, cpu_ms = clips_per_second(dataset, w, args.clips, args.batch_size, collate, prepare)
                row[str(w)] = round(max(rate, row.get(str(w), 0.0)), 2)
                if w == 1 and cpu_ms is not None:
                    row["cpu_ms"] = round(min(cpu_ms, row.get("cpu_ms", float("inf"))), 2)
            # In process last: decoders must not leave state behind before workers fork (they do not).
            ms = ms_per_clip_in_process(dataset, args.clips, prepare)
            row["in_process_ms"] = round(min(ms, row.get("in_process_ms", float("inf"))), 2)
    return best


def _video_sets(args: argparse.Namespace, tmp: str):
    """(name, list file, transcoded list or None) per measured set: the user's list or generated ones."""
    if args.csv is not None:
        yield f"csv:{os.path.basename(args.csv)}", args.csv, args.transcoded
        return
    for name, (width, height) in SIZES.items():
        lists = make_synthetic_dataset(
            os.path.join(tmp, name), num_classes=args.videos, videos_per_class=1, num_frames=args.frames,
            width=width, height=height, val_fraction=0.0, test_fraction=0.0, seed=1,
        )  # fmt: skip
        yield name, lists["pretrain"], None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=30, help="videos per resolution")
    parser.add_argument("--frames", type=int, default=64, help="frames per generated video")
    parser.add_argument("--clips", type=int, default=96, help="clips timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="N for the multi-worker run")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--decoders", default="auto,pyav", help="our decoders to time, comma separated")
    parser.add_argument(
        "--normalize_on",
        choices=("auto", "cpu", "cuda", "none"),
        default="auto",
        help="where our uint8 batches are normalised in the main process (auto: cuda if available, else "
        "cpu; none: not at all, i.e. only the CPU work a GPU training run leaves on the host)",
    )
    parser.add_argument("--quick", action="store_true", help="12 videos, 32 clips, 2 rounds")
    parser.add_argument("--csv", default=None, help="measure the videos of this list file instead")
    parser.add_argument("--data_root", default=None, help="root of --csv's relative paths")
    parser.add_argument(
        "--transcoded",
        default=None,
        help="with --csv: also time ours on this list (datasets.transcode output)",
    )
    args = parser.parse_args()
    if args.transcoded is not None and args.csv is None:
        parser.error("--transcoded needs --csv (the originals the reference reads)")
    if args.quick:
        args.videos, args.clips, args.repeats = 12, 32, 2
    torch.set_num_threads(1)
    if args.normalize_on == "auto":
        args.normalize_on = "cuda" if torch.cuda.is_available() else "cpu"
    prepare = _batch_normalizer(args.normalize_on)
    settings = {"num_frames": 16, "sampling_rate": 4, "input_size": 224, "patch_size": 16, "tubelet_size": 2}
    results: dict[str, dict[str, dict[str, float]]] = {}
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, list_file, transcoded in _video_sets(args, tmp):
            paths = [r.path for r in read_annotation_list(list_file, root=args.data_root)]
            reference = ReferencePretrainClips(paths, 16, 4, 224, (8, 14, 14))
            pipelines = {"reference": (reference, default_collate, _unchanged)}
            for decoder in args.decoders.split(","):
                for suffix, ours_list in (("", list_file), ("_transcoded", transcoded)):
                    if ours_list is None:
                        continue
                    root = args.data_root if ours_list == list_file else None
                    ours = build_pretraining_dataset(
                        ours_list, root=root, decoder=decoder, normalize=False, **settings
                    )
                    pipelines[f"ours_{decoder}{suffix}"] = (ours, collate_batch, prepare)
            results[name] = measure(pipelines, args)
            ref = results[name]["reference"]
            ratios[name] = {
                label: {"cpu": round(ref["cpu_ms"] / r["cpu_ms"], 2) if "cpu_ms" in r and "cpu_ms" in ref else None,
                        "dataloader_1_worker": round(r["1"] / ref["1"], 2),
                        "in_process": round(ref["in_process_ms"] / r["in_process_ms"], 2)}
                for label, r in results[name].items() if label != "reference"
            }  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "benchmark": "bench_data",
                "machine": {
                    "cpus": os.cpu_count(),
                    "cpu": cpu_name(),
                    "torch": torch.__version__,
                    "load_avg_1min_at_end": load,
                },
                "settings": {
                    **settings,
                    "videos": args.csv or args.videos,
                    "transcoded": args.transcoded,
                    "frames_per_video": None if args.csv else args.frames,
                    "clips_per_measurement": args.clips,
                    "repeats": args.repeats,
                    "batch_size": args.batch_size,
                    "normalize_on": args.normalize_on,
                },
                "clips_per_s": results,
                "ratio_per_core": ratios,
            }
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()

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
``--decoders`` may name ``torchcodec`` (optional: the PyTorch project's decoder, used when it loads).

``--per_core`` (the cores-per-GPU table, README §9) instead prints ONE JSON line with
``clips_per_s_per_core``: clips/s of ``--cores`` C DataLoader workers, one thread each, divided by
C (the main process, which receives the batches, runs too and shares the C cores), per pipeline, for
one ``--recipe``: ``pretrain`` (pre-training / distillation, 16x4, tube mask 0.9, ``--num_sample`` R
clips per decoded video), ``finetune`` (16x4, RandAugment m7-n4, R views; random erasing runs on
the device) or ``test`` (5 clips x 3 crops per video, read in order as the test loop does). Also
``clips_per_cpu_s`` (clips per CPU-second of all processes, less sensitive to other load) and
``cores_per_gpu``: the cores that feed one H200 at 10 % and 40 % MFU of a step costing
``--gflop_per_clip`` (default: the distillation step's; give another recipe's from bench_model.py).
Usage: ``python3 benchmarks/bench_data.py [--quick] [--workers N] [--csv LIST [--transcoded LIST2]]``
or ``python3 benchmarks/bench_data.py --per_core --csv LIST [--transcoded LIST2] [--num_sample R]``.
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
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, default_collate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets import (  # noqa: E402
    TubeMaskingGenerator,
    build_multiview_dataset,
    build_pretraining_dataset,
    collate_batch,
    normalize_video,
)
from datasets.annotations import read_annotation_list  # noqa: E402
from datasets.classification import VideoClsTrainDataset  # noqa: E402
from datasets.crops import sample_multi_scale_crop  # noqa: E402
from datasets.decoding import DECODERS, check_decoder  # noqa: E402
from datasets.loading import TrainClips  # noqa: E402
from datasets.sampling import ClipSampler, pretrain_indices  # noqa: E402
from datasets.synthetic import make_synthetic_dataset  # noqa: E402
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, FinetuneTrainTransform  # noqa: E402

SIZES = {"ucf_320x240": (320, 240), "kinetics_340x256": (340, 256)}
# The distillation step (ViT-S student, ViT-B teacher, 16x224x224, tube 0.9): bench_model.py's
# 111.0 GFLOP per step at batch 2; one H200's dense bf16 peak.
GFLOP_PER_CLIP = 55.5
H200_TFLOPS = 989.0


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


class _InOrder(Sampler[int]):
    """Items 0, 1, 2, ... (wrapping): the order the test loop reads the views in."""

    def __init__(self, length: int, count: int) -> None:
        self.length, self.count = length, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return (i % self.length for i in range(self.count))


def clips_per_second(
    dataset: Dataset, workers: int, clips: int, batch_size: int, collate, prepare, in_order: bool = False
) -> tuple[float, float | None]:
    """(clips/s, CPU ms per clip of all processes) of one DataLoader run.

    clips/s is timed after one warm-up batch per worker (start-up is not counted). The CPU time is
    that of the workers over their whole life plus the main process over the whole loop, divided by
    every clip they made: the cost per clip wherever it was paid, independent of the worker count.
    ``prepare`` is applied to every batch's video in the main process, inside the loop. ``clips``
    counts items (an item of R samples gives R clips); ``in_order``: items in order, not at random.
    """
    warmup = batch_size * workers
    if in_order:
        sampler: Sampler[int] = _InOrder(len(dataset), warmup + clips)
    else:
        sampler = RandomSampler(dataset, replacement=True, num_samples=warmup + clips)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        worker_init_fn=_one_thread, prefetch_factor=2 if workers else None, timeout=120 if workers else 0,
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


def recipe_dataset(recipe: str, list_file: str, root: str | None, decoder: str, num_sample: int) -> Dataset:
    """The uint8 training / test input of one recipe at 16x4, 224 px, as the entry points build it."""
    if recipe == "pretrain":
        return build_pretraining_dataset(
            list_file, root=root, decoder=decoder, normalize=False, num_sample=num_sample,
            num_frames=16, sampling_rate=4, input_size=224, patch_size=16, tubelet_size=2, mask_ratio=0.9,
        )  # fmt: skip
    if recipe == "finetune":  # build_dataset's train split, from a list file rather than <folder>/train.csv
        clips = TrainClips(
            read_annotation_list(list_file, root=root), ClipSampler("train", 16, 4), decoder=decoder
        )
        transform = FinetuneTrainTransform(224, "rand-m7-n4-mstd0.5-inc1", normalize=False)
        return VideoClsTrainDataset(clips, transform, num_sample)
    return build_multiview_dataset(list_file, root=root, decoder=decoder, normalize=False)


def cores_per_gpu(
    clips_per_s_per_core: float, gflop_per_clip: float = GFLOP_PER_CLIP
) -> dict[str, float | None]:
    """Cores that feed one H200 at 10 % and 40 % MFU of a step costing ``gflop_per_clip``."""
    if clips_per_s_per_core <= 0:
        return {"mfu_10": None, "mfu_40": None}
    need = {mfu: H200_TFLOPS * 1000 * mfu / gflop_per_clip for mfu in (0.1, 0.4)}  # clips/s per GPU
    return {f"mfu_{round(mfu * 100)}": round(rate / clips_per_s_per_core, 1) for mfu, rate in need.items()}


def per_core(args: argparse.Namespace, prepare) -> dict[str, object]:
    """The ``--per_core`` record: every pipeline through ``--cores`` processes, best of ``--repeats``."""
    workers = args.cores
    sets: dict[str, dict[str, float]] = {}
    cpu_rates: dict[str, dict[str, float | None]] = {}
    for name, list_file, transcoded in _video_sets(args, args.tmp):
        pipelines: dict[str, tuple[Dataset, object, object]] = {}
        if args.recipe == "pretrain":
            paths = [r.path for r in read_annotation_list(list_file, root=args.data_root)]
            reference = ReferencePretrainClips(paths, 16, 4, 224, (8, 14, 14))
            pipelines["reference"] = (reference, default_collate, _unchanged)
        for decoder in args.decoders.split(","):
            for suffix, ours_list in (("", list_file), ("_transcoded", transcoded)):
                if ours_list is not None:
                    root = args.data_root if ours_list == list_file else None
                    ours = recipe_dataset(args.recipe, ours_list, root, decoder, args.num_sample)
                    pipelines[f"ours_{decoder}{suffix}"] = (ours, collate_batch, prepare)
        rates: dict[str, float] = {}
        cpu: dict[str, float | None] = {}
        for _ in range(args.repeats):
            for label, (dataset, collate, prep) in pipelines.items():
                rate, cpu_ms = clips_per_second(
                    dataset, workers, args.clips, args.batch_size, collate, prep, in_order=args.recipe == "test"
                )  # fmt: skip
                rates[label] = max(rates.get(label, 0.0), rate / args.cores)
                if cpu_ms is not None:
                    cpu[label] = max(cpu.get(label) or 0.0, 1000 / cpu_ms)
                else:
                    cpu.setdefault(label, None)
        sets[name] = {label: round(r, 2) for label, r in rates.items()}
        cpu_rates[name] = {label: None if c is None else round(c, 2) for label, c in cpu.items()}
    return {
        "clips_per_s_per_core": sets,
        "clips_per_cpu_s": cpu_rates,
        "cores_per_gpu": {
            name: {label: cores_per_gpu(rate, args.gflop_per_clip) for label, rate in rows.items()}
            for name, rows in sets.items()
        },
        "gpu": {"name": "H200", "dense_bf16_tflops": H200_TFLOPS, "gflop_per_clip": args.gflop_per_clip},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=30, help="videos per resolution")
    parser.add_argument("--frames", type=int, default=64, help="frames per generated video")
    parser.add_argument("--clips", type=int, default=96, help="clips timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="N for the multi-worker run")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--decoders",
        default="auto,pyav",
        help=f"our decoders to time, comma separated, of {', '.join(DECODERS)}",
    )
    parser.add_argument(
        "--per_core", action="store_true", help="clips/s per core and cores per GPU (see above)"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="--per_core: workers (cores)")
    parser.add_argument(
        "--recipe",
        choices=("pretrain", "finetune", "test"),
        default="pretrain",
        help="--per_core: whose input",
    )
    parser.add_argument(
        "--gflop_per_clip",
        type=float,
        default=GFLOP_PER_CLIP,
        help="--per_core: training FLOPs per clip for cores_per_gpu (default: the ViT-S/ViT-B distillation step)",
    )
    parser.add_argument(
        "--num_sample", type=int, default=1, help="--per_core: clips per decoded video (pretrain, finetune)"
    )
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
    if args.cores < 1 or args.num_sample < 1:
        parser.error(f"--cores and --num_sample must be >= 1, got {args.cores} and {args.num_sample}")
    if args.gflop_per_clip <= 0:
        parser.error(f"--gflop_per_clip must be > 0, got {args.gflop_per_clip}")
    for decoder in args.decoders.split(","):
        try:
            check_decoder(decoder)
        except (ValueError, ImportError) as err:
            parser.error(str(err))
    if args.quick:
        args.videos, args.clips, args.repeats = 12, 32, 2
    torch.set_num_threads(1)
    if args.normalize_on == "auto":
        args.normalize_on = "cuda" if torch.cuda.is_available() else "cpu"
    prepare = _batch_normalizer(args.normalize_on)
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.per_core:
        with tempfile.TemporaryDirectory() as args.tmp:
            record = per_core(args, prepare)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        print(
            json.dumps(
                {
                    "benchmark": "bench_data",
                    "mode": "per_core",
                    "machine": {
                        "cpus": os.cpu_count(),
                        "cpu": cpu_name(),
                        "torch": torch.__version__,
                        "load_avg_1min_at_start": load_at_start,
                        "load_avg_1min_at_end": load,
                    },
                    "settings": {
                        "recipe": args.recipe,
                        "num_sample": args.num_sample,
                        "cores": args.cores,
                        "workers": args.cores,
                        "threads_per_process": 1,
                        "decoders": args.decoders,
                        "videos": args.csv or args.videos,
                        "transcoded": args.transcoded,
                        "clips_per_measurement": args.clips,
                        "repeats": args.repeats,
                        "batch_size": args.batch_size,
                        "normalize_on": args.normalize_on,
                    },
                    **record,
                }
            )  # fmt: skip
        )
        return
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

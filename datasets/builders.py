"""Dataset builders with explicit arguments (no argparse namespace)."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from .annotations import ListFormat, read_annotation_list, split_list_file
from .classification import VideoClsEvalDataset, VideoClsTrainDataset
from .decoding import Decoder, check_decoder
from .loading import TrainClips
from .masking import build_mask_generator
from .pretrain import PretrainDataset
from .sampling import ClipSampler
from .transforms import FinetuneTrainTransform, PretrainTransform, build_eval_transform

# The reference's --data_set names and their class counts.
DATASET_CLASSES: dict[str, int] = {"Kinetics-400": 400, "UCF101": 101, "HMDB51": 51, "SSV2": 174}
# SSv2 classes are direction-sensitive ("pushing left to right"): no flips, TSN segment sampling.
_SEGMENT_SAMPLED = {"SSV2"}


def build_pretraining_dataset(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    num_frames: int = 16,
    sampling_rate: int = 4,
    input_size: int = 224,
    patch_size: int = 16,
    tubelet_size: int = 2,
    mask_type: str = "tube",
    mask_ratio: float = 0.9,
    num_sample: int = 1,
    decoder: Decoder = "auto",
    max_bad_fraction: float = 0.5,
    seed: int = 0,
    normalize: bool = True,
) -> PretrainDataset:
    """Masked clips for VideoMAE pre-training and MMKD distillation (labels in the list are ignored).

    Items: ``{"video": float32 [3, T, S, S], "mask": bool [N], "n_bad": int}`` with T = num_frames,
    S = input_size, N = (T / tubelet_size) · (S / patch_size)². ``normalize=False``: ``video`` is
    the uint8 clip, which the training tasks normalise on the device (:mod:`engine.tasks`;
    distillation only the visible tubelets). ``num_sample`` R > 1: each item holds R clips of one
    decoded window, ``video`` ``[R, 3, T, S, S]`` and ``mask`` ``[R, N]`` (see `PretrainDataset`).
    """
    if num_frames % tubelet_size or input_size % patch_size:
        raise ValueError(
            f"num_frames ({num_frames}) must be a multiple of tubelet_size ({tubelet_size}) and "
            f"input_size ({input_size}) a multiple of patch_size ({patch_size})"
        )
    check_decoder(decoder)
    grid = (num_frames // tubelet_size, input_size // patch_size, input_size // patch_size)
    clips = TrainClips(
        read_annotation_list(list_file, root=root),
        ClipSampler("pretrain", num_frames, sampling_rate),
        decoder=decoder,
        max_bad_fraction=max_bad_fraction,
        seed=seed,
    )
    return PretrainDataset(
        clips,
        PretrainTransform(input_size, normalize),
        build_mask_generator(mask_type, grid, mask_ratio),
        num_sample,
    )


def build_dataset(
    data_set: str,
    split: str,
    *,
    data_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    nb_classes: int | None = None,
    num_frames: int = 16,
    sampling_rate: int = 4,
    input_size: int = 224,
    short_side_size: int = 224,
    num_sample: int = 1,
    test_num_segment: int = 5,
    test_num_crop: int = 3,
    auto_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
    decoder: Decoder = "auto",
    list_format: ListFormat = "auto",
    max_bad_fraction: float = 0.5,
    seed: int = 0,
    normalize: bool = True,
) -> tuple[Dataset, int]:
    """Fine-tuning / evaluation dataset from ``<data_path>/<split>.csv``.

    Args:
        data_set: one of :data:`DATASET_CLASSES` (the reference's ``--data_set`` names).
        split: ``"train"``, ``"val"`` or ``"test"``.
        nb_classes: overrides the data set's class count; every label must be below it.
        sampling_rate: frame stride (SSV2 uses segment sampling and ignores it).
        normalize: ``False`` returns uint8 clips, to normalise per batch with
            :func:`datasets.normalize_video`. Random erasing is not done here: the fine-tuning
            task erases on the device, after normalisation (:class:`engine.tasks.FinetuneTask`).

    Returns:
        (dataset, nb_classes). Item layouts: see :class:`VideoClsTrainDataset` and
        :class:`VideoClsEvalDataset`.
    """
    if data_set not in DATASET_CLASSES:
        raise ValueError(f"data_set must be one of {sorted(DATASET_CLASSES)}, got {data_set!r}")
    check_decoder(decoder)
    nb_classes = DATASET_CLASSES[data_set] if nb_classes is None else nb_classes
    records = read_annotation_list(
        split_list_file(data_path, split), root=root, list_format=list_format, nb_classes=nb_classes
    )
    segment_based = data_set in _SEGMENT_SAMPLED
    if split == "train":
        clips = TrainClips(
            records,
            ClipSampler("train", num_frames, sampling_rate, segment_based),
            decoder=decoder,
            max_bad_fraction=max_bad_fraction,
            seed=seed,
        )
        transform = FinetuneTrainTransform(
            input_size, auto_augment, flip=not segment_based, normalize=normalize
        )
        dataset: Dataset = VideoClsTrainDataset(clips, transform, num_sample)
    else:
        test = split == "test"
        sampler = ClipSampler(
            split, num_frames, sampling_rate, segment_based, test_num_segment if test else 1
        )
        dataset = VideoClsEvalDataset(
            records,
            sampler=sampler,
            transform=build_eval_transform(
                input_size, short_side_size, test_num_crop if test else 1, normalize
            ),
            test=test,
            num_crops=test_num_crop,
            decoder=decoder,
        )
    return dataset, nb_classes


def build_multiview_dataset(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    nb_classes: int | None = None,
    num_frames: int = 16,
    sampling_rate: int = 4,
    input_size: int = 224,
    short_side_size: int = 224,
    test_num_segment: int = 5,
    test_num_crop: int = 3,
    decoder: Decoder = "auto",
    list_format: ListFormat = "auto",
    normalize: bool = True,
) -> VideoClsEvalDataset:
    """The test split's views (``test_num_segment`` clips x ``test_num_crop`` crops) of any list file.

    Items ``(video · test_num_segment + clip) · test_num_crop + crop``, as `build_dataset`'s test split.
    """
    check_decoder(decoder)
    records = read_annotation_list(list_file, root=root, list_format=list_format, nb_classes=nb_classes)
    return VideoClsEvalDataset(
        records,
        sampler=ClipSampler("test", num_frames, sampling_rate, False, test_num_segment),
        transform=build_eval_transform(input_size, short_side_size, test_num_crop, normalize),
        test=True,
        num_crops=test_num_crop,
        decoder=decoder,
    )

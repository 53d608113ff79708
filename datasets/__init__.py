"""Video data for VideoMAE pre-training, MMKD distillation and fine-tuning (spec §2 and §6).

One module per concern: :mod:`.annotations` (list files), :mod:`.decoding` / :mod:`.frames`
(decord, PyAV, frame folders), :mod:`.sampling` (which frames), :mod:`.crops` and
:mod:`.transforms` (+ :mod:`.rand_augment`), :mod:`.masking`,
:mod:`.bad_data`, the datasets (:mod:`.pretrain`, :mod:`.classification`), :mod:`.builders`,
:mod:`.collate`, :mod:`.synthetic` (a generated action-recognition set), and the command-line
tools :mod:`.prepare` (lists from the official releases, via :mod:`.official_lists`), :mod:`.check`
(broken files) and :mod:`.transcode` (re-encoding for fast decoding).
"""

from .builders import DATASET_CLASSES, build_dataset, build_multiview_dataset, build_pretraining_dataset
from .collate import collate_batch
from .errors import AnnotationError, BadDataError, VideoDecodeError
from .masking import RandomMaskingGenerator, TubeMaskingGenerator, build_mask_generator
from .transforms import normalize_video

__all__ = [
    "DATASET_CLASSES",
    "AnnotationError",
    "BadDataError",
    "RandomMaskingGenerator",
    "TubeMaskingGenerator",
    "VideoDecodeError",
    "build_dataset",
    "build_mask_generator",
    "build_multiview_dataset",
    "build_pretraining_dataset",
    "collate_batch",
    "normalize_video",
]

"""Video data for VideoMAE pre-training, MMKD distillation and fine-tuning (spec §2 and §6).

One module per concern: :mod:`.annotations` (list files), :mod:`.decoding` / :mod:`.frames`
(decord, PyAV, frame folders), :mod:`.sampling` (which frames), :mod:`.crops` and
:mod:`.transforms` (+ :mod:`.rand_augment`), :mod:`.masking`,
:mod:`.bad_data`, the datasets (:mod:`.pretrain`, :mod:`.classification`), :mod:`.builders`,
:mod:`.collate`, :mod:`.synthetic` (a generated action-recognition set), and the command-line
tools :mod:`.prepare` (lists from the official releases, via :mod:`.official_lists`), :mod:`.check`
(broken files) and :mod:`.transcode` (re-encoding for fast decoding).
"""

import importlib

# Names are loaded on first use (PEP 562), so that the command-line tools (``python -m
# datasets.check`` / ``prepare`` / ``transcode``) start without the builders' imports (torch's
# DataLoader, timm, the models).
_EXPORTS = {
    "DATASET_CLASSES": ".builders",
    "build_dataset": ".builders",
    "build_multiview_dataset": ".builders",
    "build_pretraining_dataset": ".builders",
    "collate_batch": ".collate",
    "AnnotationError": ".errors",
    "BadDataError": ".errors",
    "VideoDecodeError": ".errors",
    "RandomMaskingGenerator": ".masking",
    "TubeMaskingGenerator": ".masking",
    "build_mask_generator": ".masking",
    "normalize_video": ".transforms",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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

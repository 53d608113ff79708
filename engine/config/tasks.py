"""One typed config per training task, each with its defaults in one place; its CLI is generated.

`PretrainConfig`, `DistillConfig` and `FinetuneConfig` list their sections (`engine.config.sections`)
with this task's defaults. `TaskConfig.build_parser` generates the argparse parser from the sections'
field metadata (the MMKD section's options from the objective registry's flags),
`TaskConfig.from_namespace` reads a parsed command line into the sections and `TaskConfig.to_args`
gives the flat ``{dest: value}`` mapping that ``args.json`` and a checkpoint's ``args`` store.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, ClassVar

from common.cli import OneLineParser, UsageError
from engine.config import sections as s
from engine.config.fields import CLI, Section, _Groups, add_field_options, section
from models.distill import Flag, MMKDConfig, config_flags


def _mmkd_values(ns: dict[str, Any]) -> MMKDConfig:
    try:  # every registered term's values are checked by MMKDConfig, once
        return MMKDConfig(**{f.field: ns[f.attr] for f in config_flags()})
    except ValueError as err:
        raise UsageError(str(err)) from None


def _add_flag(g: argparse._ArgumentGroup, flag: Flag) -> None:
    """An MMKD setting as an option; its values are checked by `MMKDConfig`."""
    metavar = "{" + ",".join(map(str, flag.choices)) + "}" if flag.choices else None
    g.add_argument(
        *flag.names, dest=flag.attr, type=flag.parse, default=flag.default, metavar=metavar, help=flag.help
    )


@dataclass
class TaskConfig:
    """The settings of one training task: sections ``model``, ``data``, ``optim``, ``run`` (and the
    task's own); attributes of a section are the options' dests (``cfg.optim.lr``)."""

    mode: ClassVar[str] = ""
    description: ClassVar[str] = ""
    ema = None  # the weights EMA's settings: a section of fine-tuning only (not annotated: no field here)

    model: s.ModelConfig = section(s.ModelConfig, "model")
    data: s.DataConfig = section(s.DataConfig, "data")
    optim: s.OptimConfig = section(s.OptimConfig, "optimisation")
    run: s.RunConfig = section(s.RunConfig, "runtime")

    # ----- the command line ----------------------------------------------------------------
    @classmethod
    def _sections(cls) -> list[tuple[str, Section]]:
        return [(f.name, f.metadata[CLI]) for f in fields(cls) if f.metadata[CLI].cli]

    @classmethod
    def build_parser(cls) -> argparse.ArgumentParser:
        """The task's parser, generated from the sections' fields with this task's defaults."""
        p = OneLineParser(description=cls.description, allow_abbrev=False)
        defaults = cls()
        groups = _Groups(p, {meta.group: meta.description for _, meta in cls._sections()})
        for title in cls._group_order(defaults):
            groups.get(title)
        parser_defaults = {}
        for name, meta in cls._sections():
            values = getattr(defaults, name)
            if isinstance(values, MMKDConfig):  # --distill, --alignment and every registered term's flags
                for flag in config_flags():
                    _add_flag(groups.get(meta.group), flag)
                continue
            for f in fields(values):
                if not add_field_options(groups, f, getattr(values, f.name), meta.group):
                    parser_defaults[f.name] = getattr(values, f.name)
        p.set_defaults(**parser_defaults)
        return p

    @classmethod
    def _group_order(cls, defaults: TaskConfig) -> list[str]:
        """Help groups in section order; a field's own group follows its section's unless a later
        section owns it (fine-tuning's --save_ckpt sits with the fine-tuning options)."""
        own = [meta.group for _, meta in cls._sections()]
        order: list[str] = []
        for name, meta in cls._sections():
            order.append(meta.group)
            values = getattr(defaults, name)
            if isinstance(values, MMKDConfig):
                continue
            extra = (f.metadata[CLI].group for f in fields(values))
            order += [g for g in extra if g and g not in own and g not in order]
        return list(dict.fromkeys(order))

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace | dict[str, Any]) -> TaskConfig:
        """The sections' values from a parsed command line (MMKD values are checked here)."""
        values = dict(vars(ns)) if isinstance(ns, argparse.Namespace) else dict(ns)
        defaults = cls()
        parts = {}
        for name, _ in cls._sections():
            current = getattr(defaults, name)
            if isinstance(current, MMKDConfig):
                parts[name] = _mmkd_values(values)
            else:
                parts[name] = replace(current, **{f.name: values[f.name] for f in fields(current)})
        return replace(defaults, **parts)

    def to_args(self) -> dict[str, Any]:
        """``{dest: value}`` of every option of the task, in the parser's order (the saved arguments)."""
        out: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, _ in self._sections():
            values = getattr(self, name)
            if isinstance(values, MMKDConfig):
                out.update({f.attr: getattr(values, f.field) for f in config_flags()})
                continue
            for f in fields(values):
                (out if f.metadata[CLI].names else later)[f.name] = getattr(values, f.name)
        return {**out, **later}


@dataclass
class PretrainConfig(TaskConfig):
    """VideoMAE pre-training."""

    mode: ClassVar[str] = "pretrain"
    description: ClassVar[str] = "VideoMAE pre-training"

    model: s.ModelConfig = section(
        partial(s.ModelConfig, model="pretrain_videomae_base_patch16_224"), "model"
    )
    optim: s.OptimConfig = section(partial(s.OptimConfig, epochs=800), "optimisation")
    reference: s.MaskedReference = section(s.MaskedReference, s.REFERENCE, s.REFERENCE_HELP)
    masking: s.MaskingConfig = section(partial(s.MaskingConfig, mask_ratio=0.75), "masking")
    mae: s.MAEConfig = section(s.MAEConfig, "VideoMAE")


@dataclass
class DistillConfig(TaskConfig):
    """MMKD distillation of a frozen teacher into the student."""

    mode: ClassVar[str] = "distill"
    description: ClassVar[str] = "MMKD masked knowledge distillation"

    model: s.ModelConfig = section(
        partial(s.ModelConfig, model="pretrain_videomae_small_patch16_224"), "model"
    )
    optim: s.OptimConfig = section(partial(s.OptimConfig, epochs=400), "optimisation")
    reference: s.DistillReference = section(s.DistillReference, s.REFERENCE, s.REFERENCE_HELP)
    masking: s.MaskingConfig = section(partial(s.MaskingConfig, mask_ratio=0.9), "masking")
    teacher: s.TeacherConfig = section(s.TeacherConfig, "MMKD")
    mmkd: MMKDConfig = section(MMKDConfig, "MMKD")


@dataclass
class FinetuneConfig(TaskConfig):
    """Fine-tuning, validation and the multi-view test."""

    mode: ClassVar[str] = "finetune"
    description: ClassVar[str] = "fine-tuning, validation and multi-view testing"

    model: s.ModelConfig = section(
        partial(s.ModelConfig, model="vit_base_patch16_224", drop_path=0.1), "model"
    )
    optim: s.OptimConfig = section(
        partial(s.OptimConfig, batch_size=32, epochs=30, lr=1e-3, min_lr=1e-6, warmup_epochs=5),
        "optimisation",
    )
    run: s.FinetuneRunConfig = section(partial(s.FinetuneRunConfig, save_ckpt_freq=1), "runtime")
    reference: s.FinetuneReference = section(s.FinetuneReference, s.REFERENCE, s.REFERENCE_HELP)
    finetune: s.FinetuneSection = section(s.FinetuneSection, s.FINE_TUNING)
    ema: s.EMAConfig = section(s.EMAConfig, "model EMA")


TASKS: dict[str, type[TaskConfig]] = {c.mode: c for c in (PretrainConfig, DistillConfig, FinetuneConfig)}

"""The objective registry: an MMKD term is one `Objective` subclass, decorated with `register`.

A term declares its flags (`Flag`: the command line and `MMKDConfig` are generated from them),
the encoder outputs it needs beyond the features, its alignment heads, the token counts it can
work with, its weight and its loss. `MMKDLoss` (``mmkd.py``) iterates the registered terms in
registration order, which is the order of the loss sum and of the heads in the state dict.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:
    from ..vit import EncoderOutput
    from .mmkd import MMKDConfig

# the reference's --distill modes (which of its four terms each computes is declared by the terms)
MODES = ("hybrid", "hinTop", "VTop", "onlymse", "onlykd")
# what the encoders return besides the features [B, P, C]: "attention" = last block's logits + values
ENCODER_OUTPUTS = ("attention",)


@dataclass(frozen=True)
class Flag:
    """One hyper-parameter: an `MMKDConfig` field and its command-line option.

    ``names``: option strings, the reference's spelling first (its error messages use it);
    ``dest``: the argparse attribute (default: ``field``); ``type``: default's type when None;
    ``choices``: allowed values; ``check``: value -> why it is wrong ("must be > 0") or None.
    Several terms may list the same Flag object (e.g. ``--num_k``); different flags may not
    share a field, a dest or an option string.
    """

    field: str
    names: tuple[str, ...]
    default: Any
    help: str = ""
    dest: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    what: str = ""  # what a choice names, for the error message ("distillation mode")
    check: Callable[[Any], str | None] | None = None

    @property
    def attr(self) -> str:
        """The argparse attribute holding the value."""
        return self.dest or self.field

    @property
    def parse(self) -> Callable[[str], Any]:
        return self.type or type(self.default)

    def problem(self, value: Any) -> str | None:
        """One line naming the option, when ``value`` is not allowed; else None."""
        option = self.names[0]
        if self.choices is not None and value not in self.choices:
            return f"{option} {value!r}: unknown {self.what or 'value'}; choose one of {', '.join(map(str, self.choices))}"
        reason = self.check(value) if self.check is not None else None
        return f"{option} {reason}, got {value}" if reason else None


def at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


@dataclass(frozen=True)
class Widths:
    """What heads are built from: the two encoders' widths, and whether alignment heads are on
    (``--alignment``: always, or auto with unequal widths)."""

    student: int
    teacher: int
    aligned: bool


@dataclass(frozen=True)
class VisibleTokens:
    """The masks a run draws: ``mask_type``, visible tokens per temporal slice S (0 for random
    masks) and per clip P."""

    mask_type: str
    per_slice: int
    total: int


@dataclass(frozen=True)
class Context:
    """What a term's loss gets besides the two outputs: the student's T' and its `prepare` result."""

    num_temporal: int
    prepared: Any = None


class Objective:
    """One MMKD term. Subclass it, set the class attributes, implement `weight` and `loss`."""

    name: str = ""  # key in the loss dict (logged as train_<name>)
    flags: tuple[Flag, ...] = ()
    needs: frozenset[str] = frozenset()  # encoder outputs beyond the features, from ENCODER_OUTPUTS
    modes: tuple[str, ...] = MODES  # the --distill modes that compute it

    def enabled(self, cfg: MMKDConfig) -> bool:
        return cfg.mode in self.modes

    def weight(self, cfg: MMKDConfig, terms: Collection[str]) -> float:
        """Its factor in the total, given the names of all enabled ``terms``."""
        raise NotImplementedError

    def build_heads(self, cfg: MMKDConfig, widths: Widths) -> dict[str, nn.Module | None]:
        """Trainable heads by attribute name of `MMKDLoss` (the state dict says ``heads.<name>.*``)."""
        return {}

    def check_fit(self, cfg: MMKDConfig, tokens: VisibleTokens) -> str | None:
        """Why the term cannot run on these masks (one line naming the flag to change), or None."""
        return None

    def prepare(self, out_t: EncoderOutput, cfg: MMKDConfig) -> Any:
        """Work started from the teacher's output before the student's forward (None: nothing)."""
        return None

    def loss(
        self,
        out_s: EncoderOutput,
        out_t: EncoderOutput,
        cfg: MMKDConfig,
        heads: Mapping[str, nn.Module | None],
        ctx: Context,
    ) -> Tensor:
        """Student / teacher outputs on the same P visible tokens -> scalar (unweighted)."""
        raise NotImplementedError


OBJECTIVES: dict[str, Objective] = {}
COMPOSITION_FLAGS = (
    Flag(
        "mode",
        ("--distill", "--distill_mode"),
        "hybrid",
        "which of the reference's terms are on (hybrid: all four)",
        dest="distill",
        choices=MODES,
        what="distillation mode",
    ),
    Flag(
        "alignment",
        ("--alignment",),
        "auto",
        "alignment heads: auto (only when the widths differ), always or none",
        choices=("auto", "always", "none"),
        what="alignment",
    ),
)


def objectives() -> tuple[Objective, ...]:
    """The registered terms, in registration order."""
    return tuple(OBJECTIVES.values())


def config_flags() -> tuple[Flag, ...]:
    """`MMKDConfig`'s fields: the composition's (mode, alignment), then every registered term's
    flags, each once, in the terms' order."""
    return _unique([*COMPOSITION_FLAGS, *(f for o in OBJECTIVES.values() for f in o.flags)])


def _unique(flags: list[Flag]) -> tuple[Flag, ...]:
    """The flags without repeats; ValueError when two different ones share a field, dest or option."""
    seen: dict[str, Flag] = {}
    for f in flags:
        for key in {f.field, f.attr, *f.names}:
            if seen.setdefault(key, f) is not f:
                raise ValueError(f"{key!r} is declared by two different MMKD flags")
    return tuple(dict.fromkeys(seen.values()))


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: adds one instance of ``cls`` to the registry (after the terms before it)."""
    term = cls()
    if not term.name or term.name == "loss" or term.name in OBJECTIVES:
        raise ValueError(f"an MMKD term needs a new name other than 'loss', got {term.name!r}")
    unknown = set(term.needs) - set(ENCODER_OUTPUTS)
    if unknown:
        raise ValueError(
            f"MMKD term {term.name!r} needs encoder outputs {sorted(unknown)}; the encoders return the "
            f"features and {', '.join(ENCODER_OUTPUTS)}"
        )
    try:
        _unique([*config_flags(), *term.flags])
    except ValueError as err:
        raise ValueError(f"MMKD term {term.name!r}: {err}") from None
    OBJECTIVES[term.name] = term
    return cls

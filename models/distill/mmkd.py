"""The MMKD objective: composes the four terms with their weights (spec §4.5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ..vit import EncoderOutput
from .global_attn import mm_global_loss
from .hint import mm_hint_loss
from .local_attn import VALUE_LAYOUTS, mm_local_loss
from .relation import mm_relation_loss, start_token_selection

# Which terms each reference ``--distill`` mode computes.
MODES: dict[str, tuple[str, ...]] = {
    "hybrid": ("hint", "relation", "global", "local"),
    "hinTop": ("hint", "relation", "global"),
    "VTop": ("hint", "relation", "local"),
    "onlymse": ("hint", "relation"),
    "onlykd": ("global", "local"),
}
ALIGNMENTS = ("auto", "always", "none")


@dataclass
class MMKDConfig:
    """Hyper-parameters of the MMKD loss (reference flag names in brackets)."""

    mode: str = "hybrid"  # [--distill] which terms are on, see MODES
    num_k: int = 10  # [--num_k] attention entries kept per row in MM-global / per slice in MM-local
    num_f: int = 10  # [--num_f] tokens kept per sample in MM-hint / MM-relation
    kd_T: float = 1.0  # [--kd_T] softmax temperature of the attention maps
    temperature_s: float = 0.1  # [--temperature_s] student similarity temperature (MM-relation)
    temperature_t: float = 0.05  # [--temperature_t] teacher similarity temperature (MM-relation)
    gamma: float = 0.1  # [--gamma] weight of MM-hint
    beta: float = 1.0  # [--beta] weight of the hidden-level terms
    beta_kd1: float = 0.1  # [--beta_kd1] weight of MM-global inside the hidden terms
    beta_kd2: float = 3.0  # [--beta_kd2] weight of MM-local inside the hidden terms
    alpha: float = 0.1  # [--alpha] weight of MM-relation (0 switches it off)
    alignment: str = "auto"  # auto: heads only when widths differ; always; none
    value_layout: str = "time_major"  # MM-local value pairing: time_major (correct) or reference

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown distillation mode {self.mode!r}; choose one of {sorted(MODES)}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {self.alignment!r}; choose one of {ALIGNMENTS}")
        if self.value_layout not in VALUE_LAYOUTS:
            raise ValueError(
                f"unknown MM-local value layout {self.value_layout!r}; choose one of {VALUE_LAYOUTS}"
            )
        for name in ("num_k", "num_f"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("kd_T", "temperature_s", "temperature_t"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(t for t in MODES[self.mode] if t != "relation" or self.alpha != 0)


class HintMLP(nn.Module):
    """MM-hint student alignment: Linear(Cs, 2Cs) -> ReLU -> Linear(2Cs, Ct)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, 2 * in_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return _in_own_dtype(lambda y: self.fc2(self.act(self.fc1(y))), self.fc1.weight, x)


class LinearHead(nn.Module):
    """Hidden-level alignment (one per side and per term); named ``fc`` like the reference."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return _in_own_dtype(self.fc, self.fc.weight, x)


def _in_own_dtype(fn, weight: Tensor, x: Tensor) -> Tensor:
    """Runs a head in its weights' dtype and returns the input's: DeepSpeed bf16/fp16 casts the heads
    to half while the objectives compute in float32 (a no-op when both are float32 / float64)."""
    return fn(x.to(weight.dtype)).to(x.dtype)


class MMKDLoss(nn.Module):
    """L = gamma*hint + beta*(beta_kd1*global + beta_kd2*local) + alpha*relation.

    Holds the trainable alignment heads (``align_feature``, ``global_s/t``, ``local_s/t``), built
    from the two widths: none when they are equal and ``alignment="auto"`` (the reference's
    ViT-B-student recipe), all the active terms need otherwise.
    """

    def __init__(self, student_dim: int, teacher_dim: int, cfg: MMKDConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MMKDConfig()
        use_heads = cfg.alignment == "always" or (cfg.alignment == "auto" and student_dim != teacher_dim)
        if not use_heads and student_dim != teacher_dim:
            raise ValueError(
                f"student width {student_dim} != teacher width {teacher_dim}: alignment heads are required "
                "(use --alignment auto or always)"
            )
        terms = cfg.terms
        self.align_feature = HintMLP(student_dim, teacher_dim) if use_heads and "hint" in terms else None
        for term in ("global", "local"):
            on = use_heads and term in terms
            setattr(self, f"{term}_s", LinearHead(student_dim, teacher_dim) if on else None)
            setattr(self, f"{term}_t", LinearHead(teacher_dim, teacher_dim) if on else None)

    @property
    def needs_attention(self) -> bool:
        return any(t in self.cfg.terms for t in ("global", "local"))

    def select(self, out_t: EncoderOutput) -> Callable[[], Tensor] | None:
        """Starts the relation term's token selection from the teacher's output (None without the
        term); pass it to :meth:`forward` (see `start_token_selection`: no host sync on a GPU when
        started before the student's forward)."""
        return start_token_selection(out_t.features, self.cfg.num_f) if "relation" in self.cfg.terms else None

    def forward(
        self,
        out_s: EncoderOutput,
        out_t: EncoderOutput,
        num_temporal: int,
        selected: Callable[[], Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Student / teacher encoder outputs on the same visible tokens -> {"loss", <term>: value}.

        ``selected``: :meth:`select` of ``out_t``, when started earlier.
        """
        c = self.cfg
        terms = c.terms
        losses: dict[str, Tensor] = {}
        if "hint" in terms:
            losses["hint"] = mm_hint_loss(out_s.features, out_t.features, self.align_feature, c.num_f)
        if "relation" in terms:
            losses["relation"] = mm_relation_loss(
                out_s.features,
                out_t.features,
                c.num_f,
                c.temperature_s,
                c.temperature_t,
                selected=selected() if selected is not None else None,
            )
        attn = (out_s.attn_logits, out_t.attn_logits, out_s.values, out_t.values)
        if "global" in terms:
            losses["global"] = mm_global_loss(*attn, c.num_k, c.kd_T, self.global_s, self.global_t)
        if "local" in terms:
            losses["local"] = mm_local_loss(
                *attn, num_temporal, c.num_k, c.kd_T, self.local_s, self.local_t, c.value_layout
            )
        # the reference weighs the hidden terms by beta_kd1 / beta_kd2 only when both are on
        # (hybrid, onlykd); hinTop / VTop add beta * their single term
        both = "global" in terms and "local" in terms
        weights = {
            "hint": c.gamma,
            "relation": c.alpha,
            "global": c.beta * (c.beta_kd1 if both else 1.0),
            "local": c.beta * (c.beta_kd2 if both else 1.0),
        }
        losses["loss"] = sum(weights[k] * v for k, v in losses.items())
        return losses

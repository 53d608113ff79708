"""The MMKD objective: the registered terms, each times its weight, summed (spec §4.5)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..vit import EncoderOutput
from .registry import Context, VisibleTokens, Widths, config_flags, objectives


class MMKDConfig:
    """Hyper-parameters of the MMKD loss: one attribute per `registry.config_flags()` field.

    Keywords are the fields (``mode`` [--distill], ``alignment``, ``num_k``, ``gamma``,
    ``value_layout`` [--local_value_layout], ... and those of any term registered later); the
    rest take the flags' defaults. Every value is checked here, once: ValueError with the
    option's one-line message (`engine.config` reads the command line into it and shows that as a
    usage error).
    """

    def __init__(self, **values: Any):
        flags = config_flags()
        unknown = sorted(set(values) - {f.field for f in flags})
        if unknown:
            raise TypeError(f"unknown MMKD settings {unknown}; known: {sorted(f.field for f in flags)}")
        for flag in flags:
            value = values.get(flag.field, flag.default)
            problem = flag.problem(value)
            if problem:
                raise ValueError(problem)
            setattr(self, flag.field, value)

    def __repr__(self) -> str:
        return f"MMKDConfig({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of the enabled terms, in registration order."""
        return tuple(o.name for o in objectives() if o.enabled(self))


def fit_problem(cfg: MMKDConfig, tokens: VisibleTokens) -> str | None:
    """The first enabled term that cannot run on these masks says why; None when all can."""
    for term in objectives():
        problem = term.check_fit(cfg, tokens) if term.enabled(cfg) else None
        if problem:
            return problem
    return None


class MMKDLoss(nn.Module):
    """L = sum over the enabled terms of weight * term; the reference's four give
    gamma*hint + beta*(beta_kd1*global + beta_kd2*local) + alpha*relation.

    Holds the trainable heads of the enabled terms as attributes under the terms' names
    (``align_feature``, ``global_s/t``, ``local_s/t``): alignment heads exist when the widths
    differ and ``alignment="auto"`` (none for the reference's ViT-B-student recipe), or with
    ``alignment="always"``.
    """

    def __init__(self, student_dim: int, teacher_dim: int, cfg: MMKDConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MMKDConfig()
        aligned = cfg.alignment == "always" or (cfg.alignment == "auto" and student_dim != teacher_dim)
        if not aligned and student_dim != teacher_dim:
            raise ValueError(
                f"student width {student_dim} != teacher width {teacher_dim}: alignment heads are required "
                "(use --alignment auto or always)"
            )
        self.enabled_terms = [o for o in objectives() if o.enabled(cfg)]
        self.head_names: dict[str, tuple[str, ...]] = {}
        widths = Widths(student_dim, teacher_dim, aligned)
        for term in self.enabled_terms:
            heads = term.build_heads(cfg, widths)
            for name, head in heads.items():
                if hasattr(self, name):
                    raise ValueError(f"MMKD term {term.name!r}: head name {name!r} is taken")
                setattr(self, name, head)
            self.head_names[term.name] = tuple(heads)

    @property
    def needs(self) -> frozenset[str]:
        """Encoder outputs the enabled terms need beyond the features (``"attention"``)."""
        return frozenset().union(*(t.needs for t in self.enabled_terms))

    def select(self, out_t: EncoderOutput) -> dict[str, Any] | None:
        """Starts the terms' work that needs only the teacher's output (the relation term's token
        selection; None when no term has any); pass it to :meth:`forward`. Started before the
        student's forward, it needs no host sync on a GPU (see `start_token_selection`)."""
        started = {t.name: t.prepare(out_t, self.cfg) for t in self.enabled_terms}
        return {k: v for k, v in started.items() if v is not None} or None

    def forward(
        self,
        out_s: EncoderOutput,
        out_t: EncoderOutput,
        num_temporal: int,
        selected: dict[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        """Student / teacher encoder outputs on the same visible tokens -> {"loss", <term>: value}.

        ``num_temporal``: the student's T'; ``selected``: :meth:`select` of ``out_t``, when started earlier.
        """
        selected = selected or {}
        losses: dict[str, Tensor] = {}
        for term in self.enabled_terms:
            heads = {name: getattr(self, name) for name in self.head_names[term.name]}
            ctx = Context(num_temporal, selected.get(term.name))
            losses[term.name] = term.loss(out_s, out_t, self.cfg, heads, ctx)
        names = tuple(losses)
        weights = {t.name: t.weight(self.cfg, names) for t in self.enabled_terms}
        losses["loss"] = sum(weights[k] * v for k, v in losses.items())
        return losses

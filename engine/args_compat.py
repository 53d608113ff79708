"""Reference flags that have no option of their own here, kept so the paper's command lines run.

The reference entry points (xiaojieli0903/MaskAgain: ``run_mae_pretraining.py``, ``run_kd.py`` /
``run_mae_kd.py``, ``run_class_finetuning.py``) define flags that they never read, and flags that
work there with one value only. Both kinds are accepted here, with the reference's meaning:

- never read by the reference: accepted, and ``--help`` says "unused";
- a value we cannot honour: `UsageError` with one line naming the flag and what to use instead.

The flags themselves are fields of the typed configs (`engine.config.sections`, their reference
section; those we honour sit with their concern), their checks in `engine.config.validate`.
"""

from __future__ import annotations

import argparse
import os

from common.cli import UsageError

UNUSED = "accepted for reference compatibility; unused"
# torchrun / srun are detected without a flag; --dist_on_itp maps OpenMPI's variables onto theirs
_OMPI = {
    "RANK": "OMPI_COMM_WORLD_RANK",
    "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
    "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK",
}
# RandAugment's geometric ops resample bilinearly (torchvision has no bicubic affine on tensors)
INTERPOLATIONS = ("bicubic", "bilinear")


class ReferenceBool(argparse.Action):
    """A switch that also takes the reference's ``type=bool`` spelling.

    ``--x`` and ``--x True`` turn it on, ``--no-x`` turns it off and ``--x ""`` leaves it off. The
    reference converted the value with ``bool(str)``, so ``--x False`` meant *True* there; that
    spelling is refused rather than silently repeated.
    """

    def __init__(self, option_strings, dest, default=False, help=None, **kwargs):
        negated = [f"--no-{s[2:]}" for s in option_strings if s.startswith("--")]
        super().__init__(
            [*option_strings, *negated], dest, nargs="?", default=default, help=help, metavar="True", **kwargs
        )

    def __call__(self, parser, namespace, values, option_string=None):
        name = option_string or self.option_strings[0]
        if name.startswith("--no-"):
            if values is not None:
                parser.error(f"{name} takes no value")
            setattr(namespace, self.dest, False)
            return
        word = "true" if values is None else values.strip().lower()
        if word in ("false", "0", "no", "off"):
            parser.error(
                f"{name} {values}: the reference reads every non-empty value as True (type=bool); "
                f"use --no-{name[2:]} to turn it off"
            )
        if word not in ("", "true", "1", "yes", "on"):
            parser.error(f"{name} takes no value or True, got {values!r}")
        setattr(namespace, self.dest, word != "")


def export_ompi_ranks() -> None:
    """--dist_on_itp: RANK / WORLD_SIZE / LOCAL_RANK from OpenMPI's variables, as the reference."""
    env = os.environ
    missing = [v for v in (*_OMPI.values(), "MASTER_ADDR", "MASTER_PORT") if v not in env]
    if missing:
        raise UsageError(
            f"--dist_on_itp reads OpenMPI's launcher variables, but {', '.join(missing)} is not set; "
            "launch with mpirun, or drop --dist_on_itp under torchrun / srun"
        )
    for ours, ompi in _OMPI.items():
        env[ours] = env[ompi]

"""Reference flags that have no option of their own here, kept so the paper's command lines run.

The reference entry points (xiaojieli0903/MaskAgain: ``run_mae_pretraining.py``, ``run_kd.py`` /
``run_mae_kd.py``, ``run_class_finetuning.py``) define flags that they never read, and flags that
work there with one value only. Both kinds are accepted here, with the reference's meaning:

- never read by the reference: accepted, and ``--help`` says "unused";
- a value we cannot honour: `UsageError` with one line naming the flag and what to use instead.

Reference flags that we honour sit with their concern in `engine.args`.
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


def check_reference_values(args: argparse.Namespace, mode: str) -> None:
    """UsageError for a reference value we cannot honour; maps --onlykd and --dist_on_itp."""
    if mode in ("pretrain", "distill") and args.pretrained:
        where = "--resume to continue a run" + (" and --path_t for the teacher" if mode == "distill" else "")
        raise UsageError(
            f"--pretrained {args.pretrained!r}: models are not loaded at creation (the reference's "
            f"factories fail on it too); drop --pretrained and use {where}"
        )
    if mode == "distill":
        if args.load_decoder:
            raise UsageError(
                "--load_decoder: the distillation student is encoder-only (--decoder_depth 0), there is "
                "no decoder to load; drop --load_decoder"
            )
        _resolve_onlykd(args)
    if mode == "finetune":
        if args.remode != "pixel":
            raise UsageError(
                f"--remode {args.remode!r}: random erasing fills with per-pixel noise only; "
                "use --remode pixel (the default), or --reprob 0 to switch erasing off"
            )
        if args.recount != 1:
            raise UsageError(
                f"--recount {args.recount}: random erasing erases at most one region per frame; use --recount 1"
            )
        if args.num_segments != 1:
            raise UsageError(
                f"--num_segments {args.num_segments}: clips are sampled as one segment (in the reference "
                "too, whose model then expects more frames than it gets); use --num_segments 1 and set --num_frames"
            )
        if args.train_interpolation not in INTERPOLATIONS:
            raise UsageError(
                f"--train_interpolation {args.train_interpolation!r}: RandAugment resamples bilinearly here; "
                f"use one of {', '.join(INTERPOLATIONS)}"
            )
    if args.dist_on_itp:
        _export_ompi_ranks()


def _resolve_onlykd(args: argparse.Namespace) -> None:
    # the reference's --onlykd drops MM-hint and MM-relation: loss = beta * (its attention terms)
    if not args.onlykd or args.distill == "onlykd":
        return
    if args.distill != "hybrid":
        raise UsageError(
            f"--onlykd with --distill {args.distill}: only hybrid's attention terms can be trained alone "
            "here; use --distill hybrid --onlykd (or --distill onlykd)"
        )
    print("note: --onlykd: training MM-global + MM-local only (--distill onlykd)")
    args.distill = "onlykd"


def _export_ompi_ranks() -> None:
    env = os.environ
    missing = [v for v in (*_OMPI.values(), "MASTER_ADDR", "MASTER_PORT") if v not in env]
    if missing:
        raise UsageError(
            f"--dist_on_itp reads OpenMPI's launcher variables, but {', '.join(missing)} is not set; "
            "launch with mpirun, or drop --dist_on_itp under torchrun / srun"
        )
    for ours, ompi in _OMPI.items():
        env[ours] = env[ompi]

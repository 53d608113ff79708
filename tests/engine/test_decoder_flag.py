"""--decoder torchcodec on every entry point: accepted where torchcodec loads, one line where it does not.

Before, the training and tool flags offered only auto / decord / pyav, so the optional decoder was reachable
from the datasets API alone."""

from __future__ import annotations

import pytest

from datasets.decoding_torchcodec import torchcodec_problem
from engine import args as cli_args
from engine.args import UsageError
from tests.engine.conftest import distill_argv, finetune_argv, run_script

PROBLEM = torchcodec_problem()


def _parsers(videos, teacher, tmp_path):
    import run_extract_features
    import run_inference
    import run_vis

    video = str(sorted((videos / "videos").rglob("*.mp4"))[0])
    return {
        "finetune": lambda: cli_args.parse("finetune", finetune_argv(videos, tmp_path / "f", "--decoder", "torchcodec")),
        "distill": lambda: cli_args.parse("distill", distill_argv(videos, teacher, tmp_path / "d", "--decoder", "torchcodec")),
        "features": lambda: run_extract_features.parse(["--data_path", str(videos / "train.csv"), "--output_dir",
                                                         str(tmp_path / "x"), "--decoder", "torchcodec"]),
        "vis": lambda: run_vis.parse([video, str(tmp_path / "v"), str(teacher), "--decoder", "torchcodec"]),
        "inference": lambda: run_inference.parse([video, "--checkpoint", str(teacher), "--decoder", "torchcodec"]),
    }  # fmt: skip


@pytest.mark.parametrize("entry", ["finetune", "distill", "features", "vis", "inference"])
def test_every_entry_point_takes_torchcodec_or_says_why_not(entry, videos, teacher_ckpt, tmp_path):
    parse = _parsers(videos, teacher_ckpt, tmp_path)[entry]
    if PROBLEM is None:
        assert parse().decoder == "torchcodec"
    else:
        with pytest.raises(UsageError, match="--decoder torchcodec: decoder 'torchcodec'") as err:
            parse()
        assert len(str(err.value).splitlines()) == 1


@pytest.mark.skipif(PROBLEM is None, reason="torchcodec loads here: nothing to refuse")
def test_unavailable_torchcodec_is_one_line_through_the_entry_point(videos, teacher_ckpt, tmp_path):
    proc = run_script("run_mmkd_distill.py", distill_argv(videos, teacher_ckpt, tmp_path, "--decoder", "torchcodec"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(PROBLEM)

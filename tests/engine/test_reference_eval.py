"""``run_class_finetuning.py ... --eval`` means what it means in VideoMAE / MMKD (spec §8).

It loads ``--resume``, else the newest checkpoint in ``--output_dir``, else ``--finetune``; runs the
multi-view test over the test list into ``<output_dir>/<rank>.txt``, merges, prints the reference's
result line, appends ``{"Final top-1", "Final Top-5"}`` to log.txt and trains nothing. Before, ``--eval``
was a one-clip validation of ``--finetune`` (now ``--validate_only``).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import timm
import torch

import models  # noqa: F401
from engine.evaluation import merge_views
from tests.engine.conftest import finetune_argv, run_script
from tests.engine.test_reference_checkpoints import save_model_layout

_LINE = re.compile(r"^Accuracy of the network on the 3 test videos: Top-1: ([\d.]+)%, Top-5: ([\d.]+)%$", re.M)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _records(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(finetuned, tmp_path_factory):
    """The session's fine-tuning epoch of a pico classifier, copied (--eval writes into its folder);
    its final multi-view test is the oracle."""
    out = tmp_path_factory.mktemp("trained") / "run"
    shutil.copytree(finetuned, out)
    return out, _records(out)[-1]["final_test"]


def _classifier(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("vit_pico_patch8", num_classes=3, all_frames=8, img_size=32)


def test_eval_tests_the_newest_checkpoint_in_output_dir(trained, videos):
    out, final = trained
    before = sorted(p.name for p in out.glob("checkpoint-*"))
    proc = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, out, "--eval")))
    assert f"{out / 'checkpoint-0.pth'}" in proc.stdout  # the newest numbered checkpoint
    found = _LINE.findall(proc.stdout)
    assert len(found) == 1
    # the same weights and test views as the training run's final test: the same figures
    assert float(found[0][0]) == pytest.approx(final["top1"], abs=0.006)
    assert float(found[0][1]) == pytest.approx(final["top5"], abs=0.006)
    assert _records(out)[-1] == {"Final top-1": pytest.approx(final["top1"]), "Final Top-5": pytest.approx(final["top5"])}
    # the reference's per-rank view file: a header line, then videos x clips x crops views
    assert len((out / "0.txt").read_text().splitlines()) == 1 + 3 * 2 * 2
    assert merge_views([out / "0.txt"]).top1 == pytest.approx(final["top1"])
    assert "Epoch [" not in proc.stdout and sorted(p.name for p in out.glob("checkpoint-*")) == before


def test_eval_prefers_resume_and_reads_the_reference_layout(trained, videos, tmp_path):
    """--resume wins over the output folder's checkpoints; a file in the reference's layout (its
    args Namespace included) scores as the same weights tested through --test --finetune."""
    out, _ = trained
    model = _classifier(seed=11)
    ref = save_model_layout(model, tmp_path / "checkpoint-99.pth")
    proc = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, out, "--eval", "--resume", str(ref))))
    assert f"from {ref}" in proc.stdout and "checkpoint-0.pth" not in proc.stdout
    got = _LINE.findall(proc.stdout)[0]
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    test = _ok(
        run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "t", "--test", "--finetune", str(plain)))
    )
    want = re.search(r"multi-view test: top-1 ([\d.]+)  top-5 ([\d.]+)", test.stdout).groups()
    assert [float(x) for x in got] == pytest.approx([float(x) for x in want], abs=0.006)


def test_eval_finds_a_newer_deepspeed_folder_and_falls_back_to_finetune(videos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"model": _classifier(1).state_dict(), "epoch": 1}, out / "checkpoint-1.pth")
    tag = out / "checkpoint-3"
    tag.mkdir()
    torch.save({"module": _classifier(2).state_dict(), "epoch": 3, "ds_version": "0.5.8", "global_steps": 9},
               tag / "mp_rank_00_model_states.pt")  # fmt: skip
    proc = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, out, "--eval")))
    assert f"from {tag}" in proc.stdout and "DeepSpeed bookkeeping" in proc.stdout
    newest = _LINE.findall(proc.stdout)
    # the same folder named by --resume, from elsewhere: the same figures
    proc = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "o", "--eval", "--resume", str(tag))))
    assert _LINE.findall(proc.stdout) == newest
    # no checkpoint to resume (--no_auto_resume): the --finetune weights, said so
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, out, "--eval", "--no_auto_resume", "--finetune", str(out / "checkpoint-1.pth")),
        )
    )
    assert "multi-view test of the --finetune weights" in proc.stdout and len(_LINE.findall(proc.stdout)) == 1


def test_eval_bad_inputs_are_one_line(videos, tmp_path):
    _one_line_error(
        run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "empty", "--eval")),
        "--eval found nothing to test",
    )
    torch.manual_seed(0)
    pre = timm.create_model("pretrain_videomae_pico_patch8", img_size=32, num_frames=8, decoder_depth=1)
    torch.save({"model": pre.state_dict()}, tmp_path / "pre.pth")
    _one_line_error(
        run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "o", "--eval", "--resume", str(tmp_path / "pre.pth"))),
        "is not a fine-tuned checkpoint of this classifier",
    )  # fmt: skip
    _one_line_error(
        run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "o", "--eval", "--test")),
        "pass one of them",
    )


def test_validate_only_is_the_one_clip_validation(trained, videos, tmp_path):
    out, _ = trained
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, tmp_path / "v", "--validate_only", "--finetune", str(out / "checkpoint-0.pth")),
        )
    )
    assert "validation: top-1" in proc.stdout and not _LINE.search(proc.stdout)
    assert not (tmp_path / "v" / "0.txt").exists()


@pytest.mark.slow
def test_eval_on_two_ranks_writes_a_file_per_rank_and_merges_to_the_one_rank_figures(trained, videos, tmp_path):
    out, final = trained
    ckpt = out / "checkpoint-0.pth"
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, tmp_path / "two", "--eval", "--resume", str(ckpt), "--dist_eval"),
            torchrun=2,
        )
    )
    found = _LINE.findall(proc.stdout)
    assert len(found) == 1  # rank 0 alone prints the result
    assert float(found[0][0]) == pytest.approx(final["top1"], abs=0.006)
    views = [(tmp_path / "two" / f"{r}.txt").read_text().splitlines()[1:] for r in (0, 1)]
    assert all(views) and sum(map(len, views)) == 3 * 2 * 2


def test_test_views_outside_a_shared_output_dir_are_one_line(videos, tmp_path):
    """A multi-node run whose nodes write into folders that are not shared: rank 0 finds its own view
    file but not the other ranks'. Before: a FileNotFoundError traceback in the merge."""
    from datasets import build_multiview_dataset
    from datasets.collate import collate_batch
    from engine.args import UsageError
    from engine.distributed import DistEnv
    from engine.evaluation import multiview_test
    from engine.precision import autocast_context

    ds = build_multiview_dataset(videos / "test.csv", root=videos, num_frames=8, sampling_rate=2, input_size=32,
                                 short_side_size=32, test_num_segment=1, test_num_crop=1, normalize=False)  # fmt: skip
    loader = [collate_batch([ds[i] for i in range(len(ds))])]
    rank0_of_two = DistEnv(0, 2, 0, torch.device("cpu"), distributed=False, backend=None)
    autocast = lambda: autocast_context(torch.device("cpu"), "fp32")  # noqa: E731
    with pytest.raises(UsageError, match=r"test views of 1 rank\(s\) \(1.txt\) are not in .*shared by all nodes"):
        multiview_test(_classifier(0), loader, rank0_of_two, str(tmp_path), autocast, folder_name="views")
    assert (tmp_path / "views" / "0.txt").is_file()

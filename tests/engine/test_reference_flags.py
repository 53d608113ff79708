"""Every flag of the reference entry points parses for the same job, with the reference's meaning.

The tables below are data read from xiaojieli0903/MaskAgain at commit
205696d29b12e76f2047d0f25876bf72dc5d2298, ``get_args()`` of ``run_mae_pretraining.py`` (pre-training),
``run_kd.py`` and ``run_mae_kd.py`` (distillation) and ``run_class_finetuning.py`` (fine-tuning): each
flag once, with the reference's default as its value, except where the flag has no default that could
be written (paths, ``None``) or where the default fails in the reference itself (``--distill hint``).
``type=bool`` flags keep their spelling: ``True`` for on and ``""`` (``bool("")``) for off.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex

import pytest
import torch

from engine.args import UsageError, build_parser, parse
from engine.build import build_classifier
from engine.cli import EXIT_USAGE, run
from tests.engine.conftest import finetune_argv, run_script

_COMMON_HEAD = """
--opt adamw --opt_eps 1e-8 --opt_betas 0.9 0.95 --clip_grad 3.0 --momentum 0.9 --weight_decay 0.05
--weight_decay_end 0.05 --lr 1.5e-4 --warmup_lr 1e-6 --min_lr 1e-5 --warmup_epochs 40 --warmup_steps -1
--use_checkpoint --color_jitter 0.0 --train_interpolation bicubic --data_path {list}
--imagenet_default_mean_and_std --num_frames 16 --sampling_rate 4 --output_dir {out} --log_dir {out}
--device cuda --seed 0 --resume {ckpt} --pretrained "" --auto_resume --no_auto_resume --start_epoch 0
--num_workers 10 --pin_mem --no_pin_mem --world_size 1 --local_rank -1 --dist_on_itp --dist_url env://
"""
PRETRAIN = (
    """
--batch_size 12 --epochs 800 --save_ckpt_freq 50 --model pretrain_videomae_base_patch16_224 --decoder_depth 4
--mask_type tube --mask_ratio 0.75 --context_ratio 0.25 --input_size 224 --drop_path 0.0 --normlize_target True
"""
    + _COMMON_HEAD
)
_KD = (
    """
--batch_size 2 --epochs 100 --save_ckpt_freq 50 --init_epochs 30 --model_s pretrain_videomae_base_patch16_224
--decoder_depth 4 --mask_type tube --mask_ratio 0.75 --context_ratio 0.25 --input_size 224 --drop_path 0.0
--normlize_target True
"""
    + _COMMON_HEAD
    + """
--path_t {ckpt} --distill hybrid --gamma 1 --alpha {alpha} --beta 1 --beta_kd1 1 --beta_kd2 1 --kd_T 4
--temperature_s 0.1 --temperature_t 0.05 --num_k 10 --num_f 10 --load_decoder "" --is_att "" --onlykd ""
--ckpt_url ""
"""
)
RUN_KD, RUN_MAE_KD = _KD.replace("{alpha}", "0"), _KD.replace("{alpha}", "0.1")
FINETUNE = """
--batch_size 64 --epochs 30 --update_freq 1 --save_ckpt_freq 100 --model vit_base_patch16_224 --tubelet_size 2
--input_size 224 --fc_drop_rate 0.0 --drop 0.0 --attn_drop_rate 0.0 --drop_path 0.1
--disable_eval_during_finetuning --model_ema --model_ema_decay 0.9999 --model_ema_force_cpu --opt adamw
--opt_eps 1e-8 --opt_betas 0.9 0.999 --clip_grad 3.0 --momentum 0.9 --weight_decay 0.05 --weight_decay_end 0.05
--lr 1e-3 --layer_decay 0.75 --warmup_lr 1e-6 --min_lr 1e-6 --warmup_epochs 5 --warmup_steps -1
--color_jitter 0.4 --num_sample 2 --aa rand-m7-n4-mstd0.5-inc1 --smoothing 0.1 --train_interpolation bicubic
--crop_pct 0.875 --short_side_size 224 --test_num_segment 5 --test_num_crop 3 --reprob 0.25 --remode pixel
--recount 1 --resplit --mixup 0.8 --cutmix 1.0 --cutmix_minmax 0.2 0.8 --mixup_prob 1.0 --mixup_switch_prob 0.5
--mixup_mode batch --finetune {ckpt} --model_key "model|module" --model_prefix "" --init_scale 0.001
--use_checkpoint --use_mean_pooling --use_cls --data_path {folder} --eval_data_path {folder} --nb_classes 400
--imagenet_default_mean_and_std --num_segments 1 --num_frames 16 --sampling_rate 4 --data_set Kinetics-400
--output_dir {out} --log_dir {out} --device cuda --seed 0 --resume {ckpt} --auto_resume --no_auto_resume
--save_ckpt --no_save_ckpt --start_epoch 0 --eval --dist_eval --num_workers 10 --pin_mem --no_pin_mem
--world_size 1 --local_rank -1 --dist_on_itp --dist_url env:// --enable_deepspeed --ckpt_url ""
"""
# reference file -> (our job, its flags with values, number of flags it defines)
REFERENCE = {
    "run_mae_pretraining.py": ("pretrain", PRETRAIN, 46),
    "run_kd.py": ("distill", RUN_KD, 63),
    "run_mae_kd.py": ("distill", RUN_MAE_KD, 63),
    "run_class_finetuning.py": ("finetune", FINETUNE, 83),
}
ENTRY = {"pretrain": "run_mae_pretraining", "distill": "run_mmkd_distill", "finetune": "run_class_finetuning"}


@pytest.fixture
def paths(tmp_path, monkeypatch) -> dict[str, str]:
    """Files the flags point at, and OpenMPI's variables for --dist_on_itp (restored afterwards)."""
    for name in ("train.csv", "val.csv", "test.csv"):
        (tmp_path / name).write_text("a.mp4 0\n")
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"epoch": 0}, ckpt)
    for name, value in dict(
        OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_SIZE="1", OMPI_COMM_WORLD_LOCAL_RANK="0",
        MASTER_ADDR="127.0.0.1", MASTER_PORT="29500", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
    ).items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return dict(
        list=str(tmp_path / "train.csv"), folder=str(tmp_path), ckpt=str(ckpt), out=str(tmp_path / "o")
    )


def _fragments(table: str, paths: dict[str, str]) -> list[list[str]]:
    """'--a 1 --b --c x y' -> [['--a', '1'], ['--b'], ['--c', 'x', 'y']] (a lone '-1' is a value)."""
    out: list[list[str]] = []
    for token in shlex.split(table.format(**paths)):
        if token.startswith("--"):
            out.append([token])
        else:
            out[-1].append(token)
    return out


def _base(job: str, paths: dict[str, str]) -> list[str]:
    required = {
        "pretrain": ["--data_path", paths["list"]],
        "distill": ["--data_path", paths["list"], "--path_t", paths["ckpt"]],
        "finetune": ["--data_path", paths["folder"]],
    }
    return required[job]


@pytest.mark.parametrize("reference", sorted(REFERENCE))
def test_table_lists_every_flag_the_reference_defines_once(reference, paths):
    job, table, count = REFERENCE[reference]
    names = [f[0] for f in _fragments(table, paths)]
    assert len(names) == len(set(names)) == count
    known = build_parser(job)._option_string_actions
    assert [n for n in names if n not in known] == []


@pytest.mark.parametrize("reference", sorted(REFERENCE))
def test_every_reference_flag_parses_alone_and_all_together(reference, paths):
    job, table, _ = REFERENCE[reference]
    fragments = _fragments(table, paths)
    for fragment in fragments:
        parse(job, _base(job, paths) + fragment)
    args = parse(job, [token for fragment in fragments for token in fragment])
    # the reference's meaning of the switches given last on the line
    assert args.run.auto_resume is False and args.data.pin_mem is False
    if job == "finetune":
        assert args.run.save_ckpt is False and args.finetune.use_mean_pooling is False
        assert (
            args.finetune.disable_eval_during_finetuning
            and args.ema.model_ema
            and args.optim.update_freq == 1
        )
    else:
        assert (args.mae if job == "pretrain" else args.teacher).normlize_target is True
    if job == "distill":
        ref, mode = args.reference, args.mmkd.mode
        assert (args.teacher.onlykd, ref.is_att, ref.load_decoder, mode) == (False, False, False, "hybrid")


def test_reference_short_options_of_the_loss_weights(paths):
    args = parse("distill", _base("distill", paths) + "-r 0.3 -a 0.2 -b 2".split())
    assert (args.mmkd.gamma, args.mmkd.alpha, args.mmkd.beta) == (0.3, 0.2, 2.0)


def test_type_bool_spellings(paths):
    base = _base("distill", paths)
    assert parse("distill", [*base, "--is_att", "True"]).reference.is_att is True
    assert parse("distill", [*base, "--no-normlize_target"]).teacher.normlize_target is False
    assert parse("pretrain", [*base[:2], "--normalize_target", "True"]).mae.normlize_target is True


@pytest.mark.parametrize("value", ["False", "0", "maybe"])
def test_type_bool_value_that_the_reference_would_read_as_true_is_refused(value, paths, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("distill", [*_base("distill", paths), "--onlykd", value])
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--onlykd" in err[0]


def test_onlykd_trains_the_attention_terms_only(paths, capsys):
    args = parse("distill", [*_base("distill", paths), "--onlykd", "True"])
    assert args.mmkd.mode == "onlykd" and "--onlykd" in capsys.readouterr().out
    assert (
        parse("distill", [*_base("distill", paths), "--onlykd", "--distill", "onlykd"]).mmkd.mode == "onlykd"
    )
    assert args.to_args()["distill"] == "onlykd"  # the saved arguments keep the reference's dest


def test_dist_on_itp_exports_openmpi_ranks(paths, monkeypatch):
    for name, value in dict(
        OMPI_COMM_WORLD_RANK="5", OMPI_COMM_WORLD_SIZE="8", OMPI_COMM_WORLD_LOCAL_RANK="1"
    ).items():
        monkeypatch.setenv(name, value)
    parse("pretrain", [*_base("pretrain", paths), "--dist_on_itp"])
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "1")


@pytest.mark.parametrize(
    "job, extra, match",
    [
        ("pretrain", "--pretrained {ckpt}", "--pretrained"),
        ("distill", "--pretrained True", "--pretrained"),
        ("distill", "--load_decoder True", "--load_decoder"),
        ("distill", "--onlykd True --distill VTop", "--onlykd with --distill VTop"),
        ("finetune", "--remode const", "--remode 'const'"),
        ("finetune", "--recount 2", "--recount 2"),
        ("finetune", "--num_segments 2", "--num_segments 2"),
        ("finetune", "--train_interpolation random", "--train_interpolation 'random'"),
        ("finetune", "--update_freq 0", "--update_freq"),
        ("pretrain", "--dist_on_itp", "--dist_on_itp"),
    ],
)
def test_unhonourable_values_exit_2_with_one_line(job, extra, match, paths, capsys, monkeypatch):
    if "dist_on_itp" in extra:
        monkeypatch.delenv("OMPI_COMM_WORLD_RANK")
    main = importlib.import_module(ENTRY[job]).main
    code = run(main, _base(job, paths) + shlex.split(extra.format(**paths)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert len(err) == 1 and match in err[0], err


def test_help_names_the_unused_reference_flags(capsys):
    for job in ("pretrain", "distill", "finetune"):
        with pytest.raises(SystemExit):
            build_parser(job).parse_args(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "reference compatibility" in text
        for flag in ("--imagenet_default_mean_and_std", "--color_jitter"):
            assert f"{flag}" in text
        assert text.count("accepted for reference compatibility; unused") >= {
            "pretrain": 4,
            "distill": 8,
        }.get(job, 8)


def test_no_save_ckpt_and_no_eval_during_finetuning(videos, tmp_path):
    """The reference meaning: no checkpoint file at all, no validation pass, the final test still runs."""
    out = tmp_path / "ft"
    argv = finetune_argv(videos, out, "--no_save_ckpt", "--disable_eval_during_finetuning", "--use_cls")
    proc = run_script("run_class_finetuning.py", argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list(out.glob("checkpoint*"))
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert not any(k.startswith("val_") for k in log[0]) and "train_loss" in log[0]
    assert log[-1]["final_test"]["num_videos"] == 3
    # Validating after each epoch changes nothing the run reports (the quickstart leaves it out): the
    # same training losses and the same final multi-view test.
    validated = tmp_path / "ft_val"
    proc = run_script("run_class_finetuning.py", finetune_argv(videos, validated, "--no_save_ckpt", "--use_cls"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with_val = [json.loads(line) for line in (validated / "log.txt").read_text().splitlines()]
    assert any(k.startswith("val_") for k in with_val[0])
    assert with_val[0]["train_loss"] == log[0]["train_loss"]
    assert with_val[-1]["final_test"] == log[-1]["final_test"]


def _classifier_args(paths: dict[str, str], *extra: str):
    clip = "--model vit_pico_patch8 --num_frames 8 --input_size 32 --nb_classes 3".split()
    return parse("finetune", [*_base("finetune", paths), *clip, *extra])


def test_model_key_and_model_prefix_pick_the_finetune_weights(paths, tmp_path):
    source, _ = build_classifier(_classifier_args(paths), 3)
    path = tmp_path / "wrapped.pth"
    weights = {f"net.{k}": v for k, v in source.state_dict().items()}
    torch.save({"model": {}, "weights": weights}, path)
    args = _classifier_args(
        paths, "--finetune", str(path), "--model_key", "nothing|weights", "--model_prefix", "net."
    )
    model, report = build_classifier(args, 3)
    assert "tensors loaded" in report
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(UsageError, match="--model_prefix 'head.' starts no key"):
        build_classifier(
            _classifier_args(
                paths, "--finetune", str(path), "--model_key", "weights", "--model_prefix", "head."
            ),
            3,
        )


def test_tubelet_size_is_the_models(paths):
    model, _ = build_classifier(_classifier_args(paths, "--tubelet_size", "4"), 3)
    assert model.patch_embed.tubelet_size == 4 and model.patch_embed.grid_size[0] == 2

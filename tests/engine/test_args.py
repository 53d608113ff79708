"""Command-line parsing: reference command lines parse unchanged; bad values give one clear line."""

from __future__ import annotations

import pytest

from engine.args import UsageError, build_parser, parse


@pytest.fixture
def data(tmp_path):
    lst = tmp_path / "train.csv"
    lst.write_text("a.mp4 0\n")
    for name in ("train.csv", "val.csv", "test.csv"):
        (tmp_path / name).write_text("a.mp4 0\n")
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes(b"x")
    return tmp_path


def test_reference_distill_command_line_parses(data):
    # flags as in the MaskAgain K400 ViT-S script
    argv = (
        f"--data_path {data}/train.csv --mask_type tube --mask_ratio 0.9 --model pretrain_videomae_small_patch16_224 "
        f"--path_t {data}/teacher.pth --distill hybrid --kd_T 1 --beta 1 --beta_kd1 0.1 --beta_kd2 3 --gamma 0.1 "
        "--alpha 0.1 --num_k 10 --num_f 10 --temperature_s 0.1 --temperature_t 0.05 --decoder_depth 4 "
        "--batch_size 64 --num_frames 16 --sampling_rate 4 --opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40 "
        f"--save_ckpt_freq 20 --epochs 400 --log_dir {data}/out --output_dir {data}/out --lr 1.5e-4 --drop_path 0.1 "
        "--weight_decay 0.05 --normlize_target True"
    ).split()  # --normlize_target True: the reference's type=bool spelling parses as it is
    args = parse("distill", argv)
    m = args.mmkd
    assert (m.kd_T, m.beta_kd1, m.beta_kd2, m.gamma, m.alpha) == (1.0, 0.1, 3.0, 0.1, 0.1)
    assert args.optim.opt_betas == [0.9, 0.95] and args.teacher.decoder_depth == 0
    assert args.teacher.teacher_precision == "fp32"


def test_aliases_match_reference_names(data):
    base = f"--data_path {data}/train.csv --path_t {data}/teacher.pth".split()
    a = parse(
        "distill",
        base
        + "--hint_weight 0.3 --relation_weight 0.2 --global_weight 2 --local_weight 4 --attn_topk 5 --hint_topk 6 --model_s pretrain_videomae_base_patch16_224".split(),
    )
    m = a.mmkd
    assert (m.gamma, m.alpha, m.beta_kd1, m.beta_kd2, m.num_k, m.num_f) == (0.3, 0.2, 2.0, 4.0, 5, 6)
    assert a.model.model == "pretrain_videomae_base_patch16_224"


def test_reference_finetune_command_line_parses(data):
    argv = (
        f"--model vit_small_patch16_224 --data_set Kinetics-400 --nb_classes 400 --data_path {data} "
        f"--finetune {data}/teacher.pth --log_dir {data}/o --output_dir {data}/o --batch_size 32 --num_sample 2 "
        "--input_size 224 --short_side_size 224 --save_ckpt_freq 10 --num_frames 16 --sampling_rate 4 --opt adamw "
        "--lr 1e-3 --opt_betas 0.9 0.999 --weight_decay 0.05 --epochs 150 --dist_eval --test_num_segment 5 "
        "--test_num_crop 3 --layer_decay 0.75 --warmup_lr 1e-6 --min_lr 1e-5 --smoothing 0.1 --mixup 0.8 "
        "--cutmix 1.0 --drop_path 0.1 --fc_drop_rate 0.5 --init_scale 0.001 --enable_deepspeed"
    ).split()
    args = parse("finetune", argv)
    assert (
        args.finetune.layer_decay == 0.75
        and args.finetune.dist_eval
        and args.run.enable_deepspeed
        and args.optim.weight_decay_end == 0.05
    )


def test_reference_pretrain_command_line_parses(data):
    argv = (
        f"--data_path {data}/train.csv --mask_type tube --mask_ratio 0.9 --model pretrain_videomae_base_patch16_224 "
        "--decoder_depth 4 --batch_size 32 --num_frames 16 --sampling_rate 4 --opt adamw --opt_betas 0.9 0.95 "
        f"--warmup_epochs 40 --save_ckpt_freq 20 --epochs 801 --log_dir {data}/o --output_dir {data}/o --lr 1.5e-4"
    ).split()
    args = parse("pretrain", argv)
    assert args.mae.decoder_depth == 4 and args.mae.normlize_target


@pytest.mark.parametrize(
    "mode, extra, match",
    [
        ("distill", "--mask_ratio 1.0", "--mask_ratio"),
        ("distill", "--mask_ratio -0.1", "--mask_ratio"),
        ("distill", "--distill bogus", "--distill"),
        ("distill", "--data_set K700", "--data_set"),
        ("distill", "--batch_size 0", "--batch_size"),
        ("distill", "--kd_T 0", "--kd_T"),
        ("distill", "--num_k 0", "--num_k"),
        ("distill", "--opt_betas 0.9", "--opt_betas"),
        ("distill", "--lr -1", "--lr"),
        ("distill", "--resume /nonexistent.pth", "--resume"),
        ("distill", "--output_dir {data}/train.csv/out", "--output_dir"),
        ("distill", "--precision fp16 --device cpu", "--precision"),
    ],
)
def test_bad_values_are_one_line_usage_errors(data, mode, extra, match):
    argv = f"--data_path {data}/train.csv --path_t {data}/teacher.pth {extra.format(data=data)}".split()
    with pytest.raises(UsageError, match=match) as err:
        parse(mode, argv)
    assert "\n" not in str(err.value)


def test_missing_teacher_and_data(data, tmp_path):
    with pytest.raises(UsageError, match="--path_t"):
        parse("distill", f"--data_path {data}/train.csv".split())
    with pytest.raises(UsageError, match="--path_t"):
        parse("distill", f"--data_path {data}/train.csv --path_t {tmp_path}/nope.pth".split())
    with pytest.raises(UsageError, match="--data_path"):
        parse("distill", f"--path_t {data}/teacher.pth".split())
    with pytest.raises(UsageError, match="--data_path"):
        parse("finetune", [])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="train.csv"):
        parse("finetune", f"--data_path {empty}".split())


def test_mixup_needs_even_batch(data):
    with pytest.raises(UsageError, match="even"):
        parse("finetune", f"--data_path {data} --mixup 0.8 --batch_size 3 --num_sample 1".split())


def test_no_type_bool_flags():
    for mode in ("pretrain", "distill", "finetune"):
        for action in build_parser(mode)._actions:
            assert action.type is not bool, action.dest


def test_short_side_size_follows_input_size(data):
    """Eval crops show the whole short side unless asked otherwise (a default of 224 at --input_size 32
    would evaluate on a zoomed-in patch)."""
    assert parse("finetune", f"--data_path {data} --input_size 32".split()).finetune.short_side_size == 32
    assert parse("finetune", f"--data_path {data}".split()).finetune.short_side_size == 224  # every recipe
    assert (
        parse(
            "finetune", f"--data_path {data} --input_size 32 --short_side_size 40".split()
        ).finetune.short_side_size
        == 40
    )
    with pytest.raises(UsageError, match="--short_side_size 24 is smaller than --input_size 32"):
        parse("finetune", f"--data_path {data} --input_size 32 --short_side_size 24".split())

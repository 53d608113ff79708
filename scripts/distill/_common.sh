# shellcheck shell=bash
# MMKD distillation settings shared by every row of spec §5; sourced by a recipe script after it sets
# DATASET (for the messages), TEACHER_NAME (which VideoMAE checkpoint TEACHER must be) and ROW_FLAGS
# (what that row changes). Flags given to the recipe script come last and win.
: "${TEACHER:?set TEACHER to ${TEACHER_NAME}}"
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/launch.sh"

launch run_mmkd_distill.py \
  --data_path "$DATA_DIR/train.csv" --output_dir "$OUT_DIR" --log_dir "$OUT_DIR" \
  --model_t pretrain_videomae_base_patch16_224 --path_t "$(abspath "$TEACHER")" --decoder_depth 0 \
  --mask_type tube --num_frames 16 --sampling_rate 4 --batch_size 64 \
  --opt adamw --opt_betas 0.9 0.95 --weight_decay 0.05 --drop_path 0.1 \
  --epochs 400 --warmup_epochs 40 --warmup_lr 1e-6 --min_lr 1e-5 \
  --distill hybrid --kd_T 1 --num_k 10 --num_f 10 --beta 1 --alpha 0.1 \
  --temperature_s 0.1 --temperature_t 0.05 \
  --precision fp16 --teacher_precision fp32 \
  "${ROW_FLAGS[@]}" "$@"

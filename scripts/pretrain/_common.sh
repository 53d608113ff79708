# shellcheck shell=bash
# VideoMAE pre-training settings on Kinetics-400 (VideoMAE's published scripts) shared by the ViT-S
# and ViT-B rows; sourced by a recipe script after it sets ROW_FLAGS. Flags given to the recipe
# script come last and win (e.g. --epochs 800 for the shorter schedule).
DATASET="Kinetics-400"
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/launch.sh"

launch run_mae_pretraining.py \
  --data_path "$DATA_DIR/train.csv" --output_dir "$OUT_DIR" --log_dir "$OUT_DIR" \
  --mask_type tube --mask_ratio 0.9 --decoder_depth 4 --num_frames 16 --sampling_rate 4 --batch_size 32 \
  --opt adamw --opt_betas 0.9 0.95 --lr 1.5e-4 --weight_decay 0.05 \
  --epochs 1600 --warmup_epochs 40 --warmup_lr 1e-6 --min_lr 1e-5 --save_ckpt_freq 20 \
  --precision fp16 \
  "${ROW_FLAGS[@]}" "$@"

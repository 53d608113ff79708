# shellcheck shell=bash
# VideoMAE pre-training settings shared by every row (VideoMAE's published scripts, plus the defaults of
# its run_mae_pretraining.py that those scripts leave out: lr 1.5e-4, warmup_lr 1e-6, min_lr 1e-5);
# sourced by a recipe script after it sets DATASET (for the messages) and ROW_FLAGS (model, mask ratio,
# decoder depth, batch, frame stride, lr, schedule). Flags given to the recipe script come last and win.
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/launch.sh"

launch run_mae_pretraining.py \
  --data_path "$DATA_DIR/train.csv" --output_dir "$OUT_DIR" --log_dir "$OUT_DIR" \
  --mask_type tube --num_frames 16 \
  --opt adamw --opt_betas 0.9 0.95 --weight_decay 0.05 \
  --warmup_epochs 40 --warmup_lr 1e-6 --min_lr 1e-5 \
  --precision fp16 \
  "${ROW_FLAGS[@]}" "$@"

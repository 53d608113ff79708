# shellcheck shell=bash
# VideoMAE's own fine-tuning settings (its published scripts/*/finetune.sh), shared by the
# scripts/finetune/videomae_*.sh rows; sourced by a recipe script after it sets DATASET (--data_set) and
# ROW_FLAGS (what that row passes). The defaults of VideoMAE's run_class_finetuning.py that its scripts
# rely on are spelled out here or in the rows (ours differ: mixup and cutmix are off by default).
# Flags given to the recipe script come last and win. Multi-view testing runs after the last epoch.
: "${CHECKPOINT:?set CHECKPOINT to the VideoMAE pre-training checkpoint to fine-tune}"
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/launch.sh"

launch run_class_finetuning.py \
  --data_path "$DATA_DIR" --finetune "$(abspath "$CHECKPOINT")" \
  --output_dir "$OUT_DIR" --log_dir "$OUT_DIR" --data_set "$DATASET" \
  --num_frames 16 --input_size 224 --short_side_size 224 \
  --opt adamw --opt_betas 0.9 0.999 --weight_decay 0.05 --warmup_epochs 5 \
  --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --init_scale 0.001 \
  --test_num_crop 3 --dist_eval --precision fp16 \
  "${ROW_FLAGS[@]}" "$@"

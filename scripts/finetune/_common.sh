# shellcheck shell=bash
# Fine-tuning settings shared by every row of spec §5; sourced by a recipe script after it sets
# DATASET (--data_set) and ROW_FLAGS (what that row changes). Flags given to the recipe script come
# last and win. Multi-view testing (--test_num_segment x --test_num_crop) runs after the last epoch.
: "${CHECKPOINT:?set CHECKPOINT to the distilled (or pre-trained) checkpoint to fine-tune}"
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/launch.sh"

# The reference's UCF101 scripts give no --smoothing/--mixup/--cutmix and so ran with its defaults
# 0.1/0.8/1.0; our defaults turn mixup off, so every row states these three values.
launch run_class_finetuning.py \
  --data_path "$DATA_DIR" --finetune "$(abspath "$CHECKPOINT")" \
  --output_dir "$OUT_DIR" --log_dir "$OUT_DIR" --data_set "$DATASET" \
  --batch_size 32 --num_sample 2 --num_frames 16 --input_size 224 --short_side_size 224 \
  --opt adamw --opt_betas 0.9 0.999 --weight_decay 0.05 --warmup_epochs 5 --min_lr 1e-5 \
  --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --init_scale 0.001 \
  --test_num_crop 3 --dist_eval --use_checkpoint --precision fp16 \
  "${ROW_FLAGS[@]}" "$@"

#!/usr/bin/env bash
# Visualises what MMKD distils on one clip: the tube-masked frames, the reconstruction, and the
# MM-global / MM-local attention of one query token (--idx within temporal slice --idx_f) and the
# MM-hint selection, for the student and, when TEACHER is set, the teacher beside it.
# Env: VIDEO, OUTPUT_DIR, CHECKPOINT (student), TEACHER (optional), MODEL (student architecture,
# pretrain_videomae_small_patch16_224), PYTHON (python). MaskAgain's names work too: VIDEO_PATH,
# OUTPUT_PREFIX, MODEL_PATH, AREC. Extra arguments override the flags; MaskAgain's settings are
# `bash scripts/vis_kd.sh --mask_ratio 0.0 --idx 118 --idx_f 0` (at 224 px, 196 tokens per slice),
# and its own run_vis.py command line runs unchanged against run_vis.py.
set -euo pipefail
VIDEO="${VIDEO:-${VIDEO_PATH:-}}"
OUTPUT_DIR="${OUTPUT_DIR:-${OUTPUT_PREFIX:-}}"
CHECKPOINT="${CHECKPOINT:-${MODEL_PATH:-}}"
MODEL="${MODEL:-${AREC:-pretrain_videomae_small_patch16_224}}"
: "${VIDEO:?set VIDEO to the video file to visualise (or VIDEO_PATH)}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to the folder for the images (or OUTPUT_PREFIX)}"
: "${CHECKPOINT:?set CHECKPOINT to the student checkpoint, a distillation output (or MODEL_PATH)}"

exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/../run_vis.py" \
  --video "$VIDEO" --output_dir "$OUTPUT_DIR" --model_path "$CHECKPOINT" \
  ${TEACHER:+--teacher_path "$TEACHER"} \
  --model "$MODEL" \
  --idx 20 --idx_f 3 --num_k 10 --mask_type tube --mask_ratio 0.9 \
  "$@"

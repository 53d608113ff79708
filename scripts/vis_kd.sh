#!/usr/bin/env bash
# Visualises what MMKD distils on one clip: the tube-masked frames, the reconstruction, and the
# MM-global / MM-local attention of one query token (--idx within temporal slice --idx_f) and the
# MM-hint selection, for the student and, when TEACHER is set, the teacher beside it.
# Env: VIDEO, OUTPUT_DIR, CHECKPOINT (student), TEACHER (optional), MODEL (student architecture,
# pretrain_videomae_small_patch16_224), PYTHON (python). Extra arguments override the flags.
set -euo pipefail
: "${VIDEO:?set VIDEO to the video file to visualise}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to the folder for the images}"
: "${CHECKPOINT:?set CHECKPOINT to the student checkpoint (a distillation output)}"

exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/../run_vis.py" \
  --video "$VIDEO" --output_dir "$OUTPUT_DIR" --model_path "$CHECKPOINT" \
  ${TEACHER:+--teacher_path "$TEACHER"} \
  --model "${MODEL:-pretrain_videomae_small_patch16_224}" \
  --idx 20 --idx_f 3 --num_k 10 --mask_type tube --mask_ratio 0.9 \
  "$@"

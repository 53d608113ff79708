#!/usr/bin/env bash
# VideoMAE pre-training of a ViT-B on Kinetics-400: tube mask 0.9, 1600 epochs (pass --epochs 800 for the
# shorter schedule), 32 clips per GPU. VideoMAE used 64 GPUs; the lr scales with the total batch.
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, GPUS (8), MASTER_PORT (12320),
#      LAUNCHER (torchrun | slurm). Extra arguments are appended and override these flags.
set -euo pipefail
ROW_FLAGS=(--model pretrain_videomae_base_patch16_224)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

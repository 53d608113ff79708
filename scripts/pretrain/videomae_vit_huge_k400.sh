#!/usr/bin/env bash
# VideoMAE pre-training of a ViT-H on Kinetics-400: tube mask 0.9, 12-block decoder, 1600 epochs, 16 clips
# per GPU with gradient checkpointing. VideoMAE used 64 GPUs (NNODES=8 x GPUS=8); the lr scales with the
# total batch. Fine-tuned with scripts/finetune/videomae_vit_huge_k400.sh: 86.6 top-1 (16x5x3) in VideoMAE's
# model zoo.
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, GPUS (8, per node), NNODES (1), NODE_RANK (0),
#      MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID,
#      RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh. Extra arguments are
#      appended and override these flags.
set -euo pipefail
DATASET="Kinetics-400"
ROW_FLAGS=(--model pretrain_videomae_huge_patch16_224
  --mask_ratio 0.9 --decoder_depth 12 --batch_size 16 --sampling_rate 4 --lr 1.5e-4
  --epochs 1600 --save_ckpt_freq 20 --use_checkpoint)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

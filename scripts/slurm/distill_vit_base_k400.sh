#!/usr/bin/env bash
# Slurm launch of scripts/distill/vit_base_k400.sh with the same flags (one task per GPU, via
# slurm_train.sh).
# Env: those of scripts/distill/vit_base_k400.sh but the torchrun-only NNODES, NODE_RANK, MASTER_ADDR and
#      RDZV_* (slurm places the tasks), plus PARTITION, JOB_NAME, GPUS (tasks in all), GPUS_PER_NODE,
#      CPUS_PER_TASK, SUBMIT (srun | sbatch), SRUN_ARGS, SBATCH_ARGS (see slurm_train.sh).
set -euo pipefail
LAUNCHER=slurm exec bash "$(dirname "${BASH_SOURCE[0]}")/../distill/vit_base_k400.sh" "$@"

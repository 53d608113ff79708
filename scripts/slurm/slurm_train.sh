#!/usr/bin/env bash
# Runs an entry point under slurm, one task per GPU, from the repository root (relative paths in FLAGS
# are read from there); the entry points read SLURM_PROCID/NTASKS/LOCALID/NODELIST themselves.
# Usage: slurm_train.sh run_xxx.py [FLAGS...]. Env: PARTITION (cluster default), JOB_NAME, GPUS (total
# tasks, 8), GPUS_PER_NODE (min(GPUS, 8)), CPUS_PER_TASK (5), SUBMIT (srun: attached | sbatch: queued),
# SRUN_ARGS, SBATCH_ARGS (extra options, split on spaces), MASTER_PORT (12320), PYTHON (python).
set -euo pipefail
entry="${1:?usage: slurm_train.sh ENTRY.py [FLAGS...] (e.g. run_mmkd_distill.py)}"
shift

GPUS="${GPUS:-8}"
GPUS_PER_NODE="${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}"
CPUS_PER_TASK="${CPUS_PER_TASK:-5}"
JOB_NAME="${JOB_NAME:-$(basename "$entry" .py)}"
export MASTER_PORT="${MASTER_PORT:-12320}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
nodes=$(((GPUS + GPUS_PER_NODE - 1) / GPUS_PER_NODE))

# `alloc` reserves the nodes and `shape` lays out the tasks. Inside an sbatch job srun is given the
# shape again: some slurm releases do not pass --cpus-per-task down to job steps.
alloc=(--job-name="$JOB_NAME" --nodes="$nodes" ${PARTITION:+--partition="$PARTITION"})
shape=(--ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --gres=gpu:"$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK")
task=("${PYTHON:-python}" -u "$entry" "$@")

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# SRUN_ARGS and SBATCH_ARGS stay unquoted on purpose: each may hold several options.
# shellcheck disable=SC2086
case "${SUBMIT:-srun}" in
  srun)
    exec srun "${alloc[@]}" "${shape[@]}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} "${task[@]}"
    ;;
  sbatch)
    {
      printf '#!/usr/bin/env bash\n'
      printf 'cd %q\n' "$PWD"
      printf 'exec srun'
      printf ' %q' "${shape[@]}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} "${task[@]}"
      printf '\n'
    } | sbatch "${alloc[@]}" "${shape[@]}" ${SBATCH_ARGS:-}
    ;;
  *)
    echo "SUBMIT must be srun or sbatch, got '${SUBMIT}'" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Runs an entry point under slurm, one task per GPU, from the repository root (relative paths in FLAGS
# are read from there); the entry points read SLURM_PROCID/NTASKS/LOCALID/NODELIST themselves.
# Usage: slurm_train.sh run_xxx.py [FLAGS...]. Env: PARTITION (cluster default), JOB_NAME, GPUS (total
# tasks, 8), GPUS_PER_NODE (min(GPUS, 8)), CPUS_PER_TASK (5), SUBMIT (srun: attached | sbatch: queued),
# SRUN_ARGS, SBATCH_ARGS (extra options, split on spaces), MASTER_PORT (12320), PYTHON (python),
# SIGNAL_LEAD (120: seconds before the time limit / a preemption at which SLURM sends SIGUSR1; the
# run then writes a checkpoint and exits 75), REQUEUE (1 with sbatch: the job requeues itself and
# --auto_resume picks up the checkpoint; 0 to end instead).
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
SIGNAL_LEAD="${SIGNAL_LEAD:-120}"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# SRUN_ARGS and SBATCH_ARGS stay unquoted on purpose: each may hold several options.
# shellcheck disable=SC2086
case "${SUBMIT:-srun}" in
  srun)
    # --signal: SIGUSR1 to every task SIGNAL_LEAD seconds before the step's time limit
    exec srun "${alloc[@]}" "${shape[@]}" --kill-on-bad-exit=1 --signal=USR1@"$SIGNAL_LEAD" ${SRUN_ARGS:-} "${task[@]}"
    ;;
  sbatch)
    requeue=()
    [ "${REQUEUE:-1}" = 1 ] && requeue=(--requeue)
    {
      printf '#!/usr/bin/env bash\n'
      # B: the warning goes to this batch shell, which forwards it to srun; srun hands it to the tasks
      printf '#SBATCH --signal=B:USR1@%s\n' "$SIGNAL_LEAD"
      [ "${REQUEUE:-1}" = 1 ] && printf '#SBATCH --requeue\n'
      printf 'cd %q\n' "$PWD"
      printf 'srun'
      printf ' %q' "${shape[@]}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} "${task[@]}" "${requeue[@]}"
      printf ' &\n'
      printf 'pid=$!\n'
      printf "trap 'kill -USR1 \"\$pid\" 2>/dev/null' USR1\n"
      # wait returns early when the trap fires: wait again until srun itself has ended
      printf 'wait "$pid"; status=$?\n'
      printf 'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done\n'
      printf 'exit "$status"\n'
    } | sbatch "${alloc[@]}" "${shape[@]}" ${SBATCH_ARGS:-}
    ;;
  *)
    echo "SUBMIT must be srun or sbatch, got '${SUBMIT}'" >&2
    exit 2
    ;;
esac

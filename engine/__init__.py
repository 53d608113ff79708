"""The shared training engine: arguments, tasks, the loop, optimisation, checkpoints, distribution, logs."""

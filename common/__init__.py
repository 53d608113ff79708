"""Leaf helpers every package may import (they import nothing of ours): atomic files, one-line CLI
errors, the CPU GEMM back-end."""

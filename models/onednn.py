"""Moved to `common.cpu_gemm` (the CPU GEMM back-end is an execution choice, not a model).

Kept only for engine/runner.py's ``from models import onednn`` until it imports `common.cpu_gemm`.
"""

from common.cpu_gemm import set_enabled

__all__ = ["set_enabled"]

"""systole.sim: golden model, performance figures, and the RTL simulation harness."""

from .run import GemmRun, run_gemm

__all__ = ["GemmRun", "run_gemm"]

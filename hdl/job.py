"""The job descriptor and its checker."""

from amaranth.hdl import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE
from .registers import ErrorCode

__all__ = ["JobDescriptor", "JobChecker", "output_bytes"]


#: One GEMM C = A.B as the host describes it. A[i, k] is at a_addr + i*a_stride + k,
#: B[k, j] at b_addr + k*b_stride + j, C[i, j] at c_addr + i*c_stride + j*bytes(out_format).
JobDescriptor = data.StructLayout({
    "m": 32, "n": 32, "k": 32,
    "a_addr": 64, "b_addr": 64, "c_addr": 64,
    "a_stride": 32, "b_stride": 32, "c_stride": 32,
    "a_format": Fp8Format,
    "b_format": Fp8Format,
    "out_format": OutFormat,
    "saturate": 1,
    "scale_exp": SCALE_SHAPE,
})


def output_bytes(out_format):
    """Bytes of one C element for an ``OutFormat`` value (a signal or a constant)."""
    return Mux(out_format == OutFormat.FP32, 4, Mux(out_format == OutFormat.BF16, 2, 1))


class JobChecker(wiring.Component):
    """Combinational check of a descriptor against the configuration.

    The first failing rule, in the order of :class:`ErrorCode`, gives the code; a job with
    any error never starts, so it makes no memory access at all.

    Attributes
    ----------
    job : In(JobDescriptor)
    error : Out(ErrorCode)
    """

    def __init__(self, config):
        self._config = config
        super().__init__({"job": In(JobDescriptor), "error": Out(ErrorCode)})

    def elaborate(self, platform):
        m = Module()
        config = self._config
        job = self.job
        out_bytes = output_bytes(job.out_format)
        c_row_bytes = job.n * out_bytes
        limit = 1 << config.addr_width

        def end(base, rows, stride, row_bytes):
            # One past the last byte touched: base + (rows - 1) * stride + row_bytes.
            return base + (rows - 1) * stride + row_bytes

        enabled = [Fp8Format.from_name(name) for name in config.formats]
        format_ok = lambda fmt: Mux(fmt == enabled[0], 1, fmt == enabled[-1])
        aligned = Mux(out_bytes == 4, (job.c_addr[:2] == 0) & (job.c_stride[:2] == 0),
                      Mux(out_bytes == 2, (job.c_addr[0] == 0) & (job.c_stride[0] == 0), 1))
        checks = [
            (ErrorCode.BAD_DIMENSION, (job.m == 0) | (job.n == 0) | (job.k == 0)),
            (ErrorCode.K_TOO_LARGE, job.k > config.max_k),
            (ErrorCode.BAD_STRIDE, (job.a_stride < job.k) | (job.b_stride < job.n)
                                   | (job.c_stride < c_row_bytes)),
            (ErrorCode.MISALIGNED_OUTPUT, ~aligned),
            (ErrorCode.ADDRESS_OVERFLOW,
             (end(job.a_addr, job.m, job.a_stride, job.k) > limit)
             | (end(job.b_addr, job.k, job.b_stride, job.n) > limit)
             | (end(job.c_addr, job.m, job.c_stride, c_row_bytes) > limit)),
            (ErrorCode.BAD_FORMAT, ~format_ok(job.a_format) | ~format_ok(job.b_format)),
        ]
        m.d.comb += self.error.eq(ErrorCode.NONE)
        for code, failed in reversed(checks):
            with m.If(failed):
                m.d.comb += self.error.eq(code)
        return m

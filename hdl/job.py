"""The job descriptor and its checker."""

from amaranth.hdl import Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE
from .registers import ErrorCode

__all__ = ["JobDescriptor", "JobChecker", "CHECK_CYCLES", "output_bytes"]

#: Cycles from JobChecker.start to its done pulse: one per bit of the 32-bit row counts,
#: two to add the base and the row length, and one to compare.
CHECK_CYCLES = 35


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


def _row_bytes(n, out_format):
    """``n * output_bytes(out_format)`` as shifts (no multiplier)."""
    return Mux(out_format == OutFormat.FP32, n << 2, Mux(out_format == OutFormat.BF16, n << 1, n))


class JobChecker(wiring.Component):
    """Checks a descriptor against the configuration, and holds it for the datapath.

    At ``start`` the checker latches the descriptor, keeping only the bits an accepted job
    can use (M and N in ``config.dim_width`` bits, K in ``config.k_width``, addresses and
    strides in ``config.addr_width``; the other bits of ``checked`` are constant zero, so
    synthesis drops them). The cheap rules are decided on the spot; the address ranges
    ``base + (rows - 1) * stride + row_bytes`` are computed by shift-and-add, one bit of
    the 32-bit row count per cycle for all three operands at once (no multipliers).
    :data:`CHECK_CYCLES` cycles after ``start``, ``done`` pulses with ``error``: the first
    failing rule in the order of :class:`ErrorCode`, or NONE. A job with any error never
    starts, so it makes no memory access at all.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    job : In(JobDescriptor)
        The descriptor registers, sampled at ``start``.
    start : In(1)
        Pulse: latch ``job`` and check it.
    checked : Out(JobDescriptor)
        The latched descriptor, held until the next ``start``.
    busy : Out(1)
        A check is in progress.
    done : Out(1)
        Pulse, with ``error`` valid.
    error : Out(ErrorCode)
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "job": In(JobDescriptor),
            "start": In(1),
            "checked": Out(JobDescriptor),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        aw = config.addr_width
        limit = 1 << aw
        job, held = self.job, self.checked

        # -- the latch: only the bits a job that passes the checks can need -----------------
        with m.If(self.start):
            m.d.sync += [
                held.m.eq(job.m[:config.dim_width]), held.n.eq(job.n[:config.dim_width]),
                held.k.eq(job.k[:config.k_width]),
                held.a_format.eq(job.a_format), held.b_format.eq(job.b_format),
                held.out_format.eq(job.out_format), held.saturate.eq(job.saturate),
                held.scale_exp.eq(job.scale_exp),
            ]
            for name in ("a_addr", "b_addr", "c_addr", "a_stride", "b_stride", "c_stride"):
                m.d.sync += getattr(held, name).eq(getattr(job, name)[:aw])

        # -- the rules decided at start, on the descriptor registers ------------------------
        out_bytes = output_bytes(job.out_format)
        c_row_bytes = _row_bytes(job.n, job.out_format)

        def above(value, bits):
            """``value >= 2**bits`` for an unsigned value."""
            value = Value.cast(value)
            return value[bits:].any() if len(value) > bits else Const(0)

        def out_of_range(base, rows, stride, row_bytes):
            # Cases the shift-and-add below need not see: then it runs on bits in range.
            # (Every stride is >= 1 whenever the earlier rules pass.)
            return (above(base, aw) | (rows > limit) | (row_bytes > limit)
                    | (above(stride, aw) & (rows > 1)))

        enabled = [Fp8Format.from_name(name) for name in config.formats]
        format_ok = lambda fmt: Mux(fmt == enabled[0], 1, fmt == enabled[-1])
        aligned = Mux(out_bytes == 4, (job.c_addr[:2] == 0) & (job.c_stride[:2] == 0),
                      Mux(out_bytes == 2, (job.c_addr[0] == 0) & (job.c_stride[0] == 0), 1))
        early = [           # the rules before ADDRESS_OVERFLOW, in order
            (ErrorCode.BAD_DIMENSION, (job.m == 0) | (job.n == 0) | (job.k == 0)),
            (ErrorCode.K_TOO_LARGE, job.k > config.max_k),
            (ErrorCode.BAD_STRIDE, (job.a_stride < job.k) | (job.b_stride < job.n)
                                   | (job.c_stride < c_row_bytes)),
            (ErrorCode.MISALIGNED_OUTPUT, ~aligned),
        ]
        early_error = Signal(ErrorCode)
        wide = Signal()                 # an address range is out of reach at a glance
        bad_format = Signal()
        early_code = ErrorCode.NONE
        for code, failed in reversed(early):
            early_code = Mux(failed, code, early_code)
        with m.If(self.start):
            m.d.sync += [
                early_error.eq(early_code),
                wide.eq(out_of_range(job.a_addr, job.m, job.a_stride, job.k)
                        | out_of_range(job.b_addr, job.k, job.b_stride, job.n)
                        | out_of_range(job.c_addr, job.m, job.c_stride, c_row_bytes)),
                bad_format.eq(~format_ok(job.a_format) | ~format_ok(job.b_format)),
            ]

        # -- base + (rows - 1) * stride + row_bytes by shift-and-add -----------------------
        # 32 steps of product = 2 * product + bit * stride, most significant bit of
        # rows - 1 first; then one step adds the base and one the row bytes, through the
        # same adder. The product saturates: once it reaches 2**aw, the range overflows
        # whatever is added to it (row_bytes >= 1), and it never wraps its register.
        bit = Signal(range(32))
        phase = Signal(range(4))        # 0 idle, 1 product, 2 + base, 3 + row bytes
        finished = Signal()
        # Rows beyond 2**aw were caught at start, so rows - 1 has at most aw bits.
        m_minus_1 = Signal(min(32, aw))
        k_minus_1 = Signal(min(32, aw))
        m.d.comb += [m_minus_1.eq(held.m - 1), k_minus_1.eq(held.k - 1)]
        operands = [      # (rows - 1, stride, base, row_bytes) of A, B and C
            (m_minus_1, held.a_stride, held.a_addr, held.k),
            (k_minus_1, held.b_stride, held.b_addr, held.n),
            (m_minus_1, held.c_stride, held.c_addr, _row_bytes(held.n, held.out_format)),
        ]
        overflow = []
        for index, (rows_minus_1, stride, base, row_bytes) in enumerate(operands):
            # < 2**aw after the product, < 2**(aw + 1) with the base, + row_bytes <= 4 * 2**aw
            end = Signal(aw + 3, name=f"end_{index}")
            saturated = Signal(name=f"saturated_{index}")
            row_bit = rows_minus_1.bit_select(bit, 1)
            if len(rows_minus_1) < 32:
                row_bit = row_bit & (bit < len(rows_minus_1))
            term = Mux(phase == 1, Mux(row_bit, Value.cast(stride)[:aw], 0),
                       Mux(phase == 2, Value.cast(base)[:aw], row_bytes))
            following = Mux(phase == 1, end << 1, end) + term
            with m.If(self.start):
                m.d.sync += [end.eq(0), saturated.eq(0)]
            with m.Elif((phase != 0) & ~saturated):
                m.d.sync += end.eq(following)
                with m.If((phase != 3) & above(following, aw)):
                    m.d.sync += saturated.eq(1)
            overflow.append(saturated | (end > limit))
        with m.If(self.start):
            m.d.sync += [phase.eq(1), finished.eq(0), bit.eq(31)]
        with m.Elif(phase == 1):
            m.d.sync += bit.eq(bit - 1)
            with m.If(bit == 0):
                m.d.sync += phase.eq(2)
        with m.Elif(phase == 2):
            m.d.sync += phase.eq(3)
        with m.Elif(phase == 3):
            m.d.sync += [phase.eq(0), finished.eq(1)]
        with m.Elif(finished):
            m.d.sync += finished.eq(0)
        running = phase != 0

        m.d.comb += [self.busy.eq(running | finished), self.done.eq(finished)]
        with m.If(early_error != ErrorCode.NONE):
            m.d.comb += self.error.eq(early_error)
        with m.Elif(wide | overflow[0] | overflow[1] | overflow[2]):
            m.d.comb += self.error.eq(ErrorCode.ADDRESS_OVERFLOW)
        with m.Elif(bad_format):
            m.d.comb += self.error.eq(ErrorCode.BAD_FORMAT)
        with m.Else():
            m.d.comb += self.error.eq(ErrorCode.NONE)
        return m

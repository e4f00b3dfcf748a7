"""The job descriptor and its checker."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant
from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE
from .registers import ErrorCode

__all__ = ["JobDescriptor", "JobChecker", "check_cycles", "output_bytes"]


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


def _bits_per_cycle(config):
    """Bits of the row count the checker's shift-and-add takes per cycle: one for address
    spaces of at most 16 MiB (small boards, where its adders are a noticeable part of the
    logic), two otherwise (one adder more per operand, half the cycles)."""
    return 1 if config.addr_width <= 24 else 2


def check_cycles(config, m, k):
    """Cycles from :class:`JobChecker`'s ``start`` to ``done`` for a descriptor with these
    M and K: one to latch, then one per bit (``addr_width`` <= 24) or per two bits (wider
    addresses) of the longer of M - 1 and K - 1, at least one. (As the checker holds them:
    M in dim_width bits and K in k_width bits, each minus one in one bit more, at most
    min(32, addr_width) bits; only a rejected descriptor with M or K zero sees the
    wrap-around.)"""
    def minus_one(value, width):
        return ((value % (1 << width)) - 1) % (1 << min(width + 1, 32, config.addr_width))
    bits = max(minus_one(m, config.dim_width).bit_length(),
               minus_one(k, config.k_width).bit_length())
    step = _bits_per_cycle(config)
    return 1 + max(1, -(-bits // step))


class JobChecker(wiring.Component):
    """Checks a descriptor against the configuration, and holds it for the datapath.

    At ``start`` the checker latches the descriptor, keeping only the bits an accepted job
    can use (M and N in ``config.dim_width`` bits, K in ``config.k_width``, addresses and
    strides in ``config.addr_width``; the other bits of ``checked`` are constant zero, so
    synthesis drops them). The cheap rules are decided on the spot; the address ranges
    ``base + (rows - 1) * stride + row_bytes`` are computed by shift-and-add, one or two
    bits of the row count per cycle (one for address spaces of at most 16 MiB) for all
    three operands at once (no multipliers), stopping when no bit is left:
    :func:`check_cycles` cycles after ``start`` (a few for usual shapes),
    ``done`` pulses with ``error``: the first
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
        kw = config.k_width
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
            return (above(base, aw) | above_constant(rows, limit)
                    | above_constant(row_bytes, limit)
                    | (above(stride, aw) & above_constant(rows, 1)))

        enabled = [Fp8Format.from_name(name) for name in config.formats]
        format_ok = lambda fmt: Mux(fmt == enabled[0], 1, fmt == enabled[-1])
        aligned = Mux(out_bytes == 4, (job.c_addr[:2] == 0) & (job.c_stride[:2] == 0),
                      Mux(out_bytes == 2, (job.c_addr[0] == 0) & (job.c_stride[0] == 0), 1))
        early = [           # the rules before ADDRESS_OVERFLOW, in order
            (ErrorCode.BAD_DIMENSION, (job.m == 0) | (job.n == 0) | (job.k == 0)),
            (ErrorCode.K_TOO_LARGE, above_constant(job.k, config.max_k)),
            # (K < 2**k_width once the rule above passes.)
            (ErrorCode.BAD_STRIDE, (~above(job.a_stride, kw)
                                    & (job.a_stride[:kw] < job.k[:kw]))
                                   | (job.b_stride < job.n) | (job.c_stride < c_row_bytes)),
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

        # -- the end of each range, base + row_bytes - 1 + (rows - 1) * stride, by
        # shift-and-add, one or two bits of rows - 1 per cycle (_bits_per_cycle), least
        # significant first, stopping once no bit is left (check_cycles) -------------------
        # The sum starts at base + row_bytes - 1 and saturates once it reaches 2**aw: the
        # range then overflows whatever else is added. (Out-of-range bases, row counts and
        # row lengths were caught at start, so each fits in aw bits here.)
        step = _bits_per_cycle(config)
        running = Signal()
        finished = Signal()
        w = min(32, aw)
        m_minus_1 = (job.m[:config.dim_width] - 1)[:w]
        k_minus_1 = (job.k[:config.k_width] - 1)[:w]
        n_minus_1 = (job.n[:config.dim_width] - 1)[:w]
        # n * bytes(out_format) - 1, as the low bits of (n - 1) * bytes(out_format) set
        c_row_minus_1 = Mux(job.out_format == OutFormat.FP32, Cat(Const(3, 2), n_minus_1),
                            Mux(job.out_format == OutFormat.BF16, Cat(Const(1, 1), n_minus_1),
                                n_minus_1))
        # The bits of M - 1 and K - 1 not yet used (A and C share M - 1).
        rests = {"m": Signal(w, name="rest_m"), "k": Signal(w, name="rest_k")}
        with m.If(self.start):
            m.d.sync += [rests["m"].eq(m_minus_1), rests["k"].eq(k_minus_1)]
        with m.Elif(running):
            m.d.sync += [rest.eq(rest >> step) for rest in rests.values()]
        operands = [      # (rows - 1, stride, base, row_bytes - 1) of A, B and C
            (rests["m"], job.a_stride, job.a_addr, k_minus_1),
            (rests["k"], job.b_stride, job.b_addr, n_minus_1),
            (rests["m"], job.c_stride, job.c_addr, c_row_minus_1),
        ]
        overflow = []
        for index, (rest, stride, base, row_bytes_minus_1) in enumerate(operands):
            shifted = Signal(aw + step, name=f"shifted_{index}")   # stride << (bits used)
            total = Signal(aw + step, name=f"total_{index}")       # the end address - 1, so far
            saturated = Signal(name=f"saturated_{index}")
            first = Value.cast(base)[:aw] + Value.cast(row_bytes_minus_1)[:aw]
            big = shifted[aw:].any()
            following = total
            for bit in range(step):
                following = following + Mux(rest[bit], shifted << bit, 0)
            with m.If(self.start):
                m.d.sync += [shifted.eq(Value.cast(stride)[:aw]),
                             total.eq(first), saturated.eq(above(first, aw))]
            with m.Elif(running):
                m.d.sync += shifted.eq(Mux(big, shifted, shifted << step))
                with m.If(~saturated):
                    with m.If(big & (rest != 0)):
                        m.d.sync += saturated.eq(1)
                    with m.Else():
                        m.d.sync += total.eq(following)
                        with m.If(above(following, aw)):
                            m.d.sync += saturated.eq(1)
            overflow.append(saturated)
        left = [rest[step:].any() for rest in rests.values()]
        with m.If(self.start):
            m.d.sync += [running.eq(1), finished.eq(0)]
        with m.Elif(running):
            with m.If(~Cat(*left).any()):
                m.d.sync += [running.eq(0), finished.eq(1)]
        with m.Elif(finished):
            m.d.sync += finished.eq(0)

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

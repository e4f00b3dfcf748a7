"""The job descriptor and its checker."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..plan import KC_LOG2_BITS, TILES_BITS, kc_log2_range
from .arith import above_constant
from .fp8 import Fp8Format, OutFormat
from .csr import FetchSignature
from .normalizer import SCALE_SHAPE
from .registers import DESCRIPTOR_REGISTERS, ErrorCode, Format, Plan

__all__ = ["PlanLayout", "JobDescriptor", "JobChecker", "check_cycles", "output_bytes"]


#: The tiling plan as the descriptor's PLAN register carries it (systole/plan.py;
#: ``order`` a LoopOrder value). The checker accepts only plans that
#: :func:`systole.plan.check` accepts, with both tile counts at least 1.
PlanLayout = data.StructLayout({"mc_tiles": TILES_BITS, "nc_tiles": TILES_BITS,
                                "kc_log2": KC_LOG2_BITS, "order": 1})


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
    "plan": PlanLayout,
})


def output_bytes(out_format):
    """Bytes of one C element for an ``OutFormat`` value (a signal or a constant)."""
    return Mux(out_format == OutFormat.FP32, 4, Mux(out_format == OutFormat.BF16, 2, 1))


def _bits_per_cycle(config):
    """Bits of the row count the checker's shift-and-add takes per cycle: one for address
    spaces of at most 16 MiB (small boards, where its adders are a noticeable part of the
    logic), two otherwise (one adder more per operand, half the cycles)."""
    return 1 if config.addr_width <= 24 else 2


#: The descriptor words in the order the checker fetches them: each word's rules need
#: only the words before it (the output format, then N and K, then the strides; the plan
#: after K, whose chunk count decides the partial-sum rule).
_FETCH_ORDER = ("FORMAT", "N", "K", "M", "B_STRIDE", "A_STRIDE", "C_STRIDE",
                "A_ADDR_LO", "A_ADDR_HI", "B_ADDR_LO", "B_ADDR_HI", "C_ADDR_LO", "C_ADDR_HI",
                "PLAN")
assert sorted(_FETCH_ORDER) == sorted(DESCRIPTOR_REGISTERS)

#: Cycles from ``start`` to the range computation: one fetch per word, the last word's
#: arrival, and a cycle to set the computation up from the latched words.
_FETCH_CYCLES = len(_FETCH_ORDER) + 1


def check_cycles(config, m, k):
    """Cycles from :class:`JobChecker`'s ``start`` to ``done`` for a descriptor with these
    M and K, when the CSR bank's read port is free: 15 to fetch the 14 descriptor words
    (one per word, and the last word's arrival), one to set up, then one per bit
    (``addr_width`` <= 24) or per two bits (wider addresses) of the longer of M - 1 and
    K - 1, at least one. (As the checker holds them:
    M in dim_width bits and K in k_width bits, each minus one in one bit more, at most
    min(32, addr_width) bits; only a rejected descriptor with M or K zero sees the
    wrap-around.)"""
    def minus_one(value, width):
        return ((value % (1 << width)) - 1) % (1 << min(width + 1, 32, config.addr_width))
    bits = max(minus_one(m, config.dim_width).bit_length(),
               minus_one(k, config.k_width).bit_length())
    step = _bits_per_cycle(config)
    return _FETCH_CYCLES + 1 + max(1, -(-bits // step))


class JobChecker(wiring.Component):
    """Fetches the descriptor from the CSR bank, checks it against the configuration, and
    holds it for the datapath.

    From ``start`` the checker reads the 14 descriptor words, one per cycle, from the CSR
    bank's block-RAM copy (the bank keeps them nowhere else, see
    :class:`~systole.hdl.csr.CSRBank`'s ``fetched`` registers), keeping only the bits an
    accepted job can use (M and N in ``config.dim_width`` bits, K in ``config.k_width``,
    addresses and strides in ``config.addr_width``; the other bits of ``checked`` are
    constant zero, so synthesis drops them) and deciding the cheap rules word by word
    into a few flags, with one 32-bit comparator for the strides. The tiling plan's rules
    (:func:`systole.plan.check`, error BAD_PLAN) are decided as PLAN arrives, against
    constants of the configuration selected by KC_LOG2 and one 8 x 8 product for the
    partial-sum rule; a tile count of zero, which no TilingPlan has, is BAD_PLAN too.
    ``fetch.hold`` keeps the bus off the bank meanwhile, so the words are those written
    before START. Then the address ranges ``base + (rows - 1) * stride + row_bytes`` are
    computed by shift-and-add, one or two bits of the row count per cycle (one for address
    spaces of at most 16 MiB) for all three operands at once (no multipliers), stopping
    when no bit is left; C's span is compared with A's and B's in the same cycle (OVERLAP:
    four comparators). :func:`check_cycles` cycles after ``start`` (more if the bank's read
    port was busy with a bus read), ``done`` pulses with ``error``: the first failing rule in
    the order of :class:`ErrorCode`, or NONE. A job with any error never starts, so it
    makes no memory access at all.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    fetch : Out(FetchSignature(14))
        To the CSR bank's ``fetch`` port; ``index`` is a position in
        :data:`~systole.hdl.registers.DESCRIPTOR_REGISTERS`.
    start : In(1)
        Pulse: fetch and check the descriptor.
    checked : Out(JobDescriptor)
        The latched descriptor, held until the next ``start``. After a ``done`` with
        error NONE its ``plan`` fits the buffers (:func:`systole.plan.check`).
    busy : Out(1)
        A check is in progress (from the cycle after ``start``).
    done : Out(1)
        Pulse, with ``error`` valid.
    error : Out(ErrorCode)
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "fetch": Out(FetchSignature(len(DESCRIPTOR_REGISTERS))),
            "start": In(1),
            "checked": Out(JobDescriptor),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        aw, dw, kw = config.addr_width, config.dim_width, config.k_width
        limit = 1 << aw
        held, fetch = self.checked, self.fetch

        # -- the fetch: one word per cycle while the bank's read port is free ---------------
        step = Signal(range(len(_FETCH_ORDER)))     # position of the next word to fetch
        fetching = Signal()
        arriving = Signal()                         # fetch.data holds a new word
        arrived = Signal(range(len(_FETCH_ORDER)))  # its position
        m.d.comb += fetch.hold.eq(self.start | fetching)
        m.d.sync += arriving.eq(0)
        with m.If(self.start):
            m.d.sync += fetching.eq(1)
        with m.If(fetch.hold & fetch.free):
            m.d.comb += fetch.en.eq(1)
            with m.Switch(step):
                for position, name in enumerate(_FETCH_ORDER):
                    with m.Case(position):
                        m.d.comb += fetch.index.eq(DESCRIPTOR_REGISTERS.index(name))
            m.d.sync += [arriving.eq(1), arrived.eq(step), step.eq(step + 1)]
            with m.If(step == len(_FETCH_ORDER) - 1):
                m.d.sync += [step.eq(0), fetching.eq(0)]

        # -- each word: latch the bits a job can use, and decide the cheap rules ------------
        word = fetch.data
        zero_dim = Signal()         # M, N or K is zero
        k_big = Signal()            # K > max_k
        bad_stride = Signal()
        misaligned = Signal()
        wide = Signal()             # an address range is out of reach at a glance
        bad_format = Signal()
        bad_plan = Signal()
        m_many = Signal()           # M > 1 (then the A and C strides matter)
        k_many = Signal()           # K > 1 (then the B stride matters)
        # N's bits above dim_width, for the stride rules (none when dim_width is 32: a
        # zero-width signal becomes a [-1:0] wire in Verilog, undriven, X under Icarus)
        n_high = Signal(32 - dw, name="n_high") if dw < 32 else None
        flags = [zero_dim, k_big, bad_stride, misaligned, wide, bad_format, bad_plan]
        with m.If(self.start):
            m.d.sync += [flag.eq(0) for flag in flags]

        def above(value, bits):
            """``value >= 2**bits`` for an unsigned value."""
            value = Value.cast(value)
            return value[bits:].any() if len(value) > bits else Const(0)

        def is_(name):
            return arrived == _FETCH_ORDER.index(name)

        def field_of(register):
            fields = register.fields
            return lambda name: word[fields[name].offset:fields[name].offset + fields[name].width]
        field = field_of(Format())
        enabled = [Fp8Format.from_name(name) for name in config.formats]
        format_ok = lambda value: Mux(value == enabled[0], 1, value == enabled[-1])
        out_format = held.out_format
        shift = Mux(out_format == OutFormat.FP32, 2, Mux(out_format == OutFormat.BF16, 1, 0))
        unaligned = Mux(out_format == OutFormat.FP32, word[:2].any(),
                        Mux(out_format == OutFormat.BF16, word[0], 0))
        # The stride rules, with one comparator: B_STRIDE < N, C_STRIDE < N * bytes(out)
        # as C_STRIDE >> log2(bytes) < N, and A_STRIDE < K (K < 2**k_width unless the rule
        # before, K_TOO_LARGE, fails).
        n_full = held.n[:dw] if n_high is None else Cat(held.n[:dw], n_high)
        stride_less = Signal()
        m.d.comb += stride_less.eq(Mux(is_("C_STRIDE"), word >> shift, word)
                                   < Mux(is_("A_STRIDE"), held.k, n_full))
        # The plan rules of systole.plan.check, for the PLAN word. The block rules compare
        # the tile counts with constants of the K chunk, selected by KC_LOG2:
        # ``mc << kc_log2 > a_bank_bytes`` is ``mc > a_bank_bytes >> kc_log2``, and a B
        # block's ``ceil(nc / banks) << kc_log2 > depth / banks`` is
        # ``nc > banks * ((depth / banks) >> kc_log2)``. Both limits are at least 1 for the
        # chunks the buffers allow and 0 for every other KC_LOG2, so a chunk out of range
        # fails them whatever the tile counts (the range rule costs no comparator).
        plan_field = field_of(Plan())
        mc_tiles, nc_tiles = plan_field("mc_tiles"), plan_field("nc_tiles")
        kc_log2 = plan_field("kc_log2")
        kc_low, kc_high = kc_log2_range(config)
        tiles_max = (1 << TILES_BITS) - 1
        a_limit = Signal(TILES_BITS)        # most row tiles an A block of this chunk may have
        b_limit = Signal(TILES_BITS)        # most column tiles of a B block (0: no such chunk)
        several = Signal()                  # K takes several chunks: K > 2**kc_log2
        banks = config.b_banks
        # K - 1 (all ones for K = 0), for this rule and the A and B ranges below.
        k_less_1 = Signal(signed(kw + 1))
        m.d.comb += k_less_1.eq(held.k[:kw] - 1)
        with m.Switch(kc_log2):
            for chunk_log2 in range(kc_low, kc_high + 1):
                with m.Case(chunk_log2):
                    m.d.comb += [
                        a_limit.eq(min(tiles_max, config.a_bank_bytes >> chunk_log2)),
                        b_limit.eq(min(tiles_max, banks * ((config.sram_depth // banks)
                                                           >> chunk_log2))),
                        several.eq(above(k_less_1, chunk_log2)),
                    ]
        # A block of one tile keeps its sums in the PEs across the chunks, so the
        # partial-sum SRAM bounds only blocks of more than one tile.
        psum_tiles = max(1, config.psum_tiles)
        if config.psum_tiles:
            too_many = above_constant(mc_tiles * nc_tiles, psum_tiles)
        else:
            # No partial-sum SRAM: only a block of one tile may take K in chunks (no
            # multiplier needed to say so).
            too_many = (mc_tiles != 1) | (nc_tiles != 1)
        plan_wrong = ((mc_tiles == 0) | (nc_tiles == 0)
                      | (mc_tiles > a_limit) | (nc_tiles > b_limit)
                      | (several & too_many))

        with m.If(arriving):
            with m.Switch(arrived):
                with m.Case(_FETCH_ORDER.index("FORMAT")):
                    m.d.sync += [held.a_format.eq(field("a_format")),
                                 held.b_format.eq(field("b_format")),
                                 held.out_format.eq(field("out_format")),
                                 held.saturate.eq(field("saturate")),
                                 held.scale_exp.eq(field("scale_exp")),
                                 bad_format.eq(~format_ok(field("a_format"))
                                               | ~format_ok(field("b_format")))]
                with m.Case(_FETCH_ORDER.index("PLAN")):
                    m.d.sync += [held.plan.mc_tiles.eq(mc_tiles), held.plan.nc_tiles.eq(nc_tiles),
                                 held.plan.kc_log2.eq(kc_log2),
                                 held.plan.order.eq(plan_field("order")),
                                 bad_plan.eq(plan_wrong)]
                with m.Case(_FETCH_ORDER.index("N")):
                    # B's rows are N bytes, C's N * bytes(out_format).
                    c_row_wide = Mux(out_format == OutFormat.FP32, above_constant(word, limit >> 2),
                                     Mux(out_format == OutFormat.BF16,
                                         above_constant(word, limit >> 1),
                                         above_constant(word, limit)))
                    m.d.sync += [held.n.eq(word[:dw]),
                                 zero_dim.eq(zero_dim | (word == 0)),
                                 wide.eq(wide | above_constant(word, limit) | c_row_wide)]
                    if n_high is not None:
                        m.d.sync += n_high.eq(word[dw:])
                with m.Case(_FETCH_ORDER.index("K")):
                    # A's rows are K bytes, and B has K rows.
                    m.d.sync += [held.k.eq(word[:kw]), k_many.eq(above_constant(word, 1)),
                                 zero_dim.eq(zero_dim | (word == 0)),
                                 k_big.eq(above_constant(word, config.max_k)),
                                 wide.eq(wide | above_constant(word, limit))]
                with m.Case(_FETCH_ORDER.index("M")):
                    m.d.sync += [held.m.eq(word[:dw]), m_many.eq(above_constant(word, 1)),
                                 zero_dim.eq(zero_dim | (word == 0)),
                                 wide.eq(wide | above_constant(word, limit))]
                for name, many in (("A_STRIDE", m_many), ("B_STRIDE", k_many),
                                   ("C_STRIDE", m_many)):
                    with m.Case(_FETCH_ORDER.index(name)):
                        m.d.sync += [getattr(held, name.lower()).eq(word[:aw]),
                                     bad_stride.eq(bad_stride | stride_less),
                                     wide.eq(wide | (above(word, aw) & many))]
                        if name == "C_STRIDE":
                            m.d.sync += misaligned.eq(misaligned | unaligned)
                # (Each assignment is to the whole address, its bits above addr_width zero:
                # bits a design never assigns become constant drivers that Icarus leaves X.)
                for operand in "abc":
                    address = getattr(held, f"{operand}_addr")
                    with m.Case(_FETCH_ORDER.index(f"{operand.upper()}_ADDR_LO")):
                        low = word[:aw] if aw <= 32 else Cat(word, address[32:aw])
                        m.d.sync += [address.eq(low), wide.eq(wide | above(word, aw))]
                        if operand == "c":
                            m.d.sync += misaligned.eq(misaligned | unaligned)
                    with m.Case(_FETCH_ORDER.index(f"{operand.upper()}_ADDR_HI")):
                        if aw > 32:
                            m.d.sync += address.eq(Cat(address[:32], word[:aw - 32]))
                        m.d.sync += wide.eq(wide | above(word, max(0, aw - 32)))

        # -- the end of each range, base + row_bytes - 1 + (rows - 1) * stride, by
        # shift-and-add, one or two bits of rows - 1 per cycle (_bits_per_cycle), least
        # significant first, stopping once no bit is left (check_cycles) -------------------
        # The sum starts at base + row_bytes - 1 and saturates once it reaches 2**aw: the
        # range then overflows whatever else is added. (Out-of-range bases, row counts and
        # row lengths set ``wide``, so each fits in aw bits here.)
        begin = Signal()            # the words are latched: set the computation up
        m.d.sync += begin.eq(arriving & is_(_FETCH_ORDER[-1]))
        step_bits = _bits_per_cycle(config)
        running = Signal()
        finished = Signal()
        w = min(32, aw)
        m_minus_1 = (held.m[:dw] - 1)[:w]
        k_minus_1 = k_less_1[:w]
        n_minus_1 = (held.n[:dw] - 1)[:w]
        # n * bytes(out_format) - 1, as the low bits of (n - 1) * bytes(out_format) set
        c_row_minus_1 = Mux(out_format == OutFormat.FP32, Cat(Const(3, 2), n_minus_1),
                            Mux(out_format == OutFormat.BF16, Cat(Const(1, 1), n_minus_1),
                                n_minus_1))
        # The bits of M - 1 and K - 1 not yet used (A and C share M - 1).
        rests = {"m": Signal(w, name="rest_m"), "k": Signal(w, name="rest_k")}
        with m.If(begin):
            m.d.sync += [rests["m"].eq(m_minus_1), rests["k"].eq(k_minus_1)]
        with m.Elif(running):
            m.d.sync += [rest.eq(rest >> step_bits) for rest in rests.values()]
        operands = [      # (rows - 1, stride, base, row_bytes - 1) of A, B and C
            (rests["m"], held.a_stride, held.a_addr, k_minus_1),
            (rests["k"], held.b_stride, held.b_addr, n_minus_1),
            (rests["m"], held.c_stride, held.c_addr, c_row_minus_1),
        ]
        overflow = []
        spans = []          # (first byte, last byte) of A, B and C, once finished
        for index, (rest, stride, base, row_bytes_minus_1) in enumerate(operands):
            shifted = Signal(aw + step_bits, name=f"shifted_{index}")   # stride << (bits used)
            total = Signal(aw + step_bits, name=f"total_{index}")       # the end address - 1, so far
            saturated = Signal(name=f"saturated_{index}")
            first = Value.cast(base)[:aw] + Value.cast(row_bytes_minus_1)[:aw]
            big = shifted[aw:].any()
            following = total
            for bit in range(step_bits):
                following = following + Mux(rest[bit], shifted << bit, 0)
            with m.If(begin):
                m.d.sync += [shifted.eq(Value.cast(stride)[:aw]),
                             total.eq(first), saturated.eq(above(first, aw))]
            with m.Elif(running):
                m.d.sync += shifted.eq(Mux(big, shifted, shifted << step_bits))
                with m.If(~saturated):
                    with m.If(big & (rest != 0)):
                        m.d.sync += saturated.eq(1)
                    with m.Else():
                        m.d.sync += total.eq(following)
                        with m.If(above(following, aw)):
                            m.d.sync += saturated.eq(1)
            overflow.append(saturated)
            spans.append((Value.cast(base)[:aw], total[:aw]))
        left = [rest[step_bits:].any() for rest in rests.values()]
        with m.If(begin):
            m.d.sync += [running.eq(1), finished.eq(0)]
        with m.Elif(running):
            with m.If(~Cat(*left).any()):
                m.d.sync += [running.eq(0), finished.eq(1)]
        with m.Elif(finished):
            m.d.sync += finished.eq(0)

        m.d.comb += [self.busy.eq(fetching | arriving | begin | running | finished),
                     self.done.eq(finished)]
        # C's span against A's and B's (valid once no range overflows: the spans are then
        # exact).
        (c_first, c_last) = spans[2]
        overlap = Cat(*[(c_first <= last) & (first <= c_last)
                        for first, last in spans[:2]]).any()
        # The first failing rule, in the order of ErrorCode.
        with m.If(zero_dim):
            m.d.comb += self.error.eq(ErrorCode.BAD_DIMENSION)
        with m.Elif(k_big):
            m.d.comb += self.error.eq(ErrorCode.K_TOO_LARGE)
        with m.Elif(bad_stride):
            m.d.comb += self.error.eq(ErrorCode.BAD_STRIDE)
        with m.Elif(misaligned):
            m.d.comb += self.error.eq(ErrorCode.MISALIGNED_OUTPUT)
        with m.Elif(wide | overflow[0] | overflow[1] | overflow[2]):
            m.d.comb += self.error.eq(ErrorCode.ADDRESS_OVERFLOW)
        with m.Elif(bad_format):
            m.d.comb += self.error.eq(ErrorCode.BAD_FORMAT)
        with m.Elif(bad_plan):
            m.d.comb += self.error.eq(ErrorCode.BAD_PLAN)
        with m.Elif(overlap):
            m.d.comb += self.error.eq(ErrorCode.OVERLAP)
        with m.Else():
            m.d.comb += self.error.eq(ErrorCode.NONE)
        return m

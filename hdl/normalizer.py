"""The normaliser: one IEEE round-to-nearest-even from the exact accumulator, pipelined."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant
from .blockram import BLOCK_RAM, NO_COLLISION, RegisteredReadPort
from .fp8 import OutFormat
from .pe import AccumulatorState

__all__ = ["Normalizer"]

#: Signed 8-bit power-of-two output scale, applied exactly before the rounding.
SCALE_SHAPE = signed(8)

#: Stages before the rounding: what only the rounding and the last stage need waits that
#: many advances in block RAM.
_WAITING_STAGES = 4

#: The output format and overflow mode, carried along the pipeline with the value they
#: apply to.
_Settings = data.StructLayout({"out_format": OutFormat, "saturate": 1})


def _shifted_bits(value, offset, lo, hi):
    """Bits [lo, hi) of ``value << offset`` (constants ``offset``, ``lo``, ``hi``)."""
    start, stop = max(lo, offset), min(hi, offset + len(value))
    if start >= stop:
        return Const(0, hi - lo)
    return Cat(Const(0, start - lo), value[start - offset:stop - offset])


def _select(value, offset, shifts, lo, hi):
    """Bits [lo, hi) of ``value << offset`` shifted further left by the size of each of the
    ``shifts`` (``(size, shift)`` pairs) whose ``shift`` is high."""
    if not shifts:
        return _shifted_bits(value, offset, lo, hi)
    (size, shift), rest = shifts[0], shifts[1:]
    return Mux(shift, _select(value, offset + size, rest, lo, hi),
               _select(value, offset, rest, lo, hi))


def _all_equal(value, bit):
    """Whether every bit of ``value`` equals ``bit``, as logic rather than a comparison."""
    return ~(value ^ bit.replicate(len(value))).any()


def _per_format(out_format, value_of):
    """``value_of(fmt)`` for the format ``out_format`` holds: a multiplexer tree on the bits
    of its encoding."""
    def pick(values, bit):
        if len(values) == 1:
            return values[0]
        half = len(values) // 2
        return Mux(out_format.as_value()[bit], pick(values[half:], bit - 1),
                   pick(values[:half], bit - 1))
    values = [value_of(OutFormat(encoding)) for encoding in range(len(OutFormat))]
    return pick(values, (len(values) - 1).bit_length() - 1)


class Normalizer(wiring.Component):
    """Round an exact accumulator state to fp32, bf16, E4M3 or E5M2, in six register stages.

    One shared datapath serves every output format. The accumulator is never negated: its
    one's complement ``v = acc ^ sign`` (``-acc = v + 1`` when negative) is shifted left
    until its leading one reaches a fixed top bit, so the kept significand of every format
    is the top ``man_bits + 1`` bits of one window, with its guard bit below them. The
    ``+ 1`` of a negative value and the sticky bit both follow from whether every bit of
    ``acc`` below the guard bit is zero: if so, the carry of the ``+ 1`` reaches the guard
    bit and nothing is left below it; if not, it stops short and leaves a sticky bit.
    The biased exponent field is added on top of the rounded significand, so a carry out of
    the significand moves into the next binade (or into the overflow code) by itself.

    The shift is a normalisation in binary steps, the largest first: a step shifts by its
    size when that many top bits equal the sign (are zeros of ``v``) and the headroom
    allows it. The headroom, ``top - t`` with ``t = emin - acc_lsb_exp - scale_exp``, is
    how far the leading one may rise before the result is subnormal; less the steps taken,
    it is the biased exponent field (minus one for the leading one). Bits that end below
    every format's guard bit whatever the later steps do are folded into one "below" bit
    as they leave the window. A negative headroom (the value is below half the smallest
    subnormal of an fp8 format) rounds to zero.

    The stages, each ending in a register that loads when ``advance`` is high:

    1. the headroom, and the two largest normalising steps;
    2. the third step;
    3. the fourth step;
    4. the remaining steps: the window of the kept, guard and lower bits of ``v``;
    5. the rounding increment, and the exponent field added on top: the encoding's code;
    6. overflow per format and mode, the special values and the sign: ``bits``.

    ``out_format``, ``saturate`` and ``scale_exp`` are taken with ``state`` and travel with
    it, so every value is rounded with the settings presented alongside it. What only
    stages 5 and 6 need (the settings, the special flags, the headroom) waits in a block
    RAM of one entry per stage in flight rather than in four registers each.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    advance : In(1)
        Clock enable: every stage loads from the one before when high, holds when low.
    state : In(AccumulatorState(config))
    out_format : In(OutFormat)
    saturate : In(1)
        fp8 overflow mode: saturate to the largest finite value (1) or produce NaN (E4M3) /
        Inf (E5M2) (0). fp32 and bf16 always follow IEEE overflow to Inf.
    scale_exp : In(signed(8))
        The result is ``round(sum * 2**scale_exp)``.
    bits : Out(32)
        A register: the encoding of the state presented :attr:`LATENCY` advancing cycles
        earlier, zero-extended for 16- and 8-bit formats.
    """

    #: Advancing cycles from ``state`` to ``bits``.
    LATENCY = 6

    def __init__(self, config):
        self._config = config
        super().__init__({
            "advance": In(1),
            "state": In(AccumulatorState(config)),
            "out_format": In(OutFormat),
            "saturate": In(1),
            "scale_exp": In(SCALE_SHAPE),
            "bits": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._config.acc_width
        widest = max(fmt.spec.man_bits for fmt in OutFormat)
        narrowest = max(fmt.spec.man_bits for fmt in (OutFormat.E4M3, OutFormat.E5M2))
        # The window is bits [base, top] of the normalised value: top holds the leading one
        # of a normal result, base the guard bit of the widest format. Above the sign bit
        # there is room for an fp8 significand, so a result below half the smallest fp8
        # subnormal is exactly one with a negative headroom.
        top = width - 1 + narrowest
        base = top - widest - 1
        hidden = top - base - 1             # the leading one's bit in the code
        steps = (top + 1).bit_length()      # the one's complement of -1 shifts top + 1
        scale_min = -1 << (SCALE_SHAPE.width - 1)
        headroom_of = {fmt: top - fmt.spec.emin + self._config.acc_lsb_exp
                       for fmt in OutFormat}
        headroom_max = max(headroom_of.values()) - scale_min - 1
        headroom_shape = signed(max(headroom_max, -min(headroom_of.values()) - scale_min)
                                .bit_length() + 1)
        # fp32 and bf16 results are never that small.
        assert min(headroom_of[OutFormat.FP32], headroom_of[OutFormat.BF16]) + scale_min >= 0

        def register(shape, value, name):
            """A pipeline register loading ``value`` on ``advance``."""
            reg = Signal(shape, name=name)
            with m.If(self.advance):
                m.d.sync += reg.eq(value)
            return reg

        def named(value, name):
            """``value`` as a signal, so that its every use shares one copy of the logic."""
            signal = Signal.like(value, name=name)
            m.d.comb += signal.eq(value)
            return signal

        # Stage 1: the headroom, and the entry that waits for stage 5.
        state = self.state
        acc = state.acc
        sign = acc[-1]
        headroom = Signal(headroom_shape)
        m.d.comb += headroom.eq(self.scale_exp + _per_format(self.out_format,
                                                             headroom_of.__getitem__))
        waiting = memory.Memory(
            shape=data.StructLayout({
                "headroom": headroom_shape,
                "settings": _Settings,
                "nan": 1,
                "inf": 1,
                "special_sign": 1,      # of an Inf, or of an exact zero (the -0 rule)
            }),
            depth=_WAITING_STAGES, init=[], attrs={**NO_COLLISION, **BLOCK_RAM})
        m.submodules.waiting = waiting
        put = waiting.write_port()
        waited = RegisteredReadPort(m, waiting, name="waited")
        slot = Signal(range(_WAITING_STAGES))
        next_slot = Signal.like(slot)
        m.d.comb += next_slot.eq(slot + 1)
        with m.If(self.advance):
            m.d.sync += slot.eq(next_slot)
        any_inf = state.pos_inf | state.neg_inf
        m.d.comb += [
            put.addr.eq(slot),
            put.en.eq(self.advance),
            put.data.headroom.eq(headroom),
            put.data.settings.eq(Cat(self.out_format, self.saturate)),
            put.data.nan.eq(state.nan | (state.pos_inf & state.neg_inf)),
            put.data.inf.eq(any_inf),
            put.data.special_sign.eq(Mux(any_inf, state.neg_inf, state.neg_zero)),
            # The entry written _WAITING_STAGES - 1 advances ago (never the one written).
            waited.addr.eq(next_slot),
            waited.en.eq(self.advance),
        ]

        # Stages 1 to 4: the normalising steps. ``frame`` holds bits [low, top] of the
        # shifted, sign-extended accumulator (zeros enter below). A step may shift when the
        # headroom left is at least its size: when the steps taken so far are below the
        # headroom's bits above this step (``ample``), or when the headroom has this step's
        # bit. Shifts on a negative headroom do no harm (the result is zero). The two
        # largest steps are both chosen from stage 1's input and applied together, as one
        # four-way choice per bit (cheap where zeros enter); the others one after another.
        frame = Cat(acc, sign.replicate(top + 1 - width))
        low = 0
        below = Const(0)
        has_step = headroom[:steps]
        ample = headroom[steps:].any()
        taken = Const(0, 0)                  # the steps taken so far, the largest last
        pending = []                         # steps chosen but not applied yet
        stage_after = {steps - 2: 1, steps - 3: 2, steps - 4: 3, 0: 4}
        for step in reversed(range(steps)):
            size = 1 << step
            clear = _all_equal(_select(frame, low, pending, top + 1 - size, top + 1), sign)
            shift = named(clear & (ample | has_step[step]), f"shift_{size}")
            ample = named(ample | (has_step[step] & ~shift), f"ample_{size}")
            taken = Cat(shift, taken)
            pending.append((size, shift))
            if step == steps - 1:
                continue
            new_low = max(base - size + 1, 0)    # lower bits end below every guard bit
            below = below | _select(frame, low, pending, low, new_low).any()
            frame = _select(frame, low, pending, new_low, top + 1)
            low, pending = new_low, []
            stage = stage_after.get(step)
            if stage is None:
                continue
            if step == 0:
                # The window as bits of v, and what the exponent field gains from the
                # leading one (the hidden bit of a normal result) less the steps taken.
                frame = frame ^ sign.replicate(len(frame))
                taken = frame[-1] - taken
            frame = register(len(frame), frame, f"frame_{stage}")
            below = register(1, below, f"below_{stage}")
            if step:                             # (read only by the steps still to come)
                has_step = register(step, has_step[:step], f"has_step_{stage}")
                ample = register(1, ample, f"ample_{stage}")
            taken = register(taken.shape(), taken, f"taken_{stage}")
            sign = register(1, sign, f"sign_{stage}")
        window = frame
        rise = Signal(headroom_shape)
        m.d.comb += rise.eq(taken)

        # Stage 5: round to nearest even. When every bit of acc below the guard bit is
        # zero (every bit of v equals the sign), a negative value's + 1 reaches the guard
        # bit and leaves no sticky bit: the increment then depends on the guard bit and the
        # kept lsb together; otherwise it is the guard bit. The code is the kept bits with
        # the increment at their lsb, and the headroom plus the rise at the leading one.
        entry = waited.data
        increment_at = {}                    # by the position of the kept lsb in the code
        exact = ~below                       # every bit below the guard bits met so far
        checked = 0
        for fmt in sorted(OutFormat, key=lambda fmt: -fmt.spec.man_bits):
            guard = hidden - fmt.spec.man_bits
            exact = named(exact & _all_equal(window[checked:guard], sign), f"exact_{fmt.name}")
            checked = guard
            pair = window[guard:guard + 2]
            increment_at[guard] = (entry.settings.out_format == fmt) & Mux(
                exact, Mux(sign, pair.any(), pair.all()), pair[0])
        increment = Cat(*[increment_at.get(bit, Const(0)) for bit in range(hidden)])
        zero = named(~sign & exact & ~window[checked:].any(), "zero")
        code = Signal(hidden + (headroom_max + 2).bit_length(), name="code_5")
        with m.If(self.advance):
            with m.If(zero | entry.headroom[-1]):
                m.d.sync += code.eq(0)
            with m.Else():
                m.d.sync += code.eq(Cat(window[1:-1], rise) + Cat(increment, entry.headroom))
        result_sign = register(1, Mux(entry.inf | zero, entry.special_sign, sign), "sign_5")
        settings = register(_Settings, entry.settings, "settings_5")
        nan = register(1, entry.nan, "nan_5")
        inf = register(1, entry.inf, "inf_5")

        # Stage 6: overflow and the special values. Each format's code is ``code`` from its
        # kept lsb up; ``bits`` is written in byte ranges, each zero for formats too narrow
        # to reach it.
        out_format = settings.out_format
        codes = {fmt: code[hidden - fmt.spec.man_bits:] for fmt in OutFormat}
        overflow = named(inf | _per_format(out_format, lambda fmt: above_constant(
            codes[fmt], fmt.spec.max_finite_code)), "overflow")
        # OCP OFP8 5.2.1: out-of-range results saturate, or become NaN (E4M3, no Inf) or Inf.
        nan_result = named(
            nan | (overflow & (out_format == OutFormat.E4M3) & ~settings.saturate), "nan_result")
        special = named(nan_result | overflow, "special")
        result_sign = named(result_sign & ~nan_result, "positive_nan_sign")

        def encoding_bit(fmt, bit):
            """Bit ``bit`` of the encoding in format ``fmt``."""
            spec = fmt.spec
            if bit == spec.width - 1:
                return result_sign
            out_of_range = spec.inf_code >> bit & 1 if spec.inf_code is not None else 0
            if fmt in (OutFormat.E4M3, OutFormat.E5M2):
                out_of_range = Mux(settings.saturate, spec.max_finite_code >> bit & 1,
                                   out_of_range)
            forced = Mux(nan_result, spec.canonical_nan >> bit & 1, out_of_range)
            return Mux(special, forced, codes[fmt][bit])

        for lo, hi in ((0, 8), (8, 16), (16, 32)):
            reaching = [fmt for fmt in OutFormat if fmt.spec.width > lo]
            encoded = Cat(*[_per_format(out_format, lambda fmt: encoding_bit(fmt, bit)
                                        if fmt in reaching else 0)
                            for bit in range(lo, hi)])
            with m.If(self.advance):
                if len(reaching) == len(OutFormat):     # every format has these bits
                    m.d.sync += self.bits[lo:hi].eq(encoded)
                else:
                    with m.If(~Cat(*[out_format == fmt for fmt in reaching]).any()):
                        m.d.sync += self.bits[lo:hi].eq(0)
                    with m.Else():
                        m.d.sync += self.bits[lo:hi].eq(encoded)
        return m

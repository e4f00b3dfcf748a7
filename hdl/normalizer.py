"""The normaliser: one IEEE round-to-nearest-even from the exact accumulator, pipelined."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant
from .fp8 import OutFormat
from .pe import AccumulatorState

__all__ = ["Normalizer"]

#: Signed 8-bit power-of-two output scale, applied exactly before the rounding.
SCALE_SHAPE = signed(8)

#: Widest piece of the magnitude computed at once: a piece plus its carry fits a 64-bit word.
_LIMB_WIDTH = 56
#: Chunk width of the two-level leading-one search.
_LEAD_CHUNK = 16
#: Word size of the coarse step of the rounding shifter.
_SHIFT_WORD = 32

#: The output format and overflow mode, carried along the pipeline with the value they
#: apply to.
_Settings = data.StructLayout({"out_format": OutFormat, "saturate": 1})


def _shifted_bits(value, offset, lo, hi):
    """Bits [lo, hi) of ``value << offset`` (constants ``offset``, ``lo``, ``hi``)."""
    start, stop = max(lo, offset), min(hi, offset + len(value))
    if start >= stop:
        return Const(0, hi - lo)
    return Cat(Const(0, start - lo), value[start - offset:stop - offset])


def _any_below(value, offset, bit):
    """Whether any of bits [0, bit) of ``value << offset`` is set, in word-sized pieces."""
    pieces = [_shifted_bits(value, offset, lo, min(lo + 64, bit)) for lo in range(0, bit, 64)]
    return Cat(*[piece.any() for piece in pieces]).any() if pieces else Const(0)


def _per_format(out_format, value_of):
    """Mux a per-format Python constant by ``out_format``."""
    value = Const(value_of(OutFormat.FP32.spec))
    for fmt in OutFormat:
        value = Mux(out_format == fmt, value_of(fmt.spec), value)
    return value


class Normalizer(wiring.Component):
    """Round an exact accumulator state to fp32, bf16, E4M3 or E5M2, in six register stages.

    One shared datapath serves every output format: the magnitude is shifted so that the
    kept significand lands in the low ``man_bits + 1`` bits, rounded to nearest even from
    the guard and sticky bits, and the exponent field is added on top, so a carry out of
    the significand moves into the next binade (or into the overflow code) by itself.

    The stages, each ending in a register that loads when ``advance`` is high:

    1. sign and magnitude (one's complement plus carry-in), the special flags, and the
       exponent threshold ``t = emin - acc_lsb_exp - scale_exp`` of the subnormal range;
    2. the position ``lead`` of the leading one, and whether the magnitude is zero;
    3. ``x = max(lead, t)``: the right shift ``x + 23 - man_bits`` (clamped), the biased
       exponent field ``x - t``, and the OR of each 32-bit word of the magnitude for the
       sticky bit;
    4. the shift itself (whole words, then 0-31 bits) to the kept significand, guard and
       sticky bits;
    5. the rounding increment and the exponent field added on top: the encoding's code;
    6. overflow per format and mode, the special values and the sign: ``bits``.

    ``out_format``, ``saturate`` and ``scale_exp`` are taken with ``state`` and travel with
    it, so every value is rounded with the settings presented alongside it.

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
        config = self._config
        width = config.acc_width
        lsb = config.acc_lsb_exp
        widest = max(fmt.spec.man_bits for fmt in OutFormat)
        limit = width + widest + 1      # any larger shift leaves nothing and no guard bit
        words = (limit >> 5) + 1        # 32-bit words of the coarse shift step

        def register(shape, value, name):
            """A pipeline register loading ``value`` on ``advance``."""
            reg = Signal(shape, name=name)
            with m.If(self.advance):
                m.d.sync += reg.eq(value)
            return reg

        # Stage 1: sign and magnitude. The magnitude is formed limb by limb (one's
        # complement plus a carry-in, as in the PE) so every piece fits a 64-bit word in
        # the Verilator model.
        state = self.state
        acc = state.acc
        sign = acc[-1]
        pieces = []
        carry = sign
        for lo in range(0, width, _LIMB_WIDTH):
            part = acc[lo:lo + _LIMB_WIDTH]
            piece = Signal(len(part) + 1, name=f"magnitude_{lo}")
            m.d.comb += piece.eq((part ^ sign.replicate(len(part))) + carry)
            pieces.append(piece[:len(part)])
            carry = piece[-1]
        # The exponent of the leading one is lead + lsb + scale_exp; it is below emin (the
        # result is subnormal) exactly when lead < t.
        threshold = _per_format(self.out_format, lambda spec: spec.emin) - lsb - self.scale_exp
        settings = Cat(self.out_format, self.saturate)
        magnitude_1 = register(unsigned(width), Cat(*pieces), "magnitude_1")
        sign_1 = register(1, sign, "sign_1")
        threshold_1 = register(signed(12), threshold, "threshold_1")
        settings_1 = register(_Settings, settings, "settings_1")
        nan_1 = register(1, state.nan | (state.pos_inf & state.neg_inf), "nan_1")
        inf_1 = register(1, state.pos_inf | state.neg_inf, "inf_1")
        neg_inf_1 = register(1, state.neg_inf, "neg_inf_1")
        neg_zero_1 = register(1, state.neg_zero, "neg_zero_1")

        # Stage 2: position of the leading one, in two levels: the highest non-zero chunk,
        # then the highest one inside it.
        chunks = [magnitude_1[lo:lo + _LEAD_CHUNK] for lo in range(0, width, _LEAD_CHUNK)]
        nonzero = Cat(*[chunk.any() for chunk in chunks])
        top = Signal(range(len(chunks)))
        for k in range(len(chunks)):        # the last matching If wins: highest chunk
            with m.If(nonzero[k]):
                m.d.comb += top.eq(k)
        chunk = Signal(_LEAD_CHUNK)
        with m.Switch(top):
            for k, value in enumerate(chunks):
                with m.Case(k):
                    m.d.comb += chunk.eq(value)
        inner = Signal(range(_LEAD_CHUNK))
        for i in range(_LEAD_CHUNK):
            with m.If(chunk[i]):
                m.d.comb += inner.eq(i)
        is_zero = ~nonzero.any()
        # The sign of the result: of the Inf, of an exact zero (the -0 rule), or of the sum.
        result_sign = Mux(inf_1, neg_inf_1, Mux(is_zero, neg_zero_1, sign_1))
        lead_2 = register(range(width), Cat(inner, top), "lead_2")     # top * 16 + inner
        zero_2 = register(1, is_zero, "zero_2")
        magnitude_2 = register(unsigned(width), magnitude_1, "magnitude_2")
        threshold_2 = register(signed(12), threshold_1, "threshold_2")
        settings_2 = register(_Settings, settings_1, "settings_2")
        nan_2 = register(1, nan_1, "nan_2")
        inf_2 = register(1, inf_1, "inf_2")
        sign_2 = register(1, result_sign, "sign_2")

        # Stage 3: with x = max(lead, t), the clamped exponent is x + lsb + scale_exp.
        # Normal results keep man_bits + 1 bits, subnormal ones what lies above emin's
        # quantum: shifting (magnitude << widest) right by x + widest - man_bits leaves the
        # kept significand in the low bits (never negative: x >= lead >= 0). The biased
        # exponent field is clamped - emin = x - t.
        x = Signal(signed(12))
        shift = Signal(signed(12))
        m.d.comb += [
            x.eq(Mux(threshold_2 > lead_2, threshold_2, lead_2)),
            shift.eq(x + widest - _per_format(settings_2.out_format,
                                               lambda spec: spec.man_bits)),
        ]
        # Bits of (magnitude << widest + 1) below each word boundary, for the sticky bit.
        offset = widest + 1
        below_word = Cat(*[_any_below(magnitude_2, offset, _SHIFT_WORD * q)
                           for q in range(words)])
        amount_3 = register(range(limit + 1), Mux(above_constant(shift, limit), limit, shift),
                            "amount_3")
        field_3 = register(unsigned(12), x - threshold_2, "field_3")
        magnitude_3 = register(unsigned(width), magnitude_2, "magnitude_3")
        below_word_3 = register(words, below_word, "below_word_3")
        zero_3 = register(1, zero_2, "zero_3")
        settings_3 = register(_Settings, settings_2, "settings_3")
        nan_3 = register(1, nan_2, "nan_3")
        inf_3 = register(1, inf_2, "inf_3")
        sign_3 = register(1, sign_2, "sign_3")

        # Stage 4: shift (magnitude << widest + 1) right by amount: bit 0 is then the guard
        # bit (the one below the kept significand; zero when nothing is shifted out) and
        # the bits shifted out below it make the sticky bit. The shift is a coarse step of
        # whole 32-bit words (a 64-bit window picked with constant slices) and a fine step
        # within the window; the sticky bit is the OR of the skipped words and of the
        # window's bits below the fine shift.
        word = amount_3 >> 5
        fine = amount_3[:5]
        window = Signal(64)
        with m.Switch(word):
            for q in range(words):
                with m.Case(q):
                    m.d.comb += window.eq(_shifted_bits(magnitude_3, offset, _SHIFT_WORD * q,
                                                       _SHIFT_WORD * q + 64))
        with_guard = Signal(widest + 3)
        m.d.comb += with_guard.eq(window >> fine)
        below_fine = Signal(_SHIFT_WORD)        # the window's bits below the fine shift
        m.d.comb += below_fine.eq((Const(1, 1) << fine) - 1)
        sticky = below_word_3.bit_select(word, 1) | (window[:_SHIFT_WORD] & below_fine).any()
        kept_4 = register(widest + 2, with_guard[1:], "kept_4")
        guard_4 = register(1, with_guard[0], "guard_4")
        sticky_4 = register(1, sticky, "sticky_4")
        field_4 = register(unsigned(12), field_3, "field_4")
        zero_4 = register(1, zero_3, "zero_4")
        settings_4 = register(_Settings, settings_3, "settings_4")
        nan_4 = register(1, nan_3, "nan_4")
        inf_4 = register(1, inf_3, "inf_4")
        sign_4 = register(1, sign_3, "sign_4")

        # Stage 5: round to nearest even, and the biased exponent field on top of the
        # rounded significand: a significand carry (rounded == 2 << man_bits) lands in the
        # next binade, or in the overflow range, without special handling.
        round_up = guard_4 & (sticky_4 | kept_4[0])
        field_at = field_4 << OutFormat.FP32.spec.man_bits
        for fmt in OutFormat:
            field_at = Mux(settings_4.out_format == fmt, field_4 << fmt.spec.man_bits,
                           field_at)
        code_5 = register(unsigned(12 + widest), field_at + kept_4 + round_up, "code_5")
        zero_5 = register(1, zero_4, "zero_5")
        settings_5 = register(_Settings, settings_4, "settings_5")
        nan_5 = register(1, nan_4, "nan_5")
        inf_5 = register(1, inf_4, "inf_5")
        sign_5 = register(1, sign_4, "sign_5")

        # Stage 6: overflow and the special values.
        out_format = settings_5.out_format
        max_code = _per_format(out_format, lambda spec: spec.max_finite_code)
        inf_code = _per_format(out_format, lambda spec: spec.inf_code or 0)
        nan_code = _per_format(out_format, lambda spec: spec.canonical_nan)
        sign_bit = (sign_5 << _per_format(out_format, lambda spec: spec.width - 1))[:32]
        is_fp8 = (out_format == OutFormat.E4M3) | (out_format == OutFormat.E5M2)
        # OCP OFP8 5.2.1: out-of-range results saturate, or become NaN (E4M3, no Inf) or Inf.
        overflow_nan = (out_format == OutFormat.E4M3) & ~settings_5.saturate
        overflow_code = Mux(is_fp8 & settings_5.saturate, max_code, inf_code)
        above_max = above_constant(code_5, OutFormat.FP32.spec.max_finite_code)
        for fmt in OutFormat:
            above_max = Mux(out_format == fmt, above_constant(code_5, fmt.spec.max_finite_code),
                            above_max)
        overflow = ~zero_5 & above_max
        with m.If(self.advance):
            with m.If(nan_5 | ((inf_5 | overflow) & overflow_nan)):
                m.d.sync += self.bits.eq(nan_code)
            with m.Elif(inf_5 | overflow):
                m.d.sync += self.bits.eq(overflow_code | sign_bit)
            with m.Elif(zero_5):
                m.d.sync += self.bits.eq(sign_bit)
            with m.Else():
                m.d.sync += self.bits.eq(code_5 | sign_bit)
        return m

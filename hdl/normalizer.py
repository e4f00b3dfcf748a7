"""The normaliser: one IEEE round-to-nearest-even from the exact accumulator."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fp8 import OutFormat
from .pe import AccumulatorState

__all__ = ["Normalizer"]

#: Signed 8-bit power-of-two output scale, applied exactly before the rounding.
SCALE_SHAPE = signed(8)


class Normalizer(wiring.Component):
    """Round an exact accumulator state to fp32, bf16, E4M3 or E5M2 (combinational).

    One shared datapath serves every output format: the magnitude is shifted so that the
    kept significand lands in the low ``man_bits + 1`` bits, rounded to nearest even from
    the guard and sticky bits, and the exponent field is added on top, so a carry out of
    the significand moves into the next binade (or into the overflow code) by itself.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    state : In(AccumulatorState(config))
    out_format : In(OutFormat)
    saturate : In(1)
        fp8 overflow mode: saturate to the largest finite value (1) or produce NaN (E4M3) /
        Inf (E5M2) (0). fp32 and bf16 always follow IEEE overflow to Inf.
    scale_exp : In(signed(8))
        The result is ``round(sum * 2**scale_exp)``.
    bits : Out(32)
        The encoding, zero-extended for 16- and 8-bit formats.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
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

        def per_format(value_of):
            """Mux a per-format Python constant by the selected output format."""
            value = Const(value_of(OutFormat.FP32.spec))
            for fmt in OutFormat:
                value = Mux(self.out_format == fmt, value_of(fmt.spec), value)
            return value

        man_bits = per_format(lambda spec: spec.man_bits)
        emin = per_format(lambda spec: spec.emin)
        sign_pos = per_format(lambda spec: spec.width - 1)
        max_code = per_format(lambda spec: spec.max_finite_code)
        inf_code = per_format(lambda spec: spec.inf_code or 0)
        nan_code = per_format(lambda spec: spec.canonical_nan)

        acc = self.state.acc
        sign = Signal()
        magnitude = Signal(unsigned(width))
        m.d.comb += [sign.eq(acc < 0), magnitude.eq(Mux(sign, -acc, acc))]

        # Position of the leading one (the last matching If wins: highest bit).
        lead = Signal(range(width))
        for i in range(width):
            with m.If(magnitude[i]):
                m.d.comb += lead.eq(i)

        # Unbiased exponent of the leading one, and the right shift that leaves the kept
        # significand in the low bits of (magnitude << widest). Normal results keep
        # man_bits + 1 bits; subnormal ones keep what lies above emin's quantum.
        exponent = Signal(signed(12))
        clamped = Signal(signed(12))
        shift = Signal(signed(12))
        m.d.comb += [
            exponent.eq(lead + lsb + self.scale_exp),
            clamped.eq(Mux(exponent < emin, emin, exponent)),
            # Never negative: clamped - lsb - scale_exp >= lead >= 0.
            shift.eq(clamped - lsb - self.scale_exp + widest - man_bits),
        ]

        wide = Signal(width + widest)
        m.d.comb += wide.eq(magnitude << widest)
        limit = width + widest + 1      # any larger shift leaves nothing and no guard bit
        amount = Signal(range(limit + 1))
        m.d.comb += amount.eq(Mux(shift > limit, limit, shift))

        # Shift by amount - 1 so the guard bit lands in bit 0; the sticky bit is whatever
        # that shift dropped.
        below = Signal(range(limit + 1))
        with_guard = Signal(width + widest)
        dropped = Signal()
        m.d.comb += [
            below.eq(Mux(amount == 0, 0, amount - 1)),
            with_guard.eq(wide >> below),
            dropped.eq((with_guard << below)[:width + widest] != wide),
        ]
        kept = Signal(widest + 2)
        guard = Signal()
        sticky = Signal()
        with m.If(amount == 0):
            m.d.comb += kept.eq(wide)
        with m.Else():
            m.d.comb += [kept.eq(with_guard >> 1), guard.eq(with_guard[0]), sticky.eq(dropped)]
        rounded = Signal(widest + 2)
        m.d.comb += rounded.eq(kept + (guard & (sticky | kept[0])))

        # Biased exponent field on top of the rounded significand: a significand carry
        # (rounded == 2 << man_bits) lands in the next binade, or in the overflow range,
        # without special handling.
        code = Signal(unsigned(12 + widest))
        m.d.comb += code.eq(((clamped - emin).as_unsigned() << man_bits) + rounded)

        is_fp8 = (self.out_format == OutFormat.E4M3) | (self.out_format == OutFormat.E5M2)
        # OCP OFP8 5.2.1: out-of-range results saturate, or become NaN (E4M3, no Inf) or Inf.
        overflow_nan = (self.out_format == OutFormat.E4M3) & ~self.saturate
        overflow_code = Mux(is_fp8 & self.saturate, max_code, inf_code)

        state = self.state
        is_nan = state.nan | (state.pos_inf & state.neg_inf)
        is_inf = state.pos_inf | state.neg_inf
        is_zero = acc == 0
        overflow = ~is_zero & (code > max_code)
        result_sign = Mux(is_inf, state.neg_inf, Mux(is_zero, state.neg_zero, sign))
        signed_bit = (result_sign << sign_pos)[:32]
        with m.If(is_nan | ((is_inf | overflow) & overflow_nan)):
            m.d.comb += self.bits.eq(nan_code)
        with m.Elif(is_inf | overflow):
            m.d.comb += self.bits.eq(overflow_code | signed_bit)
        with m.Elif(is_zero):
            m.d.comb += self.bits.eq(signed_bit)
        with m.Else():
            m.d.comb += self.bits.eq(code | signed_bit)
        return m

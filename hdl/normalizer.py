"""The normaliser: one IEEE round-to-nearest-even from the exact accumulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fp8 import OutFormat
from .pe import AccumulatorState

__all__ = ["Normalizer"]

#: Signed 8-bit power-of-two output scale, applied exactly before the rounding.
SCALE_SHAPE = signed(8)

#: Widest piece of the magnitude computed at once: a piece plus its carry fits a 64-bit word.
_LIMB_WIDTH = 56
#: Chunk width of the two-level leading-one search.
_LEAD_CHUNK = 16


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

        # Sign and magnitude. The magnitude is formed limb by limb (one's complement plus a
        # carry-in, as in the PE) so every piece fits a 64-bit word in the Verilator model.
        acc = self.state.acc
        sign = Signal()
        m.d.comb += sign.eq(acc[-1])
        pieces = []
        carry = sign
        for lo in range(0, width, _LIMB_WIDTH):
            part = acc[lo:lo + _LIMB_WIDTH]
            piece = Signal(len(part) + 1, name=f"magnitude_{lo}")
            m.d.comb += piece.eq((part ^ sign.replicate(len(part))) + carry)
            pieces.append(piece[:len(part)])
            carry = piece[-1]
        magnitude = Signal(unsigned(width))
        m.d.comb += magnitude.eq(Cat(*pieces))

        # Position of the leading one, in two levels: the highest non-zero chunk, then the
        # highest one inside it.
        chunks = [magnitude[lo:lo + _LEAD_CHUNK] for lo in range(0, width, _LEAD_CHUNK)]
        top = Signal(range(len(chunks)))
        for k, chunk in enumerate(chunks):         # the last matching If wins: highest chunk
            with m.If(chunk.any()):
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
        lead = Signal(range(width))
        m.d.comb += lead.eq(top * _LEAD_CHUNK + inner)

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
        limit = width + widest + 1      # any larger shift leaves nothing and no guard bit
        amount = Signal(range(limit + 1))
        m.d.comb += amount.eq(Mux(shift > limit, limit, shift))

        # Shift (magnitude << widest + 1) right by amount: bit 0 is then the guard bit (the
        # one below the kept significand; zero when nothing is shifted out) and the bits
        # shifted out below it make the sticky bit. The shift is a coarse step of whole
        # 32-bit words (a 64-bit window picked with constant slices) and a fine step within
        # the window; the sticky bit is the OR of the skipped words and of the window's
        # bits below the fine shift.
        offset = widest + 1
        word = Signal(range((limit >> 5) + 1))
        fine = Signal(5)
        m.d.comb += [word.eq(amount >> 5), fine.eq(amount[:5])]
        window = Signal(64)
        skipped = Signal()
        with m.Switch(word):
            for q in range((limit >> 5) + 1):
                with m.Case(q):
                    m.d.comb += window.eq(_shifted_bits(magnitude, offset, 32 * q, 32 * q + 64))
                    m.d.comb += skipped.eq(_any_below(magnitude, offset, 32 * q))
        with_guard = Signal(widest + 3)
        m.d.comb += with_guard.eq(window >> fine)
        below_fine = Signal(32)         # the window's bits below the fine shift
        m.d.comb += below_fine.eq((Const(1, 1) << fine) - 1)
        kept = Signal(widest + 2)
        guard = Signal()
        sticky = Signal()
        m.d.comb += [
            kept.eq(with_guard[1:]),
            guard.eq(with_guard[0]),
            sticky.eq(skipped | (window[:32] & below_fine).any()),
        ]
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

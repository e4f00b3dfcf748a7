"""The processing element: exact fp8 product into a fixed-point (Kulisch) accumulator."""

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp8 import Fp8Decoder, Fp8Format

__all__ = ["RowBeat", "AccumulatorState", "ProcessingElement", "LIMB_WIDTH"]


#: Widest accumulator limb: a limb plus its carry fits a 64-bit word.
LIMB_WIDTH = 56
#: Granularity of the coarse step of the product alignment shifter.
_COARSE_STEP = 8


def _limb_bounds(width):
    """Bit ranges [lo, hi) of the accumulator limbs, least significant first."""
    return [(lo, min(lo + LIMB_WIDTH, width)) for lo in range(0, width, LIMB_WIDTH)]


def _window(value, offset, lo, hi):
    """Bits [lo, hi) of ``value << offset`` (constant ``offset``), as an expression."""
    start, stop = max(lo, offset), min(hi, offset + len(value))
    if start >= stop:
        return Const(0, hi - lo)
    return Cat(Const(0, start - lo), value[start - offset:stop - offset])


#: What travels along a row of the array with each A operand: the operand, whether the
#: beat carries data, and whether it is the last k of the current output tile.
RowBeat = data.StructLayout({"valid": 1, "last": 1, "bits": 8})


def AccumulatorState(config):
    """Exact dot-product state: the finite sum and the special-value flags.

    ``acc`` is two's complement in units of ``2**config.acc_lsb_exp``. ``neg_zero`` is set
    while every product so far was -0 (it starts set: the empty product list qualifies).
    """
    return data.StructLayout({
        "acc": signed(config.acc_width),
        "nan": 1,
        "pos_inf": 1,
        "neg_inf": 1,
        "neg_zero": 1,
    })


class ProcessingElement(wiring.Component):
    """One output-stationary PE.

    Two pipeline stages: the first decodes both operands and forms the exact product (a
    small integer multiply and a shift amount), the second shifts it into the accumulator.
    A operands (with the valid/last marks) pass to the right, B operands pass down, one
    register each. On the last k of a tile the final state moves into ``result`` and the
    accumulator restarts, so the next tile streams in without a gap. ``result`` registers
    also form a column shift chain (``drain_in`` -> ``result``) used to drain the array.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    advance : In(1)
        Global clock enable of the array; nothing changes while it is low.
    a_format, b_format : In(Fp8Format)
    a_in, a_out : RowBeat
    b_in, b_out : 8 bits
    drain_in : In(AccumulatorState)
        ``result`` of the PE above.
    shift : In(1)
        Take ``drain_in`` into ``result`` on this advance.
    result : Out(AccumulatorState)
        The state of the last completed tile (or what the drain shifted in).
    tile_done : Out(1)
        High in the cycle whose advance moves a finished tile into ``result``.
    """

    def __init__(self, config):
        self._config = config
        state = AccumulatorState(config)
        super().__init__({
            "advance": In(1),
            "a_format": In(Fp8Format),
            "b_format": In(Fp8Format),
            "a_in": In(RowBeat),
            "a_out": Out(RowBeat),
            "b_in": In(8),
            "b_out": Out(8),
            "drain_in": In(state),
            "shift": In(1),
            "result": Out(state),
            "tile_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config

        m.submodules.a_decoder = a_dec = Fp8Decoder(config)
        m.submodules.b_decoder = b_dec = Fp8Decoder(config)
        m.d.comb += [
            a_dec.bits.eq(self.a_in.bits), a_dec.format.eq(self.a_format),
            b_dec.bits.eq(self.b_in), b_dec.format.eq(self.b_format),
        ]
        a, b = a_dec.operand, b_dec.operand

        with m.If(self.advance):
            m.d.sync += [self.a_out.eq(self.a_in), self.b_out.eq(self.b_in)]

        # Stage 1: exact product. Specials decode with a zero significand, so the
        # magnitude of any product involving them is zero; only the flags see them.
        p_valid = Signal()
        p_last = Signal()
        p_sign = Signal()
        p_significand = Signal(2 * config.significand_bits)
        p_shift = Signal(range(2 * config.operand_shift_max + 1))
        p_nan = Signal()
        p_inf = Signal()
        p_zero = Signal()

        nan = a.nan | b.nan | (a.inf & b.zero) | (a.zero & b.inf)
        with m.If(self.advance):
            m.d.sync += [
                p_valid.eq(self.a_in.valid),
                p_last.eq(self.a_in.last & self.a_in.valid),
                p_sign.eq(a.sign ^ b.sign),
                p_significand.eq(a.significand * b.significand),
                p_shift.eq(a.shift + b.shift),
                p_nan.eq(nan),
                p_inf.eq((a.inf | b.inf) & ~nan),
                p_zero.eq((a.zero | b.zero) & ~nan),
            ]

        # Stage 2: accumulate. The sum is exact; overflow is impossible for K <= max_k.
        # The accumulator is kept in limbs of at most LIMB_WIDTH bits joined by carries:
        # the same single carry chain as one wide adder, but every signal fits a machine
        # word, which keeps the Verilator model fast. A negative product is added as its
        # one's complement plus a carry-in (no separate negation).
        limbs = _limb_bounds(config.acc_width)
        acc = [Signal(hi - lo, name=f"acc_{lo}") for lo, hi in limbs]
        addend = [Signal(hi - lo, name=f"addend_{lo}") for lo, hi in limbs]
        # Align the product in two steps: a fine shift by the low bits of p_shift, then a
        # placement of that short value at a multiple of _COARSE_STEP, with constant slices.
        step_bits = _COARSE_STEP.bit_length() - 1
        fine = Signal(len(p_significand) + _COARSE_STEP - 1)
        m.d.comb += fine.eq(p_significand << p_shift[:step_bits])
        coarse = p_shift[step_bits:]
        with m.Switch(coarse):
            for q in range(1 << len(coarse)):
                with m.Case(q):
                    for (lo, hi), part in zip(limbs, addend):
                        m.d.comb += part.eq(_window(fine, q * _COARSE_STEP, lo, hi))
        sums = []
        carry = p_sign
        for (lo, _), part, limb in zip(limbs, addend, acc):
            limb_sum = Signal(len(limb) + 1, name=f"sum_{lo}")
            m.d.comb += limb_sum.eq(limb + (part ^ p_sign.replicate(len(part))) + carry)
            sums.append(limb_sum[:len(limb)])
            carry = limb_sum[-1]
        flags = Signal(data.StructLayout({"nan": 1, "pos_inf": 1, "neg_inf": 1,
                                          "neg_zero": 1}), init={"neg_zero": 1})
        new_flags = Signal.like(flags)
        m.d.comb += [
            new_flags.nan.eq(flags.nan | p_nan),
            new_flags.pos_inf.eq(flags.pos_inf | (p_inf & ~p_sign)),
            new_flags.neg_inf.eq(flags.neg_inf | (p_inf & p_sign)),
            new_flags.neg_zero.eq(flags.neg_zero & p_zero & p_sign),
        ]
        m.d.comb += self.tile_done.eq(self.advance & p_valid & p_last)
        with m.If(self.advance):
            with m.If(p_valid & p_last):
                m.d.sync += [
                    self.result.acc.eq(Cat(*sums)),
                    self.result.nan.eq(new_flags.nan),
                    self.result.pos_inf.eq(new_flags.pos_inf),
                    self.result.neg_inf.eq(new_flags.neg_inf),
                    self.result.neg_zero.eq(new_flags.neg_zero),
                    flags.eq(flags.shape().const({"neg_zero": 1})),
                ]
                m.d.sync += [limb.eq(0) for limb in acc]
            with m.Else():
                with m.If(p_valid):
                    m.d.sync += [limb.eq(limb_sum) for limb, limb_sum in zip(acc, sums)]
                    m.d.sync += flags.eq(new_flags)
                with m.If(self.shift):
                    m.d.sync += self.result.eq(self.drain_in)
        return m

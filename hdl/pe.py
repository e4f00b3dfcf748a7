"""The processing element: exact fp8 product into a fixed-point (Kulisch) accumulator."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fp8 import Fp8Decoder, Fp8Format

__all__ = ["RowBeat", "AccumulatorState", "ProcessingElement"]


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
        magnitude = p_significand << p_shift
        acc = Signal(signed(config.acc_width))
        flags = Signal(data.StructLayout({"nan": 1, "pos_inf": 1, "neg_inf": 1,
                                          "neg_zero": 1}), init={"neg_zero": 1})
        total = Signal(AccumulatorState(config))
        m.d.comb += [
            total.acc.eq(acc + Mux(p_sign, -magnitude, magnitude)),
            total.nan.eq(flags.nan | p_nan),
            total.pos_inf.eq(flags.pos_inf | (p_inf & ~p_sign)),
            total.neg_inf.eq(flags.neg_inf | (p_inf & p_sign)),
            total.neg_zero.eq(flags.neg_zero & p_zero & p_sign),
        ]
        m.d.comb += self.tile_done.eq(self.advance & p_valid & p_last)
        with m.If(self.advance):
            with m.If(p_valid & p_last):
                m.d.sync += [
                    self.result.eq(total),
                    acc.eq(0),
                    flags.eq(flags.shape().const({"neg_zero": 1})),
                ]
            with m.Else():
                with m.If(p_valid):
                    m.d.sync += [
                        acc.eq(total.acc),
                        flags.nan.eq(total.nan),
                        flags.pos_inf.eq(total.pos_inf),
                        flags.neg_inf.eq(total.neg_inf),
                        flags.neg_zero.eq(total.neg_zero),
                    ]
                with m.If(self.shift):
                    m.d.sync += self.result.eq(self.drain_in)
        return m

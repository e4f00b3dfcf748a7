"""Every fp8 operand pair through one PE (K = 1), bit-exact against the golden model.

Each pair is one tile of length 1, streamed one per cycle. Two things are checked per pair:
the PE's raw state (exact accumulator in units of 2**acc_lsb_exp and the special flags)
against ``golden.exact_gemm``, and the fp32 encoding the normaliser makes of it against
``golden.gemm``.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from systole import SystoleConfig
from systole.hdl.fp8 import Fp8Format, OutFormat
from systole.hdl.normalizer import Normalizer
from systole.hdl.pe import AccumulatorState, ProcessingElement
from systole.sim import golden
from systole.sim.stimulus import FP8_DTYPES

from helpers import run_simulation


class _ProbedPE(wiring.Component):
    """A PE whose result register feeds a normaliser, as in the array's bottom row.

    ``bits`` is the normaliser's output: the encoding of ``state`` ``Normalizer.LATENCY``
    cycles later."""

    def __init__(self, config):
        self.pe = ProcessingElement(config)
        self.normalizer = Normalizer(config)
        super().__init__({"bits": Out(32), "state": Out(AccumulatorState(config))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = self.pe
        m.submodules.normalizer = self.normalizer
        m.d.comb += [
            self.pe.advance.eq(1),
            self.normalizer.advance.eq(1),
            self.normalizer.state.eq(self.pe.result),
            self.normalizer.out_format.eq(OutFormat.FP32),
            self.state.eq(self.pe.result),
            self.bits.eq(self.normalizer.bits),
        ]
        return m


@pytest.mark.parametrize("a_format,b_format", [("e4m3", "e4m3"), ("e5m2", "e5m2"),
                                               ("e4m3", "e5m2")])
def test_every_operand_pair(a_format, b_format):
    config = SystoleConfig(rows=1, cols=1)
    dut = _ProbedPE(config)
    codes = np.arange(256, dtype=np.uint8)
    a_codes = np.repeat(codes, 256)
    b_codes = np.tile(codes, 256)
    latency = 2        # product register, then result register
    bits_latency = latency + Normalizer.LATENCY
    n = len(a_codes)
    got_bits = np.zeros(n, dtype=np.uint32)
    got_acc = np.zeros(n, dtype=object)
    got_flags = np.zeros((n, 4), dtype=bool)

    async def bench(ctx):
        pe = dut.pe
        ctx.set(pe.a_format, Fp8Format.from_name(a_format))
        ctx.set(pe.b_format, Fp8Format.from_name(b_format))
        ctx.set(pe.a_in.valid, 1)
        ctx.set(pe.a_in.last, 1)
        for t in range(n + bits_latency):
            if t < n:
                ctx.set(pe.a_in.bits, int(a_codes[t]))
                ctx.set(pe.b_in, int(b_codes[t]))
            await ctx.tick()
            if t >= latency - 1 and t - latency + 1 < n:
                i = t - latency + 1
                state = ctx.get(dut.state)
                got_acc[i] = state.acc
                got_flags[i] = [state.nan, state.pos_inf, state.neg_inf, state.neg_zero]
            if t >= bits_latency - 1 and t - bits_latency + 1 < n:
                got_bits[t - bits_latency + 1] = ctx.get(dut.bits)

    run_simulation(dut, bench)

    a = codes.view(FP8_DTYPES[a_format]).reshape(256, 1)
    b = codes.view(FP8_DTYPES[b_format]).reshape(1, 256)
    exact = golden.exact_gemm(a, b)
    special = (exact.nan | exact.pos_inf | exact.neg_inf).ravel()
    # The PE's unit is 2**acc_lsb_exp; the golden model's is the pair's own LSB.
    scale = exact.lsb_exp - config.acc_lsb_exp
    want_acc = np.array([int(x) << scale for x in exact.acc.ravel()], dtype=object)
    np.testing.assert_array_equal(got_acc[~special], want_acc[~special])
    np.testing.assert_array_equal(got_flags[:, 0] | (got_flags[:, 1] & got_flags[:, 2]),
                                  exact.nan.ravel())
    np.testing.assert_array_equal(got_flags[:, 1] & ~exact.nan.ravel(),
                                  exact.pos_inf.ravel())
    np.testing.assert_array_equal(got_flags[:, 2] & ~exact.nan.ravel(),
                                  exact.neg_inf.ravel())
    np.testing.assert_array_equal(got_flags[:, 3][~special], exact.neg_zero.ravel()[~special])
    want_bits = golden.to_bits(golden.gemm(a, b, "fp32")).ravel()
    np.testing.assert_array_equal(got_bits, want_bits)

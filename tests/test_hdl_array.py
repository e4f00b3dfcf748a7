"""A small systolic array on Amaranth's simulator: tiles back to back, bit-exact.

Covers what the cocotb test covers at scale, on a 2 x 3 array where the tile spacing rule
(short tiles must wait for the previous drain) and back-pressure on the results matter
most: K = 1 tiles, tiles shorter and longer than rows + cols, random pauses on both sides.
"""

import random

import numpy as np
import pytest

from systole import SystoleConfig
from systole.hdl.array import SystolicArray
from systole.hdl.fp8 import Fp8Format, OutFormat
from systole.sim import golden
from systole.sim.stimulus import random_fp8

from helpers import run_simulation

CONFIG = SystoleConfig(rows=2, cols=3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_back_to_back_tiles(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    pauses = random.Random(seed)
    a_fmt, b_fmt = rng.choice(["e4m3", "e5m2"], size=2)
    out_fmt = str(rng.choice(["fp32", "bf16", "e4m3", "e5m2"]))
    ks = [1, 1, 2, 5, 1, 9, 3, 1]
    tiles = [(random_fp8(rng, (CONFIG.rows, k), a_fmt, specials=0.02),
              random_fp8(rng, (k, CONFIG.cols), b_fmt, specials=0.02)) for k in ks]
    dut = SystolicArray(CONFIG)
    got = []

    async def driver(ctx):
        ctx.set(dut.job, {"a_format": Fp8Format.from_name(a_fmt),
                          "b_format": Fp8Format.from_name(b_fmt),
                          "out_format": OutFormat.from_name(out_fmt),
                          "saturate": 1, "scale_exp": 0})
        for a, b in tiles:
            for k in range(a.shape[1]):
                while pauses.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.operands.payload, {
                    "a": [int(x) for x in a.view(np.uint8)[:, k]],
                    "b": [int(x) for x in b.view(np.uint8)[k, :]],
                    "last": k == a.shape[1] - 1})
                ctx.set(dut.operands.valid, 1)
                await ctx.tick().until(dut.operands.ready)
                ctx.set(dut.operands.valid, 0)

    async def monitor(ctx):
        tile = np.zeros((CONFIG.rows, CONFIG.cols), dtype=np.uint32)
        while len(got) < len(tiles):
            ready = pauses.random() >= 0.4
            ctx.set(dut.results.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.results.valid,
                                                           dut.results.payload)
            if ready and valid:
                tile[payload.row] = list(payload.c)
                if payload.last:
                    got.append(tile.copy())
        await ctx.tick().repeat(2)
        assert ctx.get(dut.idle)

    run_simulation(dut, driver, monitor)
    for i, ((a, b), bits) in enumerate(zip(tiles, got)):
        want = golden.to_bits(golden.gemm(a, b, out_fmt)).astype(np.uint32)
        np.testing.assert_array_equal(bits, want, err_msg=f"seed={seed} tile={i} K={a.shape[1]}")

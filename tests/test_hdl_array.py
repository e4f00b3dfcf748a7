"""A small systolic array on Amaranth's simulator: tiles back to back, bit-exact.

Covers what the cocotb test covers at scale, on a 3 x 2 array where the tile spacing rule
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

CONFIG = SystoleConfig(rows=3, cols=2, psum_depth=6)


def _set_job(ctx, dut, a_fmt, b_fmt, out_fmt):
    ctx.set(dut.job, {"a_format": Fp8Format.from_name(a_fmt),
                      "b_format": Fp8Format.from_name(b_fmt),
                      "out_format": OutFormat.from_name(out_fmt),
                      "saturate": 1, "scale_exp": 0})


def _monitor(dut, got, count, pauses):
    """A testbench taking ``count`` result tiles into ``got`` with random back-pressure,
    then checking that the array is idle."""
    async def monitor(ctx):
        tile = np.zeros((CONFIG.rows, CONFIG.cols), dtype=np.uint32)
        while len(got) < count:
            ready = pauses.random() >= 0.4
            ctx.set(dut.results.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.results.valid,
                                                           dut.results.payload)
            if ready and valid:
                tile[payload.row] = list(payload.c)
                if payload.last:
                    got.append(tile.copy())
        await ctx.tick().repeat(4)
        assert ctx.get(dut.idle)
    return monitor


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
        _set_job(ctx, dut, a_fmt, b_fmt, out_fmt)
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

    run_simulation(dut, driver, _monitor(dut, got, len(tiles), pauses))
    for i, ((a, b), bits) in enumerate(zip(tiles, got)):
        want = golden.to_bits(golden.gemm(a, b, out_fmt)).astype(np.uint32)
        np.testing.assert_array_equal(bits, want, err_msg=f"seed={seed} tile={i} K={a.shape[1]}")


@pytest.mark.parametrize("seed", [4, 5])
def test_partial_sums_across_chunks(seed):
    """Two tiles of a block take K in chunks, interleaved as the tiler feeds them: each
    chunk's states leave the array into the partial-sum SRAM (WRITE, then ADD), and the
    last chunk's are added and rounded (ADD_OUT): bit-identical to one pass over K, the
    special flags and the all-(-0) rule included."""
    from systole.plan import PsumOp
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    pauses = random.Random(seed)
    a_fmt, b_fmt = rng.choice(["e4m3", "e5m2"], size=2)
    out_fmt = str(rng.choice(["fp32", "bf16", "e4m3", "e5m2"]))
    chunks = [4, 1, 6, 2]
    k = sum(chunks)
    a_tiles = [random_fp8(rng, (CONFIG.rows, k), a_fmt, specials=0.03) for _ in range(2)]
    b = random_fp8(rng, (k, CONFIG.cols), b_fmt, specials=0.03)
    # Tile 1: every product -0 (A all -0, B positive and finite), so the result is -0.
    a_tiles[1] = np.full((CONFIG.rows, k), 0x80, np.uint8).view(a_tiles[0].dtype)
    b[:, 1] = np.abs(b[:, 1].astype(np.float32)).astype(b.dtype)
    b[np.isnan(b[:, 1].astype(np.float32)) | np.isinf(b[:, 1].astype(np.float32)), 1] = 1
    dut = SystolicArray(CONFIG)
    got = []

    async def driver(ctx):
        _set_job(ctx, dut, a_fmt, b_fmt, out_fmt)
        start = 0
        for index, length in enumerate(chunks):
            op = (PsumOp.WRITE if index == 0 else
                  PsumOp.ADD_OUT if index == len(chunks) - 1 else PsumOp.ADD)
            for tile, a in enumerate(a_tiles):
                # The command waits in the tiler's queue until the tile closes.
                ctx.set(dut.psum.payload, {"op": op, "tile": tile})
                ctx.set(dut.psum.valid, 1)
                for kk in range(start, start + length):
                    while pauses.random() < 0.3:
                        await ctx.tick()
                    ctx.set(dut.operands.payload, {
                        "a": [int(x) for x in a.view(np.uint8)[:, kk]],
                        "b": [int(x) for x in b.view(np.uint8)[kk, :]],
                        "last": kk == start + length - 1})
                    ctx.set(dut.operands.valid, 1)
                    await ctx.tick().until(dut.operands.ready)
                    ctx.set(dut.operands.valid, 0)
                await ctx.tick().until(dut.psum.ready)
            start += length

    run_simulation(dut, driver, _monitor(dut, got, len(a_tiles), pauses))
    for i, (a, bits) in enumerate(zip(a_tiles, got)):
        want = golden.to_bits(golden.gemm(a, b, out_fmt)).astype(np.uint32)
        np.testing.assert_array_equal(bits, want, err_msg=f"seed={seed} tile={i}")

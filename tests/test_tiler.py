"""The tiling controller walks exactly the plan of systole/plan.py (Amaranth simulator).

A Python read port serves the tiler's read commands from a byte memory holding A and B
(lane-0 aligned beats after a random latency); the test records every operand beat, every
tile placement and every partial-sum command, and compares them with what the plan says:
for each step of ``plan.steps``, for each tile of ``plan.tiles``, the step's k-steps of
A[s + t + i, c + k] and B[c + k, j + jt + jj] (zero past M and N), ``last`` on the final
k of a tile that leaves the array (``plan.psum_op``), its command, and its placement when
it is final. The read commands themselves are checked against the plan's loads.
Reproduce a failure with the printed seed: ``SYSTOLE_SEED=N ./run pytest tests/test_tiler.py``.
"""

import os
import random

import numpy as np
import pytest

from systole import SystoleConfig
from systole import plan as tiling
from systole.hdl.tiler import TAG_A, TileScheduler
from systole.sim.tb_accel import random_plan

from helpers import run_simulation

CONFIGS = {
    # banks of B: 1 (cols == bus bytes), 4 (a beat fills four 2-column words), 1 with
    # cols wider than the bus (a beat fills half a word); rows not a power of two.
    "2x4-bus32": SystoleConfig(rows=2, cols=4, bus_width=32, sram_depth=16, row_tiles=2,
                               psum_depth=16, max_k=1024),
    "3x2-bus64": SystoleConfig(rows=3, cols=2, bus_width=64, sram_depth=32, row_tiles=3,
                               psum_depth=18, max_k=1024, formats=("e4m3",)),
    "1x8-bus32-nopsum": SystoleConfig(rows=1, cols=8, bus_width=32, sram_depth=16,
                                      row_tiles=2, psum_depth=0, max_k=1024),
}


def _expected(config, m, n, k, plan, a, b):
    beats, tiles, commands, reads = [], [], [], []
    for step in tiling.steps(config, m, n, k, plan):
        if step.load_a:
            reads += [("A", step.s + r, step.c, step.depth) for r in range(step.rows)]
        if step.load_b:
            reads += [("B", step.c + kk, step.j, step.cols) for kk in range(step.depth)]
        op = tiling.psum_op(k, plan, step)
        for index, (t, jt, rows, cols) in enumerate(tiling.tiles(config, step)):
            if op is not None and config.psum_depth:
                # (The place in the block matters only to the partial-sum SRAM; a build
                # without one sends no commands: every tile leaves OUT.)
                commands.append((int(op), index if op != tiling.PsumOp.OUT else 0))
            if op in (tiling.PsumOp.OUT, tiling.PsumOp.ADD_OUT):
                tiles.append((step.s + t, step.j + jt, rows, cols))
            for kk in range(step.depth):
                beats.append((
                    tuple(a[step.s + t + i][step.c + kk] if i < rows else 0
                          for i in range(config.rows)),
                    tuple(b[step.c + kk][step.j + jt + jj] if jj < cols else 0
                          for jj in range(config.cols)),
                    int(op is not None and kk == step.depth - 1)))
    return beats, tiles, commands, reads


@pytest.mark.parametrize("name", list(CONFIGS))
def test_tiler_walks_the_plan(name):
    config = CONFIGS[name]
    seed = int(os.environ.get("SYSTOLE_SEED", 31)) + list(CONFIGS).index(name)
    print(f"seed={seed} config={name} (rerun with "
          f"SYSTOLE_SEED={seed - list(CONFIGS).index(name)} -k {name})")
    rng = random.Random(seed)
    bb = config.bus_bytes
    jobs = []
    for _ in range(6):
        m, n, k = rng.randint(1, 9), rng.randint(1, 19), rng.choice([1, 5, 16, 17, 40, 70])
        plan = (random_plan(np.random.default_rng(rng.randrange(1 << 30)), config, m, n, k)
                if rng.random() < 0.7 else None) or tiling.choose(config, m, n, k)
        a_stride, b_stride = k + rng.randint(0, 5), n + rng.randint(0, 5)
        a_addr = 0x100 + rng.randint(0, 7)
        b_addr = (a_addr + m * a_stride + 64) + rng.randint(0, 7)
        memory = {}
        a = [[rng.randrange(256) for _ in range(k)] for _ in range(m)]
        b = [[rng.randrange(256) for _ in range(n)] for _ in range(k)]
        for i in range(m):
            for kk in range(k):
                memory[a_addr + i * a_stride + kk] = a[i][kk]
        for kk in range(k):
            for jj in range(n):
                memory[b_addr + kk * b_stride + jj] = b[kk][jj]
        jobs.append((m, n, k, plan, a_addr, b_addr, a_stride, b_stride, memory, a, b))

    dut = TileScheduler(config)
    got = {}

    async def bench(ctx):
        for index, (m, n, k, plan, a_addr, b_addr, a_stride, b_stride, memory, a, b) in \
                enumerate(jobs):
            job = dut.job
            for sig, value in ((job.m, m), (job.n, n), (job.k, k), (job.a_addr, a_addr),
                               (job.b_addr, b_addr), (job.a_stride, a_stride),
                               (job.b_stride, b_stride), (job.plan.mc_tiles, plan.mc_tiles),
                               (job.plan.nc_tiles, plan.nc_tiles),
                               (job.plan.kc_log2, plan.kc_log2), (job.plan.order, plan.order)):
                ctx.set(sig, value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            beats, tiles, commands, reads = [], [], [], []
            pending = []            # (ready cycle, beats) of accepted commands
            cycle = 0
            want = _expected(config, m, n, k, plan, a, b)
            ctx.set(dut.read_cmd.ready, 1)
            ctx.set(dut.tiles.ready, 1)
            ctx.set(dut.psum.ready, 1)
            while len(beats) < len(want[0]) or pending:
                ctx.set(dut.operands.ready, int(rng.random() < 0.8))
                # Serve one data beat of the oldest command once its latency has passed.
                if pending and pending[0][0] <= cycle:
                    tag, data_beats = pending[0][1], pending[0][2]
                    count, word, last = data_beats[0]
                    ctx.set(dut.read_data.valid, 1)
                    ctx.set(dut.read_data.payload.data, word)
                    ctx.set(dut.read_data.payload.count, count)
                    ctx.set(dut.read_data.payload.last, last)
                    ctx.set(dut.read_data.payload.tag, tag)
                    data_beats.pop(0)
                    if not data_beats:
                        pending.pop(0)
                else:
                    ctx.set(dut.read_data.valid, 0)
                if ctx.get(dut.read_cmd.valid):
                    cmd = ctx.get(dut.read_cmd.payload)
                    addr, length = cmd.addr, cmd.length
                    if cmd.tag == TAG_A:
                        reads.append(("A", (addr - a_addr) // a_stride, (addr - a_addr) % a_stride,
                                      length))
                    else:
                        reads.append(("B", (addr - b_addr) // b_stride, (addr - b_addr) % b_stride,
                                      length))
                    data_beats = []
                    for w in range(0, length, bb):
                        count = min(bb, length - w)
                        word = sum(memory.get(addr + w + i, 0) << (8 * i) for i in range(count))
                        data_beats.append((count, word, int(w + bb >= length)))
                    pending.append((cycle + rng.randint(1, 6), cmd.tag, data_beats))
                if ctx.get(dut.operands.valid) and ctx.get(dut.operands.ready):
                    op = ctx.get(dut.operands.payload)
                    beats.append((tuple(op.a), tuple(op.b), op.last))
                if ctx.get(dut.tiles.valid):
                    t = ctx.get(dut.tiles.payload)
                    tiles.append((t.row0, t.col0, t.rows, t.cols))
                if ctx.get(dut.psum.valid):
                    p = ctx.get(dut.psum.payload)
                    op = int(p.op.value if hasattr(p.op, "value") else p.op)
                    commands.append((op, p.tile if op != tiling.PsumOp.OUT else 0))
                await ctx.tick()
                cycle += 1
                assert cycle < 20 * len(want[0]) + 2000, f"job {index} hangs (seed {seed})"
            ctx.set(dut.read_data.valid, 0)
            for _ in range(4):
                await ctx.tick()
            assert not ctx.get(dut.busy)
            got[index] = (beats, tiles, commands, reads), want

    run_simulation(dut, bench)
    for index, ((beats, tiles, commands, reads), want) in got.items():
        m, n, k, plan = jobs[index][:4]
        where = f"seed {seed} job {index}: {m} x {n} x {k} plan {plan.to_dict()}"
        assert reads == want[3], where
        assert beats == want[0], where
        assert tiles == want[1], where
        assert commands == want[2], where
    assert len(got) == len(jobs)
    print("beats per job", [len(w[0]) for _, w in got.values()], "psum", [len(w[2]) for _, w in got.values()])

"""Shared helpers for the Amaranth-simulator unit tests."""

import os

import pytest
from amaranth.sim import Simulator

from systole import SystoleConfig

__all__ = ["SYSTEM_CONFIGS", "require_simulator", "run_simulation", "stream_put", "stream_get"]

#: The configurations the system tests build: the default bus, a narrow one with a single
#: format, a wide one. (4x4-bus64: sram_depth 128 gives two A segments of 64 bytes per
#: chunk, and K > 128 spans several chunks. 2x8-bus128: a bus beat fills two B words, so
#: B blocks spread over two banks.)
SYSTEM_CONFIGS = {
    "4x4-bus64": SystoleConfig(rows=4, cols=4, sram_depth=128, row_tiles=2, max_k=4096),
    "3x2-bus32-e4m3": SystoleConfig(rows=3, cols=2, bus_width=32, sram_depth=16, row_tiles=3,
                                    formats=("e4m3",), max_k=1024),
    "2x8-bus128": SystoleConfig(rows=2, cols=8, bus_width=128, sram_depth=32, row_tiles=1,
                                max_k=1024),
}


def require_simulator(simulator):
    """Skip the test when ``simulator`` cannot run here; fail instead under CI
    (``SYSTOLE_REQUIRE_SIMULATORS`` set), where a missing simulator is a broken install."""
    from systole.sim import verilog
    reason = verilog.simulator_missing(simulator)
    if reason:
        if os.environ.get("SYSTOLE_REQUIRE_SIMULATORS"):
            pytest.fail(f"SYSTOLE_REQUIRE_SIMULATORS is set but {reason}")
        pytest.skip(reason)


def run_simulation(dut, *testbenches, clocked=True, deadline=None):
    """Run testbenches (async functions of ``ctx``) against ``dut`` to completion."""
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    for bench in testbenches:
        sim.add_testbench(bench)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline)


async def stream_put(ctx, stream, payload):
    """Offer one payload on an ``amaranth.lib.stream`` interface until it is taken."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from an ``amaranth.lib.stream`` interface."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload

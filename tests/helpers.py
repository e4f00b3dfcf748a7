"""Shared helpers for the Amaranth-simulator unit tests."""

from amaranth.sim import Simulator

__all__ = ["run_simulation", "stream_put", "stream_get"]


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

"""CounterMemory on the Amaranth simulator against a plain Python count: random
increments, enable and clear, a random counter read on every cycle."""

import os
import random

import pytest

from systole.config import SystoleConfig
from systole.hdl.counters import COUNTERS, CounterMemory

from helpers import run_simulation

_NAMES = list(COUNTERS)


@pytest.mark.parametrize("counter_width", [32, 64])
def test_counter_memory_reads_exact_counts(counter_width):
    seed = int(os.environ.get("SYSTOLE_SEED", 41))
    rng = random.Random(seed)
    config = SystoleConfig(rows=2, cols=4, counter_width=counter_width)
    widths = {name: rng.choice([1, 1, 3, 6]) for name in COUNTERS}
    derived = {"sram_a_read_bytes": ("active_cycles", 2),
               "sram_b_read_bytes": ("active_cycles", 3)}
    dut = CounterMemory(config, widths, derived=derived)
    mask = (1 << counter_width) - 1
    failures = []

    async def bench(ctx):
        model = {name: 0 for name in COUNTERS}
        asked = None
        for cycle in range(3000):
            clear = rng.random() < 0.01
            enable = rng.random() < 0.8
            incs = {name: rng.getrandbits(widths[name]) if rng.random() < 0.7 else 0
                    for name in COUNTERS if name not in derived}
            index = rng.randrange(len(_NAMES))
            ctx.set(dut.clear, clear)
            ctx.set(dut.enable, enable)
            for name, value in incs.items():
                ctx.set(getattr(dut.increment, name), value)
            ctx.set(dut.read_index, index)
            if asked is not None:
                got = ctx.get(dut.read_value)
                if got != asked[1]:
                    failures.append((cycle, _NAMES[asked[0]], got, asked[1]))
            await ctx.tick()
            # The model after this cycle.
            if clear:
                model = {name: 0 for name in COUNTERS}
            elif enable:
                for name, value in incs.items():
                    model[name] = (model[name] + value) & mask
            for name, (source, factor) in derived.items():
                model[name] = (model[source] * factor) & mask
            asked = (index, model[_NAMES[index]])
        assert sum(model.values()), "nothing was counted"

    run_simulation(dut, bench)
    assert not failures, f"seed {seed}: {len(failures)} wrong reads, first {failures[:5]}"

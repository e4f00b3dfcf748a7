"""The AXI protocol monitor (hdl/monitor.py) on scripted bus traffic.

A clean script (a write burst, two reads, one AXI4-Lite write and read) must set no rule
and count its beats and bytes. Each broken variant below breaks exactly one rule, stated
with the cycle where it breaks it: the monitor must set that rule's bit alone and report
that cycle. The system tests put the monitor on every job (tests/test_system.py).
"""

import copy

import pytest

from systole.hdl.axi import AXI4LiteSignature, AXI4Signature, BURST_INCR
from systole.hdl.monitor import AxiMonitor, AxiRule, violated_rules

from helpers import run_simulation

BUS = AXI4Signature(addr_width=32, data_width=64)
LITE = AXI4LiteSignature(addr_width=12)
MAX_OUTSTANDING = 2
WRITE_DEPTH = 2


def aw(addr, length, ready=1):
    return {"awvalid": 1, "awready": ready, "awaddr": addr, "awlen": length, "awsize": 3,
            "awburst": BURST_INCR}


def w(strobe, last, data=0x1122334455667788, ready=1):
    return {"wvalid": 1, "wready": ready, "wdata": data, "wstrb": strobe, "wlast": last}


def ar(addr, length, ready=1):
    return {"arvalid": 1, "arready": ready, "araddr": addr, "arlen": length, "arsize": 3,
            "arburst": BURST_INCR}


def r(last, data=0xAB, ready=1):
    return {"rvalid": 1, "rready": ready, "rdata": data, "rlast": last}


def lite(channel, ready=1, **payload):
    return {f"csr_{channel}valid": 1, f"csr_{channel}ready": ready,
            **{f"csr_{channel}{name}": value for name, value in payload.items()}}


def clean_script():
    """Signal values per cycle (unnamed signals are 0): a two-beat write at 0x1004 (the
    first beat's low four lanes off), a two-beat and a one-beat read, CSR write and read."""
    return [
        {**aw(0x1004, 1, ready=0), **lite("aw", addr=8), **lite("w", data=5, strb=0xF)},
        {**aw(0x1004, 1), **w(0xF0, 0), **lite("b")},
        {**w(0xFF, 1), **lite("ar", addr=8)},
        {"bvalid": 1, "bready": 1, **lite("r", data=5)},
        ar(0x2000, 1),
        {**ar(0x2010, 0), **r(0)},
        r(1),
        r(1),
    ]


CLEAN_READ_BEATS = 3
CLEAN_WRITE_BYTES = 4 + 8


def _set(script, index, **values):
    script[index].update(values)
    return script


def _insert(script, index, cycle):
    script.insert(index, cycle)
    return script


def _drop(script, index, *names):
    for name in names:
        del script[index][name]
    return script


def _wait_then(script, index, channel, again):
    """Cycle ``index`` waits on ``channel`` (READY low); ``again`` follows it."""
    script[index][f"{channel}ready"] = 0
    return _insert(script, index + 1, again)


# rule, the cycle it is broken in, how.
BROKEN = [
    (AxiRule.AW_STABLE, 1, lambda s: _set(s, 0, awaddr=0x1008)),
    (AxiRule.W_STABLE, 2, lambda s: _wait_then(s, 1, "w", w(0xF0, 0, data=1))),
    (AxiRule.B_STABLE, 4, lambda s: _wait_then(s, 3, "b", {"bvalid": 1, "bready": 1,
                                                           "bresp": 2})),
    (AxiRule.AR_STABLE, 5, lambda s: _wait_then(s, 4, "ar", ar(0x2008, 1))),
    (AxiRule.R_STABLE, 6, lambda s: _insert(_insert(_set(s, 5, rready=0), 6, {}), 7, r(0))),
    (AxiRule.BURST, 4, lambda s: _set(s, 4, arburst=2)),
    (AxiRule.PAGE, 1, lambda s: _set(_set(s, 0, awaddr=0xFFC), 1, awaddr=0xFFC)),
    (AxiRule.WLAST, 1, lambda s: _set(s, 1, wlast=1)),
    (AxiRule.WSTRB, 1, lambda s: _set(s, 1, wstrb=0xF8)),
    (AxiRule.W_EARLY, 0, lambda s: _insert(s, 0, w(0x0F, 1))),
    (AxiRule.READ_LIMIT, 6, lambda s: _insert(s, 5, ar(0x2020, 0))),
    (AxiRule.RLAST, 6, lambda s: _set(s, 6, rlast=0)),
    (AxiRule.R_UNEXPECTED, 8, lambda s: s + [r(1)]),
    (AxiRule.B_UNEXPECTED, 2, lambda s: _drop(_set(s, 2, bvalid=1, bready=1), 3,
                                              "bvalid", "bready")),
    (AxiRule.ID, 3, lambda s: _set(s, 3, bid=1)),
    (AxiRule.LITE_STABLE, 3, lambda s: _wait_then(s, 2, "csr_ar", lite("ar", addr=12))),
    (AxiRule.LITE_UNEXPECTED, 1, lambda s: _set(s, 1, **lite("r"))),
    (AxiRule.CAPACITY, 2, lambda s: [aw(0x3000, 1), aw(0x3100, 1)] + s),
]


def monitor_report(script):
    """Run ``script`` through a monitor; return its report's four values."""
    dut = AxiMonitor(BUS, LITE, max_outstanding=MAX_OUTSTANDING, write_depth=WRITE_DEPTH)
    names = set(dut.mem.signature.members) | {f"csr_{n}" for n in dut.csr.signature.members}
    report = {}

    def signal(name):
        return getattr(dut.csr, name[4:]) if name.startswith("csr_") else getattr(dut.mem, name)

    async def bench(ctx):
        for cycle in script:
            assert set(cycle) <= names, set(cycle) - names
            for name in names:
                ctx.set(signal(name), cycle.get(name, 0))
            await ctx.tick()
        for name in names:
            ctx.set(signal(name), 0)
        await ctx.tick()
        for field in ("violations", "first_cycle", "read_beats", "write_bytes"):
            report[field] = ctx.get(getattr(dut.report, field))

    run_simulation(dut, bench)
    return report


def test_clean_traffic_breaks_no_rule_and_is_counted():
    report = monitor_report(clean_script())
    assert violated_rules(report["violations"]) == []
    assert report["read_beats"] == CLEAN_READ_BEATS
    assert report["write_bytes"] == CLEAN_WRITE_BYTES


def test_every_rule_is_broken_by_one_variant():
    assert sorted(rule for rule, _, _ in BROKEN) == sorted(AxiRule)


@pytest.mark.parametrize("rule,cycle,breaks", BROKEN, ids=[rule.name for rule, _, _ in BROKEN])
def test_broken_traffic_sets_exactly_its_rule(rule, cycle, breaks):
    report = monitor_report(breaks(copy.deepcopy(clean_script())))
    assert violated_rules(report["violations"]) == [rule.name]
    assert report["first_cycle"] == cycle

"""The register API, the AXI4-Lite CSR bank and the generated register documents.

Bank tests drive AXI4-Lite from async testbenches on the Amaranth simulator. The bus
helpers also check the handshake rules of the subordinate: no B before both AW and W were
taken, and a response (valid, data, resp) held unchanged until it is taken. The random
test prints its seed; rerun with ``SYSTOLE_SEED=<seed>``.
"""

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.hdl import Fragment, signed
from amaranth.sim import Simulator

from systole import SystoleConfig
from systole import regmap as regmap_docs
from systole.cli import main as cli_main
from systole.hdl.axi import RESP_OKAY, RESP_SLVERR
from systole.hdl.csr import R, RW, W, W1C, CSRBank, Field, Register, RegisterMap
from systole.hdl.fp8 import Fp8Format, OutFormat
from systole.hdl.registers import (COUNTER_NAMES, DESCRIPTOR_REGISTERS, ERROR_CODES, ID_MAGIC,
                                   ErrorCode, systole_register_map)
from systole.plan import LoopOrder

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _seed():
    return int(os.environ.get("SYSTOLE_SEED", "1"))


# -- AXI4-Lite manager for async testbenches ----------------------------------------------

async def axil_write(ctx, axi, addr, data, strb=0xF, *, aw_delay=0, w_delay=0,
                     bready_delay=0, timeout=64):
    """One AXI4-Lite write; returns BRESP.

    AW is offered ``aw_delay`` cycles and W ``w_delay`` cycles after the call, and bready
    is held low for the first ``bready_delay`` cycles.
    """
    ctx.set(axi.awaddr, addr)
    ctx.set(axi.wdata, data)
    ctx.set(axi.wstrb, strb)
    aw_taken = w_taken = False
    held = None                 # a B response seen but not taken
    for cycle in range(timeout):
        ctx.set(axi.awvalid, not aw_taken and cycle >= aw_delay)
        ctx.set(axi.wvalid, not w_taken and cycle >= w_delay)
        ctx.set(axi.bready, cycle >= bready_delay)
        (_, _, awvalid, awready, wvalid, wready, bvalid, bready, bresp) = await ctx.tick().sample(
            axi.awvalid, axi.awready, axi.wvalid, axi.wready, axi.bvalid, axi.bready, axi.bresp)
        if held is not None:
            assert bvalid and bresp == held, "B response changed before it was taken"
        if bvalid:
            assert aw_taken and w_taken, "B response before both AW and W were taken"
        aw_taken |= bool(awvalid and awready)
        w_taken |= bool(wvalid and wready)
        if bvalid and bready:
            for signal in (axi.awvalid, axi.wvalid, axi.bready):
                ctx.set(signal, 0)
            return bresp
        held = bresp if bvalid else None
    raise AssertionError(f"write to {addr:#x} timed out")


async def axil_read(ctx, axi, addr, *, rready_delay=0, timeout=64):
    """One AXI4-Lite read; returns ``(RDATA, RRESP)``. rready stays low ``rready_delay``
    cycles."""
    ctx.set(axi.araddr, addr)
    ar_taken = False
    held = None
    for cycle in range(timeout):
        ctx.set(axi.arvalid, not ar_taken)
        ctx.set(axi.rready, cycle >= rready_delay)
        _, _, arvalid, arready, rvalid, rready, rdata, rresp = await ctx.tick().sample(
            axi.arvalid, axi.arready, axi.rvalid, axi.rready, axi.rdata, axi.rresp)
        if held is not None:
            assert rvalid and (rdata, rresp) == held, "R response changed before it was taken"
        if rvalid:
            assert ar_taken, "R response before AR was taken"
        ar_taken |= bool(arvalid and arready)
        if rvalid and rready:
            ctx.set(axi.arvalid, 0)
            ctx.set(axi.rready, 0)
            return rdata, rresp
        held = (rdata, rresp) if rvalid else None
    raise AssertionError(f"read of {addr:#x} timed out")


def simulate(dut, bench, *monitors):
    """Run ``bench`` to completion with ``monitors`` as background testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    for monitor in monitors:
        sim.add_testbench(monitor, background=True)
    sim.run()


def pulse_monitor(signal, log):
    """A background testbench logging ``signal`` at every clock edge."""
    async def monitor(ctx):
        async for _, _, value in ctx.tick().sample(signal):
            log.append(value)
    return monitor


# -- a small map exercising every access type ----------------------------------------------

class Status(Register):
    """Status bits."""
    busy: Field(R, 1, desc="Busy")
    done: Field(W1C, 1, desc="Done")
    errors: Field(W1C, 3, offset=4, desc="Errors")


class Mode(Register):
    """Mode."""
    out: Field(RW, OutFormat, reset=OutFormat.BF16, desc="Output format")
    enable: Field(RW, 1, reset=1, desc="Enable")
    scale: Field(RW, signed(8), offset=8, reset=-3, desc="Scale")
    limit: Field(RW, 12, offset=18, reset=0xabc, desc="Spans byte lanes 2 and 3")


class Ctrl(Register):
    """Actions."""
    start: Field(W, 1, desc="Start")
    flush: Field(W, 2, offset=9, desc="Flush, two bits in byte lane 1")


def small_map():
    regmap = RegisterMap(addr_width=8)
    regmap.add("ID", Register({"magic": Field(R, 32, const=0x1234_5678)}, description="Id"))
    regmap.add("STATUS", Status())
    regmap.add("MODE", Mode())
    regmap.add("CTRL", Ctrl())
    regmap.add("SCRATCH", Register({"value": Field(RW, 32)}, description="Scratch"))
    regmap.add("LEVEL", Register({"value": Field(R, 16, desc="Level")}, description="Level"),
               address=0x40)
    regmap.add_counter("cycles", width=48, description="Cycles", address=0x80)
    return regmap


def addr(bank, name):
    return bank.regmap[name].address


ORDERS = {"aw_first": dict(w_delay=3), "w_first": dict(aw_delay=3), "together": {}}


@pytest.mark.parametrize("order", ORDERS)
def test_rw_read_back_and_drive_ports(order):
    dut = CSRBank(small_map())
    mode = dut.regmap["MODE"]

    async def bench(ctx):
        word = mode.encode(out=OutFormat.E5M2, enable=0, scale=-128, limit=0x5a5)
        assert await axil_write(ctx, dut.axi, addr(dut, "MODE"), word, **ORDERS[order]) \
            == RESP_OKAY
        assert ctx.get(dut.mode.out) == OutFormat.E5M2
        assert ctx.get(dut.mode.enable) == 0
        assert ctx.get(dut.mode.scale) == -128
        assert ctx.get(dut.mode.limit) == 0x5a5
        assert await axil_read(ctx, dut.axi, addr(dut, "MODE")) == (word, RESP_OKAY)
        assert await axil_write(ctx, dut.axi, addr(dut, "SCRATCH"), 0xdeadbeef,
                                **ORDERS[order]) == RESP_OKAY
        assert ctx.get(dut.scratch.value) == 0xdeadbeef
        assert await axil_read(ctx, dut.axi, addr(dut, "SCRATCH")) == (0xdeadbeef, RESP_OKAY)
        # Address bits 1:0 are ignored.
        assert await axil_read(ctx, dut.axi, addr(dut, "SCRATCH") + 3) == (0xdeadbeef,
                                                                           RESP_OKAY)

    simulate(dut, bench)


def test_read_waits_for_a_write_being_performed():
    """A read offered in the cycle a write is performed is taken on the next cycle and
    returns the written value (RW registers are read from a block-RAM copy written at that
    clock edge, which must not be read at the same time)."""
    dut = CSRBank(small_map())
    axi = dut.axi

    async def bench(ctx):
        scratch = addr(dut, "SCRATCH")
        await axil_write(ctx, axi, scratch, 0x1111_1111)
        # AW and W together: both taken at this edge, the write performed on the next cycle.
        ctx.set(axi.awaddr, scratch)
        ctx.set(axi.wdata, 0x2222_2222)
        ctx.set(axi.wstrb, 0xF)
        ctx.set(axi.awvalid, 1)
        ctx.set(axi.wvalid, 1)
        ctx.set(axi.bready, 1)
        await ctx.tick()
        ctx.set(axi.awvalid, 0)
        ctx.set(axi.wvalid, 0)
        ctx.set(axi.araddr, scratch)
        ctx.set(axi.arvalid, 1)
        assert not ctx.get(axi.arready)
        assert await axil_read(ctx, axi, scratch) == (0x2222_2222, RESP_OKAY)
        assert ctx.get(dut.scratch.value) == 0x2222_2222

    simulate(dut, bench)


def test_reset_values():
    dut = CSRBank(small_map())
    mode = dut.regmap["MODE"]

    async def bench(ctx):
        assert ctx.get(dut.mode.out) == OutFormat.BF16
        assert ctx.get(dut.mode.scale) == -3
        assert ctx.get(dut.mode.limit) == 0xabc
        data, resp = await axil_read(ctx, dut.axi, addr(dut, "MODE"))
        assert resp == RESP_OKAY and data == mode.reset
        assert mode.decode(data) == {"out": 1, "enable": 1, "scale": -3, "limit": 0xabc}
        assert await axil_read(ctx, dut.axi, addr(dut, "ID")) == (0x1234_5678, RESP_OKAY)
        assert await axil_read(ctx, dut.axi, addr(dut, "STATUS")) == (0, RESP_OKAY)
        assert await axil_read(ctx, dut.axi, addr(dut, "CTRL")) == (0, RESP_OKAY)

    simulate(dut, bench)


def test_byte_strobes():
    dut = CSRBank(small_map())

    async def bench(ctx):
        scratch = addr(dut, "SCRATCH")
        await axil_write(ctx, dut.axi, scratch, 0x11223344)
        await axil_write(ctx, dut.axi, scratch, 0xaabbccdd, strb=0b0101)
        assert await axil_read(ctx, dut.axi, scratch) == (0x11bb33dd, RESP_OKAY)
        await axil_write(ctx, dut.axi, scratch, 0xffffffff, strb=0)
        assert ctx.get(dut.scratch.value) == 0x11bb33dd
        # limit (bits 29:18) spans lanes 2 and 3: lane 3 alone changes only bits 29:24.
        await axil_write(ctx, dut.axi, addr(dut, "MODE"), 0xffffffff, strb=0b1000)
        assert ctx.get(dut.mode.limit) == (0xabc & 0x3f) | (0x3f << 6)
        assert ctx.get(dut.mode.scale) == -3 and ctx.get(dut.mode.enable) == 1
        # A masked-off lane of a W field gives no pulse (checked by the monitor below).
        await axil_write(ctx, dut.axi, addr(dut, "CTRL"), 0x201, strb=0b0010)
        await axil_write(ctx, dut.axi, addr(dut, "CTRL"), 0x201, strb=0b0001)

    start_log, flush_log = [], []
    simulate(dut, bench, pulse_monitor(dut.ctrl.start, start_log),
             pulse_monitor(dut.ctrl.flush, flush_log))
    assert start_log.count(1) == 1
    assert [value for value in flush_log if value] == [1]


def test_r_fields_follow_hardware():
    dut = CSRBank(small_map())

    async def bench(ctx):
        ctx.set(dut.status.busy, 1)
        ctx.set(dut.level.value, 0xbeef)
        assert await axil_read(ctx, dut.axi, addr(dut, "STATUS")) == (1, RESP_OKAY)
        assert await axil_read(ctx, dut.axi, addr(dut, "LEVEL")) == (0xbeef, RESP_OKAY)
        # Software writes do not reach R fields.
        assert await axil_write(ctx, dut.axi, addr(dut, "LEVEL"), 0) == RESP_OKAY
        assert await axil_write(ctx, dut.axi, addr(dut, "ID"), 0) == RESP_OKAY
        assert await axil_read(ctx, dut.axi, addr(dut, "LEVEL")) == (0xbeef, RESP_OKAY)
        assert await axil_read(ctx, dut.axi, addr(dut, "ID")) == (0x1234_5678, RESP_OKAY)
        ctx.set(dut.status.busy, 0)
        ctx.set(dut.level.value, 7)
        assert await axil_read(ctx, dut.axi, addr(dut, "STATUS")) == (0, RESP_OKAY)
        assert await axil_read(ctx, dut.axi, addr(dut, "LEVEL")) == (7, RESP_OKAY)

    simulate(dut, bench)


def test_w1c_set_by_hardware_cleared_by_one():
    dut = CSRBank(small_map())
    status = dut.regmap["STATUS"]

    async def read_status(ctx):
        data, resp = await axil_read(ctx, dut.axi, status.address)
        assert resp == RESP_OKAY
        return status.decode(data)

    async def bench(ctx):
        ctx.set(dut.status.done_set, 1)
        ctx.set(dut.status.errors_set, 0b101)
        await ctx.tick()
        ctx.set(dut.status.done_set, 0)
        ctx.set(dut.status.errors_set, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.status.done) == 1 and ctx.get(dut.status.errors) == 0b101
        assert await read_status(ctx) == {"busy": 0, "done": 1, "errors": 0b101}
        # Writing 0 leaves the bits; writing 1 clears only those bits.
        await axil_write(ctx, dut.axi, status.address, 0)
        assert await read_status(ctx) == {"busy": 0, "done": 1, "errors": 0b101}
        await axil_write(ctx, dut.axi, status.address, status.encode(errors=0b001))
        assert await read_status(ctx) == {"busy": 0, "done": 1, "errors": 0b100}
        await axil_write(ctx, dut.axi, status.address, 0xffffffff, strb=0b1110)
        assert ctx.get(dut.status.done) == 1           # lane 0 not strobed
        await axil_write(ctx, dut.axi, status.address, 0xffffffff)
        assert await read_status(ctx) == {"busy": 0, "done": 0, "errors": 0}
        # A set in the very cycle the clearing write is performed wins: no event is lost.
        axi = dut.axi
        for signal, value in ((axi.awaddr, status.address), (axi.wdata, status.encode(done=1)),
                              (axi.wstrb, 0xf), (axi.awvalid, 1), (axi.wvalid, 1),
                              (axi.bready, 1)):
            ctx.set(signal, value)
        assert ctx.get(axi.awready) and ctx.get(axi.wready)
        await ctx.tick()                    # AW and W taken
        ctx.set(axi.awvalid, 0)
        ctx.set(axi.wvalid, 0)
        ctx.set(dut.status.done_set, 1)
        await ctx.tick()                    # the write is performed
        ctx.set(dut.status.done_set, 0)
        assert ctx.get(axi.bvalid) and ctx.get(dut.status.done) == 1
        await ctx.tick()                    # B taken
        ctx.set(axi.bready, 0)
        assert ctx.get(dut.status.done) == 1
        assert await read_status(ctx) == {"busy": 0, "done": 1, "errors": 0}

    simulate(dut, bench)


def test_w_pulses_last_one_cycle():
    dut = CSRBank(small_map())
    ctrl = dut.regmap["CTRL"]
    start_log, flush_log = [], []

    async def bench(ctx):
        for order in ORDERS.values():
            assert await axil_write(ctx, dut.axi, ctrl.address, ctrl.encode(start=1),
                                    bready_delay=4, **order) == RESP_OKAY
            await ctx.tick().repeat(2)
        await axil_write(ctx, dut.axi, ctrl.address, 0)                # no pulse
        await axil_write(ctx, dut.axi, ctrl.address, ctrl.encode(flush=0b10))
        await ctx.tick().repeat(2)
        assert await axil_read(ctx, dut.axi, ctrl.address) == (0, RESP_OKAY)

    simulate(dut, bench, pulse_monitor(dut.ctrl.start, start_log),
             pulse_monitor(dut.ctrl.flush, flush_log))
    assert start_log.count(1) == 3
    assert all(not (a and b) for a, b in zip(start_log, start_log[1:])), start_log
    assert [value for value in flush_log if value] == [0b10]


def test_unmapped_addresses_answer_slverr():
    dut = CSRBank(small_map())

    async def bench(ctx):
        await axil_write(ctx, dut.axi, addr(dut, "SCRATCH"), 0x600d)
        for unmapped in (0x14, 0x3c, 0x88, 0xfc):
            assert await axil_read(ctx, dut.axi, unmapped) == (0, RESP_SLVERR)
            assert await axil_write(ctx, dut.axi, unmapped, 0xffffffff) == RESP_SLVERR
        assert await axil_read(ctx, dut.axi, addr(dut, "SCRATCH")) == (0x600d, RESP_OKAY)
        assert ctx.get(dut.mode.limit) == 0xabc

    simulate(dut, bench)


def test_responses_wait_for_ready():
    """bready/rready held low: the response waits, nothing else is taken, no deadlock."""
    dut = CSRBank(small_map())
    scratch = dut.regmap["SCRATCH"].address

    async def bench(ctx):
        ctx.set(dut.axi.awaddr, scratch)
        ctx.set(dut.axi.wdata, 1)
        ctx.set(dut.axi.wstrb, 0xf)
        ctx.set(dut.axi.awvalid, 1)
        ctx.set(dut.axi.wvalid, 1)
        await ctx.tick().until(dut.axi.awready & dut.axi.wready)
        ctx.set(dut.axi.wdata, 2)          # the next write, offered while B waits
        await ctx.tick().until(dut.axi.bvalid)
        for _ in range(10):
            _, _, bvalid, awready, wready = await ctx.tick().sample(
                dut.axi.bvalid, dut.axi.awready, dut.axi.wready)
            assert bvalid and not awready and not wready
        ctx.set(dut.axi.bready, 1)
        await ctx.tick().until(dut.axi.bvalid)     # the first B
        await ctx.tick().until(dut.axi.awready & dut.axi.wready)
        ctx.set(dut.axi.awvalid, 0)
        ctx.set(dut.axi.wvalid, 0)
        bresp, = await ctx.tick().sample(dut.axi.bresp).until(dut.axi.bvalid)
        ctx.set(dut.axi.bready, 0)
        assert bresp == RESP_OKAY and ctx.get(dut.scratch.value) == 2
        assert await axil_read(ctx, dut.axi, scratch, rready_delay=12) == (2, RESP_OKAY)
        assert await axil_write(ctx, dut.axi, scratch, 3, bready_delay=12) == RESP_OKAY
        assert await axil_read(ctx, dut.axi, scratch) == (3, RESP_OKAY)

    simulate(dut, bench)


@pytest.mark.parametrize("counter_port", [False, True], ids=["counter-inputs", "counter-port"])
def test_counter_pair_reads_one_value(counter_port):
    """The counter carries into its upper half between the _LO and _HI reads."""
    dut = CSRBank(small_map(), counter_port=counter_port)
    counter = dut.regmap.counter("cycles")
    history = []
    state = {"reload": None}

    async def count(ctx):
        value = 0
        while True:
            if state["reload"] is not None:
                value, state["reload"] = state["reload"], None
            if counter_port:
                # The port answers with the count as of the cycle the index was named.
                ctx.set(dut.counter_value, history[-1] if history else 0)
            else:
                ctx.set(dut.cycles, value)
            history.append(value)
            await ctx.tick()
            value += 1

    async def bench(ctx):
        carried_between = 0
        for offset in range(8):
            state["reload"] = (0x1234 << 32) | (0xffff_ffff - offset)
            await ctx.tick().repeat(2)
            lo, resp_lo = await axil_read(ctx, dut.axi, counter.lo.address)
            hi, resp_hi = await axil_read(ctx, dut.axi, counter.hi.address)
            assert resp_lo == resp_hi == RESP_OKAY
            value = hi << 32 | lo
            assert value in history, f"offset {offset}: {value:#x} was never the count"
            carried_between += hi == 0x1234 and history[-1] >> 32 == 0x1235
            # _HI alone returns the latched half, however far the counter has moved.
            assert await axil_read(ctx, dut.axi, counter.hi.address) == (hi, RESP_OKAY)
        assert carried_between, "no carry fell between a _LO and a _HI read"

    simulate(dut, bench, count)


# -- the Systole map against a Python model, random traffic -------------------------------

class _BankModel:
    """What every register of a map reads, given the hardware inputs (held constant)."""

    def __init__(self, regmap, hardware, counters):
        self.regmap = regmap
        self.hardware = hardware            # (register, field) -> value of R ports
        self.counters = counters
        self.stored = {(register.name, field.name): field.reset_bits
                       for register in regmap.registers for field in register.fields.values()
                       if field.access in (RW, W1C)}
        self.shadows = {name: 0 for name in counters}
        self.pulses = []
        self._by_word = {register.address >> 2: register for register in regmap.registers}

    def write(self, address, data, strb):
        register = self._by_word.get(address >> 2)
        if register is None:
            return RESP_SLVERR
        lanes = sum(0xff << (8 * lane) for lane in range(4) if strb >> lane & 1)
        for field in register.fields.values():
            key = (register.name, field.name)
            bits = ((data & lanes) & field.mask) >> field.offset
            mask = (lanes & field.mask) >> field.offset
            if field.access is RW:
                self.stored[key] = self.stored[key] & ~mask | bits
            elif field.access is W1C:
                self.stored[key] &= ~bits
            elif field.access is W and bits:
                self.pulses.append((register.name, field.name, bits))
        return RESP_OKAY

    def read(self, address):
        register = self._by_word.get(address >> 2)
        if register is None:
            return 0, RESP_SLVERR
        if register.counter is not None:
            counter = register.counter
            value = self.counters[counter.name]
            if register is counter.lo:
                self.shadows[counter.name] = value >> 32
                return value & 0xffff_ffff, RESP_OKAY
            return self.shadows[counter.name], RESP_OKAY
        word = 0
        for field in register.fields.values():
            if field.access is W:
                continue
            if field.access is R:
                bits = field.reset_bits if field.const is not None \
                    else self.hardware[register.name, field.name]
            else:
                bits = self.stored[register.name, field.name]
            word |= bits << field.offset
        return word, RESP_OKAY


def counter_port_responder(dut, value_of):
    """Answer the bank's counter port as a memory does: ``value_of(index)`` one cycle
    after the index."""
    async def respond(ctx):
        async for _, _, index in ctx.tick().sample(dut.counter_index):
            ctx.set(dut.counter_value, value_of(index))
    return respond


@pytest.mark.parametrize("counter_port, fetched", [(False, ()), (True, ()),
                                                   (True, DESCRIPTOR_REGISTERS)],
                         ids=["counter-inputs", "counter-port", "fetched-descriptor"])
def test_systole_map_random_traffic(counter_port, fetched):
    seed = _seed()
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    rng = random.Random(seed)
    config = SystoleConfig()
    dut = CSRBank(systole_register_map(config), counter_port=counter_port, fetched=fetched)
    regmap = dut.regmap
    hardware = {("STATUS", "busy"): 1, ("ERROR_CODE", "code"): ErrorCode.BAD_STRIDE.value}
    counters = {name: rng.getrandbits(config.counter_width) for name in COUNTER_NAMES}
    model = _BankModel(regmap, hardware, counters)
    mapped = [register.address for register in regmap.registers]
    unmapped = [a for a in range(0, 1 << regmap.addr_width, 4) if a not in mapped]
    pulse_logs = {name: [] for name in ("start", "abort")}    # CTRL's W fields

    async def bench(ctx):
        ctx.set(dut.status.busy, 1)
        ctx.set(dut.error_code.code, ErrorCode.BAD_STRIDE)
        if not counter_port:
            for name, value in counters.items():
                ctx.set(getattr(dut, name), value)
        for step in range(160):
            where = f"seed={seed} step={step}"
            if rng.random() < 0.1:
                bits = rng.getrandbits(2)
                ctx.set(dut.status.done_set, bits & 1)
                ctx.set(dut.status.error_set, bits >> 1)
                await ctx.tick()
                ctx.set(dut.status.done_set, 0)
                ctx.set(dut.status.error_set, 0)
                model.stored["STATUS", "done"] |= bits & 1
                model.stored["STATUS", "error"] |= bits >> 1
            address = rng.choice(unmapped) if rng.random() < 0.08 else rng.choice(mapped)
            address |= rng.getrandbits(2) if rng.random() < 0.1 else 0
            if rng.random() < 0.5:
                data = rng.getrandbits(32)
                strb = 0xf if rng.random() < 0.6 else rng.getrandbits(4)
                resp = await axil_write(ctx, dut.axi, address, data, strb,
                                        aw_delay=rng.choice([0, 0, 1, 3]),
                                        w_delay=rng.choice([0, 0, 1, 3]),
                                        bready_delay=rng.choice([0, 0, 2]))
                assert resp == model.write(address, data, strb), \
                    f"{where}: write {address:#x}={data:#x}/{strb:#x}"
            else:
                got = await axil_read(ctx, dut.axi, address,
                                      rready_delay=rng.choice([0, 0, 2]))
                want = model.read(address)
                assert got == want, f"{where}: read {address:#x}: {got} != {want}"
        for register in regmap.registers:
            if register.name in fetched:
                assert not hasattr(dut, register.port_name)
                continue
            for field in register.fields.values():
                if field.access is RW:
                    port = getattr(getattr(dut, register.port_name), field.name)
                    value = ctx.get(port)
                    value = getattr(value, "value", value) & ((1 << field.width) - 1)
                    assert value == model.stored[register.name, field.name], \
                        f"seed={seed}: port {register.name}.{field.name}"

    monitors = [pulse_monitor(getattr(dut.ctrl, name), log) for name, log in pulse_logs.items()]
    if counter_port:
        monitors.append(counter_port_responder(
            dut, lambda index: counters[COUNTER_NAMES[index]]))
    simulate(dut, bench, *monitors)
    for name, log in pulse_logs.items():
        assert log.count(1) == [field for _, field, _ in model.pulses].count(name), \
            f"seed={seed}: CTRL.{name}"


async def fetch_word(ctx, dut, index):
    """Fetch register ``index`` of the bank's fetched registers (hold already high)."""
    ctx.set(dut.fetch.index, index)
    ctx.set(dut.fetch.en, 1)
    await ctx.tick()
    ctx.set(dut.fetch.en, 0)
    return ctx.get(dut.fetch.data)


def test_fetched_registers():
    """The descriptor kept only in the block-RAM copy: the fetch port reads what the bus
    wrote (byte strobes included); while ``hold`` is high a write waits and a fetch still
    sees the old word; ``free`` is low while a bus read of the copy waits to be taken."""
    regmap = systole_register_map(SystoleConfig())
    dut = CSRBank(regmap, fetched=DESCRIPTOR_REGISTERS)
    axi = dut.axi
    # (The copy keeps only the bits of a register's fields: FORMAT's and PLAN's gaps read 0.)
    values = {name: (0x01020304 * (index + 1))
              & sum(field.mask for field in regmap[name].fields.values())
              for index, name in enumerate(DESCRIPTOR_REGISTERS)}

    async def bench(ctx):
        for name, value in values.items():
            assert await axil_write(ctx, axi, addr(dut, name), value) == RESP_OKAY
        # Byte lanes: only lane 2 of K changes.
        assert await axil_write(ctx, axi, addr(dut, "K"), 0xAAAAAAAA, strb=0b0100) == RESP_OKAY
        values["K"] = (values["K"] & ~0x00FF0000) | 0x00AA0000
        ctx.set(dut.fetch.hold, 1)
        for index, name in enumerate(DESCRIPTOR_REGISTERS):
            assert await fetch_word(ctx, dut, index) == values[name], name
        # A write offered while hold is high waits; the fetch sees the old value.
        m_index = DESCRIPTOR_REGISTERS.index("M")
        ctx.set(axi.awaddr, addr(dut, "M"))
        ctx.set(axi.wdata, 0x5555)
        ctx.set(axi.wstrb, 0xF)
        ctx.set(axi.awvalid, 1)
        ctx.set(axi.wvalid, 1)
        ctx.set(axi.bready, 1)
        for _ in range(4):
            await ctx.tick()
            ctx.set(axi.awvalid, 0)
            ctx.set(axi.wvalid, 0)
            assert not ctx.get(axi.bvalid)
        assert await fetch_word(ctx, dut, m_index) == values["M"]
        ctx.set(axi.araddr, addr(dut, "N"))
        ctx.set(axi.arvalid, 1)
        assert not ctx.get(axi.arready)
        ctx.set(dut.fetch.hold, 0)
        await ctx.tick()                # the write is performed
        assert ctx.get(axi.bvalid)
        # The read of N is taken now and is not taken back: the port is not free.
        ctx.set(axi.rready, 0)
        while not ctx.get(axi.arready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(axi.arvalid, 0)
        assert ctx.get(axi.rvalid) and not ctx.get(dut.fetch.free)
        ctx.set(dut.fetch.hold, 1)
        await ctx.tick()
        assert ctx.get(axi.rdata) == values["N"] and not ctx.get(dut.fetch.free)
        ctx.set(axi.rready, 1)
        await ctx.tick()
        ctx.set(axi.rready, 0)
        assert ctx.get(dut.fetch.free)
        assert await fetch_word(ctx, dut, m_index) == 0x5555

    simulate(dut, bench)


# -- the Systole map ------------------------------------------------------------------------

def test_systole_map_contents():
    config = SystoleConfig(rows=4, cols=16, formats=("e5m2",), max_k=4096, bus_width=128,
                           counter_width=48, sram_depth=512, row_tiles=16, psum_depth=1 << 16)
    regmap = systole_register_map(config)
    assert regmap.frozen
    assert regmap["ID"].reset == ID_MAGIC == 0x53595354
    assert regmap["VERSION"].reset == 0x00020002
    assert regmap["CONFIG0"].decode(regmap["CONFIG0"].reset) == {
        "rows": 4, "cols": 16, "bus_bytes": 16, "formats": 0b10}
    assert regmap["CONFIG1"].reset == 4096
    assert regmap["CONFIG2"].reset == config.sram_depth
    assert regmap["CONFIG3"].decode(regmap["CONFIG3"].reset) == {"addr_width": 32,
                                                                "counter_width": 48}
    # The largest row_tiles and psum_depth fit CONFIG4's fields.
    assert regmap["CONFIG4"].address == 0x018
    assert regmap["CONFIG4"].decode(regmap["CONFIG4"].reset) == {"row_tiles": 16,
                                                                "psum_depth": 1 << 16}
    assert [counter.name for counter in regmap.counters] == list(COUNTER_NAMES) == [
        "cycles", "active_cycles", "stall_load_cycles", "stall_store_cycles",
        "overhead_cycles", "macs", "padded_macs", "dram_read_bytes", "dram_write_bytes",
        "dram_read_bursts", "dram_write_bursts", "sram_a_read_bytes", "sram_a_write_bytes",
        "sram_b_read_bytes", "sram_b_write_bytes", "sram_c_read_bytes", "sram_c_write_bytes",
        "sram_psum_read_bytes", "sram_psum_write_bytes"]
    for counter in regmap.counters:
        assert counter.width == 48
        assert regmap[counter.name.upper() + "_HI"].address == counter.lo.address + 4
    fmt = regmap["FORMAT"]
    assert fmt.reset == fmt.encode(saturate=1)
    assert fmt.encode(a_format=Fp8Format.E5M2, out_format=OutFormat.E4M3, scale_exp=-1) \
        == 0xff09
    for name in ("M", "N", "K", "A_ADDR_LO", "A_ADDR_HI", "B_ADDR_LO", "B_ADDR_HI",
                 "C_ADDR_LO", "C_ADDR_HI", "A_STRIDE", "B_STRIDE", "C_STRIDE"):
        (field,) = regmap[name].fields.values()
        assert (field.access, field.width) == (RW, 32)
    # PLAN: the last descriptor register, right after FORMAT; reset 0 is no plan (BAD_PLAN).
    assert DESCRIPTOR_REGISTERS[-2:] == ("FORMAT", "PLAN")
    plan = regmap["PLAN"]
    assert (regmap["FORMAT"].address, plan.address, plan.reset) == (0x070, 0x074, 0)
    assert {name: (field.access, field.bits) for name, field in plan.fields.items()} == {
        "mc_tiles": (RW, (7, 0)), "nc_tiles": (RW, (15, 8)), "kc_log2": (RW, (20, 16)),
        "order": (RW, (24, 24))}
    assert plan.encode(mc_tiles=3, nc_tiles=255, kc_log2=31, order=LoopOrder.COLS_OUTER) \
        == 0x011fff03
    assert ERROR_CODES == {"NONE": 0, "BAD_DIMENSION": 1, "K_TOO_LARGE": 2, "BAD_STRIDE": 3,
                           "MISALIGNED_OUTPUT": 4, "ADDRESS_OVERFLOW": 5, "BAD_FORMAT": 6,
                           "BUSY": 7, "AXI_READ_ERROR": 8, "AXI_WRITE_ERROR": 9,
                           "BAD_PLAN": 10, "OVERLAP": 11, "ABORTED": 12}
    assert all(code.description for code in ErrorCode)
    bank = CSRBank(regmap)
    Fragment.get(bank, None)
    assert bank.axi.awaddr.shape().width == regmap.addr_width == 12
    assert bank.cycles.shape().width == 48
    # 32-bit counters leave _HI without fields; the bank still builds.
    narrow = systole_register_map(SystoleConfig(counter_width=32))
    assert narrow["CYCLES_HI"].fields == {}
    Fragment.get(CSRBank(narrow), None)


# -- map building errors --------------------------------------------------------------------

def test_field_errors():
    with pytest.raises(ValueError, match=r"^Field access must be one of R, RW, W1C, W, not 'RO'$"):
        Field("RO", 1)
    with pytest.raises(ValueError, match=r"^Field width must be a positive integer, not 0$"):
        Field(RW, 0)
    with pytest.raises(TypeError, match=r"^Field shape must be a positive integer width or an "
                                        r"Amaranth shape, not 'x'$"):
        Field(RW, "x")
    with pytest.raises(TypeError, match=r"^W1C fields are bit sets; give an integer width, "
                                        r"not signed\(4\)$"):
        Field(W1C, signed(4))
    with pytest.raises(ValueError, match=r"^R fields have no reset value \(give a constant "
                                         r"with const=\)$"):
        Field(R, 4, reset=1)
    with pytest.raises(ValueError, match=r"^W fields have no reset value \(it reads as 0\)$"):
        Field(W, 1, reset=1)
    with pytest.raises(ValueError, match=r"^Only R fields can be constants, not RW fields$"):
        Field(RW, 4, const=1)
    with pytest.raises(ValueError, match=r"^Reset value 16 does not fit in a field of shape "
                                         r"unsigned\(4\)$"):
        Field(RW, 4, reset=16)
    with pytest.raises(ValueError, match=r"^Reset value -129 does not fit in a field of shape "
                                         r"signed\(8\)$"):
        Field(RW, signed(8), reset=-129)
    with pytest.raises(ValueError, match=r"^Constant 5 is not a valid <enum 'OutFormat'>$"):
        Field(R, OutFormat, const=5)
    with pytest.raises(ValueError, match=r"^Field offset must be a non-negative integer, "
                                         r"not -1$"):
        Field(RW, 1, offset=-1)


def test_register_errors():
    with pytest.raises(ValueError, match=r"^Field 'b' \(bits 4:1\) overlaps field 'a' "
                                         r"\(bits 3:0\)$"):
        Register({"a": Field(RW, 4), "b": Field(RW, 4, offset=1)})
    with pytest.raises(ValueError, match=r"^Field 'b' \(bits 32:1\) does not fit in a 32-bit "
                                         r"register$"):
        Register({"a": Field(RW, 1), "b": Field(RW, 32)})
    with pytest.raises(ValueError, match=r"^Field 'c' \(bits 34:30\) does not fit in a 32-bit "
                                         r"register$"):
        Register({"c": Field(RW, 5, offset=30)})
    with pytest.raises(ValueError, match=r"^Field name must be a lower-case identifier, "
                                         r"not 'Busy'$"):
        Register({"Busy": Field(R, 1)})
    with pytest.raises(ValueError, match=r"^Field 'done_set' clashes with the set input of "
                                         r"W1C field 'done'$"):
        Register({"done": Field(W1C, 1), "done_set": Field(RW, 1)})
    with pytest.raises(TypeError, match=r"^Annotation of 'x' in register class Bad must be a "
                                        r"Field, not <class 'int'>$"):
        class Bad(Register):
            x: int
    with pytest.raises(TypeError, match=r"^Register class Status declares its fields; do not "
                                        r"pass fields to it$"):
        Status({"a": Field(RW, 1)})
    assert Status().description == "Status bits."
    assert list(Status().fields) == ["busy", "done", "errors"]
    assert [f.offset for f in Status().fields.values()] == [0, 1, 4]
    with pytest.raises(KeyError, match=r"Register None has no field 'nope'"):
        Status().encode(nope=1)


def _reg(width=32):
    return Register({"value": Field(RW, width)})


def test_map_errors():
    regmap = RegisterMap(addr_width=6)
    regmap.add("A", _reg())
    regmap.add("B", _reg(), address=0x10)
    assert regmap["B"].address == 0x10
    assert regmap.add("C", _reg()).address == 0x14          # after the previous one
    with pytest.raises(ValueError, match=r"^Register 'D' at 0x10 overlaps register 'B'$"):
        regmap.add("D", _reg(), address=0x10)
    with pytest.raises(ValueError, match=r"^Address of register 'D' must be a non-negative "
                                         r"multiple of 4, not 0x6$"):
        regmap.add("D", _reg(), address=6)
    with pytest.raises(ValueError, match=r"^Register 'D' at 0x40 does not fit in a 6-bit "
                                         r"address space$"):
        regmap.add("D", _reg(), address=0x40)
    with pytest.raises(ValueError, match=r"^Register name 'A' is already used$"):
        regmap.add("A", _reg())
    with pytest.raises(ValueError, match=r"^Register name must be an upper-case identifier, "
                                         r"not 'lower'$"):
        regmap.add("lower", _reg())
    with pytest.raises(ValueError, match=r"^Register 'AXI' would have the same port name "
                                         r"'axi' as the bus port$"):
        regmap.add("AXI", _reg())
    with pytest.raises(TypeError, match=r"^Expected a Register, not 3$"):
        regmap.add("E", 3)
    with pytest.raises(ValueError, match=r"^This Register object is already in a map, "
                                         r"as 'A'$"):
        regmap.add("E", regmap["A"])
    # Counters: two words; the pair must fit and its port name must be free.
    with pytest.raises(ValueError, match=r"^Register 'BIG_HI' at 0x40 does not fit in a 6-bit "
                                         r"address space$"):
        regmap.add_counter("big", address=0x3c)
    assert "BIG_LO" not in regmap
    regmap.add_counter("ticks", address=0x20)
    with pytest.raises(ValueError, match=r"^Register 'TICKS' would have the same port name "
                                         r"'ticks' as counter 'ticks'$"):
        regmap.add("TICKS", _reg())
    with pytest.raises(ValueError, match=r"^Counter 'a' would have the same port name 'a' as "
                                         r"register 'A'$"):
        regmap.add_counter("a")
    with pytest.raises(ValueError, match=r"^Counter width must be an integer between 32 and 64, "
                                         r"not 65$"):
        regmap.add_counter("wide", width=65)
    with pytest.raises(ValueError, match=r"^Counter name must be a lower-case identifier, "
                                         r"not 'Ticks2'$"):
        regmap.add_counter("Ticks2")
    with pytest.raises(ValueError, match=r"^addr_width must be an integer between 2 and 32, "
                                         r"not 1$"):
        RegisterMap(addr_width=1)
    regmap.freeze()
    with pytest.raises(ValueError, match=r"^Register map is frozen; cannot add 'F'$"):
        regmap.add("F", _reg())
    # Without an explicit width, the map is as narrow as its highest register allows.
    small = RegisterMap()
    small.add("X", _reg(), address=0x24)
    assert small.addr_width == 6


# -- generated documents ------------------------------------------------------------------

def test_generated_docs_are_current(capsys):
    """docs/registers.{md,json} and docs/systole_regs.h match the map: regenerate them with
    `./run systole regmap` whenever hdl/registers.py or hdl/csr.py changes."""
    status = cli_main(["regmap", "--check", "--docs-dir", str(DOCS)])
    assert status == 0, capsys.readouterr().err


def test_check_names_stale_files(tmp_path, capsys):
    assert regmap_docs.main(["--docs-dir", str(tmp_path)]) == 0
    assert regmap_docs.main(["--check", "--docs-dir", str(tmp_path)]) == 0
    (tmp_path / "systole_regs.h").write_text("/* old */\n")
    (tmp_path / "registers.json").unlink()
    capsys.readouterr()
    assert regmap_docs.main(["--check", "--docs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "registers.json" in err and "systole_regs.h" in err and "registers.md" not in err


def test_c_header_compiles(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    source = tmp_path / "use.c"
    source.write_text(
        '#include "systole_regs.h"\n'
        "_Static_assert(SYSTOLE_ID_ADDR == 0x0u, \"ID\");\n"
        "_Static_assert(SYSTOLE_ID_MAGIC_VALUE == 0x53595354u, \"magic\");\n"
        "_Static_assert((SYSTOLE_FORMAT_RESET & SYSTOLE_FORMAT_SATURATE_MASK) >> "
        "SYSTOLE_FORMAT_SATURATE_SHIFT == 1u, \"saturate\");\n"
        "_Static_assert(SYSTOLE_CYCLES_HI_ADDR == SYSTOLE_CYCLES_LO_ADDR + 4u, \"pair\");\n"
        "_Static_assert(SYSTOLE_ERROR_AXI_WRITE_ERROR == 9u, \"error\");\n"
        "int main(void) { return 0; }\n")
    result = subprocess.run([compiler, "-std=c11", "-Wall", "-Werror", "-fsyntax-only",
                             "-I", str(DOCS), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

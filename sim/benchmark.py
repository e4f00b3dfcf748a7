"""Benchmarks of the accelerator RTL (figures, not pass/fail tests).

    ./run python -m systole.sim.benchmark [--latency 32] [--json FILE]

Runs compute-bound GEMMs (M, N >= 4x the array, K >= 256) of the default configuration
on Verilator with the gateware memory model (hdl/simmem.py), one after another in one
simulation, and prints:

* simulation throughput: job cycles (the ``cycles`` counter, START to done) per wall-clock
  second from the START write to the done interrupt. In that interval cocotb only awaits
  the interrupt, so the figure is the model's own speed, with cocotb's per-edge clock and
  callback work but without test set-up;
* where the rest of the wall time went: simulator start-up and reset, operand loading
  through the simulator, descriptor writes, counter reads, and reading C back and checking
  it (bit-exact against the golden model, and the counter laws);
* utilization ``macs / (rows * cols * cycles)`` at the given memory latency, with where the
  other cycles went.

The module is also the cocotb test module of that simulation (:func:`benchmark_jobs`).
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import cocotb
import numpy as np

from ..config import SystoleConfig
from ..hdl.registers import ErrorCode
from . import golden, verilog
from .run import HDL_MEMORY_BYTES, TOPLEVEL, build_accelerator
from .stimulus import random_fp8
from .tb_accel import AccelTB, spec_layout, config_from_json, counter_law_violations

__all__ = ["main", "benchmark_jobs"]

#: Wall-time phases of one job inside the simulation, in order.
_PHASES = ("load", "descriptor", "run", "counters", "check")


def _shapes(config):
    r, c = config.rows, config.cols
    return [(4 * r, 4 * c, 256), (8 * r, 4 * c, 256), (4 * r, 8 * c, 512), (8 * r, 8 * c, 1024)]


async def _timed_job(tb, config, spec, rng):
    """Run one job; return its counters, problems and the wall time of each phase."""
    job, end = spec_layout(spec, config)
    a = random_fp8(rng, (job.m, job.k), job.a_format)
    b = random_fp8(rng, (job.k, job.n), job.b_format)
    image = np.zeros(end, dtype=np.uint8)
    for i in range(job.m):
        image[job.a_addr + i * job.a_stride:][:job.k] = a.view(np.uint8)[i]
    for kk in range(job.k):
        image[job.b_addr + kk * job.b_stride:][:job.n] = b.view(np.uint8)[kk]
    driver = tb.driver
    stamps = [time.perf_counter()]
    await tb.port.write_memory(0, image.tobytes())
    stamps.append(time.perf_counter())
    await driver.write_register("STATUS", done=1, error=1)
    await driver.write_register("IRQ_ENABLE", done=1)
    await driver.write_job(job)
    stamps.append(time.perf_counter())
    await driver.start()
    await driver.wait_done()
    stamps.append(time.perf_counter())
    error = ErrorCode((await driver.read_register("ERROR_CODE"))["code"]).name
    counters = await driver.read_counters()
    await driver.write_register("STATUS", done=1, error=1)
    stamps.append(time.perf_counter())

    problems = [] if error == "NONE" else [f"error code {error}"]
    expected = golden.to_bits(golden.gemm(a, b, job.out_format, saturate=job.saturate,
                                          scale_exp=job.scale_exp))
    expected = expected.astype(expected.dtype.newbyteorder("<")).view(np.uint8)
    row_bytes = expected.shape[1]
    got = [await tb.port.read_memory(job.c_addr + i * job.c_stride, row_bytes)
           for i in range(job.m)]
    got = np.frombuffer(b"".join(got), dtype=np.uint8).reshape(expected.shape)
    if not np.array_equal(got, expected):
        wrong = np.argwhere(got != expected)
        problems.append(f"C differs from the golden model in {len(wrong)} bytes, first at "
                        f"(row, byte) {tuple(int(x) for x in wrong[0])}")
    problems += [f"counter law broken: {law}"
                 for law in counter_law_violations(config, spec, counters, job)]
    stamps.append(time.perf_counter())
    phases = {name: stamps[i + 1] - stamps[i] for i, name in enumerate(_PHASES)}
    return {"spec": spec, "counters": counters, "problems": problems, "seconds": phases}


@cocotb.test()
async def benchmark_jobs(dut):
    """The jobs of ``$SYSTOLE_BENCH`` (JSON: config, seed, latency, jobs, output)."""
    params = json.loads(os.environ["SYSTOLE_BENCH"])
    config = config_from_json(params["config"])
    started = time.perf_counter()
    tb = AccelTB(dut, config, seed=params["seed"], latency=params["latency"], pause=0.0,
                 mem_size=params["mem_size"], memory="hdl")
    await tb.start()
    reset = time.perf_counter() - started
    rng = np.random.default_rng(params["seed"])
    results = [await _timed_job(tb, config, spec, rng) for spec in params["jobs"]]
    Path(params["output"]).write_text(json.dumps({"reset_s": reset, "jobs": results}))
    failed = [f"{r['spec']}: {'; '.join(r['problems'])}" for r in results if r["problems"]]
    assert not failed, "benchmark jobs failed their checks:\n" + "\n".join(failed)


def _run(config, latency, seed=0):
    """Run the benchmark GEMMs in one simulation; return (job results, wall time, reset)."""
    build_dir = build_accelerator(config, memory="hdl", latency=latency)
    jobs = [{"m": m, "n": n, "k": k, "a_format": "e4m3", "b_format": "e5m2",
             "out_format": "fp32", "saturate": True, "scale_exp": 0}
            for m, n, k in _shapes(config)]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        params = {"config": dataclasses.asdict(config), "seed": seed, "latency": latency,
                  "jobs": jobs, "mem_size": HDL_MEMORY_BYTES,
                  "output": str(work / "benchmark.json")}
        started = time.perf_counter()
        try:
            verilog.run(build_dir, TOPLEVEL, "systole.sim.benchmark", test_dir=work,
                        extra_env={"SYSTOLE_BENCH": json.dumps(params)},
                        results_xml=str(work / "results.xml"), log_file=work / "sim.log")
        except AssertionError:
            print((work / "sim.log").read_text()[-4000:])
            raise
        wall = time.perf_counter() - started
        data = json.loads((work / "benchmark.json").read_text())
    return data["jobs"], wall, data["reset_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m systole.sim.benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=32, help="memory read latency (cycles)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    config = SystoleConfig()
    build_accelerator(config, memory="hdl", latency=args.latency)     # build outside the timing
    results, wall, reset = _run(config, args.latency)
    print(f"configuration: {config.rows}x{config.cols} array, {config.bus_width}-bit bus, "
          f"sram_depth {config.sram_depth}, row_tiles {config.row_tiles}; "
          f"memory latency {args.latency} cycles")
    report = {"config": config.to_dict(), "latency": args.latency, "gemms": []}
    print(f"{'M':>5} {'N':>5} {'K':>5} {'cycles':>9} {'util':>7} {'active':>7} "
          f"{'stall_ld':>8} {'stall_st':>8} {'ovh':>6} {'sim cyc/s':>10}")
    total_cycles = 0
    for result in results:
        spec, c, run = result["spec"], result["counters"], result["seconds"]["run"]
        m, n, k = spec["m"], spec["n"], spec["k"]
        total_cycles += c["cycles"]
        util = c["macs"] / (config.rows * config.cols * c["cycles"])
        print(f"{m:>5} {n:>5} {k:>5} {c['cycles']:>9,} {util:>7.1%} "
              f"{c['active_cycles'] / c['cycles']:>7.1%} {c['stall_load_cycles']:>8,} "
              f"{c['stall_store_cycles']:>8,} {c['overhead_cycles']:>6,} "
              f"{c['cycles'] / run:>10,.0f}")
        report["gemms"].append({"M": m, "N": n, "K": k, "utilization": util, "counters": c,
                                "sim_cycles": c["cycles"], "wall_s": run,
                                "phases_s": result["seconds"]})
    phases = {name: sum(r["seconds"][name] for r in results) for name in _PHASES}
    throughput = total_cycles / phases["run"]
    # Everything outside the jobs: process start, Python and cocotb start-up, reset, exit.
    startup = wall - sum(phases.values())
    report["sim_cycles_per_s"] = throughput
    report["wall_s"] = {"total": wall, "startup_and_reset": startup, **phases}
    print(f"simulation throughput: {throughput:,.0f} cycles/s ({total_cycles:,} job cycles "
          f"in {phases['run']:.2f} s from START to done)")
    print(f"wall time of the simulation: {wall:.2f} s = start-up and reset {startup:.2f} s "
          f"(of which reset {reset:.2f} s) + operand loading {phases['load']:.2f} s "
          f"+ descriptors {phases['descriptor']:.2f} s + jobs {phases['run']:.2f} s "
          f"+ counter reads {phases['counters']:.2f} s + C read-back and checks "
          f"{phases['check']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

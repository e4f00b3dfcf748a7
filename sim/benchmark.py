"""Benchmarks of the accelerator RTL (figures, not pass/fail tests).

    ./run python -m systole.sim.benchmark [--latency 32] [--json FILE]

Prints, for the default configuration on Verilator:

* simulation throughput: simulated clock cycles per wall-clock second of the cocotb run
  (build excluded) with the gateware memory model (hdl/simmem.py), so no Python runs while
  a job does: the figure is Verilator's own speed plus CSR and memory loading;
* utilization ``macs / (rows * cols * cycles)`` of compute-bound GEMMs (M, N >= 4x the
  array, K >= 256) at the given memory latency, with where the other cycles went.
"""

import argparse
import json
import tempfile
from pathlib import Path

from ..config import SystoleConfig
from .run import build_accelerator, run_jobs

__all__ = ["main"]


def _shapes(config):
    r, c = config.rows, config.cols
    return [(4 * r, 4 * c, 256), (8 * r, 4 * c, 256), (4 * r, 8 * c, 512), (8 * r, 8 * c, 1024)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m systole.sim.benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=32, help="memory read latency (cycles)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    config = SystoleConfig()
    build_accelerator(config, memory="hdl", latency=args.latency)
    print(f"configuration: {config.rows}x{config.cols} array, {config.bus_width}-bit bus, "
          f"sram_depth {config.sram_depth}, row_tiles {config.row_tiles}; "
          f"memory latency {args.latency} cycles")
    report = {"config": config.to_dict(), "latency": args.latency, "gemms": []}
    print(f"{'M':>5} {'N':>5} {'K':>5} {'cycles':>9} {'util':>7} {'active':>7} "
          f"{'stall_ld':>8} {'stall_st':>8} {'ovh':>6} {'sim cyc/s':>10}")
    total_cycles, total_wall = 0.0, 0.0
    for m, n, k in _shapes(config):
        spec = {"m": m, "n": n, "k": k, "a_format": "e4m3", "b_format": "e5m2",
                "out_format": "fp32", "saturate": True, "scale_exp": 0}
        with tempfile.TemporaryDirectory() as work:
            result, = run_jobs(config, [spec], latency=args.latency, workdir=work,
                               log_file=Path(work) / "sim.log", memory="hdl")
        # The job alone: descriptor writes, START, the run, counter reads (memory loading
        # through the simulator is excluded; it is test set-up, not simulation).
        sim_cycles, wall = result["counters"]["cycles"], result["run_seconds"]
        total_cycles += sim_cycles
        total_wall += wall
        c = result["counters"]
        util = c["macs"] / (config.rows * config.cols * c["cycles"])
        print(f"{m:>5} {n:>5} {k:>5} {c['cycles']:>9,} {util:>7.1%} "
              f"{c['active_cycles'] / c['cycles']:>7.1%} {c['stall_load_cycles']:>8,} "
              f"{c['stall_store_cycles']:>8,} {c['overhead_cycles']:>6,} {sim_cycles / wall:>10,.0f}")
        report["gemms"].append({"M": m, "N": n, "K": k, "utilization": util,
                                "counters": c, "sim_cycles": sim_cycles, "wall_s": wall})
    throughput = total_cycles / total_wall
    report["sim_cycles_per_s"] = throughput
    print(f"simulation throughput: {throughput:,.0f} cycles/s "
          f"({total_cycles:,.0f} job cycles in {total_wall:.2f} s from START to the last "
          f"counter read; memory loading excluded)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

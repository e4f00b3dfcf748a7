"""``systole bench``: the GPT-2 GEMM suite on the performance model and the RTL.

    systole bench [--rtl] [--json FILE] [--models small,medium,large,xl] [config options]

Every GEMM gets the performance model's counters; with ``--rtl`` the GEMMs that simulate
within minutes (GPT-2 small at T = 128 and decode) also run on the Verilator model of the
accelerator with the gateware memory at the same latency, and their rows show the RTL
counters (and the model's cycle error next to them).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .config import SystoleConfig

__all__ = ["add_parser", "run_bench", "RTL_GEMMS", "TARGETS"]

#: GEMMs that ``--rtl`` simulates on the default configuration.
RTL_GEMMS = ("gpt2-small/prefill128/", "gpt2-small/decode/")

#: Issue 4 targets (checked and printed by ``systole bench``).
TARGETS = {"roofline_ratio": 0.95, "compute_bound_utilization": 0.90, "prefill_traffic": 1.5}

#: Bytes of the gateware memory for the RTL runs (GPT-2 small's MLP needs about 4 MB).
RTL_MEMORY_BYTES = 8 << 20


def _spec(gemm):
    return {"m": gemm.m, "n": gemm.n, "k": gemm.k, "a_format": "e4m3", "b_format": "e4m3",
            "out_format": gemm.out_format, "saturate": True, "scale_exp": 0,
            "specials": 0.0}


def _layout(spec, config):
    from .sim.tb_accel import _layout as layout
    return layout(spec, config)[0]


def _run_rtl(config, spec, latency):
    """The testbench's result for one job on the RTL (gateware memory); its log is kept
    quiet and printed only when the job fails its checks."""
    from .sim.run import run_jobs
    with tempfile.TemporaryDirectory() as work:
        log = Path(work) / "sim.log"
        try:
            return run_jobs(config, [spec], memory="hdl", latency=latency, seed=1,
                            mem_size=RTL_MEMORY_BYTES, log_file=log)[0]
        except AssertionError:
            sys.stderr.write(log.read_text() if log.exists() else "")
            raise


def run_bench(config, *, rtl=False, models=("small", "medium", "large", "xl"), latency=32,
              progress=True, rtl_filter=RTL_GEMMS):
    """Results rows (see ``sim.bench.evaluate``) for the GPT-2 suite."""
    from tqdm import tqdm

    from .sim import bench, perfmodel
    memory = perfmodel.MemoryModel(latency=latency)
    gemms = bench.gpt2_gemms(models)
    results = []
    for gemm in tqdm(gemms, desc="systole bench", unit="GEMM", disable=not progress,
                     file=sys.stderr):
        spec = _spec(gemm)
        job = _layout(spec, config)
        model = perfmodel.predict(config, job, memory)
        if rtl and gemm.name.startswith(rtl_filter):
            result = _run_rtl(config, spec, latency)
            row = bench.evaluate(config, gemm, result["counters"], "rtl")
            row["model_cycles"] = model["cycles"]
            row["model_cycle_error"] = model["cycles"] / result["counters"]["cycles"] - 1
            row["model_bytes_exact"] = all(
                model[name] == result["counters"][name] for name in model
                if not name.endswith("cycles"))
        else:
            row = bench.evaluate(config, gemm, model, "model")
        results.append(row)
    return results


def model_agreement(rtl_rows):
    """How the model's counters compare with the RTL's on rows run on both (text)."""
    worst = max(abs(r["model_cycle_error"]) for r in rtl_rows)
    exact = all(r["model_bytes_exact"] for r in rtl_rows)
    cycles = "cycles exact" if worst == 0 else f"cycles within {worst:.2%}"
    return f"byte counters {'all exact' if exact else 'DIFFER'}, {cycles}"


def target_misses(row):
    """The issue-4 targets this result row misses (names)."""
    missed = []
    if row["utilization_ratio"] < TARGETS["roofline_ratio"]:
        missed.append("roofline")
    if row["compute_bound"] and row["utilization"] < TARGETS["compute_bound_utilization"]:
        missed.append("util")
    if row["prefill"] and row["traffic_ratio"] > TARGETS["prefill_traffic"]:
        missed.append("traffic")
    return missed


def print_table(config, results, file=sys.stdout):
    print(f"configuration: {config.rows}x{config.cols} array, {config.bus_width}-bit bus, "
          f"operand SRAM {(config.a_sram_bytes + config.b_sram_bytes) // 1024} KiB "
          f"(A {config.a_sram_bytes // 1024} + B {config.b_sram_bytes // 1024})", file=file)
    head = (f"{'GEMM':30} {'M':>5} {'N':>5} {'K':>5} {'src':>5} {'cycles':>11} {'util':>6} "
            f"{'roof':>6} {'ratio':>6} {'DRAM MB':>8} {'LB MB':>7} {'xLB':>5} "
            f"{'pJ/MAC c/s/d':>17}  missed")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in results:
        e = r["energy_pj_per_mac"]
        print(f"{r['name']:30} {r['M']:5} {r['N']:5} {r['K']:5} {r['source']:>5} "
              f"{r['cycles']:11,} {r['utilization']:6.1%} {r['attainable_utilization']:6.1%} "
              f"{r['utilization_ratio']:6.2f} {r['dram_bytes'] / 1e6:8.2f} "
              f"{r['lower_bound_bytes'] / 1e6:7.2f} {r['traffic_ratio']:5.2f} "
              f"{e['compute']:5.2f}/{e['sram']:5.2f}/{e['dram']:5.1f}  "
              f"{','.join(target_misses(r)) or '-'}", file=file)
    rtl = [r for r in results if r["source"] == "rtl"]
    if rtl:
        print(f"model vs RTL on the {len(rtl)} RTL GEMMs: {model_agreement(rtl)}", file=file)
    for label, key in (("roofline ratio >= 95%", "roofline"),
                       ("compute-bound utilization >= 90%", "util"),
                       ("prefill DRAM traffic <= 1.5x lower bound", "traffic")):
        missed = [r["name"] for r in results if key in target_misses(r)]
        print(f"target {label}: {'met' if not missed else f'missed on {len(missed)}'}",
              file=file)


def _config_from_args(args):
    extra = {name: getattr(args, name) for name in ("rows", "cols", "bus_width", "sram_depth",
                                                    "row_tiles")
             if getattr(args, name) is not None}
    return SystoleConfig(**extra)


def _cmd_bench(args):
    config = _config_from_args(args)
    models = tuple(args.models.split(","))
    results = run_bench(config, rtl=args.rtl, models=models, latency=args.mem_latency)
    print_table(config, results)
    if args.json:
        report = {"config": config.to_dict(), "mem_latency": args.mem_latency,
                  "results": [{k: v for k, v in r.items() if k != "counters"} | {
                      "counters": r["counters"]} for r in results]}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    rtl = [r for r in results if r["source"] == "rtl"]
    return 0 if all(r["model_bytes_exact"] for r in rtl) else 1


def _add_config(p):
    for name, help_text in (("rows", "array rows"), ("cols", "array columns"),
                            ("bus-width", "AXI4 data width in bits"),
                            ("sram-depth", "operand SRAM depth (bytes per row bank)"),
                            ("row-tiles", "row tiles per super-row")):
        p.add_argument(f"--{name}", type=int, help=f"{help_text} (default: SystoleConfig)")
    p.add_argument("--mem-latency", type=int, default=32, help="memory read latency (cycles)")


def _cmd_report(args):
    from . import report
    config = _config_from_args(args)
    return report.write_report(config, Path(args.output), rtl=args.rtl,
                               latency=args.mem_latency)


def add_parser(sub):
    p = sub.add_parser("bench", help="the GPT-2 GEMM suite: cycles, utilization vs roofline, "
                                     "DRAM traffic vs the I/O lower bound, energy per MAC")
    p.add_argument("--rtl", action="store_true",
                   help="also run GPT-2 small (T = 128 and decode) on the RTL (minutes)")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--models", default="small,medium,large,xl",
                   help="GPT-2 sizes (default %(default)s)")
    _add_config(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("report", help="write docs/performance.md and its plots")
    p.add_argument("--output", default="docs", help="directory (default %(default)s)")
    p.add_argument("--rtl", action="store_true", help="include the RTL runs (minutes)")
    _add_config(p)
    p.set_defaults(func=_cmd_report)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="systole")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

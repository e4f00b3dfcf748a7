"""``systole bench``: the GPT-2 GEMM suite on the performance model and the RTL.

    systole bench [--rtl] [--json FILE] [--models small,medium,large,xl] [config options]

Every GEMM runs with the tiling plan the host chooses (``systole.plan.choose``) and gets
the performance model's counters; with ``--rtl`` the GEMMs that simulate within minutes
(GPT-2 small at T = 128 and decode) also run on the Verilator model of the accelerator
with the gateware memory at the same latency, and their rows show the RTL counters (and
the model's cycle error next to them).

Each JSON result row has the GEMM's shape, ``cycles``, ``utilization``, the roofline's
``attainable_utilization``, ``dram_bytes``, ``onchip_sram_bytes``, ``lower_bound_bytes``
(:func:`systole.plan.io_lower_bound` with all of that SRAM), ``traffic_ratio`` (DRAM bytes
over the bound), ``avg_read_burst_beats``, the ``plan`` (``TilingPlan.to_dict()``),
energy per MAC and every counter under ``counters``; the report adds the configuration
(``SystoleConfig.to_dict()``), the targets and the summary of :func:`summary`.
"""

import argparse
import json
import sys
from pathlib import Path

from .args import at_least, check_output
from .config import MEMORY_LATENCY, SystoleConfig

__all__ = ["add_parser", "run_bench", "summary", "print_table", "target_misses", "RTL_GEMMS",
           "TARGETS"]

#: GEMMs that ``--rtl`` simulates on the default configuration.
RTL_GEMMS = ("gpt2-small/prefill128/", "gpt2-small/decode/")

#: Targets on the default configuration (checked and printed by ``systole bench``): every
#: prefill GEMM within 3.5x of the I/O lower bound, at least 90% utilization and read
#: bursts of at least 8 beats on average; every decode GEMM within 1.15x of its bound.
TARGETS = {"prefill_traffic_ratio": 3.5, "prefill_utilization": 0.90,
           "prefill_read_burst_beats": 8.0, "decode_traffic_ratio": 1.15}

#: Bytes of the gateware memory for the RTL runs (GPT-2 small's MLP needs about 4 MB).
RTL_MEMORY_BYTES = 8 << 20


def _spec(gemm):
    return {"m": gemm.m, "n": gemm.n, "k": gemm.k, "a_format": "e4m3", "b_format": "e4m3",
            "out_format": gemm.out_format, "saturate": True, "scale_exp": 0,
            "specials": 0.0}


def _run_rtl(config, spec, latency):
    """The testbench's result for one job on the RTL (gateware memory); a failed check
    raises AssertionError with the testbench's message and the kept log's path."""
    from .sim.run import run_jobs
    return run_jobs(config, [spec], memory="hdl", latency=latency, seed=1,
                    mem_size=RTL_MEMORY_BYTES)[0]


def run_bench(config, *, rtl=False, models=("small", "medium", "large", "xl"),
              latency=MEMORY_LATENCY, progress=True, rtl_filter=RTL_GEMMS):
    """Results rows (see ``sim.bench.evaluate``) for the GPT-2 suite, each job run with
    the plan the host chooses (``systole.plan.choose``)."""
    from tqdm import tqdm

    from .sim import bench, perfmodel
    from .sim.tb_accel import spec_layout
    memory = perfmodel.MemoryModel(latency=latency)
    gemms = bench.gpt2_gemms(models)
    results = []
    for gemm in tqdm(gemms, desc="systole bench", unit="GEMM", disable=not progress,
                     file=sys.stderr):
        spec = _spec(gemm)
        job = spec_layout(spec, config)[0]
        model = perfmodel.predict(config, job, memory)
        if rtl and gemm.name.startswith(rtl_filter):
            result = _run_rtl(config, spec, latency)
            row = bench.evaluate(config, gemm, result["counters"], "rtl", model.plan)
            row["model_cycles"] = model["cycles"]
            row["model_cycle_error"] = model["cycles"] / result["counters"]["cycles"] - 1
            row["model_bytes_exact"] = all(
                model[name] == result["counters"][name] for name in model
                if not name.endswith("cycles"))
        else:
            row = bench.evaluate(config, gemm, model, "model", model.plan)
        results.append(row)
    return results


def model_agreement(rtl_rows):
    """How the model's counters compare with the RTL's on rows run on both (text)."""
    worst = max(abs(r["model_cycle_error"]) for r in rtl_rows)
    exact = all(r["model_bytes_exact"] for r in rtl_rows)
    cycles = "cycles exact" if worst == 0 else f"cycles within {worst:.2%}"
    return f"byte counters {'all exact' if exact else 'DIFFER'}, {cycles}"


def target_misses(row):
    """The targets (:data:`TARGETS`) this result row misses (names)."""
    missed = []
    if row["prefill"]:
        if row["traffic_ratio"] > TARGETS["prefill_traffic_ratio"]:
            missed.append("traffic")
        if row["utilization"] < TARGETS["prefill_utilization"]:
            missed.append("util")
        if row["avg_read_burst_beats"] < TARGETS["prefill_read_burst_beats"]:
            missed.append("burst")
    elif row["traffic_ratio"] > TARGETS["decode_traffic_ratio"]:
        missed.append("traffic")
    return missed


def summary(results):
    """The suite's figures against :data:`TARGETS`: worst prefill traffic ratio, lowest
    prefill utilization, shortest prefill average read burst, worst decode traffic ratio
    (each ``(value, GEMM name)``, or None without such GEMMs)."""
    prefill = [r for r in results if r["prefill"]]
    decode = [r for r in results if not r["prefill"]]

    def pick(rows, key, worst):
        if not rows:
            return None
        row = worst(rows, key=lambda r: r[key])
        return row[key], row["name"]
    return {"worst_prefill_traffic_ratio": pick(prefill, "traffic_ratio", max),
            "min_prefill_utilization": pick(prefill, "utilization", min),
            "min_prefill_read_burst_beats": pick(prefill, "avg_read_burst_beats", min),
            "worst_decode_traffic_ratio": pick(decode, "traffic_ratio", max),
            "prefill_gemms": len(prefill), "decode_gemms": len(decode)}


def plan_text(plan):
    """A plan in a table cell: row x column tiles of a block, the K chunk, the order."""
    return (f"{plan['mc_tiles']}x{plan['nc_tiles']} k{1 << plan['kc_log2']} "
            f"{'R' if plan['order'] == 'ROWS_OUTER' else 'C'}")


def print_table(config, results, file=sys.stdout):
    print(f"configuration: {config.rows}x{config.cols} array, {config.bus_width}-bit bus, "
          f"on-chip SRAM {config.onchip_sram_bytes / 1024:.1f} KiB (A "
          f"{config.a_sram_bytes // 1024} + B {config.b_sram_bytes // 1024} + partial sums "
          f"{config.psum_sram_bytes / 1024:.1f} + C {config.c_sram_bytes / 1024:.1f})",
          file=file)
    head = (f"{'GEMM':31} {'M':>5} {'N':>5} {'K':>5} {'src':>5} {'cycles':>11} {'util':>6} "
            f"{'roof':>6} {'DRAM MB':>8} {'LB MB':>7} {'xLB':>5} {'burst':>5} "
            f"{'plan':>13} {'pJ/MAC c/s/d':>17}  missed")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in results:
        e = r["energy_pj_per_mac"]
        print(f"{r['name']:31} {r['M']:5} {r['N']:5} {r['K']:5} {r['source']:>5} "
              f"{r['cycles']:11,} {r['utilization']:6.1%} {r['attainable_utilization']:6.1%} "
              f"{r['dram_bytes'] / 1e6:8.2f} {r['lower_bound_bytes'] / 1e6:7.2f} "
              f"{r['traffic_ratio']:5.2f} {r['avg_read_burst_beats']:5.1f} "
              f"{plan_text(r['plan']):>13} "
              f"{e['compute']:5.2f}/{e['sram']:5.2f}/{e['dram']:5.1f}  "
              f"{','.join(target_misses(r)) or '-'}", file=file)
    rtl = [r for r in results if r["source"] == "rtl"]
    if rtl:
        print(f"model vs RTL on the {len(rtl)} RTL GEMMs: {model_agreement(rtl)}", file=file)
    s = summary(results)
    parts = []
    for label, key, fmt, target, better in (
            (f"worst traffic ratio over the {s['prefill_gemms']} prefill GEMMs",
             "worst_prefill_traffic_ratio", "{:.2f}x", TARGETS["prefill_traffic_ratio"], "<="),
            ("min prefill utilization", "min_prefill_utilization", "{:.1%}",
             TARGETS["prefill_utilization"], ">="),
            ("min prefill average read burst", "min_prefill_read_burst_beats", "{:.1f} beats",
             TARGETS["prefill_read_burst_beats"], ">="),
            (f"worst decode ratio ({s['decode_gemms']} GEMMs)", "worst_decode_traffic_ratio",
             "{:.2f}x", TARGETS["decode_traffic_ratio"], "<=")):
        if s[key] is None:
            continue
        value, name = s[key]
        met = value <= target if better == "<=" else value >= target
        parts.append(f"{label} {fmt.format(value)} ({name}; target {better} "
                     f"{fmt.format(target)}: {'met' if met else 'MISSED'})")
    print("summary: " + "; ".join(parts), file=file)


def _config_from_args(args):
    extra = {name: getattr(args, name) for name in ("rows", "cols", "bus_width", "sram_depth",
                                                    "row_tiles", "psum_depth")
             if getattr(args, name) is not None}
    try:
        return SystoleConfig(**extra)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"systole {args.command}: bad configuration: {error}")


def _models(text):
    """An argparse type: comma-separated GPT-2 sizes."""
    from .sim.bench import GPT2_WIDTHS
    models = tuple(name for name in text.split(",") if name)
    if not models or any(name not in GPT2_WIDTHS for name in models):
        raise argparse.ArgumentTypeError(
            f"must be GPT-2 sizes from {','.join(GPT2_WIDTHS)}, not {text!r}")
    return models


def _cmd_bench(args):
    config = _config_from_args(args)
    check_output("bench", "--json", args.json)
    models = args.models
    results = run_bench(config, rtl=args.rtl, models=models, latency=args.mem_latency)
    print_table(config, results)
    if args.json:
        report = {"config": config.to_dict(), "mem_latency": args.mem_latency,
                  "targets": TARGETS, "summary": summary(results), "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    rtl = [r for r in results if r["source"] == "rtl"]
    return 0 if all(r["model_bytes_exact"] for r in rtl) else 1


def _add_config(p):
    for name, help_text in (("rows", "array rows"), ("cols", "array columns"),
                            ("bus-width", "AXI4 data width in bits"),
                            ("sram-depth", "B buffer words; A banks hold row_tiles times "
                                           "as many bytes"),
                            ("row-tiles", "depth of an A bank in units of sram_depth"),
                            ("psum-depth", "partial-sum SRAM rows (0: none)")):
        p.add_argument(f"--{name}", type=int, help=f"{help_text} (default: SystoleConfig)")
    p.add_argument("--mem-latency", type=at_least(1), default=MEMORY_LATENCY,
                   help="memory read latency in cycles (default %(default)s)")


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
    p.add_argument("--models", type=_models, default="small,medium,large,xl",
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

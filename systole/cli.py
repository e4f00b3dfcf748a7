"""The ``systole`` command line: one script, with subcommands."""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .config import SystoleConfig

__all__ = ["main"]


def _add_config_arguments(parser, *, rows=8, cols=8):
    group = parser.add_argument_group("configuration")
    group.add_argument("--rows", type=int, default=rows, help="PE array rows (default %(default)s)")
    group.add_argument("--cols", type=int, default=cols, help="PE array columns (default %(default)s)")
    group.add_argument("--formats", default="e4m3,e5m2",
                       help="comma-separated fp8 operand formats (default %(default)s)")
    group.add_argument("--max-k", type=int, default=65536,
                       help="largest K a job may have; sets the accumulator width")


def _add_job_arguments(parser, *, b_format, simulator=True):
    """Operand and output formats, overflow mode, scale, seed and (unless ``simulator`` is
    False) simulator of a run."""
    parser.add_argument("--a-format", default="e4m3", choices=["e4m3", "e5m2"])
    parser.add_argument("--b-format", default=b_format, choices=["e4m3", "e5m2"])
    parser.add_argument("--out-format", default="fp32", choices=["fp32", "bf16", "e4m3", "e5m2"])
    parser.add_argument("--no-saturate", action="store_true",
                        help="fp8 outputs overflow to NaN/Inf instead of saturating")
    parser.add_argument("--scale-exp", type=int, default=0,
                        help="output scale 2**N, N in [-128, 127]")
    parser.add_argument("--seed", type=int, default=1)
    if simulator:
        parser.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])


def _add_memory_system_arguments(parser):
    group = parser.add_argument_group("memory system")
    group.add_argument("--bus-width", type=int, default=64, help="AXI4 data width in bits")
    group.add_argument("--sram-depth", type=int, default=1024,
                       help="k-steps one operand buffer holds (default %(default)s)")
    group.add_argument("--row-tiles", type=int, default=2,
                       help="row tiles of A one A buffer holds (default %(default)s)")


def _config_from(args):
    extra = {name: getattr(args, name) for name in ("bus_width", "sram_depth", "row_tiles")
             if hasattr(args, name)}
    try:
        return SystoleConfig(rows=args.rows, cols=args.cols,
                             formats=tuple(f for f in args.formats.split(",") if f),
                             max_k=args.max_k, **extra)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"systole: bad configuration: {error}")


def _cmd_verilog(args):
    from .hdl.array import SystolicArray
    from .sim.verilog import generate_verilog
    config = _config_from(args)
    text = generate_verilog(SystolicArray(config), args.name)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: module {args.name}, {config.rows}x{config.cols} array, "
              f"{config.acc_width}-bit accumulators", file=sys.stderr)
    return 0


def _format_tile(title, values):
    lines = [title]
    for row in values:
        lines.append("  " + " ".join(f"{float(v):>11.5g}" for v in row))
    return "\n".join(lines)


def _cmd_demo(args):
    import numpy as np

    from .sim import golden, verilog
    from .sim.tb_array import make_array

    config = _config_from(args)
    job = {"a_format": args.a_format, "b_format": args.b_format, "out_format": args.out_format,
           "saturate": not args.no_saturate, "scale_exp": args.scale_exp}
    print(f"systole demo: one random {config.rows}x{args.k} by {args.k}x{config.cols} tile "
          f"on the simulated {config.rows}x{config.cols} array ({args.simulator}), seed {args.seed}")
    print(f"  job: {job}")
    print("  building the simulator model (cached after the first run) ...", flush=True)
    build_dir = verilog.build(lambda: make_array(config), "systole_array", repr(config),
                              args.simulator)
    with tempfile.TemporaryDirectory() as work:
        report_path = Path(work) / "report.json"
        params = {"config": {"rows": config.rows, "cols": config.cols,
                             "formats": list(config.formats), "max_k": config.max_k},
                  "seed": args.seed, "jobs": 1, "tiles": 1, "max_k": args.k, "k": args.k,
                  "job": job, "pause": 0.0, "specials": 0.0, "style": "normal",
                  "report": str(report_path)}
        try:
            verilog.run(build_dir, "systole_array", "systole.sim.tb_array",
                        simulator=args.simulator, test_dir=work,
                        extra_env={"SYSTOLE_TB": json.dumps(params)},
                        results_xml=str(Path(work) / "results.xml"),
                        log_file=Path(work) / "sim.log")
        except AssertionError as error:
            sys.stderr.write((Path(work) / "sim.log").read_text())
            print(f"systole demo: {error}", file=sys.stderr)
        if not report_path.exists():
            print("systole demo: the simulation produced no result", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text())
    tile = report["tiles"][0]
    got = golden.from_bits(np.array(tile["c_bits"], dtype=np.uint64), job["out_format"])
    print(_format_tile(f"C from the RTL ({job['out_format']}):", got))
    exact = tile["bit_exact"]
    mismatches = int(np.sum(np.array(tile["c_bits"]) != np.array(tile["expected_bits"])))
    print(f"check against golden.gemm: {'bit-exact' if exact else f'{mismatches} MISMATCHES'} "
          f"({config.rows * config.cols} results, {config.rows * config.cols * args.k} MACs, "
          f"{report['cycles']} cycles)")
    return 0 if exact else 1


def _print_counters(counters, config, shape):
    m, n, k = shape
    width = max(len(name) for name in counters)
    print(f"{'counter':<{width}}  {'value':>14}")
    for name, value in counters.items():
        print(f"{name:<{width}}  {value:>14,}")
    cycles = counters["cycles"]
    dram = counters["dram_read_bytes"] + counters["dram_write_bytes"]
    utilization = counters["macs"] / (config.rows * config.cols * cycles)
    intensity = counters["macs"] / dram if dram else float("inf")
    print(f"{'utilization':<{width}}  {utilization:>14.1%}   macs / (rows*cols*cycles)")
    print(f"{'intensity':<{width}}  {intensity:>14.2f}   MAC per DRAM byte")
    return {"utilization": utilization, "arithmetic_intensity": intensity}


def _gemm_operands(args):
    """The random A and B of ``systole gemm`` (and ``systole board gemm``) for ``--seed``."""
    import numpy as np

    from .sim.stimulus import random_fp8

    rng = np.random.default_rng(args.seed)
    a = random_fp8(rng, (args.m, args.k), args.a_format, style="normal")
    b = random_fp8(rng, (args.k, args.n), args.b_format, style="normal")
    return a, b


def _gemm_title(args, command="gemm"):
    return (f"systole {command}: C[{args.m}x{args.n}] = A[{args.m}x{args.k}] ({args.a_format})"
            f" . B[{args.k}x{args.n}] ({args.b_format}) -> {args.out_format}, seed {args.seed}")


def _report_gemm(args, config, a, b, c, counters, error, *, note="", extra_json=None):
    """Counters, the golden-model check and ``--json`` of a GEMM run; the exit status."""
    import numpy as np

    from .sim import golden

    expected = golden.gemm(a, b, args.out_format, saturate=not args.no_saturate,
                           scale_exp=args.scale_exp)
    exact = bool(np.array_equal(golden.to_bits(c), golden.to_bits(expected)))
    derived = _print_counters(counters, config, (args.m, args.n, args.k))
    print(f"check against golden.gemm: {'bit-exact' if exact else 'MISMATCH'}" + note)
    if error != "NONE":
        print(f"the accelerator reported error {error}")
    if args.json:
        report = {"bit_exact": exact, "shape": {"M": args.m, "N": args.n, "K": args.k},
                  "formats": {"a": args.a_format, "b": args.b_format, "out": args.out_format},
                  "config": config.to_dict(), **(extra_json or {}),
                  "counters": counters, **derived}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if exact and error == "NONE" else 1


def _cmd_gemm(args):
    from .sim.run import run_gemm

    config = _config_from(args)
    a, b = _gemm_operands(args)
    print(_gemm_title(args))
    print(f"  on a {config.rows}x{config.cols} array, {config.bus_width}-bit AXI4, "
          f"memory latency {args.mem_latency} cycles ({args.memory} model), {args.simulator}")
    print("  building the simulator model (cached after the first run) ...", flush=True)
    with tempfile.TemporaryDirectory() as work:
        log = Path(work) / "sim.log"
        try:
            run = run_gemm(a, b, args.out_format, saturate=not args.no_saturate,
                           scale_exp=args.scale_exp, config=config, simulator=args.simulator,
                           seed=args.seed, latency=args.mem_latency, log_file=log,
                           waves=args.wave, memory=args.memory)
        except AssertionError as error:
            sys.stderr.write(log.read_text() if log.exists() else "")
            print(f"systole gemm: FAILED: {error}", file=sys.stderr)
            return 1
    return _report_gemm(args, config, a, b, run.c, run.counters, run.error,
                        note=f"; waveform in {args.wave}" if args.wave else "",
                        extra_json={"mem_latency": args.mem_latency,
                                    "memory_model": args.memory})


def _cmd_accuracy(args):
    from .sim import accuracy
    return accuracy.main(args.rest) or 0


def _cmd_regmap(args):
    from . import regmap
    return regmap.main(args.rest) or 0


def _parser():
    parser = argparse.ArgumentParser(prog="systole", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verilog", help="write the Verilog of the PE array")
    _add_config_arguments(p)
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    p.add_argument("--name", default="systole_array", help="Verilog module name")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("demo", help="one random GEMM tile through the simulated array, "
                                    "checked against the golden model")
    _add_config_arguments(p, rows=4, cols=4)
    p.add_argument("-K", "--k", type=int, default=64, help="reduction length (default %(default)s)")
    _add_job_arguments(p, b_format="e4m3")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("gemm", help="a random GEMM on the simulated accelerator, checked "
                                    "against the golden model, with the counters")
    p.add_argument("-M", dest="m", type=int, default=64)
    p.add_argument("-N", dest="n", type=int, default=48)
    p.add_argument("-K", dest="k", type=int, default=200)
    _add_job_arguments(p, b_format="e5m2")
    p.add_argument("--mem-latency", type=int, default=32, help="memory read latency in cycles")
    p.add_argument("--memory", default="cocotb", choices=["cocotb", "hdl"],
                   help="external memory model: cocotbext-axi (default) or the gateware model "
                        "(no Python per cycle: much faster for large GEMMs)")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--wave", help="write a waveform to this file (.fst, which needs "
                                  "liblz4-dev for Verilator, or .vcd)")
    _add_config_arguments(p)
    _add_memory_system_arguments(p)
    p.set_defaults(func=_cmd_gemm)

    __import__("systole.build", fromlist=["add_parser"]).add_parser(sub)
    __import__("systole.board", fromlist=["add_parser"]).add_parser(sub)
    __import__("systole.bench", fromlist=["add_parser"]).add_parser(sub)

    # These forward their arguments to the module's own main(); argparse's REMAINDER drops
    # a leading "--option", so their parsers have no prefix characters of their own.
    forwarding = [
        ("accuracy", "exact vs fp32 vs 14-bit-aligned accumulation errors", _cmd_accuracy),
        ("regmap", "write (or --check) docs/registers.md, registers.json and systole_regs.h "
                   "from the register map", _cmd_regmap),
    ]
    for name, help_text, func in forwarding:
        p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="+")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

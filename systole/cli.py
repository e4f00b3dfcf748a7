"""The ``systole`` command line: one script, with subcommands."""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .args import (add_config_arguments, add_job_arguments, add_memory_system_arguments,
                   add_shape_arguments, at_least, check_directory, check_job, check_output,
                   check_simulator,
                   config_from, verilog_name)
from .config import MEMORY_LATENCY
from .gemm_report import gemm_operands, gemm_title, report_gemm

__all__ = ["main"]


def _cmd_verilog(args):
    config = config_from(args)
    if args.top == "array":
        return _write_array(args, config)
    from . import regmap
    from .sim import ip
    reason = regmap.inexpressible(config)
    if reason is not None:
        raise SystemExit(f"systole verilog: the register map cannot express this "
                         f"configuration: {reason}")
    name = args.name or ip.DEFAULT_NAME
    if args.fusesoc is not None:
        if name != ip.DEFAULT_NAME:
            raise SystemExit(f"systole verilog: --fusesoc writes module {ip.DEFAULT_NAME} "
                             f"(its waivers and harness name it); drop --name {name}")
        check_directory("verilog", "--fusesoc", args.fusesoc)
    if args.output != "-":
        check_output("verilog", "-o", args.output)
    command = " ".join(["systole", *args.argv]) if args.argv is not None else \
        "systole verilog --top accelerator"
    text = ip.accelerator_verilog(config, name=name, command=command)
    if args.fusesoc is not None:
        written = ip.write_core(args.fusesoc, config, name=name, text=text)
        print(f"wrote {len(written)} files into {args.fusesoc}: {name}.v (module {name}), "
              f"systole.vlt, systole_regs.h, sw/, systole.core", file=sys.stderr)
    if args.output == "-" and args.fusesoc is None:
        sys.stdout.write(text)
    elif args.output != "-":
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: module {name}, the accelerator ({config.rows}x"
              f"{config.cols} array, {config.bus_width}-bit AXI4)", file=sys.stderr)
    return 0


def _write_array(args, config):
    from .hdl.array import SystolicArray
    from .sim.verilog import generate_verilog
    if args.fusesoc is not None:
        raise SystemExit("systole verilog: --fusesoc writes the accelerator's core; add "
                         "--top accelerator")
    name = args.name or "systole_array"
    if args.output != "-":
        check_output("verilog", "-o", args.output)
    text = generate_verilog(SystolicArray(config), name)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: module {name}, {config.rows}x{config.cols} array, "
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

    config = config_from(args)
    check_job("demo", config, k=args.k, a_format=args.a_format, b_format=args.b_format)
    check_simulator("demo", args.simulator)
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


def _cmd_gemm(args):
    from .sim.run import run_gemm

    config = config_from(args)
    check_job("gemm", config, k=args.k, a_format=args.a_format, b_format=args.b_format)
    check_simulator("gemm", args.simulator, args.wave)
    check_output("gemm", "--json", args.json)
    check_output("gemm", "--wave", args.wave)
    a, b = gemm_operands(args)
    print(gemm_title(args))
    print(f"  on a {config.rows}x{config.cols} array, {config.bus_width}-bit AXI4, "
          f"memory latency {args.mem_latency} cycles ({args.memory} model), {args.simulator}")
    from .formats import output_format
    from .plan import choose
    plan = choose(config, args.m, args.n, args.k,
                  out_bytes=output_format(args.out_format).width // 8)
    print(f"  tiling plan: C blocks of {plan.mc_tiles}x{plan.nc_tiles} tiles, K chunks of "
          f"{plan.kc}, {plan.order.name}")
    print("  building the simulator model (cached after the first run) ...", flush=True)
    try:
        run = run_gemm(a, b, args.out_format, saturate=not args.no_saturate,
                       scale_exp=args.scale_exp, config=config, simulator=args.simulator,
                       seed=args.seed, latency=args.mem_latency, waves=args.wave,
                       memory=args.memory)
    except AssertionError as error:        # the testbench's findings, and the log's path
        print(f"systole gemm: FAILED: {error}", file=sys.stderr)
        return 1
    return report_gemm(args, config, a, b, run.c, run.counters, run.error,
                        note=f"; waveform in {args.wave}" if args.wave else "",
                        extra_json={"mem_latency": args.mem_latency,
                                    "memory_model": args.memory})


def _cmd_accuracy(args):
    from .sim import accuracy
    return accuracy.main(args.rest) or 0


def _cmd_formal(args):
    from .sim import formal
    names = [proof.name for proof in formal.PROOFS]
    for name in args.only or ():
        if name not in names:
            raise SystemExit(f"systole formal: --only {name}: no such proof (one of "
                             f"{', '.join(names)})")
    failed = 0
    print(f"{'proof':18} {'depth':>5}  {'bounded':8} {'induction':9}  broken variant")
    for proof in formal.PROOFS:
        if args.only and proof.name not in args.only:
            continue
        design = formal.prove(proof)
        broken = formal.prove(proof, broken=True, induction=False)
        caught = broken.bmc == "FAILED"
        failed += design.bmc != "PASSED" or not caught
        closes = {"PASSED": "closes", "FAILED": "open"}.get(design.induction, design.induction)
        print(f"{proof.name:18} {proof.depth:5}  {design.bmc:8} {closes:9}  "
              f"{'fails, as it must' if caught else 'PASSES: the property cannot fail'}")
        print(f"{'':18} {proof.what}")
        if design.bmc != "PASSED":
            print(design.log[-3000:])
    return 1 if failed else 0


def _cmd_regmap(args):
    from . import regmap
    return regmap.main(args.rest) or 0


def _cmd_coverage(args):
    from .sim import coverage
    return coverage.main(args.rest) or 0


def _parser():
    parser = argparse.ArgumentParser(prog="systole", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verilog", help="write the Verilog of the PE array or of the whole "
                                       "accelerator (with its FuseSoC core)")
    p.add_argument("--top", default="array", choices=["array", "accelerator"],
                   help="the bare PE array (default) or the accelerator with its AXI4, "
                        "AXI4-Lite and interrupt ports (docs/integration.md)")
    add_config_arguments(p)
    add_memory_system_arguments(p)
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    p.add_argument("--name", type=verilog_name, default=None,
                   help="Verilog module name (default systole_array, or systole)")
    p.add_argument("--fusesoc", metavar="DIR",
                   help="with --top accelerator: write DIR/systole.v, the waivers, the C "
                        "header and driver, and the FuseSoC core DIR/systole.core")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("demo", help="one random GEMM tile through the simulated array, "
                                    "checked against the golden model")
    add_config_arguments(p, rows=4, cols=4)
    p.add_argument("-K", "--k", type=at_least(1), default=64,
                   help="reduction length (default %(default)s)")
    add_job_arguments(p, b_format="e4m3")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("gemm", help="a random GEMM on the simulated accelerator, checked "
                                    "against the golden model, with the counters")
    add_shape_arguments(p)
    add_job_arguments(p, b_format="e5m2")
    p.add_argument("--mem-latency", type=at_least(1), default=MEMORY_LATENCY,
                   help="memory read latency in cycles (default %(default)s)")
    p.add_argument("--memory", default="cocotb", choices=["cocotb", "hdl"],
                   help="external memory model: cocotbext-axi (default) or the gateware model "
                        "(no Python per cycle: much faster for large GEMMs)")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--wave", help="write a waveform to this file (.fst, which needs "
                                  "liblz4-dev for Verilator, or .vcd)")
    add_config_arguments(p)
    add_memory_system_arguments(p)
    p.set_defaults(func=_cmd_gemm)

    p = sub.add_parser("formal", help="bounded proofs of the DMA engines' AXI4 rules, the "
                                      "FIFOs, the read arbiter and the job checker (Yosys and "
                                      "Boolector), each with a broken variant that must fail")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this proof (repeatable)")
    p.set_defaults(func=_cmd_formal)

    from . import bench, board, build, generate
    for module in (build, board, bench, generate):
        module.add_parser(sub)

    # These forward their arguments to the module's own main(); argparse's REMAINDER drops
    # a leading "--option", so their parsers have no prefix characters of their own.
    forwarding = [
        ("accuracy", "exact vs fp32 vs 14-bit-aligned accumulation errors", _cmd_accuracy),
        ("regmap", "write (or --check) docs/registers.md, registers.json and systole_regs.h "
                   "from the register map", _cmd_regmap),
        ("coverage", "line and toggle coverage per module of the accelerator under the "
                     "system-test job mix (Verilator --coverage)", _cmd_coverage),
    ]
    for name, help_text, func in forwarding:
        p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="+")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv = argv                # the command line, for files that name what made them
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

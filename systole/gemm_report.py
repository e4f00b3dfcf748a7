"""The report of a GEMM run (``systole gemm`` and ``systole board gemm``): the random
operands of a seed, the title line, the counters with their derived figures, the check
against the golden model and the JSON."""

import json
from pathlib import Path

__all__ = ["print_counters", "gemm_operands", "gemm_title", "report_gemm"]


def print_counters(counters, config, shape):
    """The counters as a table with utilization, intensity and the average read burst;
    returns those three figures."""
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
    bursts = counters["dram_read_bursts"]
    beats = counters["dram_read_bytes"] / config.bus_bytes / bursts if bursts else 0.0
    print(f"{'read burst':<{width}}  {beats:>14.1f}   average beats per AXI read burst")
    return {"utilization": utilization, "arithmetic_intensity": intensity,
            "avg_read_burst_beats": beats}


def gemm_operands(args):
    """The random A and B of ``systole gemm`` (and ``systole board gemm``) for ``--seed``."""
    import numpy as np

    from .sim.stimulus import random_fp8

    rng = np.random.default_rng(args.seed)
    a = random_fp8(rng, (args.m, args.k), args.a_format, style="normal")
    b = random_fp8(rng, (args.k, args.n), args.b_format, style="normal")
    return a, b


def gemm_title(args, command="gemm"):
    """The first line of a GEMM run: the shapes, formats and seed."""
    return (f"systole {command}: C[{args.m}x{args.n}] = A[{args.m}x{args.k}] ({args.a_format})"
            f" . B[{args.k}x{args.n}] ({args.b_format}) -> {args.out_format}, seed {args.seed}")


def report_gemm(args, config, a, b, c, counters, error, *, note="", extra_json=None):
    """Counters, the golden-model check and ``--json`` of a GEMM run; the exit status."""
    import numpy as np

    from .sim import golden

    expected = golden.gemm(a, b, args.out_format, saturate=not args.no_saturate,
                           scale_exp=args.scale_exp)
    exact = bool(np.array_equal(golden.to_bits(c), golden.to_bits(expected)))
    derived = print_counters(counters, config, (args.m, args.n, args.k))
    if error != "NONE":         # no result to check: the job was rejected or aborted
        print(f"the accelerator reported error {error}")
    else:
        print(f"check against golden.gemm: {'bit-exact' if exact else 'MISMATCH'}" + note)
    if args.json:
        report = {"bit_exact": exact, "shape": {"M": args.m, "N": args.n, "K": args.k},
                  "formats": {"a": args.a_format, "b": args.b_format, "out": args.out_format},
                  "config": config.to_dict(), **(extra_json or {}),
                  "counters": counters, **derived}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if exact and error == "NONE" else 1

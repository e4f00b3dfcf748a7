"""How much accuracy exact accumulation buys: Systole versus fp32 and fp8 tensor cores.

Runs random fp8 GEMMs (operands: standard normal samples cast to fp8) and compares three
ways of computing them against the exact rational result:

fp32 sequential
    Every product is exact in fp32 (an fp8 x fp8 product has at most 8 significant bits and
    lies in 2**-32 .. 2**32); the products are added into an fp32 running sum in order
    k = 0 .. K-1, each addition rounded to nearest even.
fp8 tensor-core model
    A model of commodity fp8 tensor cores, which keep about 14 bits of the running sum.
    K is split into groups of 32 consecutive products. For each group and each output, let
    E be the exponent (floor(log2|x|)) of the largest magnitude among the group's 32
    products and the fp32 running sum. Every product is truncated toward zero to a multiple
    of 2**(E - 13), i.e. 14 bits from the alignment point 2**E down. The truncated products
    are summed exactly and the group total is added to the fp32 running sum with one
    round-to-nearest-even (the running sum itself is not truncated).
Systole
    The exact sum rounded once to fp32 (systole.sim.golden.gemm): relative error at most
    2**-24 by construction.

Run as ``./run python -m systole.sim.accuracy [--k 4096] [--format e4m3] [--json FILE]``.
"""

import argparse
import json
import sys
import time
from fractions import Fraction

import numpy as np

from systole.formats import INPUT_FORMATS
from systole.sim import golden

__all__ = ["main", "measure", "fp32_sequential", "tensor_core_model"]

#: Products per alignment group in the tensor-core model.
GROUP = 32
#: Bits each product keeps below (and including) the group's alignment point.
KEPT_BITS = 14


def fp32_sequential(a, b):
    """fp32 running sum of exact products, in order k = 0 .. K-1."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    total = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for k in range(a.shape[1]):
        total += np.outer(a32[:, k], b32[k])      # product exact; the add rounds (RNE)
    return total


def _add_to_fp32(total, addend):
    """Round ``total + addend`` (float32 + exact float64) to float32 with one RNE.

    The float64 sum is made round-to-odd (two-sum error term, then step to the odd
    neighbour when inexact), after which numpy's float64 -> float32 cast rounds correctly:
    no double rounding.
    """
    wide = total.astype(np.float64)
    s = wide + addend
    back = s - wide
    error = (wide - (s - back)) + (addend - back)
    even = (s.view(np.int64) & 1) == 0
    s = np.where((error != 0) & even, np.nextafter(s, np.where(error > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def tensor_core_model(a, b, group=GROUP, kept_bits=KEPT_BITS):
    """The fp8 tensor-core accumulation model described in the module docstring."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    total = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for start in range(0, a.shape[1], group):
        products = a64[:, None, start:start + group] * b64.T[None, :, start:start + group]
        largest = np.maximum(np.abs(products).max(axis=2), np.abs(total).astype(np.float64))
        exponent = np.frexp(largest)[1] - 1                  # 2**E <= largest < 2**(E+1)
        quantum = np.ldexp(1.0, exponent - (kept_bits - 1))[:, :, None]
        truncated = np.trunc(products / quantum) * quantum   # exact: powers of two
        total = _add_to_fp32(total, truncated.sum(axis=2))   # exact: < 20 significant bits
    return total


def _errors(approx, exact_values, magnitudes):
    """Relative errors (where the exact result is not zero) and errors relative to
    sum_k |a_ik b_kj|, the scale a cancelling sum's rounding errors are made at."""
    relative, normwise = [], []
    for x, exact, scale in zip(approx.astype(np.float64).ravel().tolist(), exact_values,
                               magnitudes.ravel().tolist()):
        error = abs(Fraction(x) - exact)
        if exact != 0:
            relative.append(float(error / abs(exact)))
        if scale != 0:
            normwise.append(float(error / Fraction(scale)))
    return np.array(relative), np.array(normwise)


def measure(m=64, n=64, k=4096, fmt="e4m3", seed=0):
    """Run the comparison; returns a JSON-ready dict."""
    dtype = golden.dtype_for(fmt)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32).astype(dtype)
    b = rng.standard_normal((k, n)).astype(np.float32).astype(dtype)
    exact = golden.exact_gemm(a, b)
    unit = Fraction(2) ** exact.lsb_exp
    exact_values = [v * unit for v in exact.acc.ravel().tolist()]
    systole = golden.gemm(a, b, "fp32")
    magnitudes = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    methods = {}
    for name, label, compute in (
            ("fp32_sequential", "fp32 sequential accumulation", fp32_sequential),
            ("tensor_core_model", f"fp8 tensor-core model ({GROUP}-group, {KEPT_BITS} bits)",
             tensor_core_model),
            ("systole", "Systole: exact, one fp32 rounding", lambda a, b: systole)):
        start = time.perf_counter()
        result = compute(a, b)
        seconds = time.perf_counter() - start
        relative, normwise = _errors(result, exact_values, magnitudes)
        methods[name] = {
            "label": label,
            "max_rel_error": float(relative.max()),
            "mean_rel_error": float(relative.mean()),
            "max_normwise_error": float(normwise.max()),
            "correctly_rounded": float(np.mean(result.view(np.uint32)
                                               == systole.view(np.uint32))),
            "seconds": seconds,
        }
    return {"m": m, "n": n, "k": k, "format": fmt, "seed": seed,
            "operands": "standard normal samples cast to fp8 (float32 -> fp8, RNE)",
            "exact_zero_results": sum(v == 0 for v in exact_values),
            "methods": methods}


def format_table(report):
    """The report as a Markdown table."""
    columns = [("method", 42, None), ("max rel error", 13, "max_rel_error"),
               ("mean rel error", 14, "mean_rel_error"),
               ("max error / sum abs", 19, "max_normwise_error"),
               ("correctly rounded", 17, "correctly_rounded")]
    lines = [f"{report['format']} x {report['format']}, M={report['m']} N={report['n']} "
             f"K={report['k']}, seed {report['seed']}, {report['operands']}; "
             f"{report['exact_zero_results']} exact zero results left out of the relative "
             "errors", "",
             "| " + " | ".join(f"{title:<{w}}" if key is None else f"{title:>{w}}"
                               for title, w, key in columns) + " |",
             "|" + "|".join("-" * (w + 2) if key is None else "-" * (w + 1) + ":"
                            for _, w, key in columns) + "|"]
    for result in report["methods"].values():
        cells = []
        for title, w, key in columns:
            if key is None:
                cells.append(f"{result['label']:<{w}}")
            elif key == "correctly_rounded":
                cells.append(f"{100 * result[key]:>{w - 1}.2f}%")
            else:
                cells.append(f"{result[key]:>{w}.3e}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m systole.sim.accuracy",
        description="Relative error of fp32 accumulation, an fp8 tensor-core model and "
                    "Systole's exact accumulation on random fp8 GEMMs.")
    parser.add_argument("--k", type=int, default=4096, help="reduction length (default 4096)")
    parser.add_argument("--m", type=int, default=64, help="rows of C (default 64)")
    parser.add_argument("--n", type=int, default=64, help="columns of C (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", choices=sorted(INPUT_FORMATS), default="e4m3",
                        help="fp8 format of both operands (default e4m3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    for name in ("k", "m", "n"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    report = measure(m=args.m, n=args.n, k=args.k, fmt=args.format, seed=args.seed)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

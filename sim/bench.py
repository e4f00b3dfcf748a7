"""The benchmark suite: GPT-2 GEMMs, the roofline, the I/O lower bound and energy per MAC.

Figures of DESIGN.md section 7:

* roofline: attainable MAC/cycle = min(rows * cols, intensity * bus_bytes), with intensity
  the MACs per DRAM byte the job moves (reads and writes);
* I/O lower bound for C = A.B with S bytes of on-chip operand memory (Smith et al. 2019,
  leading term): max(M*K + K*N + M*N*b_out, 2*M*N*K / sqrt(S) + M*N*b_out), S being the
  A and B SRAMs of the configuration;
* energy from M. Horowitz, "Computing's energy problem (and what we can do about it)",
  ISSCC 2014, 45 nm: see :data:`ENERGY_PJ` and :func:`energy_per_mac`.
"""

import math
from dataclasses import dataclass

from ..formats import output_format

__all__ = ["Gemm", "gpt2_gemms", "ENERGY_PJ", "energy_per_mac", "lower_bound_bytes",
           "attainable_utilization", "evaluate", "GPT2_WIDTHS"]

#: Model width d of GPT-2 small / medium / large / XL.
GPT2_WIDTHS = {"small": 768, "medium": 1024, "large": 1280, "xl": 1600}

#: Horowitz, ISSCC 2014, 45 nm, in pJ.
ENERGY_PJ = {
    "int8_add": 0.03, "int8_mult": 0.2, "fp32_add": 0.9, "fp32_mult": 3.7,
    "sram64_8k": 10.0, "sram64_32k": 20.0, "sram64_1m": 100.0,
    "dram64_low": 1300.0, "dram64_high": 2600.0,
}


@dataclass(frozen=True)
class Gemm:
    name: str
    m: int
    n: int
    k: int
    prefill: bool
    out_format: str = "fp32"


def gpt2_gemms(models=tuple(GPT2_WIDTHS), tokens=(128, 1024, 1)):
    """The per-layer GEMMs of GPT-2 (M = tokens T): QKV T x d x 3d, attention-out
    T x d x d, MLP-up T x d x 4d, MLP-down T x 4d x d (M x K x N)."""
    out = []
    for model in models:
        d = GPT2_WIDTHS[model]
        for t in tokens:
            phase = f"prefill{t}" if t > 1 else "decode"
            for layer, k, n in (("qkv", d, 3 * d), ("attn-out", d, d), ("mlp-up", d, 4 * d),
                                ("mlp-down", 4 * d, d)):
                out.append(Gemm(f"gpt2-{model}/{phase}/{layer}", t, n, k, prefill=t > 1))
    return out


def _sram_pj_per_byte(size_bytes):
    """64-bit SRAM access energy interpolated in log(size) between Horowitz's 8 KB, 32 KB
    and 1 MB points (clamped below 8 KB), per byte."""
    points = [(8 << 10, ENERGY_PJ["sram64_8k"]), (32 << 10, ENERGY_PJ["sram64_32k"]),
              (1 << 20, ENERGY_PJ["sram64_1m"])]
    if size_bytes <= points[0][0]:
        pj = points[0][1]
    else:
        pj = points[-1][1]
        for (s0, e0), (s1, e1) in zip(points, points[1:]):
            if size_bytes <= s1:
                f = math.log(size_bytes / s0) / math.log(s1 / s0)
                pj = e0 + f * (e1 - e0)
                break
        else:
            pj = points[-1][1] * math.sqrt(size_bytes / points[-1][0])
    return pj / 8


def compute_pj_per_mac(config):
    """One exact fp8 MAC: the significand product (at most 4 x 4 bits, counted as an int8
    multiply) plus the add into the acc_width-bit accumulator (int8 add scaled by width)."""
    return ENERGY_PJ["int8_mult"] + ENERGY_PJ["int8_add"] * config.acc_width / 8


def energy_per_mac(config, counters, out_format="fp32"):
    """pJ per useful MAC split into compute, SRAM and DRAM (DRAM at the middle of
    Horowitz's 1.3-2.6 nJ per 64-bit access)."""
    macs = counters["macs"]
    c_bytes = 2 * config.rows * output_format(out_format).width // 8 * config.cols
    sram = (
        (counters["sram_a_read_bytes"] + counters["sram_a_write_bytes"])
        * _sram_pj_per_byte(config.a_sram_bytes)
        + (counters["sram_b_read_bytes"] + counters["sram_b_write_bytes"])
        * _sram_pj_per_byte(config.b_sram_bytes)
        + (counters["sram_c_read_bytes"] + counters["sram_c_write_bytes"])
        * _sram_pj_per_byte(c_bytes))
    dram_pj_per_byte = (ENERGY_PJ["dram64_low"] + ENERGY_PJ["dram64_high"]) / 2 / 8
    dram = (counters["dram_read_bytes"] + counters["dram_write_bytes"]) * dram_pj_per_byte
    compute = (counters["active_cycles"] * config.rows * config.cols) * compute_pj_per_mac(config)
    return {"compute": compute / macs, "sram": sram / macs, "dram": dram / macs}


def operand_sram_bytes(config):
    return config.a_sram_bytes + config.b_sram_bytes


def lower_bound_bytes(config, m, n, k, out_format="fp32"):
    """DESIGN.md section 7: the I/O lower bound for the configured operand SRAM."""
    b_out = output_format(out_format).width // 8
    s = operand_sram_bytes(config)
    return max(m * k + k * n + m * n * b_out, 2 * m * n * k / math.sqrt(s) + m * n * b_out)


def attainable_utilization(config, counters):
    """Roofline: min(rows*cols, intensity * bus_bytes) / (rows*cols)."""
    peak = config.rows * config.cols
    moved = counters["dram_read_bytes"] + counters["dram_write_bytes"]
    intensity = counters["macs"] / moved
    return min(peak, intensity * config.bus_bytes) / peak


def evaluate(config, gemm, counters, source):
    """One result row of ``systole bench`` (the JSON schema of issue 4)."""
    peak = config.rows * config.cols
    util = counters["macs"] / (peak * counters["cycles"])
    attainable = attainable_utilization(config, counters)
    dram = counters["dram_read_bytes"] + counters["dram_write_bytes"]
    lb = lower_bound_bytes(config, gemm.m, gemm.n, gemm.k, gemm.out_format)
    return {
        "name": gemm.name, "M": gemm.m, "N": gemm.n, "K": gemm.k, "source": source,
        "prefill": gemm.prefill,
        "cycles": counters["cycles"], "utilization": util,
        "attainable_utilization": attainable, "utilization_ratio": util / attainable,
        "compute_bound": attainable >= 1.0,
        "dram_bytes": dram, "lower_bound_bytes": lb, "traffic_ratio": dram / lb,
        "energy_pj_per_mac": energy_per_mac(config, counters, gemm.out_format),
        "counters": counters,
    }

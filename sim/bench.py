"""The benchmark suite: GPT-2 GEMMs, the roofline, the I/O lower bound and energy per MAC.

Figures of DESIGN.md section 7:

* roofline: attainable MAC/cycle = min(rows * cols, intensity * bus_bytes), with intensity
  the MACs per DRAM byte the job moves (reads and writes);
* I/O lower bound for C = A.B with S bytes of on-chip memory (Smith et al. 2019, leading
  term): max(M*K + K*N + M*N*b_out, 2*M*N*K / sqrt(S) + M*N*b_out), S being every on-chip
  buffer a job may use (``config.onchip_sram_bytes``: A, B, partial sums, C;
  :func:`systole.plan.io_lower_bound`);
* energy from M. Horowitz, "Computing's energy problem (and what we can do about it)",
  ISSCC 2014, 45 nm: see :data:`ENERGY_PJ` and :func:`energy_per_mac`.
"""

import math
from dataclasses import dataclass

from .. import plan as tiling
from ..formats import output_format

__all__ = ["Gemm", "gpt2_gemms", "ENERGY_PJ", "energy_per_mac", "lower_bound_bytes",
           "attainable_utilization", "average_read_burst", "evaluate", "GPT2_WIDTHS"]

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
    Horowitz's 1.3-2.6 nJ per 64-bit access; each SRAM at the energy of its size)."""
    macs = counters["macs"]
    c_bytes = 2 * config.rows * output_format(out_format).width // 8 * config.cols
    psum = (counters["sram_psum_read_bytes"] + counters["sram_psum_write_bytes"])
    sram = (psum * _sram_pj_per_byte(config.psum_sram_bytes) if psum else 0.0) + (
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


def lower_bound_bytes(config, m, n, k, out_format="fp32"):
    """DESIGN.md section 7: the I/O lower bound with all of the configuration's on-chip
    SRAM (:func:`systole.plan.io_lower_bound`)."""
    return tiling.io_lower_bound(config, m, n, k,
                                 out_bytes=output_format(out_format).width // 8)


def average_read_burst(config, counters):
    """Bus beats per AXI read burst: dram_read_bytes / bus bytes / dram_read_bursts."""
    return counters["dram_read_bytes"] / config.bus_bytes / counters["dram_read_bursts"]


def attainable_utilization(config, counters):
    """Roofline: min(rows*cols, intensity * bus_bytes) / (rows*cols)."""
    peak = config.rows * config.cols
    moved = counters["dram_read_bytes"] + counters["dram_write_bytes"]
    intensity = counters["macs"] / moved
    return min(peak, intensity * config.bus_bytes) / peak


def evaluate(config, gemm, counters, source, plan):
    """One result row of ``systole bench`` (the JSON schema of issue 4): ``counters`` are
    every counter of the job, run with tiling ``plan``."""
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
        "dram_bytes": dram, "onchip_sram_bytes": config.onchip_sram_bytes,
        "lower_bound_bytes": lb, "traffic_ratio": dram / lb,
        "avg_read_burst_beats": average_read_burst(config, counters),
        "plan": plan.to_dict(),
        "energy_pj_per_mac": energy_per_mac(config, counters, gemm.out_format),
        "counters": dict(counters),
    }

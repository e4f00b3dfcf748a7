"""cocotb testbench for the bare systolic array (exported Verilog).

Kept apart: the driver (operand stream with random pauses), the monitor (result stream
with random back-pressure), the model (``golden.gemm``) and the scoreboard (bit-exact
comparison, tile by tile). The run is described by the JSON in ``$SYSTOLE_TB``::

    {"config": {...SystoleConfig fields...}, "seed": 1, "jobs": 4, "tiles": 3,
     "max_k": 1024, "pause": 0.2, "specials": 0.02, "report": "/path/or/null"}

Every job draws A/B formats, an output format, an overflow mode and a scale (or takes
``"job"``), every tile a K in [1, max_k] (or takes ``"k"``). The report, written before
the scoreboard runs, holds every tile's operands, result bits and expected bits. Failures
name the seed, job and tile.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from ..config import SystoleConfig
from ..hdl.array import JobSettings, OperandsLayout, ResultsLayout, SystolicArray
from ..hdl.fp8 import Fp8Format, OutFormat
from ..hdl.psum import PsumCommand
from ..plan import PsumOp
from . import golden
from .stimulus import random_fp8

__all__ = ["ArrayTB", "run_array_regression"]


class ArrayTB:
    """Clock, reset, driver and monitor around one ``SystolicArray`` instance."""

    def __init__(self, dut, config, rng):
        self.dut = dut
        self.config = config
        self.rng = rng
        self.operands_layout = OperandsLayout(config)
        self.results_layout = ResultsLayout(config)
        self.pause = 0.0
        self.cycles = 0

    async def start(self):
        dut = self.dut
        Clock(dut.clk, 10, unit="ns").start()
        dut.operands__valid.value = 0
        dut.results__ready.value = 0
        # Every tile is whole (one pass over its K): each leaves through the normalisers.
        # Driven, not left open, since Icarus would read an open input as X.
        dut.psum__valid.value = 1
        dut.psum__payload.value = PsumCommand(self.config).const(
            {"op": PsumOp.OUT, "tile": 0}).as_bits()
        dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def set_job(self, job):
        self.dut.job.value = JobSettings.const(job).as_bits()

    async def drive(self, tiles):
        """Driver: send every tile as K operand beats, pausing at random."""
        dut = self.dut
        for a, b in tiles:
            k_total = a.shape[1]
            a_bits, b_bits = a.view(np.uint8), b.view(np.uint8)
            for k in range(k_total):
                beat = self.operands_layout.const({
                    "a": [int(x) for x in a_bits[:, k]],
                    "b": [int(x) for x in b_bits[k, :]],
                    "last": k == k_total - 1,
                }).as_bits()
                while True:
                    if self.rng.random() < self.pause:
                        dut.operands__valid.value = 0
                        await RisingEdge(dut.clk)
                        continue
                    dut.operands__valid.value = 1
                    dut.operands__payload.value = beat
                    await RisingEdge(dut.clk)
                    if int(dut.operands__ready.value):
                        break
        dut.operands__valid.value = 0

    async def collect(self, count):
        """Monitor: gather ``count`` tiles of raw result bits, with random back-pressure."""
        dut = self.dut
        rows, cols = self.config.rows, self.config.cols
        tiles = []
        current = np.zeros((rows, cols), dtype=np.uint32)
        while len(tiles) < count:
            ready = int(self.rng.random() >= self.pause)
            dut.results__ready.value = ready
            await RisingEdge(dut.clk)
            self.cycles += 1
            if ready and int(dut.results__valid.value):
                beat = self.results_layout.from_bits(int(dut.results__payload.value))
                current[beat.row] = [int(x) for x in beat.c]
                if beat.last:
                    tiles.append(current)
                    current = np.zeros((rows, cols), dtype=np.uint32)
        dut.results__ready.value = 0
        return tiles

    async def wait_idle(self):
        while not int(self.dut.idle.value):
            await RisingEdge(self.dut.clk)


def _random_job(rng, config):
    return {
        "a_format": rng.choice(config.formats),
        "b_format": rng.choice(config.formats),
        "out_format": rng.choice(["fp32", "bf16", "e4m3", "e5m2"]),
        "saturate": bool(rng.integers(0, 2)),
        # Mostly unscaled; sometimes far enough to overflow or underflow every format.
        "scale_exp": int(rng.choice([0, 0, rng.integers(-40, 41), rng.integers(-128, 128)])),
    }


def _random_k(rng, max_k, config):
    choices = [1, 2, config.rows + config.cols - 1, config.rows + config.cols,
               int(rng.integers(1, max_k + 1)), max_k]
    return int(min(max_k, rng.choice(choices)))


async def run_array_regression(dut, params):
    """Drive random jobs through the array and check every tile against golden.gemm."""
    config = SystoleConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in params["config"].items()})
    seed = int(params["seed"])
    rng = np.random.default_rng(seed)
    tb = ArrayTB(dut, config, random.Random(seed))
    tb.pause = float(params.get("pause", 0.0))
    await tb.start()
    dut._log.info("array regression: seed=%d config=%s", seed, config)
    report = {"seed": seed, "config": config.to_dict(), "tiles": []}
    checks = []
    for job_index in range(int(params["jobs"])):
        job = params.get("job") or _random_job(rng, config)
        tiles = []
        for _ in range(int(params["tiles"])):
            k = int(params.get("k") or _random_k(rng, int(params["max_k"]), config))
            tiles.append((
                random_fp8(rng, (config.rows, k), job["a_format"], specials=params["specials"],
                           style=params.get("style", "mixed")),
                random_fp8(rng, (k, config.cols), job["b_format"], specials=params["specials"],
                           style=params.get("style", "mixed")),
            ))
        await tb.wait_idle()
        tb.set_job({"a_format": Fp8Format.from_name(job["a_format"]),
                    "b_format": Fp8Format.from_name(job["b_format"]),
                    "out_format": OutFormat.from_name(job["out_format"]),
                    "saturate": job["saturate"], "scale_exp": job["scale_exp"]})
        driver = cocotb.start_soon(tb.drive(tiles))
        got = await tb.collect(len(tiles))
        await driver
        for tile_index, ((a, b), bits) in enumerate(zip(tiles, got)):
            expected = golden.to_bits(golden.gemm(a, b, job["out_format"],
                                                  saturate=job["saturate"],
                                                  scale_exp=job["scale_exp"]))
            where = (f"seed={seed} job={job_index} {job} tile={tile_index} "
                     f"K={a.shape[1]}; reproduce with SYSTOLE_SEED={seed}")
            checks.append((bits, expected, where))
            report["tiles"].append({
                "job": job, "K": int(a.shape[1]),
                "a": a.view(np.uint8).tolist(), "b": b.view(np.uint8).tolist(),
                "c_bits": bits.tolist(), "expected_bits": expected.tolist(),
                "bit_exact": bool(np.array_equal(bits, expected)),
            })
    report["cycles"] = tb.cycles
    if params.get("report"):
        with open(params["report"], "w") as f:
            json.dump(report, f)
    # Scoreboard: raw bits, no tolerance (high bits of narrow formats must be zero too).
    for bits, expected, where in checks:
        np.testing.assert_array_equal(bits, expected.astype(np.uint32), err_msg=where)


@cocotb.test()
async def array_regression(dut):
    await run_array_regression(dut, json.loads(os.environ["SYSTOLE_TB"]))


def make_array(config):
    """The component this testbench expects as its toplevel."""
    return SystolicArray(config)

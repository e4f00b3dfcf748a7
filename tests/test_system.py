"""The whole accelerator under cocotb: random jobs, bad descriptors, AXI errors.

Every job is checked by the testbench (``systole.sim.tb_accel``): C bit-exact against
``golden.gemm``, every other byte of memory unchanged (guards around C, zero writes for
rejected jobs), and the counter laws of DESIGN.md section 4. Small configurations with
shallow SRAMs make every tiling path (several super-rows and column tiles, K in several
chunks, edge tiles) appear in jobs that simulate in milliseconds.
"""

import os

import json

import ml_dtypes
import numpy as np
import pytest

from systole.sim import verilog
from systole.cli import main
from systole.hdl.counters import COUNTERS
from systole.sim import golden, run_gemm
from systole.sim.run import run_jobs
from systole.sim.tb_accel import interrupted_job_spec, random_job_spec

from helpers import SYSTEM_CONFIGS as CONFIGS, require_simulator


def _seed(default):
    return int(os.environ.get("SYSTOLE_SEED", default))


def _run(config_name, jobs, *, seed, simulator="verilator", latency=32, pause=0.0,
         memory="cocotb"):
    require_simulator(simulator)
    print(f"seed={seed} config={config_name} latency={latency} pause={pause} "
          f"memory={memory} (rerun with SYSTOLE_SEED={seed})")
    return run_jobs(CONFIGS[config_name], jobs, simulator=simulator, seed=seed,
                    latency=latency, pause=pause, memory=memory)


@pytest.mark.parametrize("config_name,count,latency,pause,seed", [
    ("4x4-bus64", 60, 32, 0.2, 11),
    ("4x4-bus64", 40, 1, 0.0, 12),
    ("3x2-bus32-e4m3", 30, 17, 0.3, 13),
    ("2x8-bus128", 30, 40, 0.1, 14),
])
def test_random_jobs(config_name, count, latency, pause, seed):
    seed = _seed(seed)
    rng = np.random.default_rng(seed)
    jobs = [random_job_spec(rng, CONFIGS[config_name]) for _ in range(count)]
    results = _run(config_name, jobs, seed=seed, latency=latency, pause=pause)
    assert len(results) == count and all(r["bit_exact"] for r in results)


def _plan(mc, nc, kc_log2, order="ROWS_OUTER"):
    return {"mc_tiles": mc, "nc_tiles": nc, "kc_log2": kc_log2, "order": order}


#: Jobs that force partial sums at small sizes on 4x4-bus64 (chunks of 8 k-steps): K in
#: many chunks, blocks with edge tiles in both directions, M or N of 1, both loop orders.
PSUM_SHAPES = [
    (9, 11, 70, _plan(2, 2, 3)),
    (9, 11, 70, _plan(2, 2, 3, "COLS_OUTER")),
    (1, 13, 40, _plan(1, 3, 3)),
    (13, 1, 33, _plan(3, 1, 3)),
    (6, 7, 300, _plan(2, 2, 3)),
    (17, 9, 129, _plan(3, 2, 4, "COLS_OUTER")),
]
#: Every output format and overflow mode.
OUTPUTS = [("fp32", True), ("bf16", True), ("e4m3", True), ("e4m3", False), ("e5m2", True),
           ("e5m2", False)]


def test_partial_sum_jobs():
    seed = _seed(16)
    rng = np.random.default_rng(seed)
    jobs = []
    for index, (m, n, k, plan) in enumerate(PSUM_SHAPES):
        for out, saturate in (OUTPUTS if index == 0 else OUTPUTS[index % len(OUTPUTS):][:1]):
            jobs.append({"m": m, "n": n, "k": k, "plan": plan, "out_format": out,
                         "saturate": saturate, "a_format": str(rng.choice(["e4m3", "e5m2"])),
                         "b_format": str(rng.choice(["e4m3", "e5m2"])),
                         "scale_exp": int(rng.choice([0, -9, 7])), "specials": 0.02,
                         "a_pad": int(rng.integers(0, 9)), "b_offset": int(rng.integers(0, 8))})
    results = _run("4x4-bus64", jobs, seed=seed, latency=8, pause=0.15)
    assert len(results) == len(jobs) and all(r["bit_exact"] for r in results)
    assert all(r["counters"]["sram_psum_write_bytes"] > 0 for r in results)


def test_gateware_memory_model():
    """The fast path (hdl/simmem.py memory inside the simulation) gives the same answers."""
    seed = _seed(15)
    rng = np.random.default_rng(seed)
    jobs = [random_job_spec(rng, CONFIGS["4x4-bus64"]) for _ in range(25)]
    results = _run("4x4-bus64", jobs, seed=seed, latency=24, pause=0.25, memory="hdl")
    assert len(results) == 25 and all(r["bit_exact"] for r in results)


def valid_job(**overrides):
    """A small valid job spec (shared with tests/test_ip.py), with ``overrides``."""
    spec = {"m": 5, "n": 6, "k": 7, "a_format": "e4m3", "b_format": "e4m3",
            "out_format": "fp32", "saturate": True, "scale_exp": 0}
    spec.update(overrides)
    return spec


# Each bad descriptor, then a valid job: the accelerator must be ready again.
BAD_DESCRIPTORS = [
    ("BAD_DIMENSION", dict(m=0)),
    ("BAD_DIMENSION", dict(n=0)),
    ("BAD_DIMENSION", dict(k=0, a_stride=1, b_stride=6)),
    ("K_TOO_LARGE", dict(k=4097, m=1, n=1)),
    ("BAD_STRIDE", dict(a_stride=6)),
    ("BAD_STRIDE", dict(b_stride=5)),
    ("BAD_STRIDE", dict(c_stride=20)),
    ("MISALIGNED_OUTPUT", dict(c_addr=0x3002)),
    ("MISALIGNED_OUTPUT", dict(out_format="bf16", c_stride=13)),
    ("ADDRESS_OVERFLOW", dict(a_addr=(1 << 32) - 16)),
    ("ADDRESS_OVERFLOW", dict(c_addr=(1 << 32) - 64)),
    ("ADDRESS_OVERFLOW", dict(b_addr=1 << 40)),
    # 28 GiB of A: the testbench makes no operands for a rejected descriptor.
    ("ADDRESS_OVERFLOW", dict(m=(1 << 32) - 1)),
    # Plans the buffers cannot run (4x4-bus64: 256-byte A banks, 128-word B buffers,
    # 512 partial-sum tiles): an A block too deep, a B block too wide, a chunk shorter
    # than a bus word.
    ("BAD_PLAN", dict(plan={"mc_tiles": 5, "nc_tiles": 1, "kc_log2": 6, "order": "ROWS_OUTER"})),
    ("BAD_PLAN", dict(plan={"mc_tiles": 1, "nc_tiles": 3, "kc_log2": 6, "order": "COLS_OUTER"})),
    ("BAD_PLAN", dict(plan={"mc_tiles": 1, "nc_tiles": 1, "kc_log2": 2, "order": "ROWS_OUTER"})),
    # C on B (it would overwrite B before B is read), and C from A's last byte (A spans
    # 0x1000 to 0x1022).
    ("OVERLAP", dict(a_addr=0x1000, b_addr=0x1100, c_addr=0x1100)),
    ("OVERLAP", dict(a_addr=0x1000, b_addr=0x1100, c_addr=0x1022, out_format="e4m3")),
]


def test_bad_descriptors_make_no_writes():
    seed = _seed(21)
    jobs = []
    for code, overrides in BAD_DESCRIPTORS:
        jobs.append(valid_job(expect=code, **overrides))
        jobs.append(valid_job())
    results = _run("4x4-bus64", jobs, seed=seed)
    assert [r["error"] for r in results[::2]] == [code for code, _ in BAD_DESCRIPTORS]


def test_unsupported_format_and_busy():
    seed = _seed(22)
    jobs = [valid_job(b_format="e5m2", expect="BAD_FORMAT"), valid_job(),
            valid_job(m=9, k=40, start_twice=True, expect="BUSY"), valid_job()]
    _run("3x2-bus32-e4m3", jobs, seed=seed)


def test_axi_errors_abort_and_recover():
    seed = _seed(23)
    jobs = [valid_job(m=9, n=11, k=70, axi_error="read", expect="AXI_READ_ERROR"), valid_job(),
            valid_job(m=9, n=11, k=70, axi_error="write", expect="AXI_WRITE_ERROR"), valid_job()]
    _run("4x4-bus64", jobs, seed=seed, pause=0.2)


@pytest.mark.parametrize("kind,memory,seed", [
    ("abort_after", "cocotb", 24), ("reset_after", "cocotb", 25),
    ("abort_after", "hdl", 26), ("reset_after", "hdl", 27),
])
def test_abort_and_reset_mid_job(kind, memory, seed):
    """CTRL.ABORT or a reset at a random cycle of a random job: nothing outside C is
    written, and the next job is exact on the whole memory image (the testbench checks
    both on every job). An ABORT ends the job with ABORTED after its bursts drain."""
    seed = _seed(seed)
    rng = np.random.default_rng(seed)
    config = CONFIGS["4x4-bus64"]
    latency = 24
    jobs = [spec for _ in range(13)
            for spec in (interrupted_job_spec(rng, config, kind, latency),
                         random_job_spec(rng, config))]
    results = _run("4x4-bus64", jobs, seed=seed, latency=latency, pause=0.2, memory=memory)
    cut = [r["error"] for r in results[::2]]
    # Cut at most 90% of the model's cycles in, nearly every job is still running.
    assert sum(error in ("ABORTED", "RESET") for error in cut) >= 10, cut
    assert all(r["bit_exact"] for r in results[1::2])


@pytest.mark.icarus
def test_icarus_evaluates_combinational_logic_at_time_zero(tmp_path):
    """A combinational output whose inputs never change after time 0 is defined at time 0.

    Stated law of Verilog simulation. Yosys' trigger for it is a declaration initialiser,
    which cocotb's Icarus mode (-g2012) does not treat as an event; without the
    export's fix-up the output below stays X (the cause of a hang: the CSR bank held the
    bus on an X hold). Built and run the way cocotb builds Icarus models.
    """
    import subprocess
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    require_simulator("icarus")

    class Decode(wiring.Component):
        sel: In(2)
        hold: Out(1)
        index: Out(4)

        def elaborate(self, platform):
            m = Module()
            flag = Signal(init=1)   # a register no clock ever changes
            with m.If(self.sel.any() | flag):
                m.d.comb += [self.hold.eq(1), self.index.eq(self.sel + 9)]
            m.d.sync += flag.eq(flag)
            return m

    dut = verilog.generate_verilog(Decode(), "decode")
    bench = ("module bench;\n  reg clk = 0;\n  reg rst = 0;\n  reg [1:0] sel = 2'd2;\n"
             "  wire hold;\n  wire [3:0] index;\n"
             "  decode dut(.clk(clk), .rst(rst), .sel(sel), .hold(hold), .index(index));\n"
             "  initial #1 $display(\"%b %b\", hold, index);\nendmodule\n")
    (tmp_path / "bench.v").write_text(bench)
    for fixed in (False, True):
        (tmp_path / "dut.v").write_text(verilog.icarus_source(dut) if fixed else dut)
        subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), "-s", "bench",
                        str(tmp_path / "bench.v"), str(tmp_path / "dut.v")], check=True)
        out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True,
                             capture_output=True, text=True).stdout.split("\n")[0]
        if fixed:
            assert out == "1 1011"
        else:   # the control: without the fix-up the law fails, so the test can fail
            assert out.startswith("x "), out


@pytest.mark.icarus
def test_icarus_subset():
    seed = _seed(31)
    rng = np.random.default_rng(seed)
    config = CONFIGS["3x2-bus32-e4m3"]
    jobs = [random_job_spec(rng, config) for _ in range(4)]
    for job in jobs:
        job.update(m=min(job["m"], 7), n=min(job["n"], 5), k=min(job["k"], 20))
    _run("3x2-bus32-e4m3", jobs, seed=seed, simulator="icarus", latency=8, pause=0.2)


def test_run_gemm_api():
    require_simulator("verilator")
    seed = _seed(41)
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((7, 33)).astype(ml_dtypes.float8_e4m3fn)
    b = rng.standard_normal((33, 9)).astype(ml_dtypes.float8_e5m2)
    run = run_gemm(a, b, "bf16", config=CONFIGS["2x8-bus128"], seed=seed, latency=5)
    assert run.c.dtype == ml_dtypes.bfloat16 and run.c.shape == (7, 9)
    np.testing.assert_array_equal(golden.to_bits(run.c), golden.to_bits(golden.gemm(a, b, "bf16")))
    assert list(run.counters) == list(COUNTERS)
    assert run.counters["macs"] == 7 * 9 * 33 and run.error == "NONE"


def test_run_gemm_rejects_bad_arguments():
    a = np.zeros((2, 3), dtype=ml_dtypes.float8_e5m2)
    b = np.zeros((4, 2), dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="Inner dimensions differ"):
        run_gemm(a, b)
    with pytest.raises(ValueError, match="does not enable"):
        run_gemm(a, b[:3], config=CONFIGS["3x2-bus32-e4m3"])
    with pytest.raises(ValueError, match="exceeds max_k"):
        run_gemm(np.zeros((1, 1025), dtype=ml_dtypes.float8_e4m3fn),
                 np.zeros((1025, 1), dtype=ml_dtypes.float8_e4m3fn),
                 config=CONFIGS["3x2-bus32-e4m3"])


def test_run_gemm_rejects_a_pause_that_stops_every_beat():
    a = np.zeros((2, 3), dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"pause must be a probability from 0 to less than "
                                         r"1 \(1 would stop every beat\), not 1.0"):
        run_gemm(a, a.T.copy(), pause=1.0)


def test_a_hang_fails_with_its_cause_and_keeps_the_log(capfd):
    """The watchdog (here shortened below the job's own length, as a hang looks to the
    testbench) stops the run; the error carries the testbench's own message and the path
    of the kept log, and nothing of the simulator's log reaches stdout."""
    require_simulator("verilator")
    spec = dict(valid_job(), watchdog_cycles=30)
    with pytest.raises(AssertionError) as failure:
        run_jobs(CONFIGS["4x4-bus64"], [spec], seed=_seed(24))
    message = str(failure.value)
    assert "did not finish within 30 cycles (the watchdog; the performance model predicts" \
        in message
    log = message.rsplit("(log: ", 1)[1].rstrip(")")
    assert "systole-failed-" in log and "did not finish within 30 cycles" in open(log).read()
    assert "TESTS=1" not in capfd.readouterr().out


def test_cli_gemm_report(tmp_path, capsys):
    require_simulator("verilator")
    report = tmp_path / "gemm.json"
    code = main(["gemm", "-M", "5", "-N", "11", "-K", "21", "--rows", "2", "--cols", "8",
                 "--bus-width", "128", "--sram-depth", "32", "--row-tiles", "1",
                 "--max-k", "1024", "--out-format", "e5m2", "--mem-latency", "9",
                 "--json", str(report), "--wave", str(tmp_path / "gemm.vcd")])
    out = capsys.readouterr().out
    assert code == 0 and "bit-exact" in out and "utilization" in out
    data = json.loads(report.read_text())
    assert data["bit_exact"] is True
    assert data["shape"] == {"M": 5, "N": 11, "K": 21}
    assert data["config"]["rows"] == 2 and list(data["counters"]) == list(COUNTERS)
    assert data["counters"]["dram_write_bytes"] == 5 * 11
    assert b"$enddefinitions" in (tmp_path / "gemm.vcd").read_bytes()[:1 << 20]

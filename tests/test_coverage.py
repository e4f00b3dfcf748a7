"""``systole coverage`` (sim/coverage.py): the reader of Verilator's coverage.dat, and the
job mix on a coverage model of the system tests' 4x4 configuration."""

from systole.sim.coverage import accelerator_totals, read_coverage

from helpers import SYSTEM_CONFIGS, require_simulator


def _point(module, kind, line, comment, count, instance, source="top.v"):
    keys = {"f": str(source), "l": str(line), "n": "3", "t": kind, "page": f"v_{kind}/{module}",
            "o": comment, "h": instance}
    return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in keys.items()) + f"' {count}\n"


def test_reads_points_per_module_and_sums_instances_and_copies(tmp_path):
    # Module "top.pe_0_0" with two instances: its line at 10 is hit by one of them only,
    # its line at 11 by neither; a branch arm counts as a line point. "top.pe_0_1" is a
    # copy of the same module (Amaranth writes one per instance): its points add to "pe".
    # Line 13 of the Verilog is a Yosys time-zero trigger and lines 20-22 an Assert's
    # failure arm: their points are not the design's. Line 11 assigns an internal wire
    # that drives ``acc``, declared from hdl/pe.py line 42: the uncovered point names it.
    verilog = tmp_path / "top.v"
    lines = ["// line"] * 50
    lines[4] = '  (* src = "hdl/pe.py:42" *)'
    lines[5] = "  reg [3:0] acc = 4'h0;"
    lines[10] = "          \\$4  = 4'h1;"
    lines[12] = "    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end"
    lines[19:22] = ["      if (!\\$2 )", '        $write("seven");', "      assert (\\$2 );"]
    lines[29] = "    acc <= \\$4 ;"
    verilog.write_text("\n".join(lines))
    text = "# SystemC::Coverage-3\n" + "".join([
        _point("top.pe_0_0", "line", 13, "if", 0, "top.u0", verilog),
        *[_point("top.pe_0_0", "line", line, "if", 0, "top.u0", verilog)
          for line in (20, 21, 22)],
        _point("top.pe_0_0", "line", 10, "block", 0, "top.u0", verilog),
        _point("top.pe_0_0", "line", 10, "block", 4, "top.u1", verilog),
        _point("top.pe_0_0", "line", 11, "block", 0, "top.u0", verilog),
        _point("top.pe_0_0", "line", 11, "block", 0, "top.u1", verilog),
        _point("top.pe_0_0", "branch", 12, "if", 2, "top.u0"),
        _point("top.pe_0_0", "toggle", 3, "x[0]:0->1", 1, "top.u0"),
        _point("top.pe_0_0", "toggle", 3, "x[0]:1->0", 0, "top.u0"),
        _point("top.pe_0_1", "line", 40, "block", 1, "top.u2"),
        _point("top", "line", 1, "block", 1, "top"),
        _point("top", "expr", 2, "a&b", 0, "top"),        # not a kind the report counts
    ])
    path = tmp_path / "coverage.dat"
    path.write_text(text)
    uncovered = []
    modules = read_coverage(path, uncovered)
    assert sorted(modules) == ["top", "top.pe"]
    pe = modules["top.pe"]
    assert (pe.hit["line"], pe.total["line"]) == (3, 4)
    assert (pe.hit["toggle"], pe.total["toggle"]) == (1, 2)
    assert (modules["top"].hit["line"], modules["top"].total["line"]) == (1, 1)
    assert uncovered == [("top.pe_0_0", "line", 11, "block", "acc (hdl/pe.py:42)")]


def test_accelerator_totals_leave_out_the_testbench_modules():
    from systole.sim.coverage import ModuleCoverage
    modules = {name: ModuleCoverage(name, {"line": hit, "toggle": 0},
                                    {"line": total, "toggle": 0})
               for name, hit, total in [("systole", 1, 1), ("systole.monitor", 0, 5),
                                        ("systole.accelerator", 2, 3),
                                        ("systole.accelerator.engine", 4, 4)]}
    hit, total = accelerator_totals(modules)
    assert (hit["line"], total["line"]) == (6, 7)


def test_job_mix_covers_nine_tenths_of_the_accelerator_lines(capsys):
    """The target of docs/verification.md: at least 90% of the accelerator's line points
    hit by the job mix of ``systole coverage`` (every job of which is itself checked
    bit-exact on the whole memory image)."""
    from systole.sim.coverage import KINDS, run_coverage
    require_simulator("verilator")
    modules = run_coverage(SYSTEM_CONFIGS["4x4-bus64"], seed=1)
    hit, total = accelerator_totals(modules)
    with capsys.disabled():
        print("coverage: " + ", ".join(f"{kind} {hit[kind]}/{total[kind]}" for kind in KINDS))
    assert total["line"] > 0 and hit["line"] >= 0.9 * total["line"], (hit, total)

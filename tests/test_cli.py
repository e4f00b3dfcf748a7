"""The `systole` command line: `systole verilog` output lints clean under Verilator, and bad
inputs stop every subcommand with one line."""

import subprocess

import pytest

from systole.cli import main
from systole.sim import verilog

from helpers import require_simulator


@pytest.mark.parametrize("argv", [
    ["--rows", "2", "--cols", "4"],
    ["--rows", "3", "--cols", "2", "--formats", "e4m3", "--max-k", "1024"],
])
def test_verilog_lints(argv, tmp_path):
    require_simulator("verilator")
    out = tmp_path / "array.v"
    assert main(["verilog", *argv, "-o", str(out)]) == 0
    text = out.read_text()
    assert "module systole_array(" in text
    verilog.ensure_simulator("verilator")
    lint = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "--top-module",
                           "systole_array", str(out)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr[-4000:]
    assert "%Error" not in lint.stderr


def test_bad_configuration_is_a_clear_error(capsys):
    with pytest.raises(SystemExit, match=r"bad configuration: Array rows must be between 1 and 64"):
        main(["verilog", "--rows", "0"])


# Bad inputs stop a command before it builds or simulates anything, with one line that
# names the option and the rule: argparse's (exit status 2, after the usage) for a value
# out of its range, and ``systole COMMAND: ...`` (exit status 1) for rules that need the
# configuration or the file system.
ARGUMENT_ERRORS = [
    (["gemm", "-M", "0"], "argument -M: must be an integer >= 1, not '0'"),
    (["gemm", "-N", "0"], "argument -N: must be an integer >= 1, not '0'"),
    (["gemm", "-K", "0"], "argument -K: must be an integer >= 1, not '0'"),
    (["gemm", "-M", "-1"], "argument -M: must be an integer >= 1, not '-1'"),
    (["gemm", "-K", "-5"], "argument -K: must be an integer >= 1, not '-5'"),
    (["gemm", "-K", "ten"], "argument -K: must be an integer >= 1, not 'ten'"),
    (["gemm", "--scale-exp", "200"],
     "argument --scale-exp: must be an integer from -128 to 127, not '200'"),
    (["gemm", "--scale-exp", "-129"],
     "argument --scale-exp: must be an integer from -128 to 127, not '-129'"),
    (["gemm", "--seed", "-1"], "argument --seed: must be an integer >= 0, not '-1'"),
    (["gemm", "--mem-latency", "-1"], "argument --mem-latency: must be an integer >= 1, not '-1'"),
    (["bench", "--mem-latency", "-100000"],
     "argument --mem-latency: must be an integer >= 1, not '-100000'"),
    (["bench", "--models", "tiny"],
     "argument --models: must be GPT-2 sizes from small,medium,large,xl, not 'tiny'"),
    (["verilog", "--name", "bad name"],
     "argument --name: must be a Verilog identifier (a letter or _, then letters, digits, "
     "_ or $), not 'bad name'"),
    (["board", "gemm", "--port", "/dev/null", "-M", "0"],
     "argument -M: must be an integer >= 1, not '0'"),
    (["demo", "-K", "0"], "argument -K/--k: must be an integer >= 1, not '0'"),
    (["demo", "--scale-exp", "999"],
     "argument --scale-exp: must be an integer from -128 to 127, not '999'"),
    (["board", "sim", "--noise-flip", "2.0"],
     "argument --noise-flip: must be a number from 0 to 1, not '2.0'"),
    (["board", "sim", "--noise-drop", "-0.1"],
     "argument --noise-drop: must be a number from 0 to 1, not '-0.1'"),
    (["board", "sim", "--max-seconds", "-1"],
     "argument --max-seconds: must be a number of seconds > 0, not '-1'"),
]


@pytest.mark.parametrize("argv,message", ARGUMENT_ERRORS,
                         ids=[" ".join(argv) for argv, _ in ARGUMENT_ERRORS])
def test_bad_argument_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    command = " ".join(word for word in argv[:2] if not word.startswith("-"))
    assert capsys.readouterr().err.splitlines()[-1] == f"systole {command}: error: {message}"


RULE_ERRORS = [
    (["gemm", "-K", "70000"],
     "systole gemm: K = 70000 exceeds the configuration's max_k = 65536 (raise it with --max-k)"),
    (["demo", "-K", "70000"],
     "systole demo: K = 70000 exceeds the configuration's max_k = 65536 (raise it with --max-k)"),
    (["gemm", "--formats", "e4m3"],
     "systole gemm: B is e5m2, which the configuration's formats (e4m3) do not include"),
    (["gemm", "--json", "/nonexistent/x.json"],
     "systole gemm: --json /nonexistent/x.json: directory /nonexistent does not exist"),
    (["gemm", "--wave", "x.txt"], "systole gemm: waveform x.txt: name a .vcd or .fst file"),
    (["bench", "--json", "/nonexistent/x.json"],
     "systole bench: --json /nonexistent/x.json: directory /nonexistent does not exist"),
    (["bench", "--rows", "0"],
     "systole bench: bad configuration: Array rows must be between 1 and 64, not 0"),
    (["report", "--rows", "0"],
     "systole report: bad configuration: Array rows must be between 1 and 64, not 0"),
    (["verilog", "-o", "/nonexistent/array.v"],
     "systole verilog: -o /nonexistent/array.v: directory /nonexistent does not exist"),
]


@pytest.mark.parametrize("argv,message", RULE_ERRORS,
                         ids=[" ".join(argv) for argv, _ in RULE_ERRORS])
def test_bad_job_is_one_line(argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == message       # SystemExit(message): printed, exit status 1


def test_missing_tools_are_one_line(tmp_path, monkeypatch):
    """Icarus not on PATH, and Verilator FST waveforms without the lz4 headers."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"^systole gemm: Icarus Verilog \(iverilog\) is not "
                                         r"installed; on Debian/Ubuntu: apt-get install "
                                         r"iverilog$"):
        main(["gemm", "--simulator", "icarus"])
    monkeypatch.setattr(verilog, "LZ4_HEADER", tmp_path / "lz4.h")
    monkeypatch.setattr(verilog, "simulator_missing", lambda simulator: None)
    with pytest.raises(SystemExit, match=r"^systole gemm: FST waveforms from Verilator need "
                                         r"the lz4 headers"):
        main(["gemm", "--wave", "x.fst"])

"""`systole verilog` output lints clean under Verilator (warnings allowed, no errors)."""

import subprocess

import pytest

from systole.cli import main
from systole.sim import verilog

from helpers import require_simulator


@pytest.mark.parametrize("argv", [
    ["--rows", "2", "--cols", "3"],
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

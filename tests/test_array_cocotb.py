"""The systolic array as exported Verilog, under cocotb, on Verilator and Icarus."""

import json
import os

import pytest

from systole import SystoleConfig
from systole.sim import verilog
from systole.sim.tb_array import make_array

from helpers import require_simulator

# Verilator runs the default-size array with long tiles; Icarus (about 360x slower) a
# small one, for 4-state semantics of the same Verilog.
CASES = {
    "verilator": dict(config=SystoleConfig(rows=4, cols=4), jobs=8, tiles=3, max_k=1024),
    "icarus": dict(config=SystoleConfig(rows=3, cols=2), jobs=6, tiles=2, max_k=48),
}


def _seed():
    return int(os.environ.get("SYSTOLE_SEED", "1"))


@pytest.mark.parametrize("simulator", [
    "verilator",
    pytest.param("icarus", marks=pytest.mark.icarus),
])
@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_array_random_tiles(simulator, pause, tmp_path):
    require_simulator(simulator)
    case = CASES[simulator]
    config = case["config"]
    seed = _seed()
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    build_dir = verilog.build(lambda: make_array(config), "systole_array", repr(config),
                              simulator)
    params = {"config": config.to_dict(), "seed": seed, "jobs": case["jobs"],
              "tiles": case["tiles"], "max_k": case["max_k"], "pause": pause,
              "specials": 0.01}
    params["config"] = {k: params["config"][k] for k in ("rows", "cols", "formats", "max_k")}
    verilog.run(build_dir, "systole_array", "systole.sim.tb_array", simulator=simulator,
                test_dir=tmp_path, extra_env={"SYSTOLE_TB": json.dumps(params)},
                results_xml=str(tmp_path / "results.xml"))

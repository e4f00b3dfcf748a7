"""Bounded proofs of the DMA engines' AXI4 rules (sim/formal.py, ``systole formal``).

Each engine must keep every rule of its side of the bus for every input sequence up to
the proof's depth; its broken variant (a glitch on ARVALID or WLAST) must fail, so the
properties do reach the solver.
"""

import pytest

from systole.sim.formal import PROOFS, prove


@pytest.mark.parametrize("proof", PROOFS, ids=[proof.name for proof in PROOFS])
def test_engine_keeps_its_axi_rules(proof):
    result = prove(proof, induction=False)
    assert result.bmc == "PASSED", result.log[-3000:]


@pytest.mark.parametrize("proof", PROOFS, ids=[proof.name for proof in PROOFS])
def test_broken_variant_fails(proof):
    result = prove(proof, broken=True, induction=False)
    assert result.bmc == "FAILED", result.log[-3000:]
    assert "Assert failed" in result.log

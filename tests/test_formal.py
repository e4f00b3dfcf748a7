"""Proofs (sim/formal.py, ``systole formal``): the DMA engines' AXI4 rules, the tiler's
read arbiter and the job checker's rules.

Each design must keep its rules for every input sequence up to the proof's depth (an
engine its side of the bus, the arbiter its routing, the checker the descriptor rules
for every job it accepts); its broken variant (a glitch on ARVALID or WLAST, a swapped
tag test, a checker built for twice max_k) must fail, so the properties do reach the
solver.
"""

import pytest

from systole.sim.formal import PROOFS, prove


@pytest.mark.parametrize("proof", PROOFS, ids=[proof.name for proof in PROOFS])
def test_design_keeps_its_rules(proof):
    result = prove(proof, induction=False)
    assert result.bmc == "PASSED", result.log[-3000:]


@pytest.mark.parametrize("proof", PROOFS, ids=[proof.name for proof in PROOFS])
def test_broken_variant_fails(proof):
    result = prove(proof, broken=True, induction=False)
    assert result.bmc == "FAILED", result.log[-3000:]
    assert "Assert failed" in result.log

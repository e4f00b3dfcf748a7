"""Proofs (sim/formal.py, ``systole formal``): the DMA engines' AXI4 rules, the block-RAM
FIFOs, the tiler's read arbiter and the job checker's rules.

Each design must keep its rules for every input sequence up to the proof's depth (an
engine its side of the bus, the arbiter its routing, the checker the descriptor rules
for every job it accepts); its broken variant (a glitch on ARVALID or WLAST, a FIFO depth
stated short, a swapped tag test, a checker built for twice max_k) must fail, so the properties do reach the
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


@pytest.mark.parametrize("proof", [proof for proof in PROOFS if proof.induction],
                         ids=[proof.name for proof in PROOFS if proof.induction])
def test_induction_closes_where_it_is_claimed(proof):
    """A proof marked ``induction`` holds for every reachable state, not only to its
    depth: the induction step passes."""
    result = prove(proof)
    assert (result.bmc, result.induction) == ("PASSED", "PASSED"), result.log[-3000:]


def test_unknown_proof_name_is_one_line_error():
    from systole.cli import main
    with pytest.raises(SystemExit) as stop:
        main(["formal", "--only", "nope"])
    assert str(stop.value) == ("systole formal: --only nope: no such proof (one of "
                               + ", ".join(proof.name for proof in PROOFS) + ")")

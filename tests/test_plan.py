"""The tiling plan (systole/plan.py) against its own laws, without a simulator.

* ``choose`` returns a plan ``check`` accepts, within ``BYTES_SLACK`` of the fewest operand
  bytes of all valid plans (brute force on small shapes and configurations);
* ``read_bytes`` is the element bytes the steps load: A rows x depth for every step with
  ``load_a``, depth x cols for every step with ``load_b``;
* the tiles of the steps cover every (row, column, k) of M x N x K exactly once: tile
  ``(t, j, rows, cols)`` of step ``s`` covers rows ``s.s + t`` .. ``+ rows``, columns
  ``s.j + j`` .. ``+ cols`` and k ``s.c`` .. ``s.c + s.depth``;
* ``check`` rejects each over-size case with its own message;
* ``io_lower_bound`` counts all on-chip SRAM (``config.onchip_sram_bytes``).
"""

import itertools
import os
import re

import numpy as np
import pytest

from systole.sim.tb_accel import random_plan

from systole import SystoleConfig
from systole import plan as tiling
from systole.plan import LoopOrder, TilingPlan

#: Small configurations: square and not, narrow and wide buses, partial sums or none.
CONFIGS = {
    "4x4-bus64": SystoleConfig(rows=4, cols=4, sram_depth=128, row_tiles=2, max_k=4096),
    "3x2-bus32": SystoleConfig(rows=3, cols=2, bus_width=32, sram_depth=16, row_tiles=3,
                               formats=("e4m3",), max_k=1024),
    "2x8-bus64-nopsum": SystoleConfig(rows=2, cols=8, sram_depth=32, row_tiles=1,
                                      psum_depth=0, max_k=1024),
    "8x8-default": SystoleConfig(),
}


def _seed(default):
    return int(os.environ.get("SYSTOLE_SEED", default))


def _random_plan(rng, config, m, n, k):
    """A random plan ``check`` accepts for the job, or None."""
    return random_plan(rng, config, m, n, k, max_tiles=8, tries=200)


def _all_plans(config, m, n, k):
    """Every valid plan whose blocks are at most one tile past the job on each side (larger
    blocks load the same rows and columns)."""
    low, high = tiling.kc_log2_range(config)
    for mc, nc, kc_log2, order in itertools.product(
            range(1, -(-m // config.rows) + 2), range(1, -(-n // config.cols) + 2),
            range(low, high + 1), LoopOrder):
        p = TilingPlan(mc, nc, kc_log2, order)
        if tiling.check(config, m, n, k, p) is None:
            yield p


@pytest.mark.parametrize("name", CONFIGS)
def test_choose_returns_a_plan_check_accepts(name):
    config = CONFIGS[name]
    seed = _seed(31)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (1, 768, 3072), (128, 2304, 768)]
    shapes += [tuple(int(x) for x in rng.integers(1, 200, 3)) for _ in range(30)]
    for m, n, k in shapes:
        p = tiling.choose(config, m, n, k)
        assert tiling.check(config, m, n, k, p) is None, (seed, m, n, k, p)


@pytest.mark.parametrize("name", CONFIGS)
def test_read_bytes_equal_the_steps_loads(name):
    config = CONFIGS[name]
    seed = _seed(32)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(60):
        m, n, k = (int(x) for x in rng.integers(1, 120, 3))
        p = _random_plan(rng, config, m, n, k)
        if p is None:
            continue
        a = sum(s.rows * s.depth for s in tiling.steps(config, m, n, k, p) if s.load_a)
        b = sum(s.depth * s.cols for s in tiling.steps(config, m, n, k, p) if s.load_b)
        assert tiling.read_bytes(config, m, n, k, p) == (a, b), (seed, m, n, k, p)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("name", CONFIGS)
def test_steps_cover_every_product_exactly_once(name):
    config = CONFIGS[name]
    seed = _seed(33)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    rng = np.random.default_rng(seed)
    for _ in range(25):
        m, n, k = (int(x) for x in rng.integers(1, 40, 3))
        p = _random_plan(rng, config, m, n, k) or tiling.choose(config, m, n, k)
        seen = np.zeros((m, n, k), dtype=np.int64)
        for s in tiling.steps(config, m, n, k, p):
            for t, j, rows, cols in tiling.tiles(config, s):
                assert 1 <= rows <= config.rows and 1 <= cols <= config.cols
                seen[s.s + t:s.s + t + rows, s.j + j:s.j + j + cols, s.c:s.c + s.depth] += 1
        assert (seen == 1).all(), (seed, m, n, k, p)


@pytest.mark.parametrize("name", CONFIGS)
def test_steps_flags_follow_the_nest(name):
    """``first`` / ``last`` mark a block's first and last chunk; a step that does not load
    a block keeps the previous step's (same rows, or same columns, and K in one chunk)."""
    config = CONFIGS[name]
    rng = np.random.default_rng(_seed(34))
    for _ in range(25):
        m, n, k = (int(x) for x in rng.integers(1, 120, 3))
        p = _random_plan(rng, config, m, n, k) or tiling.choose(config, m, n, k)
        steps = list(tiling.steps(config, m, n, k, p))
        assert steps[0].load_a and steps[0].load_b
        for before, step in zip(steps, steps[1:]):
            if not step.load_a:
                assert (before.s, before.rows, before.c) == (step.s, step.rows, step.c)
            if not step.load_b:
                assert (before.j, before.cols, before.c) == (step.j, step.cols, step.c)
        for step in steps:
            assert step.first == (step.c == 0)
            assert step.last == (step.c + step.depth == k)


@pytest.mark.parametrize("name", ["4x4-bus64", "3x2-bus32", "2x8-bus64-nopsum"])
def test_choose_reads_the_fewest_bytes_of_all_plans(name):
    config = CONFIGS[name]
    seed = _seed(35)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (1, 3 * config.cols, 300), (2 * config.rows + 1, 5, 70)]
    shapes += [tuple(int(x) for x in rng.integers(1, 48, 3)) for _ in range(12)]
    for m, n, k in shapes:
        best = min(sum(tiling.read_bytes(config, m, n, k, p))
                   for p in _all_plans(config, m, n, k))
        chosen = tiling.choose(config, m, n, k)
        # Within BYTES_SLACK of the fewest (a faster plan may read a fraction more).
        assert sum(tiling.read_bytes(config, m, n, k, chosen)) <= best * (1 + tiling.BYTES_SLACK), \
            (seed, m, n, k, chosen)


def test_check_rejects_each_oversize_case_with_its_message():
    config = SystoleConfig()    # 64-bit bus, 2048-byte A banks, 1024-word B buffers, 256 psum tiles
    low, high = tiling.kc_log2_range(config)
    assert (low, high) == (3, 10)
    cases = [
        (TilingPlan(1, 1, low - 1), r"K chunk 2\*\*2 is outside 2\*\*3\.\.2\*\*10"),
        (TilingPlan(1, 1, high + 1), r"K chunk 2\*\*11 is outside 2\*\*3\.\.2\*\*10"),
        (TilingPlan(3, 1, 10), r"an A block of 3 row tiles x 1024 k-steps does not fit an A "
                               r"bank of 2048 bytes"),
        (TilingPlan(1, 2, 10), r"a B block of 2 column tiles x 1024 k-steps does not fit a B "
                               r"buffer of 1024 words"),
        (TilingPlan(17, 16, 6), r"a C block of 17 x 16 tiles with K in 2 chunks needs 272 "
                                r"tiles of partial sums; the partial-sum SRAM holds 256"),
    ]
    for p, message in cases:
        reason = tiling.check(config, 1000, 1000, 128, p)
        assert reason is not None, p
        assert re.search(message, reason), (p, reason)
        with pytest.raises(tiling.PlanError, match=message):
            tiling.require(config, 1000, 1000, 128, p)
    # The same C block takes K in one chunk without partial sums.
    assert tiling.check(config, 1000, 1000, 64, TilingPlan(17, 16, 6)) is None
    # Without a partial-sum SRAM only single-tile blocks may chunk K.
    nopsum = SystoleConfig(psum_depth=0)
    assert "holds 0" in tiling.check(nopsum, 64, 64, 2048, TilingPlan(2, 1, 10))
    assert tiling.check(nopsum, 64, 64, 2048, TilingPlan(1, 1, 10)) is None


def test_plan_fields_are_checked():
    with pytest.raises(tiling.PlanError, match="between 1 and 255"):
        TilingPlan(0, 1, 3)
    with pytest.raises(tiling.PlanError, match="kc_log2 must be between 0 and 31"):
        TilingPlan(1, 1, 32)
    with pytest.raises(TypeError, match="mc_tiles must be an integer"):
        TilingPlan(True, 1, 3)


def test_io_lower_bound_counts_all_onchip_sram():
    m, n, k = 1024, 6400, 1600
    for config in (SystoleConfig(), SystoleConfig(psum_depth=0), SystoleConfig(sram_depth=4096)):
        s = config.onchip_sram_bytes
        assert s == (config.a_sram_bytes + config.b_sram_bytes + config.psum_sram_bytes
                     + config.c_sram_bytes)
        want = max(m * k + k * n + m * n * 4, 2 * m * n * k / s ** 0.5 + m * n * 4)
        assert tiling.io_lower_bound(config, m, n, k) == pytest.approx(want, rel=1e-12)
    # More partial-sum SRAM lowers the bound; one that a short job leaves unused still
    # counts, so the bound never favours a bigger buffer.
    assert (tiling.io_lower_bound(SystoleConfig(psum_depth=4096), m, n, k)
            < tiling.io_lower_bound(SystoleConfig(), m, n, k))
    # Decode: the compulsory traffic binds.
    assert tiling.io_lower_bound(SystoleConfig(), 1, 768, 3072, out_bytes=2) == \
        1 * 3072 + 3072 * 768 + 768 * 2


def test_psum_ops_follow_the_chunks():
    config = SystoleConfig()
    k = 200
    p = TilingPlan(2, 2, 6)                   # four tiles, four chunks: partial sums
    ops = [tiling.psum_op(k, p, s) for s in tiling.steps(config, 16, 16, k, p)]
    assert ops == [tiling.PsumOp.WRITE, tiling.PsumOp.ADD, tiling.PsumOp.ADD,
                   tiling.PsumOp.ADD_OUT]
    single = TilingPlan(1, 1, 6)              # one tile: the sums stay in the PEs
    ops = [tiling.psum_op(k, single, s) for s in tiling.steps(config, 8, 8, k, single)]
    assert ops == [None, None, None, tiling.PsumOp.OUT]

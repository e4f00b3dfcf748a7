"""The tiling plan of a job: C blocks, K chunks and loop order, declared once.

The host chooses a plan with :func:`choose` and writes it into the descriptor's PLAN
register; the job checker (hdl/job.py) rejects a plan that :func:`check` rejects, the
tiler (hdl/tiler.py) walks exactly the nest :func:`steps` describes, and the performance
model (sim/perfmodel.py) evaluates the same steps. Nothing here imports Amaranth.

The loop nest of a plan ``(mc_tiles, nc_tiles, kc_log2, order)`` on an R x C array::

    for each C block of Mc = mc_tiles * R rows and Nc = nc_tiles * C columns
            (row blocks outer for ROWS_OUTER, column blocks outer for COLS_OUTER):
      for each K chunk of Kc = 2**kc_log2 k-steps (the last one may be shorter):
        load the A block (Mc rows x the chunk) and the B block (the chunk x Nc columns)
        for each column tile j of the block:
          for each row tile t of the block:
            stream the chunk's k-steps of tile (t, j) through the array

* **Loads.** An A block is read one command per row (the chunk's bytes of that row), a
  B block one command per k row (all of the block's columns: long bursts). When K fits
  one chunk a block that equals the previous step's is not loaded again: with
  ROWS_OUTER the A block stays while the column blocks pass (A is read once), with
  COLS_OUTER the B block stays while the row blocks pass (B is read once).
* **Partial sums.** When K takes several chunks and a block has more than one tile, each
  tile's exact accumulator states leave the array at the end of every chunk into the
  partial-sum SRAM: written on the first chunk, added into on the others, and added
  and sent to the normaliser on the last, so the result is rounded once. A block of one
  tile keeps its sums in the PEs across the chunks instead (no partial-sum traffic).
* **Buffers.** A and B each have two buffers; the next step's blocks load while the
  array computes on the current ones. Tile ``t`` of an A block lives at offset
  ``t * Kc`` of every A bank, tile ``j`` of a B block at word ``j * Kc``.
"""

import enum
from dataclasses import dataclass

__all__ = ["LoopOrder", "PsumOp", "TilingPlan", "PlanError", "Step", "TILES_BITS",
           "KC_LOG2_BITS", "kc_log2_range", "check", "require", "uses_psum", "steps",
           "tiles", "psum_op", "read_bytes", "BYTES_SLACK", "choose", "io_lower_bound"]

#: Width of the PLAN register's tile-count fields: at most 255 row or column tiles.
TILES_BITS = 8
#: Width of the PLAN register's log2 of the K chunk.
KC_LOG2_BITS = 5


class LoopOrder(enum.IntEnum):
    """Which blocks of C the outer loop walks."""
    ROWS_OUTER = 0      # row blocks outer: with K in one chunk, A is read once
    COLS_OUTER = 1      # column blocks outer: with K in one chunk, B is read once


class PsumOp(enum.IntEnum):
    """What happens to a tile's accumulator states when it leaves the array."""
    OUT = 0             # to the normaliser (one chunk, or a block of one tile)
    WRITE = 1           # into the partial-sum SRAM (first chunk)
    ADD = 2             # added into the partial-sum SRAM (middle chunks)
    ADD_OUT = 3         # added to the partial sums, then to the normaliser (last chunk)


class PlanError(ValueError):
    """A plan that the configuration's buffers cannot run for this job."""


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class TilingPlan:
    """Block sizes and loop order of one job.

    Parameters
    ----------
    mc_tiles, nc_tiles : int
        Row and column tiles of a C block (1 to 255).
    kc_log2 : int
        log2 of the K chunk in k-steps.
    order : LoopOrder
    """
    mc_tiles: int
    nc_tiles: int
    kc_log2: int
    order: LoopOrder = LoopOrder.ROWS_OUTER

    def __post_init__(self):
        for name in ("mc_tiles", "nc_tiles", "kc_log2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Plan {name} must be an integer, not {value!r}")
        if not 1 <= self.mc_tiles < 1 << TILES_BITS or not 1 <= self.nc_tiles < 1 << TILES_BITS:
            raise PlanError(f"Plan tile counts must be between 1 and {(1 << TILES_BITS) - 1}, "
                            f"not {self.mc_tiles} x {self.nc_tiles}")
        if not 0 <= self.kc_log2 < 1 << KC_LOG2_BITS:
            raise PlanError(f"Plan kc_log2 must be between 0 and {(1 << KC_LOG2_BITS) - 1}, "
                            f"not {self.kc_log2}")
        object.__setattr__(self, "order", LoopOrder(self.order))

    @property
    def kc(self):
        return 1 << self.kc_log2

    @property
    def block_tiles(self):
        return self.mc_tiles * self.nc_tiles

    def chunks(self, k):
        return _ceil_div(k, self.kc)

    def to_dict(self):
        return {"mc_tiles": self.mc_tiles, "nc_tiles": self.nc_tiles, "kc_log2": self.kc_log2,
                "order": self.order.name}


def kc_log2_range(config):
    """The K chunks a configuration can run: at least a bus word (an A row's chunk is
    whole bus words in its bank), at most one tile per buffer."""
    low = config.bus_bytes.bit_length() - 1
    high = min(config.a_bank_bytes, config.sram_depth // config.b_banks).bit_length() - 1
    return low, high


def _b_overflows(config, nc_tiles, kc_log2):
    """True when a B block does not fit: its tiles spread over the B banks, each bank
    holding ``sram_depth // b_banks`` words."""
    banks = config.b_banks
    return -(-nc_tiles // banks) << kc_log2 > config.sram_depth // banks


def uses_psum(k, plan):
    """True when tiles leave the array at the end of every K chunk (several chunks, and
    more than one tile per block): their states then go through the partial-sum SRAM."""
    return plan.chunks(k) > 1 and plan.block_tiles > 1


def check(config, m, n, k, plan):
    """Why ``plan`` cannot run job ``m x n x k`` on ``config`` (a sentence), or None.

    The job checker enforces the same rules (error code BAD_PLAN)."""
    low, high = kc_log2_range(config)
    if not low <= plan.kc_log2 <= high:
        return (f"K chunk 2**{plan.kc_log2} is outside 2**{low}..2**{high}, what the "
                f"operand buffers hold")
    if plan.mc_tiles << plan.kc_log2 > config.a_bank_bytes:
        return (f"an A block of {plan.mc_tiles} row tiles x {plan.kc} k-steps does not fit "
                f"an A bank of {config.a_bank_bytes} bytes")
    if _b_overflows(config, plan.nc_tiles, plan.kc_log2):
        return (f"a B block of {plan.nc_tiles} column tiles x {plan.kc} k-steps does not fit "
                f"a B buffer of {config.sram_depth} words in {config.b_banks} banks")
    if uses_psum(k, plan) and plan.block_tiles > config.psum_tiles:
        return (f"a C block of {plan.mc_tiles} x {plan.nc_tiles} tiles with K in "
                f"{plan.chunks(k)} chunks needs {plan.block_tiles} tiles of partial sums; the "
                f"partial-sum SRAM holds {config.psum_tiles}")
    return None


def require(config, m, n, k, plan):
    """Raise :class:`PlanError` unless ``plan`` can run the job."""
    reason = check(config, m, n, k, plan)
    if reason:
        raise PlanError(f"Plan {plan.to_dict()} cannot run {m} x {n} x {k}: {reason}")


@dataclass(frozen=True)
class Step:
    """One (C block, K chunk) of the nest: the blocks it needs and what it computes.

    ``s``, ``j``, ``c`` are the block's first row, first column and the chunk's first k;
    ``rows``, ``cols``, ``depth`` their extents within M, N and K. ``load_a`` / ``load_b``:
    the step loads its A / B block (else the previous step's stays); ``first`` / ``last``:
    the first / last chunk of its block."""
    s: int
    j: int
    c: int
    rows: int
    cols: int
    depth: int
    load_a: bool
    load_b: bool
    first: bool
    last: bool


def steps(config, m, n, k, plan):
    """The steps of the nest, in the order the tiler runs them."""
    mc, nc = plan.mc_tiles * config.rows, plan.nc_tiles * config.cols
    row_blocks, col_blocks = range(0, m, mc), range(0, n, nc)
    if plan.order == LoopOrder.ROWS_OUTER:
        blocks = [(s, j) for s in row_blocks for j in col_blocks]
    else:
        blocks = [(s, j) for j in col_blocks for s in row_blocks]
    single = plan.chunks(k) == 1
    previous = None
    for s, j in blocks:
        for c in range(0, k, plan.kc):
            yield Step(s=s, j=j, c=c, rows=min(mc, m - s), cols=min(nc, n - j),
                       depth=min(plan.kc, k - c),
                       load_a=not (single and previous is not None and previous[0] == s),
                       load_b=not (single and previous is not None and previous[1] == j),
                       first=c == 0, last=c + plan.kc >= k)
            previous = (s, j)


def tiles(config, step):
    """The tiles of a step in feed order: ``(t, j, rows, cols)`` with the tile's first row
    and column relative to the block and its extents within M and N."""
    for j in range(0, step.cols, config.cols):
        for t in range(0, step.rows, config.rows):
            yield t, j, min(config.rows, step.rows - t), min(config.cols, step.cols - j)


def psum_op(k, plan, step):
    """What the tiles of ``step`` do with their states as they leave the array, or None
    when they stay in the PEs (a block of one tile, before its last chunk)."""
    if not uses_psum(k, plan):
        return PsumOp.OUT if step.last else None
    if step.first:
        return PsumOp.WRITE
    return PsumOp.ADD_OUT if step.last else PsumOp.ADD


def read_bytes(config, m, n, k, plan):
    """Operand bytes the plan reads, ``(a, b)``, counting the elements of every block it
    loads (the bus may move a few more around misaligned rows)."""
    mc, nc = plan.mc_tiles * config.rows, plan.nc_tiles * config.cols
    row_blocks, col_blocks = _ceil_div(m, mc), _ceil_div(n, nc)
    if plan.chunks(k) > 1:
        return m * k * col_blocks, k * n * row_blocks
    if plan.order == LoopOrder.ROWS_OUTER:
        return m * k, k * n * (row_blocks if col_blocks > 1 else 1)
    return m * k * (col_blocks if row_blocks > 1 else 1), k * n


def _estimated_cycles(config, m, n, k, plan):
    """A rough cycle count for choosing between plans of equal traffic: the first
    step's load, then per step the longer of its compute and the next step's load."""
    mc, nc = plan.mc_tiles * config.rows, plan.nc_tiles * config.cols
    row_blocks, col_blocks = _ceil_div(m, mc), _ceil_div(n, nc)
    chunks = plan.chunks(k)
    kc = min(plan.kc, k)
    step_tiles = _ceil_div(min(mc, m), config.rows) * _ceil_div(min(nc, n), config.cols)
    per_tile = max(kc, config.rows + config.cols) if uses_psum(k, plan) else kc
    compute = step_tiles * per_tile
    a, b = read_bytes(config, m, n, k, plan)
    n_steps = row_blocks * col_blocks * chunks
    load = (a + b) / n_steps / config.bus_bytes
    first = (min(mc, m) + min(nc, n)) * kc / config.bus_bytes
    return first + n_steps * max(compute, load)


#: How many more DRAM bytes than the fewest a plan may move and still be chosen for being
#: faster: memory-bound jobs (decode, M = 1) run twice as fast with chunks twice as long
#: for a fraction of a percent more A bytes.
BYTES_SLACK = 0.01


def choose(config, m, n, k, *, out_bytes=4):
    """The plan for job ``m x n x k`` on ``config``: the fewest estimated cycles among the
    plans within :data:`BYTES_SLACK` of the fewest DRAM bytes, preferring A and B rows
    read in bursts of at least eight beats (then the least SRAM).

    Every block shape that changes the number of blocks along M or N is tried, with every
    K chunk the buffers allow and both loop orders."""
    if min(m, n, k) < 1:
        raise PlanError(f"Job dimensions must be at least 1, not {m} x {n} x {k}")
    low, high = kc_log2_range(config)
    if low > high:
        raise PlanError(f"The operand buffers ({config.a_bank_bytes}-byte A banks, "
                        f"{config.sram_depth}-word B buffers) hold less than one bus word")
    limit = (1 << TILES_BITS) - 1

    def counts(extent, tile):
        """The fewest tiles per block for each possible number of blocks along one side."""
        n_tiles = _ceil_div(extent, tile)
        return sorted({_ceil_div(n_tiles, blocks) for blocks in range(1, n_tiles + 1)
                       if _ceil_div(n_tiles, blocks) <= limit})
    candidates = []
    for kc_log2 in range(low, high + 1):
        if kc_log2 > low and (1 << (kc_log2 - 1)) >= k:
            break                              # a longer chunk than K changes nothing
        for mc_tiles in counts(m, config.rows):
            if mc_tiles << kc_log2 > config.a_bank_bytes:
                break
            for nc_tiles in counts(n, config.cols):
                if _b_overflows(config, nc_tiles, kc_log2):
                    break
                for order in LoopOrder:
                    plan = TilingPlan(mc_tiles, nc_tiles, kc_log2, order)
                    if check(config, m, n, k, plan) is None:
                        candidates.append((sum(read_bytes(config, m, n, k, plan)), plan))
    fewest = min(traffic for traffic, _ in candidates)

    def key(candidate):
        _, plan = candidate
        # Bursts of at least eight beats where K and N allow: an A row's chunk, a B row
        # of the block.
        burst = 8 * config.bus_bytes
        short = (plan.kc < min(burst, k, 1 << high)
                 or plan.nc_tiles * config.cols < min(burst, n))
        return (short, round(_estimated_cycles(config, m, n, k, plan)),
                (plan.mc_tiles + plan.nc_tiles) << plan.kc_log2, candidate[0], plan.order)
    return min((c for c in candidates if c[0] <= fewest * (1 + BYTES_SLACK)), key=key)[1]


def io_lower_bound(config, m, n, k, *, out_bytes=4):
    """DRAM bytes no schedule can beat with the configuration's on-chip SRAM (DESIGN.md
    section 7, Smith et al. 2019, leading term), with S = every on-chip buffer a job may
    use (``config.onchip_sram_bytes``)."""
    s = config.onchip_sram_bytes
    compulsory = m * k + k * n + m * n * out_bytes
    return max(compulsory, 2 * m * n * k / s ** 0.5 + m * n * out_bytes)

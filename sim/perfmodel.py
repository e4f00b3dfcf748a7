"""The performance model: every counter of DESIGN.md section 4, without simulating.

    predict(config, job, memory=MemoryModel()) -> Prediction (counter name -> value)

The model evaluates the job's tiling plan (the plan the job carries, else
:func:`systole.plan.choose`'s; :func:`job_plan`) through :func:`systole.plan.steps`, the
same declaration the tiler walks:

* **Traffic** (bytes, bursts, SRAM traffic, MACs; :func:`traffic`) follows the command
  stream of the steps: for a step that loads its A block, one read command per block row
  (the chunk's bytes of that row); for one that loads its B block, one per k row (all of
  the block's columns); how the DMA splits each command into bus beats and bursts
  (:func:`_beats_and_bursts`); which tiles leave the array into the partial-sum SRAM; and
  which C rows the writer stores. These counters are exact.
* **Cycles** come from an event model at the level of blocks, commands and tiles (see
  :func:`_timing`): loads in step order through the one read DMA with two buffers per
  operand, data one beat per cycle after the memory latency, the DMA's outstanding-burst
  limit, the feeder waiting for whole blocks and streaming tiles back to back, the
  array's tile spacing, the partial-sum stages, the C drain and the writer. Its pipeline
  constants are named at the top of this module, to be calibrated against the RTL.

``job`` is a :class:`systole.sim.driver.GemmJob` (addresses and strides in bytes) or a
``(M, N, K)`` tuple, which means packed row-major operands at 4 KiB-aligned addresses and
fp32 output.
"""

from dataclasses import dataclass, fields

import collections

import numpy as np

from .. import plan as tiling
from ..config import MEMORY_LATENCY, SystoleConfig
from ..formats import output_format
from ..hdl.counters import COUNTERS
from ..hdl.dma import PAGE_BYTES
from ..hdl.job import check_cycles
from ..hdl.normalizer import Normalizer
from . import driver
from .driver import GemmJob

__all__ = ["MemoryModel", "ModelConfig", "Prediction", "predict", "traffic",
           "job_plan", "packed_job"]

# -- pipeline constants of the cycle model, in cycles ------------------------------------
# Read off the RTL's structure (hdl/tiler.py, hdl/dma.py, hdl/array.py, hdl/writer.py,
# hdl/simmem.py) and calibrated against the RTL with the gateware memory and no pauses
# (docs/performance.md says how well the model then agrees). "Taken" is a handshake.
_TILER_START = 0    # tiler start -> the load sequencer may hand out its first block
_HAND_OFF = 2       # the sequencer may hand out a block -> the block's first command
_QUIET = 1          # a block's last command taken -> the sequencer may hand out the next
_COMMAND_TO_AR = 2  # a command taken by the DMA -> its first burst's AR handshake
_FIRST_BEAT = 1     # AR handshake + memory latency -> the burst's first R beat, when the R
#                     channel is idle (hdl/simmem.py's queue of due bursts)
_READ_TO_LOADED = 2  # a block's last R beat -> the feeder sees the block loaded
_BEGIN = 1          # the feeder's cycle to begin a tile (step), before its first SRAM read
_SRAM_READ = 1      # the feeder's SRAM read -> the beat offered to the array
_DRAIN = 3          # a tile's crossing done -> its first row out of the array, besides the
#                     crossing (rows + cols) itself
_PSUM_STAGES = 2    # the partial-sum unit between the array and the normalisers (none
                    # without a partial-sum SRAM)
_NORMALIZE = Normalizer.LATENCY     # register stages of the normalisers
_WRITE_ROW = 2      # writer cycles per kept C row besides its data beats (the command)
_DROP_ROW = 1       # writer cycles per dropped C row (past M)
_ROW_FREED = 1      # a C row's place in the buffer frees this long before its write ends
_TILES_AHEAD = 7    # final tiles announced and not yet written: the tile queue, the
#                     writer's next tile and its current one (hdl/tiler.py, hdl/writer.py)
_TILE_QUEUE_FREE = 0  # the writer done with a tile -> the feeder may announce one more

#: Extrapolate steps and tiles that repeat at a steady period (False: run every one; the
#: tests compare the two).
_EXTRAPOLATE = True


@dataclass(frozen=True)
class ModelConfig:
    """The parameters the model reads, for configurations beyond what the gateware
    generator accepts (what-if studies: a 128 x 128 array, a 64-byte bus, megabytes of
    SRAM). Every derived size (``bus_bytes``, ``a_bank_bytes``, ``b_banks``,
    ``psum_tiles``, ``psum_row_bytes``, ``onchip_sram_bytes``, ``dim_width``, ...) is
    SystoleConfig's own property, so :mod:`systole.plan` plans with it, and the job check
    takes as long, exactly as with a SystoleConfig of the same parameters. ``acc_width``
    is given (81 bits: both fp8 formats) instead of derived from formats."""
    rows: int = 8
    cols: int = 8
    bus_width: int = 64
    sram_depth: int = 1024
    row_tiles: int = 2
    psum_depth: int = 2048
    max_burst: int = 256
    max_outstanding: int = 64
    acc_width: int = 81
    max_k: int = 65536
    addr_width: int = 32

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("a_sram_bytes", "b_sram_bytes", "psum_sram_bytes", "c_sram_bytes",
                     "onchip_sram_bytes"):
            d[name] = getattr(self, name)
        return d


# SystoleConfig's derived sizes, shared (not copied): every property that is not one of
# ModelConfig's own parameters.
for _name, _value in vars(SystoleConfig).items():
    if isinstance(_value, property) and _name not in ModelConfig.__dataclass_fields__:
        setattr(ModelConfig, _name, _value)
del _name, _value


@dataclass(frozen=True)
class MemoryModel:
    """External memory as the model sees it.

    latency : int
        Cycles from a read burst's AR handshake to its first data beat.
    beats_per_cycle : float
        Sustained data beats per cycle on each AXI direction (1.0: the full bus width
        every cycle, as hdl/simmem.py and the cocotbext-axi model deliver without pauses).
    """
    latency: int = MEMORY_LATENCY
    beats_per_cycle: float = 1.0


class Prediction(dict):
    """Every counter of :data:`systole.hdl.counters.COUNTERS`, by name (the keys are
    exactly the counters), and the tiling plan the job ran with in ``plan``."""

    def __init__(self, counters, plan):
        super().__init__(counters)
        self.plan = plan


def packed_job(m, n, k, *, out_format="fp32", a_format="e4m3", b_format="e4m3"):
    """A job with packed row-major A, B and C at 4 KiB-aligned addresses (no plan: the
    host's choice)."""
    ob = output_format(out_format).width // 8
    page = lambda x: -(-x // PAGE_BYTES) * PAGE_BYTES
    a_addr = 0
    b_addr = page(m * k)
    c_addr = b_addr + page(k * n)
    return GemmJob(m=m, n=n, k=k, a_addr=a_addr, b_addr=b_addr, c_addr=c_addr,
                   a_stride=k, b_stride=n, c_stride=n * ob, a_format=a_format,
                   b_format=b_format, out_format=out_format)


def _as_job(job):
    return packed_job(*job) if isinstance(job, tuple) else job


def job_plan(config, job):
    """The tiling plan ``job`` runs with: the one the driver writes
    (:func:`systole.sim.driver.job_plan`: the job's own ``plan``, else
    :func:`systole.plan.choose` for the job's output format).

    Raises
    ------
    systole.plan.PlanError
        When the job's own plan cannot run it (the job checker rejects it: BAD_PLAN).
    """
    job = _as_job(job)
    chosen = driver.job_plan(config, job)
    tiling.require(config, job.m, job.n, job.k, chosen)
    return chosen


def _ceil_div(a, b):
    return -(-a // b)


def _beats_and_bursts(addr, length, config):
    """Bus beats and INCR bursts of read/write commands (numpy arrays), as the DMA splits
    them: greedy bursts of at most max_burst beats that never cross a 4 KiB page."""
    bb = config.bus_bytes
    addr = np.asarray(addr, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)
    first = addr // bb
    beats = (addr + length + bb - 1) // bb - first
    page_beats = PAGE_BYTES // bb
    to_page_end = page_beats - first % page_beats
    head = np.minimum(beats, to_page_end)
    rest = beats - head
    full_pages, tail = rest // page_beats, rest % page_beats
    mb = config.max_burst
    bursts = (_ceil_div(head, mb) + full_pages * _ceil_div(page_beats, mb)
              + _ceil_div(tail, mb))
    return beats, bursts


def _realignment(addr, length, beats, config):
    """Per read command, how the DMA realigns it (hdl/dma.py ``DmaReader``): ``flush``,
    a misaligned command with as many output beats as bus beats, whose last output beat
    takes a cycle of its own after the last bus beat (the R channel then waits, unless the
    next command's first beat is one the DMA only holds); ``holds``, a misaligned command
    spanning two bus beats, whose first bus beat completes no output beat."""
    bb = config.bus_bytes
    offset = addr % bb
    flush = (offset != 0) & (beats == -(-length // bb)) & (beats > 1)
    holds = (offset != 0) & (offset + length > bb)
    return flush, holds


def _load_counts(k, p, row_blocks, col_blocks):
    """How many times the steps load each A block and each B block, ``(a, b)``: with K in
    several chunks every step loads both; with one chunk a block equal to the previous
    step's stays (plan.steps' ``load_a`` / ``load_b``)."""
    if p.chunks(k) > 1:
        return col_blocks, row_blocks
    if p.order == tiling.LoopOrder.ROWS_OUTER:
        return 1, (row_blocks if col_blocks > 1 else 1)
    return (col_blocks if row_blocks > 1 else 1), 1


@dataclass(frozen=True)
class _Blocks:
    """The read commands of every distinct block of one operand, summed per block:
    arrays indexed [chunk, row block] (A) or [chunk, column block] (B)."""
    commands: np.ndarray    # read commands
    beats: np.ndarray       # bus beats
    bursts: np.ndarray      # INCR bursts
    cycles: np.ndarray      # R-channel cycles: beats, and flush waits inside the block
    holds: np.ndarray       # its first command's first bus beat completes no output beat
    flushes: np.ndarray     # its last command ends with a flush beat


def _operand_blocks(config, addr, length, starts):
    """Per-block sums of commands laid out [chunk, command within a pass], the blocks
    beginning at the commands ``starts`` along axis 1."""
    beats, bursts = _beats_and_bursts(addr, length, config)
    flush, holds = _realignment(addr, length, beats, config)
    count = addr.shape[1]
    last = np.zeros(count, dtype=bool)
    last[np.asarray(starts[1:], dtype=np.int64) - 1] = True
    last[-1] = True
    # A flush beat makes the R channel wait a cycle unless the next command of the block
    # starts with a beat the DMA only holds.
    next_holds = np.zeros_like(holds)
    next_holds[:, :-1] = holds[:, 1:]
    waits = flush & ~next_holds & ~last[None, :]
    ends = np.append(starts[1:], count) - 1
    reduce = lambda x: np.add.reduceat(x.astype(np.int64), starts, axis=1)
    commands = np.broadcast_to(np.diff(np.append(starts, count)), (addr.shape[0], len(starts)))
    return beats, bursts, _Blocks(commands=commands, beats=reduce(beats), bursts=reduce(bursts),
                                  cycles=reduce(beats) + reduce(waits),
                                  holds=holds[:, starts], flushes=flush[:, ends])


def _analyse(config, job, p):
    """The exact counters of ``job`` under plan ``p``, and what the timing model needs."""
    m, n, k = job.m, job.n, job.k
    rows, cols, bb = config.rows, config.cols, config.bus_bytes
    mc, nc, kc = p.mc_tiles * rows, p.nc_tiles * cols, p.kc
    chunks = p.chunks(k)
    row_blocks, col_blocks = _ceil_div(m, mc), _ceil_div(n, nc)
    ob = output_format(job.out_format).width // 8
    a_repeat, b_repeat = _load_counts(k, p, row_blocks, col_blocks)

    # A: row i of chunk c is one command of min(kc, K - c) bytes; laid out [chunk, row].
    c0 = np.arange(0, k, kc, dtype=np.int64)
    a_addr = job.a_addr + c0[:, None] + np.arange(m, dtype=np.int64)[None, :] * job.a_stride
    a_len = np.broadcast_to(np.minimum(kc, k - c0)[:, None], a_addr.shape)
    a_beats, a_bursts, a_blocks = _operand_blocks(config, a_addr, a_len,
                                                  np.arange(0, m, mc, dtype=np.int64))
    # B: k row kk of column block j is one command of min(nc, N - j) bytes; laid out
    # [column block, k row], so that a block is a run of k rows.
    j0 = np.arange(0, n, nc, dtype=np.int64)
    b_addr = job.b_addr + j0[:, None] + np.arange(k, dtype=np.int64)[None, :] * job.b_stride
    b_len = np.broadcast_to(np.minimum(nc, n - j0)[:, None], b_addr.shape)
    b_beats, b_bursts, b_blocks = _operand_blocks(config, b_addr, b_len, c0)
    b_blocks = _Blocks(*(x.T for x in (b_blocks.commands, b_blocks.beats, b_blocks.bursts,
                                       b_blocks.cycles, b_blocks.holds, b_blocks.flushes)))

    # C: one write command per kept row of every output tile.
    jt = np.arange(0, n, cols, dtype=np.int64)
    i = np.arange(m, dtype=np.int64)[:, None]
    c_addr = job.c_addr + i * job.c_stride + jt[None, :] * ob
    c_len = np.broadcast_to((np.minimum(n - jt, cols) * ob)[None, :], c_addr.shape)
    c_beats, c_bursts = _beats_and_bursts(c_addr, c_len, config)

    tiles = _ceil_div(m, rows) * _ceil_div(n, cols)
    active = tiles * k
    macs = m * n * k
    psum = (chunks - 1) * tiles * rows * config.psum_row_bytes if tiling.uses_psum(k, p) else 0
    counters = {
        "active_cycles": active,
        "macs": macs,
        "padded_macs": active * rows * cols - macs,
        "dram_read_bytes": int(a_beats.sum() * a_repeat + b_beats.sum() * b_repeat) * bb,
        "dram_write_bytes": m * n * ob,
        "dram_read_bursts": int(a_bursts.sum() * a_repeat + b_bursts.sum() * b_repeat),
        "dram_write_bursts": int(c_bursts.sum()),
        "sram_a_read_bytes": active * rows,
        "sram_a_write_bytes": m * k * a_repeat,
        "sram_b_read_bytes": active * cols,
        "sram_b_write_bytes": k * n * b_repeat,
        "sram_c_read_bytes": m * n * ob,
        "sram_c_write_bytes": tiles * rows * cols * ob,
        "sram_psum_read_bytes": psum,
        "sram_psum_write_bytes": psum,
    }
    detail = {"a_blocks": a_blocks, "b_blocks": b_blocks,
              # Input beats of a C row per column tile (the writer's view), and the bus
              # beats of every C row command (a misaligned row spills one more).
              "c_in_beats": _ceil_div(np.minimum(n - jt, cols) * ob, bb),
              "c_beats": c_beats}
    return counters, detail


def traffic(config, job, *, plan=None):
    """The exact byte, burst, SRAM and MAC counters of ``job`` (a dict of counter name
    to value) under ``plan`` (by default :func:`job_plan`'s)."""
    job = _as_job(job)
    p = plan if plan is not None else job_plan(config, job)
    return _analyse(config, job, p)[0]


def predict(config, job, memory=None, *, plan=None):
    """Every counter of DESIGN.md section 4 for ``job`` on ``config``.

    Parameters
    ----------
    config : SystoleConfig or ModelConfig
    job : GemmJob or tuple
        See the module documentation.
    memory : MemoryModel, optional
    plan : systole.plan.TilingPlan, optional
        The plan to evaluate instead of :func:`job_plan`'s (it must pass
        :func:`systole.plan.check`).

    Returns
    -------
    Prediction
        The counters, and the plan in ``.plan``.
    """
    job = _as_job(job)
    memory = memory or MemoryModel()
    if plan is None:
        p = job_plan(config, job)
    else:
        tiling.require(config, job.m, job.n, job.k, plan)
        p = plan
    counters, detail = _analyse(config, job, p)
    counters.update(_timing(config, job, memory, p, counters, detail))
    return Prediction({name: counters[name] for name in COUNTERS}, p)


def _start_cycles(config, job):
    """START -> tiler start: the job check (hdl/job.py); a ModelConfig has the
    dimension and address widths of its ``max_k`` and ``addr_width``."""
    return check_cycles(config, job.m, job.k)


class _ReadPath:
    """The load sequencer, the loaders' commands and the read DMA, block by block.

    Blocks load strictly in step order, one at a time: the sequencer hands a block out
    once its buffer is free (fewer than two of its operand's blocks loaded or loading and
    not released) and ``_QUIET`` cycles after the previous block's last command was taken;
    the block's first command goes ``_HAND_OFF`` cycles later. Bursts go out one per cycle
    while fewer than ``max_outstanding`` are in flight; data follows ``latency`` (and
    ``_FIRST_BEAT``) cycles after each AR, in order, at ``beats_per_cycle``, plus a cycle
    wherever a flush beat makes the R channel wait. Within a block the AR stream runs at least as fast as the data (every burst has
    a beat), so a block's data ends its R-channel cycles after the later of its first AR
    plus the latency and the end of the data before it; a window of ``max_outstanding``
    bursts too short to cover the latency stretches it to one round trip per window."""

    def __init__(self, config, memory, start):
        self.latency = memory.latency
        self.rate = memory.beats_per_cycle
        self.window = config.max_outstanding
        self.hand_out = start           # earliest cycle to hand out the next block
        self.bus_free = 0.0             # the cycle after the last R beat so far
        self.flushed = False            # the last command on the bus ended with a flush

    def load(self, block, free_at):
        """Load ``block`` (its :class:`_Blocks` sums) once its buffer is free at
        ``free_at``; the cycle the feeder sees it loaded."""
        commands, beats, bursts, cycles, holds, flushes = block
        first_ar = max(self.hand_out, free_at) + _HAND_OFF + _COMMAND_TO_AR
        start = max(first_ar + self.latency + _FIRST_BEAT,
                    self.bus_free + (self.flushed and not holds))
        span = cycles / self.rate
        per_burst = span / bursts
        if self.window * per_burst < self.latency + 1 + per_burst:
            # Each window of bursts waits for the first of the one before to complete.
            rounds = (bursts - 1) // self.window
            span = max(span, rounds * (self.latency + 1 + per_burst)
                       + (bursts - rounds * self.window) * per_burst)
        end = max(start + span, first_ar + max(bursts, commands) + self.latency + _FIRST_BEAT)
        # The DMA takes the block's last command once its bursts before it fit the window.
        last_ar = max(first_ar + bursts - 1, end - self.window * per_burst)
        self.hand_out = last_ar - _COMMAND_TO_AR + _QUIET
        self.bus_free, self.flushed = end, flushes
        return end - 1 + flushes + _READ_TO_LOADED


class _ResultPath:
    """The drain of output tiles into the two-tile C buffer and the writer.

    A tile's rows leave the array one per cycle from ``_DRAIN`` cycles after its crossing
    (rows + cols cycles after its last beat), pass the partial-sum stages and the
    normalisers, and enter the C buffer (2 x rows rows); the writer stores each kept row
    as a command and its beats and drops a row past M in a cycle. A row that finds the
    buffer full stops the whole array until the writer frees its place: :meth:`tile`
    returns the stop (its first cycle and length) or None."""

    def __init__(self, config, c_in_beats):
        self.rows = config.rows
        self.delay = (config.rows + config.cols + _DRAIN + _NORMALIZE + 1
                      + (_PSUM_STAGES if config.psum_depth else 0))
        self.c_in_beats = c_in_beats.tolist()
        self.drain_free = 0.0
        self.writer_free = 0.0
        # When the writer was done with each of the last _TILES_AHEAD tiles.
        self.done = collections.deque([-float("inf")] * _TILES_AHEAD, maxlen=_TILES_AHEAD)
        self.idle = True                # the writer waited for the last tile's first row
        self.freezes = []               # stops that may still hold tiles on their way out

    def cost(self, kept, column_tile):
        """Writer cycles of one tile."""
        return (kept * (_WRITE_ROW + self.c_in_beats[column_tile])
                + (self.rows - kept) * _DROP_ROW)

    def announce(self):
        """The first cycle the feeder may begin the next final tile: the tile queue holds
        the tiles announced and not yet taken by the writer, which takes tile t once it
        has written tile t - 2, so the tile _TILES_AHEAD before must be written."""
        return self.done[0] + _TILE_QUEUE_FREE

    def tile(self, last_beat, kept, column_tile):
        rows = self.rows
        enter = last_beat + self.delay
        # A stop freezes the tiles on their way out too: those past their last beat when
        # it began leave that much later.
        for first, length in self.freezes:
            if last_beat < first <= enter:
                enter += length
        self.freezes = [stop for stop in self.freezes if stop[0] > last_beat]
        enter = max(enter, self.drain_free)
        # Row r enters once row r of the tile two before has left the buffer; the writer
        # needs at least a cycle per row, so the last row binds.
        blocked = max(0.0, self.done[-2] - _ROW_FREED - (rows - 1) - enter)
        if blocked:
            self.freezes.append((enter, blocked))
        enter += blocked
        self.drain_free = enter + rows
        self.idle = self.writer_free <= enter + 1
        self.writer_free = max(enter + 1, self.writer_free) + self.cost(kept, column_tile)
        self.done.append(self.writer_free)
        return (enter - blocked, blocked) if blocked else None


class _Feeder:
    """The feeder and the array: a step's tiles, one begin cycle and one k-step per cycle.

    A tile's first SRAM read follows its begin and waits until the previous tile's last
    beat, held in the read stage, is taken; its beats reach the array a cycle after their
    reads. The last beat of a tile that leaves the array is taken no sooner than rows +
    cols cycles after the previous leaving tile's. Final tiles go to the C path; a C stop
    freezes the array and holds every beat after it."""

    def __init__(self, config, results, start):
        self.cols = config.cols
        self.rows = config.rows
        self.spacing = config.rows + config.cols
        self.results = results
        self.after_read = start         # the cycle after the last SRAM read
        self.last_beat = -float("inf")  # the last beat the array took
        self.last_leave = -float("inf")  # ... of the last tile that left the array
        self.held = 0.0                 # beats offered and not taken (store stalls)
        self.stops = []                 # C stops not yet applied

    def _tile(self, begin, depth, leaves):
        """Run one tile; its first read."""
        read = max(begin + _BEGIN, self.last_beat + 1 - _SRAM_READ)
        beat = read + depth - 1 + _SRAM_READ          # its last beat, offered
        for stop in list(self.stops):
            first, length = stop
            if first < beat:
                self.stops.remove(stop)
                if first >= read:
                    beat += length                    # frozen mid-tile
                    self.held += length
                else:                                 # frozen before its first read
                    shift = max(0.0, first + length - read)
                    read += shift
                    beat += shift
        taken = max(beat, self.last_leave + self.spacing) if leaves else beat
        self.held += taken - beat
        self.last_beat = taken
        if leaves:
            self.last_leave = taken
        return read

    def step(self, step, ready, op, final):
        """Feed the tiles of ``step`` once its blocks are loaded (at ``ready``)."""
        rows, cols, depth = self.rows, self.cols, step.depth
        count = _ceil_div(step.rows, rows) * _ceil_div(step.cols, cols)
        row_tiles = _ceil_div(step.rows, rows)
        leaves = op is not None
        results = self.results
        widest = results.cost(min(rows, step.rows), step.j // cols)
        begin = max(self.after_read, ready)
        history = []
        q = 0
        while q < count:
            if _EXTRAPOLATE and history is not None and len(history) == 4:
                # The tiles of a step are alike: once two have followed at one period,
                # so does every further one (final tiles: while the writer keeps up, so
                # only the last two, the ones the next step meets, are run).
                (r1, b1, h1), (r2, b2, h2), (r3, b3, h3) = history[1:]
                period = b3 - b2
                if (not self.stops and (r3 - r2, period, h3 - h2) == (r2 - r1, b2 - b1, h2 - h1)
                        and (not final or (results.idle and period >= widest))):
                    skip = count - q - (2 if final else 0)
                    if skip > 0:
                        read = r3 + skip * period
                        self.last_beat += skip * period
                        self.held += skip * (h3 - h2)
                        if leaves:
                            self.last_leave = self.last_beat
                        begin = read + depth
                        q += skip
                history = None
                if q == count:
                    break
            if final:
                begin = max(begin, results.announce())
            read = self._tile(begin, depth, leaves)
            if final:
                # Tiles in plan.tiles' order: column tiles outer, row tiles inner.
                kept = min(rows, step.rows - q % row_tiles * rows)
                stop = results.tile(self.last_beat, kept, step.j // cols + q // row_tiles)
                if stop:
                    self.stops.append(stop)
            begin = read + depth                      # the cycle after its last read
            if history is not None:
                history.append((read, self.last_beat, self.held))
            q += 1
        self.after_read = begin


def _timing(config, job, memory, p, counters, detail):
    """Cycle counters from an event model of the tiler, the read bus and the C path.

    Per step of :func:`systole.plan.steps`, in order: the read path loads the blocks the
    step loads (:class:`_ReadPath`), each into the other of its operand's two buffers once
    the feeder has released the block that used it; the feeder waits until both of the
    step's blocks are loaded, then streams the step's tiles (:class:`_Feeder`; final
    tiles through :class:`_ResultPath`) and releases a block with the step's last read
    when the next step loads a new one.

    Steps alike (same extents, loads and partial-sum operation, blocks of the same
    commands) follow at a steady period once three have: the model then moves every time
    of its state by the period per step it does not run. Likewise the tiles of a step.

    Classification as the RTL counts (hdl/engine.py): a beat offered but not taken is a
    store stall; no beat offered while the tiler is busy a load stall; the job check
    before the tiler starts and everything after the last beat overhead."""
    rows, cols = config.rows, config.cols
    m, n, k = job.m, job.n, job.k
    mc, nc, kc = p.mc_tiles * rows, p.nc_tiles * cols, p.kc
    blocks = {}
    for name in ("a_blocks", "b_blocks"):
        b = detail[name]
        blocks[name] = np.stack([b.commands, b.beats, b.bursts, b.cycles,
                                 b.holds.astype(np.int64), b.flushes.astype(np.int64)],
                                axis=-1).tolist()
    a_table, b_table = blocks["a_blocks"], blocks["b_blocks"]
    start = _start_cycles(config, job)
    reads = _ReadPath(config, memory, start + _TILER_START)
    results = _ResultPath(config, detail["c_in_beats"])
    feeder = _Feeder(config, results, start)
    a_released, b_released = [], []     # when the feeder released each block, in order
    a_loaded = b_loaded = 0.0           # when the current blocks are loaded
    steps = list(tiling.steps(config, m, n, k, p))
    never = -float("inf")

    def key(i):
        """What makes step i's timing: alike steps have equal keys."""
        s = steps[i]
        following = steps[i + 1] if i + 1 < len(steps) else None
        return (s.rows, s.cols, s.depth, s.load_a, s.load_b, tiling.psum_op(k, p, s),
                following is None or following.load_a, following is None or following.load_b,
                tuple(a_table[s.c // kc][s.s // mc]) if s.load_a else None,
                tuple(b_table[s.c // kc][s.j // nc]) if s.load_b else None)

    def state():
        return (reads.hand_out, reads.bus_free, a_loaded, b_loaded, feeder.after_read,
                feeder.last_beat, feeder.last_leave, feeder.held, results.drain_free,
                results.writer_free,
                a_released[-1] if a_released and a_released[-1] is not None else 0.0,
                b_released[-1] if b_released and b_released[-1] is not None else 0.0,
                *results.done)

    history = []                        # (key, state) after each step of the current run
    index = 0
    while index < len(steps):
        step = steps[index]
        this = key(index)
        if history and history[-1][0] != this:
            history = []
        if (_EXTRAPOLATE and len(history) >= 3 and not feeder.stops and not results.freezes
                and reads.flushed == history[-1][2]):
            (_, s1, _), (_, s2, _), (_, s3, _) = history[-3:]
            d1 = tuple(b - a for a, b in zip(s1, s2))
            d2 = tuple(b - a for a, b in zip(s2, s3))
            if d1 == d2 and all(x == x for x in d2):
                run = index
                while run < len(steps) and key(run) == this:
                    run += 1
                skip = run - index
                times = [value + skip * d for value, d in zip(s3, d2)]
                (reads.hand_out, reads.bus_free, a_loaded, b_loaded, feeder.after_read,
                 feeder.last_beat, feeder.last_leave, feeder.held, results.drain_free,
                 results.writer_free, a_last, b_last, *done) = times
                results.done.extend(done)
                for released, last, d, loads in ((a_released, a_last, d2[10], this[3]),
                                                 (b_released, b_last, d2[11], this[4])):
                    if loads:
                        released.extend(last - (skip - 1 - i) * d for i in range(skip))
                index = run
                history = []
                continue
        if step.load_a:
            free = a_released[-2] if len(a_released) >= 2 else never
            a_loaded = reads.load(a_table[step.c // kc][step.s // mc], free)
            a_released.append(None)
        if step.load_b:
            free = b_released[-2] if len(b_released) >= 2 else never
            b_loaded = reads.load(b_table[step.c // kc][step.j // nc], free)
            b_released.append(None)
        op = tiling.psum_op(k, p, step)
        feeder.step(step, max(a_loaded, b_loaded), op,
                    op in (tiling.PsumOp.OUT, tiling.PsumOp.ADD_OUT))
        # Block b's buffer takes block b + 2, whose load comes after this step.
        if this[6]:
            a_released[-1] = feeder.after_read
        if this[7]:
            b_released[-1] = feeder.after_read
        history.append((this, state(), reads.flushed))
        index += 1

    fed_end = feeder.last_beat + 1
    # The last row written (the top row of the last tile: rows drain bottom first) ends
    # with the W beat a misaligned address spills into.
    c_beats, c_in_beats = detail["c_beats"], detail["c_in_beats"]
    top = (_ceil_div(m, rows) - 1) * rows
    end = results.writer_free + int(c_beats[top, -1] - c_in_beats[-1])
    cycles = int(round(end))        # the last row's write cost covers its B response
    active = counters["active_cycles"]
    stall_store = int(round(feeder.held))
    overhead = start + max(0, cycles - int(round(fed_end)))
    stall_load = max(0, cycles - active - stall_store - overhead)
    overhead = cycles - active - stall_store - stall_load
    return {"cycles": cycles, "active_cycles": active, "stall_load_cycles": stall_load,
            "stall_store_cycles": stall_store, "overhead_cycles": overhead}

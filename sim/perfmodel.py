"""The performance model: every counter of DESIGN.md section 4, without simulating.

    predict(config, job, memory=MemoryModel()) -> dict of counter name -> value

Two parts:

* **Traffic** (bytes, bursts, SRAM traffic, MACs) follows the tiler's loop nest
  (hdl/tiler.py) command by command: which A and B blocks it loads, which row segments
  each block is read in, how the DMA splits each command into bus beats and bursts
  (``burst_count``), and which C rows the writer stores. These counters are exact.
* **Cycles** come from an event model of the same loop nest at the level of bus bursts
  and tiles (see :func:`_timing`), which answers in tens of milliseconds for GEMMs far too large
  to simulate. How close it is to the RTL is measured, not assumed: see
  docs/performance.md and tests/test_perfmodel.py.

``job`` is a :class:`systole.sim.driver.GemmJob` (addresses and strides in bytes) or a
``(M, N, K)`` tuple, which means packed row-major operands at 4 KiB-aligned addresses and
fp32 output.
"""

import collections
import functools
from dataclasses import dataclass

import numpy as np

from ..config import SystoleConfig
from ..formats import output_format
from ..hdl.counters import COUNTERS
from ..hdl.dma import _PAGE
from ..hdl.job import check_cycles
from ..hdl.normalizer import Normalizer
from ..hdl.tiler import _MAX_FOLD, _PREFETCH_BEATS, a_segment_bytes
from .driver import GemmJob

__all__ = ["MemoryModel", "ModelConfig", "predict", "traffic", "packed_job", "plan"]



@dataclass(frozen=True)
class ModelConfig:
    """The parameters the model reads, for configurations beyond what the gateware
    generator accepts (what-if studies: a 128 x 128 array, a 64-byte bus, megabytes of
    SRAM). Derived sizes are SystoleConfig's own."""
    rows: int = 8
    cols: int = 8
    bus_width: int = 64
    sram_depth: int = 1024
    row_tiles: int = 2
    max_burst: int = 256
    acc_width: int = 81

    bus_bytes = SystoleConfig.bus_bytes
    a_sram_bytes = SystoleConfig.a_sram_bytes
    b_sram_bytes = SystoleConfig.b_sram_bytes

    def to_dict(self):
        return {"rows": self.rows, "cols": self.cols, "bus_width": self.bus_width,
                "sram_depth": self.sram_depth, "row_tiles": self.row_tiles,
                "max_burst": self.max_burst, "acc_width": self.acc_width,
                "a_sram_bytes": self.a_sram_bytes, "b_sram_bytes": self.b_sram_bytes}


@dataclass(frozen=True)
class MemoryModel:
    """External memory as the model sees it.

    latency : int
        Cycles from a read request to its first data beat.
    beats_per_cycle : float
        Sustained data beats per cycle on each AXI direction (1.0: the full bus width
        every cycle, as hdl/simmem.py and the cocotbext-axi model deliver without pauses).
    """
    latency: int = 32
    beats_per_cycle: float = 1.0


def packed_job(m, n, k, *, out_format="fp32", a_format="e4m3", b_format="e4m3"):
    """A job with packed row-major A, B and C at 4 KiB-aligned addresses."""
    ob = output_format(out_format).width // 8
    page = lambda x: -(-x // _PAGE) * _PAGE
    a_addr = 0
    b_addr = page(m * k)
    c_addr = b_addr + page(k * n)
    return GemmJob(m=m, n=n, k=k, a_addr=a_addr, b_addr=b_addr, c_addr=c_addr,
                   a_stride=k, b_stride=n, c_stride=n * ob, a_format=a_format,
                   b_format=b_format, out_format=out_format)


@dataclass(frozen=True)
class Plan:
    """The tiler's choices for one job (hdl/tiler.py ``_Plan``)."""
    single_chunk: bool
    spread: bool        # K chunks of one row tile side by side in the bank groups
    fold: int           # row-tile groups stacked in an A buffer
    ms: int             # rows per super-row
    depth: int          # K chunk length

    def chunks(self, k):
        return [(c, min(self.depth, k - c)) for c in range(0, k, self.depth)]


def plan(config, k):
    """The tiler's loop-nest parameters for reduction length ``k``."""
    single = k <= config.sram_depth
    fold = 1
    for log2 in range(_MAX_FOLD.bit_length() - 1, 0, -1):
        if config.sram_depth >> log2 >= config.bus_bytes and k <= config.sram_depth >> log2:
            fold = 1 << log2
            break
    ms = config.row_tiles * config.rows * fold if single else config.rows
    spread = not single and config.row_tiles > 1 and k <= config.row_tiles * config.sram_depth
    return Plan(single_chunk=single, spread=spread, fold=fold, ms=ms, depth=config.sram_depth)


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
    page_beats = _PAGE // bb
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


#: A matrix per property of every read command of one operand (see :func:`traffic`).
_Reads = collections.namedtuple("_Reads", "cycles bursts flush holds bubble")


def _cumulative(x):
    """Sums of ``x[:g]`` along axis 0 for every g, from 0 to len(x)."""
    return np.concatenate([np.zeros((1,) + x.shape[1:], np.int64), np.cumsum(x, axis=0)])


def _segment_starts(config, p, k):
    """First k of every A segment of every K chunk, in load order."""
    seg = a_segment_bytes(config)
    return np.array([c + g for c, length in p.chunks(k) for g in range(0, length, seg)],
                    dtype=np.int64)


def _a_commands(config, job, p):
    """Address and length of every A read command of one pass over M (every super-row
    once, every K chunk once), in issue order within a block."""
    seg = a_segment_bytes(config)
    rows = np.arange(job.m, dtype=np.int64)
    addrs, lengths = [], []
    for c, length in p.chunks(job.k):
        for g in range(0, length, seg):
            addrs.append(job.a_addr + rows * job.a_stride + c + g)
            lengths.append(np.full(job.m, min(seg, length - g), dtype=np.int64))
    return np.concatenate(addrs), np.concatenate(lengths)


def _b_commands(config, job, j0):
    """Address and length of every B read command for column tiles starting at ``j0``
    (an array), all k."""
    k = np.arange(job.k, dtype=np.int64)[:, None]
    j0 = np.asarray(j0, dtype=np.int64)[None, :]
    addr = job.b_addr + k * job.b_stride + j0
    length = np.minimum(job.n - j0, config.cols) + 0 * k
    return addr.ravel(), length.ravel()


def traffic(config, job):
    """The exact byte, burst, SRAM and MAC counters of ``job`` (a dict)."""
    p = plan(config, job.k)
    rows, cols = config.rows, config.cols
    ob = output_format(job.out_format).width // 8
    n_s = _ceil_div(job.m, p.ms)
    n_j = _ceil_div(job.n, cols)
    row_tiles = _ceil_div(job.m, rows)

    # A: each block (s, c) once when K fits (it stays for every column tile), and each
    # spread block (one row tile, all of K) once; else once per (s, j, c).
    a_addr, a_len = _a_commands(config, job, p)
    a_beats, a_bursts = _beats_and_bursts(a_addr, a_len, config)
    a_repeat = 1 if (p.single_chunk or p.spread) else n_j
    # B: block (c, j) once per super-row, except when there is one chunk and one column
    # tile (it then stays for every super-row).
    j0 = np.arange(0, job.n, cols)
    b_addr, b_len = _b_commands(config, job, j0)
    b_beats, b_bursts = _beats_and_bursts(b_addr, b_len, config)
    b_repeat = 1 if (p.single_chunk and n_j == 1) else n_s
    # C: one write command per kept row of every tile.
    i = np.arange(job.m, dtype=np.int64)[:, None]
    c_addr = job.c_addr + i * job.c_stride + j0[None, :] * ob
    c_len = (np.minimum(job.n - j0, cols) * ob)[None, :] + 0 * i
    c_beats, c_bursts = _beats_and_bursts(c_addr.ravel(), c_len.ravel(), config)

    active = row_tiles * n_j * job.k
    macs = job.m * job.n * job.k

    # R-channel cycles of each read command: its bus beats, plus the flush wait when the
    # command after it in its own loader's order does not start with a held beat (A: the
    # next row of the row tile, after its last row the tile's first row of the next
    # segment; B: the next k row). Sub-pieces correct for their last command (_timing).
    a_flush, a_holds = (x.reshape(-1, job.m)
                        for x in _realignment(a_addr, a_len, a_beats, config))
    r = np.arange(job.m)
    tile_end = ((r + 1) % rows == 0) | (r == job.m - 1)
    a_next_holds = np.zeros_like(a_holds)
    a_next_holds[:, ~tile_end] = a_holds[:, r[~tile_end] + 1]
    a_next_holds[:-1, tile_end] = a_holds[1:, (r[tile_end] // rows) * rows]
    a_bubble = a_flush & ~a_next_holds
    a_cycles = a_beats.reshape(-1, job.m) + a_bubble
    b_flush, b_holds = (x.reshape(job.k, n_j)
                        for x in _realignment(b_addr, b_len, b_beats, config))
    b_bubble = b_flush.copy()
    b_bubble[:-1] &= ~b_holds[1:]
    b_cycles = b_beats.reshape(job.k, n_j) + b_bubble
    return {
        "active_cycles": active,
        "macs": macs,
        "padded_macs": active * rows * cols - macs,
        "dram_read_bytes": int(a_beats.sum() * a_repeat + b_beats.sum() * b_repeat)
                           * config.bus_bytes,
        "dram_write_bytes": job.m * job.n * ob,
        "dram_read_bursts": int(a_bursts.sum() * a_repeat + b_bursts.sum() * b_repeat),
        "dram_write_bursts": int(c_bursts.sum()),
        "sram_a_read_bytes": active * rows,
        "sram_a_write_bytes": int(a_len.sum()) * a_repeat,
        "sram_b_read_bytes": active * cols,
        "sram_b_write_bytes": int(b_len.sum()) * b_repeat,
        "sram_c_read_bytes": job.m * job.n * ob,
        "sram_c_write_bytes": row_tiles * n_j * rows * cols * ob,
        # For the timing model (not counters):
        "_n_s": n_s, "_n_j": n_j,
        # Every read command, for the timing model: its R-channel cycles and bursts, and
        # how the DMA realigns it; A as (segment, row of M), B as (k, column tile).
        "_a_reads": _Reads(a_cycles, a_bursts.reshape(-1, job.m), a_flush, a_holds, a_bubble),
        "_b_reads": _Reads(b_cycles, b_bursts.reshape(job.k, n_j), b_flush, b_holds, b_bubble),
        "_segment_starts": _segment_starts(config, p, job.k),
        # Bus beats of each C row command (rows of C by column tiles), and how many of
        # them carry input beats (the rest spill over from a misaligned address).
        "_c_beats": c_beats.reshape(job.m, n_j),
        "_c_in_beats": _ceil_div(c_len, config.bus_bytes)[0],
    }


def predict(config, job, memory=None):
    """Every counter of DESIGN.md section 4 for ``job`` on ``config`` (a dict)."""
    if isinstance(job, tuple):
        job = packed_job(*job)
    memory = memory or MemoryModel()
    t = traffic(config, job)
    cycles = _timing(config, job, memory, t)
    out = {name: t[name] for name in COUNTERS if name in t}
    out.update(cycles)
    return out


#: Pipeline constants of the RTL, in cycles, read off its waveforms (release -> loader
#: set-up -> command -> AR -> data; data -> SRAM -> feeder; last array step -> first C
#: write); see docs/performance.md for how well the whole model then agrees.
_ISSUE = 5          # loader set-up and DMA command path before the AR handshake
_DRAIN = 3          # array exit -> C buffer, besides the crossing and the normaliser
_FEED_A = 0         # last A beat of a segment -> the feeder's first read of it
_FEED_B = 1         # first B beat of a segment -> the feeder's first read
_FEED_E = 1         # last B beat of a segment -> the cycle after the feeder's last read
_EXACT_PIECES = 4096  # sub-pieces up to which the model runs a job whole (no extrapolation)
_GROUPS = 16         # segment groups per K chunk that the timing model follows
_NORMALIZE = Normalizer.LATENCY     # register stages from the bottom PE row to the C buffer


def _start_cycles(config, job):
    """START -> tiler start: the job check (hdl/job.py); a what-if configuration the
    generator does not build is taken to have 32-bit dimensions and addresses."""
    if isinstance(config, SystoleConfig):
        return check_cycles(config, job.m, job.k)
    return check_cycles(SystoleConfig(), job.m, job.k)


def _tiles(config, job, p, super_rows, columns):
    """The feeder's tiles for the given super-rows and column tiles, with the blocks and
    pieces they use.

    Yields (length, a_block, a_piece, b_block, kept_rows, where) per tile, where ``where``
    is (row tile, column tile, first segment of the chunk, whether the chunk is the last:
    only then does the tile leave the array as results); blocks and pieces are keys,
    numbered in load order by the caller."""
    rows, cols = config.rows, config.cols
    n_j = _ceil_div(job.n, cols)
    chunks = p.chunks(job.k)
    seg = a_segment_bytes(config)
    first_segment = np.cumsum([0] + [_ceil_div(length, seg) for _, length in chunks])
    for s in super_rows:
        s0 = s * p.ms
        s_rows = min(p.ms, job.m - s0)
        for j in columns:
            for ci, (c, length) in enumerate(chunks):
                a_block = ((s, ci) if p.single_chunk else (s, "spread") if p.spread
                           else (s, j, ci))
                b_block = (ci, j) if (p.single_chunk and n_j == 1) else (s, ci, j)
                for ti, t0 in enumerate(range(0, s_rows, rows)):
                    kept = min(rows, s_rows - t0)
                    a_piece = (a_block, ci) if p.spread else (a_block, ti)
                    yield (length, a_block, a_piece, b_block, kept,
                           ((s0 + t0) // rows, j, int(first_segment[ci]),
                            ci == len(chunks) - 1))


def _timing(config, job, memory, t):
    """Cycle counters from an event model of the tiler, the read bus and the C path.

    The loaders issue sub-pieces: a piece (A: one row tile of one block; B: one block)
    split along K into groups of the tiler's A segments (up to ``_GROUPS`` per chunk),
    each with its commands, bursts and R-channel cycles counted exactly from its commands
    (the ``_a_reads`` and ``_b_reads`` of :func:`traffic`). Each loader stays at most two blocks ahead of the feeder and
    issues its sub-pieces in order, one command per cycle through the one command port,
    with a set-up cycle between blocks. At each issue the arbiter's order holds: the
    sub-pieces of the tile the feeder is on first (A and B interleaved in k); else
    prefetches while fewer than the tiler's window of beats are in flight, A of the
    feeder's block, then B, then other A. A sub-piece keeps the port until the DMA has
    taken its last command (it takes one once fewer than ``max_outstanding`` bursts are in
    flight), and yields it the moment the arbiter prefers the other loader (what is left
    goes later). Data starts ``latency`` cycles after issue or when the bus frees, in
    issue order, at ``beats_per_cycle``. The feeder reads one k-step per cycle, segment
    by segment, each read waiting for its A rows and B row; a tile's last chunk enters the
    array at least rows + cols steps after the previous tile's. The rows then drain
    through the normaliser into the two-tile C buffer, and the writer stores each kept
    row as one command plus its beats; a full buffer stops the array. Jobs of up to
    ``_EXACT_PIECES`` sub-pieces run whole; larger ones run the first three super-rows and the
    last and repeat the third for the others (every middle super-row is the same), and
    likewise the column tiles."""
    p = plan(config, job.k)
    n_s, n_j = t["_n_s"], t["_n_j"]
    # Jobs of up to _EXACT_PIECES sub-pieces run whole; larger ones are extrapolated.
    groups = min(_GROUPS, _ceil_div(min(job.k, p.depth), a_segment_bytes(config)))
    whole = (n_s * n_j * len(p.chunks(job.k)) * _ceil_div(p.ms, config.rows) * groups
             <= _EXACT_PIECES)
    if n_s > 4 and not whole:
        super_rows = [0, 1, 2, n_s - 1]
        repeat = n_s - 4
    else:
        super_rows = list(range(n_s))
        repeat = 0
    rows, cols = config.rows, config.cols
    rate = memory.beats_per_cycle
    # R-channel cycles and bursts of segments [0, g) for every g: A per row tile, B per
    # column tile.
    a_reads, b_reads = t["_a_reads"], t["_b_reads"]
    seg_starts = t["_segment_starts"]
    a_tiles = np.arange(0, job.m, rows)
    a_cum, a_cum_bursts = (_cumulative(np.add.reduceat(x, a_tiles, axis=1))
                           for x in (a_reads.cycles, a_reads.bursts))
    b_cum, b_cum_bursts = (_cumulative(np.add.reduceat(x, seg_starts, axis=0))
                           for x in (b_reads.cycles, b_reads.bursts))
    c_beats, c_in_beats = t["_c_beats"], t["_c_in_beats"]
    spacing = rows + cols

    # Likewise along N: with more than six column tiles, the model runs the first four and
    # the last, and repeats the fourth (its span after the third) for the others.
    if n_j > 6 and not whole:
        columns, col_repeat = [0, 1, 2, 3, n_j - 1], n_j - 5
    else:
        columns, col_repeat = list(range(n_j)), 0
    col_end = {}                 # (super-row, column tile) -> end of its last tile
    tiles = list(_tiles(config, job, p, super_rows, columns))
    # A tile's K chunk loads in segments of seg k-steps: A one segment of every row of the
    # row tile at a time, B the k rows of that segment; the bus carries them in k order.
    # The model follows at most _GROUPS groups of whole segments per chunk: finer steps
    # change little once a chunk is long, and cost time on big shapes.
    seg = a_segment_bytes(config)
    @functools.cache
    def segments(length):
        """(k-steps, first segment, end segment) of each group of the chunk."""
        n_seg = _ceil_div(length, seg)
        per = _ceil_div(n_seg, _GROUPS)
        return [(min(per * seg, length - g * seg), g, min(g + per, n_seg))
                for g in range(0, n_seg, per)]
    # Sub-pieces in load order per operand: (piece key, segment) -> (block, R-channel
    # cycles, commands, bursts, whether its first command's first beat is only held,
    # whether its last command ends with a flush).
    a_pieces, b_pieces = {}, {}
    a_blocks, b_blocks = {}, {}
    need = {}                   # sub-piece -> (first tile that needs it, segment)
    spans = {}                  # sub-piece -> (operand, its commands' place in the arrays)
    for index, (length, a_block, a_piece, b_block, kept, where) in enumerate(tiles):
        row_tile, j, g0, _ = where
        if (a_piece, 0) not in a_pieces:
            a_blocks.setdefault(a_block, len(a_blocks))
            r0 = row_tile * rows
            for si, (_, g, h) in enumerate(segments(length)):
                last = (g0 + h - 1, r0 + kept - 1)
                a_pieces[(a_piece, si)] = (a_blocks[a_block],
                                           int(a_cum[g0 + h, row_tile] - a_cum[g0 + g, row_tile]
                                               - a_reads.bubble[last]),
                                           kept * (h - g),
                                           int(a_cum_bursts[g0 + h, row_tile]
                                               - a_cum_bursts[g0 + g, row_tile]),
                                           bool(a_reads.holds[g0 + g, r0]),
                                           bool(a_reads.flush[last]))
                need[(a_piece, si)] = (index, si)
                spans[(a_piece, si)] = (a_reads, slice(g0 + g, g0 + h), slice(r0, r0 + kept))
        if (("B", b_block), 0) not in b_pieces:
            b_blocks[b_block] = len(b_blocks)
            for si, (n, g, h) in enumerate(segments(length)):
                k0 = seg_starts[g0 + g]
                last = (k0 + n - 1, j)
                b_pieces[(("B", b_block), si)] = (b_blocks[b_block],
                                                  int(b_cum[g0 + h, j] - b_cum[g0 + g, j]
                                                      - b_reads.bubble[last]), n,
                                                  int(b_cum_bursts[g0 + h, j]
                                                      - b_cum_bursts[g0 + g, j]),
                                                  bool(b_reads.holds[k0, j]),
                                                  bool(b_reads.flush[last]))
                need[(("B", b_block), si)] = (index, si)
                spans[(("B", b_block), si)] = (b_reads, slice(k0, k0 + n), j)
    a_order, b_order = list(a_pieces), list(b_pieces)

    def commands(key):
        """Cumulative R-channel cycles and bursts of a sub-piece's commands, in issue
        order (A: segment by segment, the rows of the tile in each)."""
        reads, first, second = spans[key]
        return (_cumulative(reads.cycles[first, second].ravel()),
                _cumulative(reads.bursts[first, second].ravel()))
    last_use_a, last_use_b = {}, {}
    for i, (_, a_block, _, b_block, _, _) in enumerate(tiles):
        last_use_a[a_blocks[a_block]] = i
        last_use_b[b_blocks[b_block]] = i
    release_a, release_b = {}, {}
    sched = {}                   # sub-piece -> (data_start, data_end)
    bus_free = 0.0
    ia = ib = 0
    port_free = 0.0              # the read command port (one command per cycle)
    remaining, first_data = {}, {}   # sub-pieces cut short: what is left, first data
    flushed = False              # the last sub-piece on the bus ended with a flush
    loader_free = {"A": 0.0, "B": 0.0}     # when each loader can issue its next sub-piece
    feed_at = 0.0                # when the feeder moved on to tile i
    next_s0 = 0.0                # the feeder's first read of the next tile
    prev_last = -float(spacing)
    ends, w_ends = [], []
    w_free = drain_free = 0.0
    leave = collections.deque(maxlen=2 * rows)      # when buffered C rows leave
    stall_store = 0.0
    stops = []                   # (start, length) of array stops for a full C buffer
    period_start = period_end = None
    i = 0
    start = _start_cycles(config, job)
    t0 = start + _ISSUE
    max_outstanding = getattr(config, "max_outstanding", 64)
    prefetch_beats = _PREFETCH_BEATS * max_outstanding
    while i < len(tiles):
        length, a_block, a_piece, b_block, kept, (_, j, _, finish) = tiles[i]
        lengths = segments(length)
        if (a_piece, len(lengths) - 1) in sched and \
                (("B", b_block), len(lengths) - 1) in sched:
            # The feeder reads one k-step per cycle: a segment's first read waits for
            # its A rows (the cycle after their last beat) and for its first B row (the
            # cycle after that beat), and its last read for its last B row. A read reaches
            # the array the cycle after it; a tile's last chunk enters at least one array
            # crossing after the previous tile's (its results drain behind them).
            s0 = next_s0
            first_read = None
            for si, (n, _, _) in enumerate(lengths):
                (_, ae), (bs, be) = sched[(a_piece, si)], sched[(("B", b_block), si)]
                s0 = max(s0, ae + _FEED_A, bs + _FEED_B)
                first_read = s0 if first_read is None else first_read
                s0 = max(s0 + n, be + _FEED_E)
            # While the C buffer was full the array stood still; that holds this tile
            # back only for the part of the stop after its first read (before, the feeder
            # was waiting for data anyway).
            held = sum(max(0.0, min(length, since + length - first_read))
                       for since, length in stops)
            stops.clear()
            f = s0 + held              # the cycle after the feeder's last read
            op = max(f, prev_last + spacing) if finish else f
            stall_store += op - f + held   # operands waiting for the array (RTL: store stall)
            next_s0 = max(f + 1, op)
            end = op + 1
            feed_at = f
            if finish:
                prev_last = op
            ends.append(end)
            col_end[(a_block[0], j)] = end
            # Drain: one row per cycle into the C buffer (two tiles deep) once the tile
            # has crossed the array; the writer stores a kept row as a command plus its
            # beats, and drops a row past M in one cycle. A full buffer stops the array.
            if finish:
                natural = max(end + spacing + _DRAIN + _NORMALIZE, drain_free)
                for r in range(rows):          # the bottom row first: dropped rows lead
                    enter = natural + r
                    if len(leave) == 2 * rows and leave[0] > enter:
                        blocked = leave[0] - enter
                        stops.append((enter, blocked))
                        natural += blocked
                        enter += blocked
                    w_row = max(enter + 1, w_free)
                    w_free = w_row + (2 + int(c_in_beats[j]) if rows - 1 - r < kept else 1)
                    leave.append(w_free)
                drain_free = natural + rows
                w_ends.append(w_free)
            ab, bbk = a_blocks[a_block], b_blocks[b_block]
            if last_use_a[ab] == i:
                release_a[ab] = f
            if last_use_b[bbk] == i:
                release_b[bbk] = f
            if repeat and tiles[i][2][0][0] == 2 and period_start is None:
                period_start = ends[-2] if len(ends) > 1 else 0.0
            if repeat and period_start is not None and period_end is None and (
                    i + 1 == len(tiles) or tiles[i + 1][2][0][0] != 2):
                period_end = end
            i += 1
            continue
        # Issue the next sub-piece (or the first commands of it) through the command port:
        # at the earliest time a loader's head can go, the one the arbiter prefers then.
        options = []
        for which, order, index, pieces, released in (("A", a_order, ia, a_pieces, release_a),
                                                      ("B", b_order, ib, b_pieces, release_b)):
            if index == len(order):
                continue
            blk = pieces[order[index]][0]
            if blk >= 2 and blk - 2 not in released:
                continue
            avail = max(t0, released[blk - 2] + _ISSUE if blk >= 2 else t0, loader_free[which])
            tile, si = need[order[index]]
            # Urgent once the feeder is on its tile; before, a prefetch, which goes out
            # only while fewer than prefetch_beats are in flight.
            urgent_at = max(avail, feed_at + _ISSUE - 1) if tile == i else float("inf")
            prefetch_at = max(avail, bus_free - prefetch_beats / rate)
            options.append((min(urgent_at, prefetch_at), urgent_at, tile, si, which))
        now = max(port_free, min(o[0] for o in options))

        def priority(option, at):
            """The arbiter's order at time ``at`` (lower first)."""
            _, urgent_at, tile, si, which = option
            if urgent_at <= at:
                return (0, si, which)
            current = i if at >= feed_at + _ISSUE - 1 else i - 1
            near = which == "A" and current >= 0 and \
                a_pieces[a_order[ia]][0] == a_blocks[tiles[current][1]]
            return (1, 0 if near else 1 if which == "B" else 2, tile)
        option = min((o for o in options if o[0] <= now), key=lambda o: priority(o, now))
        which, issue = option[4], now
        pieces = a_pieces if which == "A" else b_pieces
        key = a_order[ia] if which == "A" else b_order[ib]
        blk, beats, n_cmds, bursts, held, flushes = pieces[key]
        done = remaining.get(key, 0)        # commands of it already issued (it was cut)
        if done:
            cum_cycles, cum_bursts = commands(key)
            beats, bursts = beats - cum_cycles[done], bursts - cum_bursts[done]
            n_cmds, held = n_cmds - done, False
        # The DMA takes a command once fewer than max_outstanding bursts are in flight:
        # the sub-piece holds the port until its last command is taken, one per cycle at
        # best, or as fast as the bus drains the bursts ahead of it.
        whole_piece = pieces[key]
        window = max_outstanding * whole_piece[1] / max(whole_piece[3], 1) / rate
        # Data follows the previous sub-piece's, a cycle later when that one ends with a
        # flush and this one does not start with a held beat.
        data_start = max(issue + memory.latency, bus_free + (flushed and not held))
        end = max(data_start + beats / rate, issue + n_cmds + memory.latency)
        taken = max(issue + n_cmds, end - window)
        # The port goes to the other loader as soon as the arbiter prefers it (it becomes
        # ready, or urgent): only the commands taken before then go now.
        cut = None
        for other in options:
            if other[4] == which:
                continue
            for at in sorted({max(other[0], now), max(other[1], now)}):
                if at < taken and priority(other, at) < priority(option, at):
                    cut = at if cut is None else min(cut, at)
                    break
        issued = n_cmds
        if cut is not None and cut > now:
            # The commands taken before the cut, at the pace the whole sub-piece goes.
            issued = round(n_cmds * (cut - now) / (taken - now))
        if issued == 0:
            port_free = cut                 # nothing taken before the other loader's turn
            continue
        if issued < n_cmds:
            cum_cycles, cum_bursts = commands(key)
            remaining[key] = done + issued
            beats = cum_cycles[done + issued] - cum_cycles[done]
            bursts = cum_bursts[done + issued] - cum_bursts[done]
            n_cmds, flushes = issued, False
            end = max(data_start + beats / rate, issue + n_cmds + memory.latency)
            taken = cut
        else:
            cut = None
        port_free = loader_free[which] = taken
        bus_free, flushed = end, flushes
        end += flushes                 # the last output beat, flushed
        if cut is not None:
            first_data.setdefault(key, data_start)
            continue
        data_start = first_data.get(key, data_start)
        if which == "A":
            ia += 1
            following = a_order[ia] if ia < len(a_order) else None
        else:
            ib += 1
            following = b_order[ib] if ib < len(b_order) else None
        if following is not None and pieces[following][0] != blk:
            loader_free[which] += 1            # a loader's set-up cycle between blocks
        sched[key] = (data_start, end)

    # Time of the column tiles and super-rows the model did not run.
    span = {s: col_end[(s, 3)] - col_end[(s, 2)] for s in super_rows} if col_repeat else {}
    skipped = col_repeat * sum(span.values())
    if repeat:
        skipped += repeat * (period_end - period_start + col_repeat * span.get(2, 0.0))
    # The last row written (the top row of the last tile: rows drain bottom first) ends
    # with the W beat a misaligned address spills into.
    top = (_ceil_div(job.m, rows) - 1) * rows
    last = (w_ends[-1] if w_ends else 0.0) + skipped + int(c_beats[top, -1] - c_in_beats[-1])
    stall_store *= n_s * n_j / (len(super_rows) * len(columns))
    cycles = int(round(last))      # the last row's write cost covers its B response
    active = t["active_cycles"]
    stall_store = int(round(stall_store))
    fed_end = (ends[-1] if ends else 0.0) + skipped
    overhead = start + int(round(last - fed_end))
    stall_load = max(0, cycles - active - stall_store - overhead)
    overhead = cycles - active - stall_store - stall_load
    return {"cycles": cycles, "active_cycles": active, "stall_load_cycles": stall_load,
            "stall_store_cycles": stall_store, "overhead_cycles": overhead}

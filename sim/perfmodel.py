"""The performance model: every counter of DESIGN.md section 4, without simulating.

    predict(config, job, memory=MemoryModel()) -> dict of counter name -> value

Two parts:

* **Traffic** (bytes, bursts, SRAM traffic, MACs) follows the tiler's loop nest
  (hdl/tiler.py) command by command: which A and B blocks it loads, which row segments
  each block is read in, how the DMA splits each command into bus beats and bursts
  (``burst_count``), and which C rows the writer stores. These counters are exact.
* **Cycles** come from an event model of the same loop nest at the level of bus bursts
  and tiles (see :func:`_timing`), which answers in milliseconds for GEMMs far too large
  to simulate. How close it is to the RTL is measured, not assumed: see
  docs/performance.md and tests/test_perfmodel.py.

``job`` is a :class:`systole.sim.driver.GemmJob` (addresses and strides in bytes) or a
``(M, N, K)`` tuple, which means packed row-major operands at 4 KiB-aligned addresses and
fp32 output.
"""

import collections
from dataclasses import dataclass

import numpy as np

from ..config import SystoleConfig
from ..formats import output_format
from ..hdl.counters import COUNTERS
from ..hdl.dma import _PAGE
from ..hdl.normalizer import Normalizer
from ..hdl.tiler import _A_SEGMENT_BEATS, _MAX_FOLD
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
    return Plan(single_chunk=single, fold=fold, ms=ms, depth=config.sram_depth)


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


def _a_commands(config, job, p):
    """Address and length of every A read command of one pass over M (every super-row
    once, every K chunk once), in issue order within a block."""
    seg = _A_SEGMENT_BEATS * config.bus_bytes
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
    n_c = len(p.chunks(job.k))
    row_tiles = _ceil_div(job.m, rows)

    # A: each block (s, c) once when K fits (it stays for every column tile), else once
    # per (s, j, c).
    a_addr, a_len = _a_commands(config, job, p)
    a_beats, a_bursts = _beats_and_bursts(a_addr, a_len, config)
    a_repeat = 1 if p.single_chunk else n_j
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
        "_a_beats": int(a_beats.sum()) * a_repeat, "_b_beats": int(b_beats.sum()) * b_repeat,
        "_c_beats": int(c_beats.sum()), "_n_s": n_s, "_n_j": n_j, "_n_c": n_c,
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


#: Pipeline constants of the RTL, in cycles (calibrated once against the Verilator model
#: of the default configuration; see docs/performance.md).
_START = 1          # START state before the tiler runs
_ISSUE = 3          # loader set-up and DMA command path before the AR handshake
_FEED = 3           # read beat -> SRAM -> feeder -> array input
_TAIL = 2           # last write beat -> B response -> done
_NORMALIZE = Normalizer.LATENCY     # register stages from the bottom PE row to the C buffer


def _tiles(config, job, p, super_rows):
    """The feeder's tiles for the given super-rows, with the blocks and pieces they use.

    Yields (length, a_block, a_piece, b_block, kept_rows, cols) per tile; blocks and pieces
    are keys, numbered in load order by the caller."""
    rows, cols = config.rows, config.cols
    n_j = _ceil_div(job.n, cols)
    chunks = p.chunks(job.k)
    for s in super_rows:
        s0 = s * p.ms
        s_rows = min(p.ms, job.m - s0)
        for j in range(n_j):
            for ci, (c, length) in enumerate(chunks):
                a_block = (s, ci) if p.single_chunk else (s, j, ci)
                b_block = (ci, j) if (p.single_chunk and n_j == 1) else (s, ci, j)
                for ti, t0 in enumerate(range(0, s_rows, rows)):
                    kept = min(rows, s_rows - t0)
                    yield (length, a_block, (a_block, ti), b_block, kept,
                           min(cols, job.n - j * cols))


def _timing(config, job, memory, t):
    """Cycle counters from an event model of the tiler, the read bus and the C path.

    The read bus serves pieces (A: one row tile of one block; B: one block) in the order
    the loaders issue them, each loader at most two blocks ahead of the feeder, B before A
    when both could go; a piece's data starts ``latency`` cycles after its issue or when
    the bus frees, and takes its beats at ``beats_per_cycle``. A tile starts when the
    feeder is free and the first data of its pieces has arrived, and ends ``length``
    cycles later or one cycle after its last data, whichever is later. Its rows then
    drain through the normaliser into the two-tile C buffer, and the writer stores each
    kept row as one command plus its beats. When there are more than four super-rows,
    the model runs the first three and the last and repeats the third for the others
    (every middle super-row is the same)."""
    p = plan(config, job.k)
    n_s = t["_n_s"]
    if n_s > 4:
        super_rows = [0, 1, 2, n_s - 1]
        repeat = n_s - 4
    else:
        super_rows = list(range(n_s))
        repeat = 0
    rows, cols, bb = config.rows, config.cols, config.bus_bytes
    rate = memory.beats_per_cycle
    ob = output_format(job.out_format).width // 8
    # Average beats per byte of each operand (alignment makes rows cost extra beats).
    a_bytes = t["sram_a_write_bytes"] or 1
    b_bytes = t["sram_b_write_bytes"] or 1
    a_factor = t["_a_beats"] / a_bytes
    b_factor = t["_b_beats"] / b_bytes
    row_beats = _ceil_div(cols * ob, bb)           # approximate beats per C row
    spacing = rows + cols

    tiles = list(_tiles(config, job, p, super_rows))
    # Pieces in load order per operand, each with the block it belongs to.
    a_pieces, b_pieces = {}, {}
    a_blocks, b_blocks = {}, {}
    need = {}                   # piece -> first tile that needs it
    for index, (length, a_block, a_piece, b_block, kept, ncols) in enumerate(tiles):
        if a_piece not in a_pieces:
            a_blocks.setdefault(a_block, len(a_blocks))
            a_pieces[a_piece] = (a_blocks[a_block], kept * length * a_factor)
            need[a_piece] = index
        if b_block not in b_blocks:
            b_blocks[b_block] = len(b_blocks)
            b_pieces[b_block] = (b_blocks[b_block], length * ncols * b_factor)
            need[("B", b_block)] = index
    a_order, b_order = list(a_pieces), list(b_pieces)
    last_use_a, last_use_b = {}, {}
    for i, (_, a_block, _, b_block, _, _) in enumerate(tiles):
        last_use_a[a_blocks[a_block]] = i
        last_use_b[b_blocks[b_block]] = i
    release_a, release_b = {}, {}
    sched = {}                   # piece key -> (data_start, data_end)
    bus_free = 0.0
    ia = ib = 0
    f_free = -1.0                # end of the previous tile
    prev_last = -spacing
    ends, w_ends = [], []
    w_free = drain_free = 0.0
    leave = collections.deque(maxlen=2 * rows)      # when buffered C rows leave
    carried_stall = stall_store = 0.0
    period_start = period_end = None
    i = 0
    t0 = _START + _ISSUE
    while i < len(tiles):
        length, a_block, a_piece, b_block, kept, ncols = tiles[i]
        if a_piece in sched and ("B", b_block) in sched:
            (as_, ae), (bs, be) = sched[a_piece], sched[("B", b_block)]
            # Pieces stream in k order and the feeder follows the slower of the two:
            # it starts on the first data and cannot end before the last.
            start = max(f_free + 1, min(as_, bs) + _FEED)
            end = max(start + length, max(ae, be) + _FEED, prev_last + spacing)
            end += carried_stall       # the array stood still while C drained
            carried_stall = 0.0
            f_free = prev_last = end
            ends.append(end)
            # Drain: one row per cycle into the C buffer (two tiles deep) once the tile
            # has crossed the array; the writer stores a kept row as a command plus its
            # beats, and drops a row past M in one cycle. A full buffer stops the array.
            natural = max(end + spacing + 1 + _NORMALIZE, drain_free)
            for r in range(rows):
                enter = natural + r
                if len(leave) == 2 * rows and leave[0] > enter:
                    blocked = leave[0] - enter
                    natural += blocked
                    carried_stall += blocked
                    stall_store += blocked
                    enter += blocked
                w_row = max(enter + 1, w_free)
                w_free = w_row + (2 + row_beats if r < kept else 1)
                leave.append(w_free)
            drain_free = natural + rows
            w_ends.append(w_free)
            ab, bbk = a_blocks[a_block], b_blocks[b_block]
            if last_use_a[ab] == i:
                release_a[ab] = end
            if last_use_b[bbk] == i:
                release_b[bbk] = end
            if repeat and tiles[i][2][0][0] == 2 and period_start is None:
                period_start = ends[-2] if len(ends) > 1 else 0.0
            if repeat and period_start is not None and period_end is None and (
                    i + 1 == len(tiles) or tiles[i + 1][2][0][0] != 2):
                period_end = end
            i += 1
            continue
        # Schedule the next piece on the bus: the loader whose head can go first, then the
        # one the feeder needs first, then B.
        options = []
        if ia < len(a_order):
            blk, beats = a_pieces[a_order[ia]]
            if blk < 2 or blk - 2 in release_a:
                options.append((max(t0, release_a.get(blk - 2, t0) + _ISSUE),
                                need[a_order[ia]], 1, "A"))
        if ib < len(b_order):
            blk, beats = b_pieces[b_order[ib]]
            if blk < 2 or blk - 2 in release_b:
                options.append((max(t0, release_b.get(blk - 2, t0) + _ISSUE),
                                need[("B", b_order[ib])], 0, "B"))
        # Among the loaders that can go by the time the bus frees, the one needed first.
        _, _, issue, which = min((max(o[0], bus_free - memory.latency), o[1], o[0], o[3])
                                 for o in options)
        if which == "A":
            key, (blk, beats) = a_order[ia], a_pieces[a_order[ia]]
            ia += 1
        else:
            key, (blk, beats) = ("B", b_order[ib]), b_pieces[b_order[ib]]
            ib += 1
        data_start = max(issue + memory.latency, bus_free)
        bus_free = data_start + beats / rate
        sched[key] = (data_start, bus_free)

    last = w_ends[-1] if w_ends else 0.0
    if repeat:
        last += repeat * (period_end - period_start)
        stall_store *= 1 + repeat / max(1, len(super_rows))
    cycles = int(round(last + _TAIL))
    active = t["active_cycles"]
    stall_store = int(round(stall_store))
    fed_end = (ends[-1] if ends else 0.0) + (repeat * (period_end - period_start)
                                             if repeat else 0.0)
    overhead = _START + int(round(last + _TAIL - fed_end))
    stall_load = max(0, cycles - active - stall_store - overhead)
    overhead = cycles - active - stall_store - stall_load
    return {"cycles": cycles, "active_cycles": active, "stall_load_cycles": stall_load,
            "stall_store_cycles": stall_store, "overhead_cycles": overhead}

"""The tiling controller: operand loaders, double-buffered operand SRAMs, and the feeder.

Loop nest (the same in all three engines, each with its own counters)::

    for s in super-rows of Ms rows:        Ms = row_tiles * rows * F if K <= sram_depth, else rows
      for j in column tiles of cols:
        for c in K chunks of sram_depth:   (one chunk when K fits)
          for t in row tiles of s:         (rows at a time)
            stream k over chunk c into the array

The A loader fills an A buffer with block (s, c) — Ms rows by one K chunk — and the B
loader a B buffer with block (c, j) — one K chunk by cols columns. A loader skips a step
whose block equals the previous one (K fits: A stays for every j of a super-row; B stays
for every s when there is one column tile and one chunk). Each operand has two buffers
and three counters: blocks ``issued`` (commands sent), ``loaded`` (all data written),
``released`` (feeder done with it). A loader may issue while ``issued - released < 2``;
the feeder may use a buffer while ``loaded != released``. So the next blocks load while
the array computes, and the accumulators in the PEs carry a tile across K chunks.

An A buffer is row_tiles * rows banks of sram_depth bytes. When K is short, F row-tile
groups stack in each bank's depth (F the largest power of two, at most 8, with
F * K <= sram_depth): a super-row then holds F times more rows, and B, which is re-read
once per super-row, moves F times fewer bytes. When K is longer than sram_depth but at
most row_tiles * sram_depth ("spread"), a super-row is one row tile and its K chunks lie
side by side in the bank groups (chunk c in group c): the A loader loads the whole row
tile, all of K, as one block, which stays for every column tile, so A is read once
instead of once per column tile.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant, below_constant, times_constant
from .array import OperandsLayout
from .blockram import NO_COLLISION, BlockRAMFIFOBuffered, RegisteredReadPort
from .dma import ReadCommand, ReadData
from .job import JobDescriptor

__all__ = ["TileInfo", "TileScheduler", "TAG_A", "TAG_B", "a_segment_bytes",
           "max_read_length"]

TAG_A, TAG_B = 0, 1

#: Most row-tile groups of short K rows stacked in one A buffer (a power of two).
_MAX_FOLD = 8

#: Prefetch reads may have this many times max_outstanding beats in flight.
_PREFETCH_BEATS = 2

#: Bus beats per A segment: the feeder may start on an A block once its first segment of
#: every row has arrived.
_A_SEGMENT_BEATS = 8


def a_segment_bytes(config):
    """Bytes of k in one A segment (a power of two, so it never crosses a K chunk)."""
    return min(_A_SEGMENT_BEATS * config.bus_bytes, config.sram_depth)


def max_read_length(config):
    """Longest read command the tiler issues, in bytes: an A segment or a B row."""
    return max(_A_SEGMENT_BEATS * config.bus_bytes, config.cols)


def TileInfo(config):
    """Where a finished C tile goes: its first row and column and its valid extent."""
    return data.StructLayout({
        "row0": config.dim_width, "col0": config.dim_width,
        "rows": range(config.rows + 1), "cols": range(config.cols + 1),
    })


class _Job:
    """The fields of the descriptor the tiler uses, at the widths an accepted job needs
    (M, N below ``2**dim_width``, K at most max_k; addresses are computed modulo
    ``2**addr_width``, the bus's address space)."""

    def __init__(self, config, job):
        self.m = job.m[:config.dim_width]
        self.n = job.n[:config.dim_width]
        self.k = job.k[:config.k_width]
        self.a_addr = job.a_addr[:config.addr_width]
        self.b_addr = job.b_addr[:config.addr_width]
        self.a_stride = job.a_stride[:config.addr_width]
        self.b_stride = job.b_stride[:config.addr_width]


def _small_difference(a, b, bound):
    """``a - b`` for a difference known to lie in [0, bound]: only its low bits."""
    width = bound.bit_length()
    return (a[:width] - b[:width])[:width]


def _last_piece(length, log2):
    """The index of the last ``2**log2``-sized piece of ``length`` (at least 1) and that
    piece's length: a multiple of the piece size ends in a whole piece."""
    whole = length[:log2] == 0
    return length[log2:] - whole, Cat(length[:log2], whole)


class _Nest:
    """Counters of the loop nest (s, j, c[, t]) for one engine: they restart on ``start``
    and advance on ``step``.

    ``s`` is the super-row's first row, ``j`` the column tile's first column and ``c`` the
    K chunk's index. With ``with_t``, ``tile`` counts the row tiles of the super-row,
    ``group`` and ``fold`` say where the row tile lives in the A buffer, ``row`` is its
    first row relative to s and ``t`` its first row. ``last`` is high on the final
    iteration. A counter only ever holds a value below M, N or the chunk count while the
    nest is active (the step after ``last`` may wrap; nothing reads it).
    """

    def __init__(self, m, name, job, plan, start, *, with_t):
        dim = len(job.m)
        self.s = Signal(dim, name=f"{name}_s")
        self.j = Signal(dim, name=f"{name}_j")
        self.c = Signal(plan.last_chunk.shape(), name=f"{name}_c")
        self._m = m
        self._stepping = Signal(name=f"{name}_step")
        next_s = self.s + plan.ms
        next_j = self.j + plan.cols
        self.c_last = self.c == plan.last_chunk
        self.j_last = next_j >= job.n
        self.s_last = next_s >= job.m
        # Rows of the super-row: ms, or what is left of M.
        self.super_rows = Mux(self.s_last, _small_difference(job.m, self.s, plan.block_rows),
                              plan.ms)
        # Columns of the column tile: cols, or what is left of N.
        self.tile_cols = Mux(self.j_last, _small_difference(job.n, self.j, plan.cols),
                             plan.cols)
        if with_t:
            # Where the row tile lives in the A buffer: for row tile index i within the
            # super-row, bank group i mod row_tiles and fold i div row_tiles.
            self.tile = Signal(range(plan.row_tiles * _MAX_FOLD), name=f"{name}_tile")
            self.group = Signal(range(plan.row_tiles), name=f"{name}_group")
            self.fold = Signal(range(_MAX_FOLD), name=f"{name}_fold")
            self.row = times_constant(self.tile, plan.rows)
            # The row tile's first row. s is a multiple of ms and row is below ms, so when ms
            # is a power of two (row_tiles * rows is one) the sum has no carries.
            tile_rows = plan.row_tiles * plan.rows
            self.t = self.s | self.row if tile_rows & (tile_rows - 1) == 0 else self.s + self.row
            self.rows_left = self.super_rows - self.row     # of the super-row, from row on
            self.t_last = ~above_constant(self.rows_left, plan.rows)
        else:
            self.t_last = Const(1)
        self.group_last = self.c_last & self.j_last & self.s_last
        self.last = self.t_last & self.group_last

        # Each counter restarts at 0 on start and when it wraps: one condition, so that it
        # maps onto the flip-flops' synchronous reset instead of a multiplexer per bit.
        step_c = self._stepping & self.t_last       # the step moves to the next chunk
        step_j = step_c & self.c_last               # to the next column tile
        step_s = step_j & self.j_last               # to the next super-row
        with m.If(start | step_j):
            m.d.sync += self.c.eq(0)
        with m.Elif(step_c):
            m.d.sync += self.c.eq(self.c + 1)
        with m.If(start | step_s):
            m.d.sync += self.j.eq(0)
        with m.Elif(step_j):
            m.d.sync += self.j.eq(next_j)
        with m.If(start):
            m.d.sync += self.s.eq(0)
        with m.Elif(step_s):
            m.d.sync += self.s.eq(next_s)
        if with_t:
            with m.If(start):
                m.d.sync += [self.tile.eq(0), self.group.eq(0), self.fold.eq(0)]
            with m.Elif(step_c):
                m.d.sync += [self.tile.eq(0), self.group.eq(0), self.fold.eq(0)]
                with m.If(plan.spread & ~self.c_last):
                    m.d.sync += self.group.eq(self.group + 1)
            with m.Elif(self._stepping):
                m.d.sync += self.tile.eq(self.tile + 1)
                with m.If(self.group == plan.row_tiles - 1):
                    m.d.sync += [self.group.eq(0), self.fold.eq(self.fold + 1)]
                with m.Else():
                    m.d.sync += self.group.eq(self.group + 1)

    def step(self):
        """Advance to the next iteration (call inside a condition)."""
        self._m.d.comb += self._stepping.eq(1)


class _Plan:
    """Per-job constants of the loop nest, shared by the engines."""

    def __init__(self, m, config, job):
        self.rows = config.rows
        self.cols = config.cols
        self.depth = config.sram_depth
        self.row_tiles = config.row_tiles
        self.block_rows = config.row_tiles * config.rows * _MAX_FOLD    # the most in a block
        self.block_rows_width = self.block_rows.bit_length()
        depth_log2 = config.sram_depth.bit_length() - 1
        # K chunks: the index of the last, and its length (K is at least 1; a multiple of
        # the depth ends in a whole chunk).
        self.last_chunk = Signal(range(((config.max_k - 1) >> depth_log2) + 1), name="last_chunk")
        self.last_chunk_len = Signal(range(config.sram_depth + 1), name="last_chunk_len")
        last_chunk, last_chunk_len = _last_piece(job.k, depth_log2)
        m.d.comb += [self.last_chunk.eq(last_chunk), self.last_chunk_len.eq(last_chunk_len)]
        self.single_chunk = Signal(name="single_chunk")
        m.d.comb += self.single_chunk.eq(~above_constant(job.k, config.sram_depth))
        # Folds: how many row-tile groups of K bytes stack in one buffer's depth (a power of
        # two, at most _MAX_FOLD). A super-row holds row_tiles * rows * folds rows, so B is
        # re-read ceil(M / Ms) times instead of ceil(M / (row_tiles * rows)).
        self.fold_log2 = Signal(range(_MAX_FOLD.bit_length()), name="fold_log2")
        fold_choices = [log2 for log2 in range(_MAX_FOLD.bit_length() - 1, 0, -1)
                        if config.sram_depth >> log2 >= config.bus_bytes]
        fold_choice = Const(0, self.fold_log2.shape())
        for log2 in reversed(fold_choices):      # the largest fitting fold wins
            fold_choice = Mux(~above_constant(job.k, config.sram_depth >> log2), log2,
                              fold_choice)
        m.d.comb += self.fold_log2.eq(fold_choice)
        self.ms = Mux(self.single_chunk, (config.row_tiles * config.rows) << self.fold_log2,
                      config.rows)
        self.single_col = ~above_constant(job.n, config.cols)
        # Spread: K longer than one bank but at most row_tiles banks deep. A super-row is
        # one row tile, and its K chunks lie side by side in the row-tile bank groups
        # (chunk c in group c), so the block stays for every column tile like a short-K
        # block, instead of being re-read for each.
        self.spread = Signal(name="spread")
        m.d.comb += self.spread.eq(~self.single_chunk
                                   & ~above_constant(job.k, config.row_tiles * config.sram_depth)
                                   if config.row_tiles > 1 else 0)
        # Column tiles share the A block (it is loaded once per super-row).
        self.a_shared = self.single_chunk | self.spread

    def chunk_len(self, c_last):
        """Length of a K chunk (``c_last``: it is the last)."""
        return Mux(c_last, self.last_chunk_len, self.depth)


class TileScheduler(wiring.Component):
    """Loads operand blocks over the read DMA and feeds the array, tile after tile.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    job : In(JobDescriptor)
        Must hold still from ``start`` until ``done``.
    start : In(1)
        Pulse: begin the job (all counters of the nest restart).
    abort : In(1)
        Stop issuing reads and feeding (after an AXI error).
    busy : Out(1)
        Not every operand beat of the job has been fed yet.
    read_cmd : Out(stream.Signature(ReadCommand(config)))
    read_data : In(stream.Signature(ReadData(config)))
    operands : Out(stream.Signature(OperandsLayout(config)))
        To the array.
    tiles : Out(stream.Signature(TileInfo(config)))
        One entry per output tile, in the order the array finishes them.
    macs, padded_macs : Out
        Useful and padding multiply-accumulates of the beat on ``operands`` this cycle.
    sram_a_write, sram_b_write : Out(range(bus_bytes + 1))
        Bytes written into the A / B SRAM this cycle.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "job": In(JobDescriptor),
            "start": In(1),
            "abort": In(1),
            "busy": Out(1),
            "read_cmd": Out(stream.Signature(ReadCommand(config))),
            "read_data": In(stream.Signature(ReadData(config))),
            "operands": Out(stream.Signature(OperandsLayout(config))),
            "tiles": Out(stream.Signature(TileInfo(config))),
            "macs": Out(range(config.rows * config.cols + 1)),
            "padded_macs": Out(range(config.rows * config.cols + 1)),
            "sram_a_write": Out(range(config.bus_bytes + 1)),
            "sram_b_write": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        job = self.job
        rows, cols, bb = config.rows, config.cols, config.bus_bytes
        depth = config.sram_depth
        a_banks = config.row_tiles * rows
        words = depth // bb                     # A bank words per buffer
        depth_log2 = depth.bit_length() - 1
        log2_bb = bb.bit_length() - 1
        aw = config.addr_width
        job = _Job(config, job)
        plan = _Plan(m, config, job)

        # ---- SRAMs ------------------------------------------------------------------
        # The feeder never reads a word in the cycle it is written (it reads a block's word
        # only once the loader has moved past it, see a_row_in and b_row_in below, or from
        # the other buffer), so Yosys need not emulate a read-before-write collision.
        a_mems = []
        for bank in range(a_banks):
            mem = memory.Memory(shape=data.ArrayLayout(8, bb), depth=2 * words, init=[],
                                attrs=NO_COLLISION)
            m.submodules[f"sram_a_{bank}"] = mem
            a_mems.append(mem)
        b_mem = memory.Memory(shape=data.ArrayLayout(8, cols), depth=2 * depth, init=[],
                              attrs=NO_COLLISION)
        m.submodules.sram_b = b_mem

        # ---- block bookkeeping --------------------------------------------------------
        def counters(name):
            return {key: Signal(3, name=f"{name}_{key}") for key in ("issued", "loaded", "released")}
        a_blk, b_blk = counters("a"), counters("b")
        with m.If(self.start):
            m.d.sync += [sig.eq(0) for blk in (a_blk, b_blk) for sig in blk.values()]

        # Block sizes travel from the command side to the data side in order: the rows of
        # the A block and whether it is of the last K chunk; whether the B block is.
        block_rows_width = plan.block_rows_width
        a_k_width = (config.row_tiles * depth).bit_length()
        a_sizes = fifo.SyncFIFO(width=block_rows_width + 1, depth=2)
        b_sizes = fifo.SyncFIFO(width=1, depth=2)
        m.submodules.a_sizes, m.submodules.b_sizes = a_sizes, b_sizes

        # ---- loaders (command side) ----------------------------------------------------
        a_cmd = Signal(ReadCommand(config))
        a_cmd_valid = Signal()
        b_cmd = Signal(ReadCommand(config))
        b_cmd_valid = Signal()
        a_cmd_ready = Signal()
        b_cmd_ready = Signal()

        # A loader.
        a_nest = _Nest(m, "a_load", job, plan, self.start, with_t=False)
        # K of an A block: one chunk, or all of K when spread.
        a_block_len = lambda c_last: Mux(plan.spread, job.k[:a_k_width], plan.chunk_len(c_last))
        a_active = Signal()                 # walking the nest
        a_issuing = Signal()                # sending the rows of one block
        a_addr = Signal(aw)
        # A blocks load row tile by row tile, each in segments of seg bytes of k, every row
        # of the tile before the next segment: the feeder can start a tile on
        # k < (segments loaded) * seg instead of waiting for whole rows of K bytes, and the
        # first tile of a job needs only its own rows.
        seg = a_segment_bytes(config)
        seg_log2 = seg.bit_length() - 1
        a_seg = Signal(range(config.row_tiles * depth // seg))     # segment requested

        def a_last_seg(c_last):
            """The index of an A block's last segment and its length (``c_last``: the block
            is of the last K chunk)."""
            index, length = _last_piece(a_block_len(c_last), seg_log2)
            return index[:len(a_seg)], length

        # Rows are counted from the block's first row (a_nest.s).
        a_tile_row = Signal(range(1 << block_rows_width))   # first row of the row tile requested
        a_tile_off = Signal(range(rows))    # row being requested, from a_tile_row
        a_block_end = a_tile_row + a_tile_off + 1 == a_nest.super_rows   # the block's last row
        a_tile_end = (a_tile_off == rows - 1) | a_block_end             # the tile's last row
        # Address of row a_tile_row at k = 0; between blocks, of the block's first row. A
        # block of several row tiles is a single chunk (c = 0), and a block of a longer K is
        # one row tile, so the tile base steps by rows * a_stride both from tile to tile and,
        # after the block's last tile, to the next super-row.
        a_tile_base = Signal(aw)
        a_seg_base = Signal(aw)             # address of row a_tile_row, k = c + a_seg * seg
        a_next_tile = a_tile_base + times_constant(job.a_stride, rows)
        last_seg, a_seg_tail = a_last_seg(a_nest.c_last)
        a_seg_last = a_seg == last_seg
        a_skip = (plan.a_shared & (a_nest.j != 0)) | (plan.spread & (a_nest.c != 0))
        with m.If(self.start):
            m.d.sync += [a_active.eq(1), a_issuing.eq(0), a_tile_base.eq(job.a_addr)]
        with m.Elif(self.abort):
            m.d.sync += [a_active.eq(0), a_issuing.eq(0)]
        with m.Elif(a_active & ~a_issuing):
            with m.If(a_skip):
                m.d.sync += a_active.eq(~a_nest.last)
                with m.If(a_nest.c_last & a_nest.j_last):
                    m.d.sync += a_tile_base.eq(a_next_tile)
                a_nest.step()
            with m.Elif(((a_blk["issued"] - a_blk["released"])[:3] < 2) & a_sizes.w_rdy):
                chunk_base = Cat(a_tile_base[:depth_log2], a_tile_base[depth_log2:] + a_nest.c)
                m.d.comb += [a_sizes.w_en.eq(1),
                             a_sizes.w_data.eq(Cat(a_nest.super_rows, a_nest.c_last))]
                m.d.sync += [
                    a_issuing.eq(1),
                    a_seg.eq(0),
                    a_tile_row.eq(0),
                    a_tile_off.eq(0),
                    a_seg_base.eq(chunk_base),
                    a_addr.eq(chunk_base),
                ]
        with m.Elif(a_issuing & ~self.abort):
            m.d.comb += [
                a_cmd_valid.eq(1),
                a_cmd.addr.eq(a_addr),
                a_cmd.length.eq(Mux(a_seg_last, a_seg_tail, seg)),
                a_cmd.tag.eq(TAG_A),
            ]
            with m.If(a_cmd_ready):
                with m.If(~a_tile_end):
                    m.d.sync += [a_tile_off.eq(a_tile_off + 1), a_addr.eq(a_addr + job.a_stride)]
                with m.Elif(~a_seg_last):
                    m.d.sync += [a_tile_off.eq(0), a_seg.eq(a_seg + 1),
                                 a_seg_base.eq(a_seg_base + seg), a_addr.eq(a_seg_base + seg)]
                with m.Elif(~a_block_end):
                    m.d.sync += [a_tile_off.eq(0), a_tile_row.eq(a_tile_row + rows), a_seg.eq(0),
                                 a_tile_base.eq(a_next_tile), a_seg_base.eq(a_next_tile),
                                 a_addr.eq(a_next_tile)]
                with m.Else():
                    m.d.sync += [a_issuing.eq(0), a_blk["issued"].eq(a_blk["issued"] + 1),
                                 a_active.eq(~a_nest.last)]
                    with m.If(a_nest.c_last & a_nest.j_last):
                        m.d.sync += a_tile_base.eq(a_next_tile)
                    a_nest.step()

        # B loader.
        b_nest = _Nest(m, "b_load", job, plan, self.start, with_t=False)
        b_active = Signal()
        b_issuing = Signal()
        b_krow = Signal(range(depth + 1))
        b_begin = Signal()                  # a block starts issuing
        # Address of the k row being requested. The chunks of a column tile are consecutive
        # k rows, so only the block of the first chunk starts it anew.
        b_addr = Signal(aw)
        b_skip = plan.single_chunk & plan.single_col & (b_nest.s != 0)
        with m.If(self.start):
            m.d.sync += [b_active.eq(1), b_issuing.eq(0)]
        with m.Elif(self.abort):
            m.d.sync += [b_active.eq(0), b_issuing.eq(0)]
        with m.Elif(b_active & ~b_issuing):
            with m.If(b_skip):
                m.d.sync += b_active.eq(~b_nest.last)
                b_nest.step()
            with m.Elif(((b_blk["issued"] - b_blk["released"])[:3] < 2) & b_sizes.w_rdy):
                m.d.comb += [b_sizes.w_en.eq(1), b_sizes.w_data.eq(b_nest.c_last)]
                m.d.sync += b_issuing.eq(1)
                m.d.comb += b_begin.eq(1)
                with m.If(b_nest.c == 0):
                    m.d.sync += b_addr.eq(job.b_addr + b_nest.j)
        with m.Elif(b_issuing & ~self.abort):
            m.d.comb += [
                b_cmd_valid.eq(1),
                b_cmd.addr.eq(b_addr),
                b_cmd.length.eq(b_nest.tile_cols),
                b_cmd.tag.eq(TAG_B),
            ]
            with m.If(b_cmd_ready):
                m.d.sync += b_addr.eq(b_addr + job.b_stride)
                with m.If(b_krow + 1 == plan.chunk_len(b_nest.c_last)):
                    m.d.sync += [b_issuing.eq(0), b_blk["issued"].eq(b_blk["issued"] + 1),
                                 b_active.eq(~b_nest.last)]
                    b_nest.step()
        # (A counter's restart is one condition, as in _Nest: the flip-flops' reset.)
        with m.If(b_begin):
            m.d.sync += b_krow.eq(0)
        with m.Elif(b_cmd_ready):
            m.d.sync += b_krow.eq(b_krow + 1)

        # Arbitration onto the one read DMA. Urgent: a command of the A row tile and the B
        # block the feeder is on. When both are urgent they are interleaved in k: B goes
        # while its rows are behind the A segment being requested (A leads by at most
        # one segment), so neither queues far ahead of the other (an A command carries
        # eight beats, a B command one). Otherwise a prefetch, needed-soonest first: A while its loader is still on
        # the feeder's block (the next row tile), then B (the next column tile), then A
        # (the next super-row); and only while fewer than 2 * max_outstanding beats are
        # in flight, so that prefetched data never queues far ahead of an urgent request
        # (the DMA would otherwise take 64 eight-beat commands, 512 beats, at once).
        a_urgent = Signal()
        b_urgent = Signal()
        a_near = Signal()                   # the A loader is on the feeder's block
        grant_b = Signal()
        inflight = Signal(16)               # data beats requested and not yet received
        prefetch_ok = below_constant(inflight, _PREFETCH_BEATS * config.max_outstanding)
        with m.If(a_urgent & b_urgent):
            m.d.comb += [grant_b.eq(b_krow[seg_log2:] < a_seg), self.read_cmd.valid.eq(1)]
        with m.Elif(a_urgent):
            m.d.comb += [grant_b.eq(0), self.read_cmd.valid.eq(1)]
        with m.Elif(b_urgent):
            m.d.comb += [grant_b.eq(1), self.read_cmd.valid.eq(1)]
        with m.Else():
            m.d.comb += [grant_b.eq(b_cmd_valid & ~(a_cmd_valid & a_near)),
                         self.read_cmd.valid.eq((a_cmd_valid | b_cmd_valid) & prefetch_ok)]
        m.d.comb += [
            self.read_cmd.payload.eq(Mux(grant_b, b_cmd, a_cmd)),
            a_cmd_ready.eq(self.read_cmd.ready & self.read_cmd.valid & ~grant_b),
            b_cmd_ready.eq(self.read_cmd.ready & self.read_cmd.valid & grant_b),
        ]
        cmd = self.read_cmd.payload
        length = cmd.length[:len(range(max_read_length(config) + 1))]
        cmd_beats = (length + bb - 1) >> log2_bb       # data beats, lane-0 aligned
        issued_beats = Mux(self.read_cmd.valid & self.read_cmd.ready, cmd_beats, 0)
        m.d.sync += inflight.eq(inflight + (issued_beats - self.read_data.valid))
        with m.If(self.start):
            m.d.sync += inflight.eq(0)

        # ---- loaders (data side) --------------------------------------------------------
        beat = self.read_data.payload
        m.d.comb += self.read_data.ready.eq(1)      # SRAM writes never stall
        fire = self.read_data.valid
        a_beat = fire & (beat.tag == TAG_A)
        # A: segments arrive in order, rows in order within a segment; beat w of row r in
        # the segment at k offset g goes to word g / bb + w of bank r - s.
        # Row r of the block lives in bank (r mod a_banks) at fold (r div a_banks); a fold
        # is words >> fold_log2 words deep.
        a_wword = Signal(range(words + 1))
        a_wseg = Signal.like(a_seg)         # segment written
        a_wtile = Signal(range(a_banks * _MAX_FOLD + 1))    # first row of the row tile written
        a_wtile_off = Signal(range(rows))   # row written, from a_wtile
        a_wtbank = Signal(range(a_banks))   # the tile's bank
        a_wfold = Signal(range(_MAX_FOLD))  # its fold
        # (Spread: chunk c of the row tile lives in bank group c.)
        chunk_segs_log2 = depth_log2 - seg_log2
        a_wbank = (a_wtbank + times_constant(a_wseg[chunk_segs_log2:], rows) + a_wtile_off)
        fold_shift = Signal(range(words.bit_length()))     # log2 of a fold's words
        m.d.comb += fold_shift.eq((words.bit_length() - 1) - plan.fold_log2)
        a_block_rows = a_sizes.r_data[:block_rows_width]
        a_wseg_last = a_wseg == a_last_seg(a_sizes.r_data[block_rows_width])[0]
        a_wblock_end = a_wtile + a_wtile_off + 1 == a_block_rows    # the block's last row
        a_wtile_end = (a_wtile_off == rows - 1) | a_wblock_end      # the tile's last row
        a_wbuf = a_blk["loaded"][0]
        for bank, mem in enumerate(a_mems):
            port = mem.write_port(granularity=1)
            m.d.comb += [
                port.addr.eq(Cat((a_wword + (a_wseg[:chunk_segs_log2] << (seg_log2 - log2_bb))
                                  + (a_wfold << fold_shift))
                                 [:len(port.addr) - 1], a_wbuf)),
                port.data.eq(beat.data),
                port.en.eq(Mux(a_beat & (a_wbank == bank),
                               (1 << beat.count) - 1, 0)),
            ]
        with m.If(self.start | (a_beat & beat.last)):
            m.d.sync += a_wword.eq(0)
        with m.Elif(a_beat):
            m.d.sync += a_wword.eq(a_wword + 1)
        with m.If(a_beat):
            m.d.comb += self.sram_a_write.eq(beat.count)
            with m.If(beat.last):
                with m.If(~a_wtile_end):
                    m.d.sync += a_wtile_off.eq(a_wtile_off + 1)
                with m.Elif(~a_wseg_last):
                    m.d.sync += [a_wtile_off.eq(0), a_wseg.eq(a_wseg + 1)]
                with m.Elif(~a_wblock_end):
                    m.d.sync += [a_wtile_off.eq(0), a_wtile.eq(a_wtile + rows), a_wseg.eq(0)]
                    with m.If(a_wtbank + rows == a_banks):
                        m.d.sync += [a_wtbank.eq(0), a_wfold.eq(a_wfold + 1)]
                    with m.Else():
                        m.d.sync += a_wtbank.eq(a_wtbank + rows)
                with m.Else():
                    m.d.comb += a_sizes.r_en.eq(1)
                    m.d.sync += [a_wtile_off.eq(0), a_wseg.eq(0), a_wtile.eq(0),
                                 a_wtbank.eq(0), a_wfold.eq(0),
                                 a_blk["loaded"].eq(a_blk["loaded"] + 1)]
        # B: k rows arrive in order; beat w of k row r fills bytes [w*bb, w*bb + count).
        b_wrow = Signal(range(depth + 1))
        b_wbeat = Signal(range(max(1, -(-cols // bb)) + 1))
        b_port = b_mem.write_port(granularity=1)
        lanes = Signal(cols)
        shifted = Signal(8 * cols)
        m.d.comb += [
            lanes.eq((((1 << beat.count) - 1) << (b_wbeat * bb))[:cols]),
            shifted.eq((beat.data << (b_wbeat * bb * 8))[:8 * cols]),
            b_port.addr.eq(Cat(b_wrow[:len(b_port.addr) - 1], b_blk["loaded"][0])),
            b_port.data.eq(shifted),
            b_port.en.eq(Mux(fire & (beat.tag == TAG_B), lanes, 0)),
        ]
        with m.If(fire & (beat.tag == TAG_B)):
            m.d.comb += self.sram_b_write.eq(beat.count)
            m.d.sync += b_wbeat.eq(b_wbeat + 1)
            with m.If(beat.last):
                m.d.sync += [b_wbeat.eq(0), b_wrow.eq(b_wrow + 1)]
                with m.If(b_wrow + 1 == plan.chunk_len(b_sizes.r_data)):
                    m.d.comb += b_sizes.r_en.eq(1)
                    m.d.sync += [b_wrow.eq(0), b_blk["loaded"].eq(b_blk["loaded"] + 1)]
        with m.If(self.start):
            m.d.sync += [a_wtile_off.eq(0), a_wseg.eq(0), a_wtile.eq(0),
                         a_wtbank.eq(0), a_wfold.eq(0),
                         b_wrow.eq(0), b_wbeat.eq(0)]

        # ---- feeder ---------------------------------------------------------------------
        f_nest = _Nest(m, "feed", job, plan, self.start, with_t=True)
        f_active = Signal()
        f_streaming = Signal()
        f_k = Signal(range(depth + 1))
        f_begin = Signal()                  # a chunk of a tile starts streaming
        f_k_end = plan.chunk_len(f_nest.c_last)
        a_ready = a_blk["loaded"] != a_blk["released"]
        b_ready = b_blk["loaded"] != b_blk["released"]
        tile_rows = Mux(f_nest.t_last, f_nest.rows_left[:len(range(rows + 1))], rows)
        tile_cols = f_nest.tile_cols

        # Stage 0 issues SRAM reads; stage 1 holds the read data for the array.
        s1_valid = Signal()
        s1_ready = self.operands.ready | ~s1_valid
        s0_valid = Signal()
        s0_fire = s0_valid & s1_ready
        a_rd_ports = [RegisteredReadPort(m, mem, name=f"sram_a_{bank}_read")
                      for bank, mem in enumerate(a_mems)]
        b_rd_port = RegisteredReadPort(m, b_mem, name="sram_b_read")
        f_word = (f_k >> log2_bb) + (f_nest.fold << fold_shift)
        a_rd_word = Cat(f_word[:len(a_rd_ports[0].addr) - 1], a_blk["released"][0])
        for port in a_rd_ports:
            m.d.comb += [port.addr.eq(a_rd_word), port.en.eq(s0_fire)]
        m.d.comb += [b_rd_port.addr.eq(Cat(f_k[:len(b_rd_port.addr) - 1], b_blk["released"][0])),
                     b_rd_port.en.eq(s0_fire)]

        s1_lane = Signal(range(bb))
        s1_group = Signal(range(config.row_tiles))     # bank group of the row tile
        s1_rows = Signal(range(rows + 1))
        s1_cols = Signal(range(cols + 1))
        s1_last = Signal()
        # Placements of announced tiles wait here for the C path (the array holds at most
        # a few tiles between being fed and drained).
        m.submodules.tile_queue = tile_queue = BlockRAMFIFOBuffered(
            width=TileInfo(config).size, depth=4)
        m.d.comb += [
            self.tiles.valid.eq(tile_queue.r_rdy),
            self.tiles.payload.eq(tile_queue.r_data),
            tile_queue.r_en.eq(self.tiles.ready),
        ]
        announce = Signal(TileInfo(config))
        # A tile starts while its blocks are still arriving: each beat waits for its own
        # k — B rows and A segments land in k order, so the feeder streams behind the
        # loaders.
        can_start = tile_queue.w_rdy | ~f_nest.c_last
        b_row_in = b_ready | (f_k < b_wrow)
        f_row = f_nest.row                  # first row of the feeder's row tile in its block
        # k within the A block (f_k < depth)
        f_block_k = Mux(plan.spread, Cat(f_k[:depth_log2], f_nest.c), f_k)
        f_seg = f_block_k[seg_log2:][:len(a_wseg)]     # its segment
        a_row_in = a_ready | (a_wtile > f_row) | ((a_wtile == f_row) & (f_seg < a_wseg))
        m.d.comb += [a_near.eq(a_blk["issued"] == a_blk["released"]),
                     # (On the same block both count rows from the same s.)
                     a_urgent.eq(a_cmd_valid & a_near & (a_tile_row == f_row)),
                     b_urgent.eq(b_cmd_valid & (b_blk["issued"] == b_blk["released"]))]
        with m.If(self.start):
            m.d.sync += [f_active.eq(1), f_streaming.eq(0)]
        with m.Elif(self.abort):
            m.d.sync += [f_active.eq(0), f_streaming.eq(0)]
        with m.Elif(f_active & ~f_streaming):
            with m.If(can_start):
                m.d.sync += f_streaming.eq(1)
                m.d.comb += f_begin.eq(1)
                # The tile's last chunk: announce where its results go.
                m.d.comb += [tile_queue.w_en.eq(f_nest.c_last), tile_queue.w_data.eq(announce)]
        with m.Elif(f_streaming):
            m.d.comb += s0_valid.eq(~self.abort & b_row_in & a_row_in)
            with m.If(s0_fire):
                m.d.sync += [
                    s1_lane.eq(f_k[:len(s1_lane)] if bb > 1 else 0),
                    s1_group.eq(f_nest.group),
                    s1_rows.eq(tile_rows),
                    s1_cols.eq(tile_cols),
                    s1_last.eq((f_k + 1 == f_k_end) & f_nest.c_last),
                ]
                with m.If(f_k + 1 == f_k_end):
                    m.d.sync += [f_streaming.eq(0), f_active.eq(~f_nest.last)]
                    with m.If(f_nest.t_last):
                        # Done with this (s, j, c) group: free the buffers whose block changes.
                        a_done = ~plan.a_shared | (f_nest.j_last & f_nest.c_last)
                        b_done = ~(plan.single_chunk & plan.single_col) | f_nest.s_last
                        with m.If(a_done | f_nest.last):
                            m.d.sync += a_blk["released"].eq(a_blk["released"] + 1)
                        with m.If(b_done | f_nest.last):
                            m.d.sync += b_blk["released"].eq(b_blk["released"] + 1)
                    f_nest.step()
        with m.If(f_begin):
            m.d.sync += f_k.eq(0)
        with m.Elif(s0_fire):
            m.d.sync += f_k.eq(f_k + 1)
        m.d.comb += [
            announce.row0.eq(f_nest.t),
            announce.col0.eq(f_nest.j),
            announce.rows.eq(tile_rows),
            announce.cols.eq(tile_cols),
        ]
        with m.If(s0_fire):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(self.operands.ready):
            m.d.sync += s1_valid.eq(0)
        with m.If(self.start | self.abort):
            m.d.sync += s1_valid.eq(0)

        # Stage 1: select each array row's byte from its bank and zero the padding.
        out = self.operands.payload
        for i in range(rows):
            candidates = [a_rd_ports[t * rows + i].data for t in range(config.row_tiles)]
            word = candidates[0]
            for t in range(1, config.row_tiles):
                word = Mux(s1_group == t, candidates[t], word)
            byte = Signal(8, name=f"feed_a_{i}")
            m.d.comb += byte.eq(Value.cast(word).word_select(s1_lane, 8))
            m.d.comb += out.a[i].eq(Mux(i < s1_rows, byte, 0))
        for j in range(cols):
            m.d.comb += out.b[j].eq(Mux(j < s1_cols, b_rd_port.data[j], 0))
        m.d.comb += [out.last.eq(s1_last), self.operands.valid.eq(s1_valid)]
        useful = s1_rows * s1_cols
        with m.If(self.operands.valid & self.operands.ready):
            m.d.comb += [self.macs.eq(useful), self.padded_macs.eq(rows * cols - useful)]

        m.d.comb += self.busy.eq(f_active | s1_valid)
        return m

"""The tiling controller: it walks the job's tiling plan (systole/plan.py).

Five components, joined by streams and buffer counters::

    LoadSequencer --a_block--> ALoader --cmd--+                     +-- A banks --+
                  --b_block--> BLoader --cmd--+--> ReadArbiter <--> DMA           +--> Feeder
                                                                    +-- B banks --+   --> array

* :class:`LoadSequencer` walks the steps of the plan (C block, K chunk) and hands each
  block a step loads to its loader, in step order (A before B), once the loader has a
  free buffer and no loader is issuing.
* :class:`ALoader` reads an A block one command per row (the chunk of that row) into its
  banks; :class:`BLoader` reads a B block one command per k row (the block's whole width,
  so bursts are long) into its banks. Each counts the blocks it has ``loaded``.
* :class:`ReadArbiter` puts the loaders' commands on the one read DMA (one loader issues
  at a time, so it is a multiplexer) and returns each data beat to its loader by tag.
* :class:`Feeder` walks the same steps, waits until both blocks of a step are loaded,
  streams the step's tiles through the array one k-step per cycle, announces each tile
  that leaves the array (to the partial-sum unit, and to the C path when it is final)
  and releases a block after the last step that uses it.

The partial-sum unit follows the array (hdl/array.py).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..plan import PsumOp, kc_log2_range
from .arith import times_constant
from .array import OperandsLayout, PsumCommand
from .blockram import NO_COLLISION, BlockRAMFIFOBuffered, RegisteredReadPort
from .dma import ReadCommand, ReadData
from .job import JobDescriptor

__all__ = ["TileInfo", "TileScheduler", "LoadSequencer", "ALoader", "BLoader",
           "ReadArbiter", "Feeder", "TAG_A", "TAG_B", "max_read_length"]

TAG_A, TAG_B = 0, 1

def max_read_length(config):
    """Longest read command the tiler issues, in bytes: an A row of a chunk or a B row of a
    block (at most as many column tiles as a B buffer holds of the shortest chunk)."""
    low, high = kc_log2_range(config)
    b_tiles = min(255, (config.sram_depth // config.b_banks >> low) * config.b_banks)
    return max(1 << high, b_tiles * config.cols)


def TileInfo(config):
    """Where a finished C tile goes: its first row and column and its valid extent."""
    return data.StructLayout({
        "row0": config.dim_width, "col0": config.dim_width,
        "rows": range(config.rows + 1), "cols": range(config.cols + 1),
    })


def _block_width(config):
    """Bits of a block's rows or columns, or of an offset inside a block (up to 255
    tiles)."""
    return (255 * max(config.rows, config.cols)).bit_length()


def _chunk_width(config):
    """Bits of a chunk's length (up to the longest chunk)."""
    return kc_log2_range(config)[1] + 1


def ABlock(config):
    """An A block to load: its first row's address at the chunk, its rows, the chunk."""
    return data.StructLayout({"addr": config.addr_width, "rows": _block_width(config),
                              "depth": _chunk_width(config)})


def BBlock(config):
    """A B block to load: its first k row's address at the block's first column, the
    chunk's k rows, and the block's columns."""
    return data.StructLayout({"addr": config.addr_width, "depth": _chunk_width(config),
                              "cols": _block_width(config)})


class _Job:
    """The descriptor fields the tiler uses, at the widths an accepted job needs, and the
    plan's sizes, registered in the cycle after ``start`` (the descriptor holds still from
    ``start`` to done, and no engine reads them before)."""

    def __init__(self, m, config, job):
        bw, cw = _block_width(config), _chunk_width(config)
        self.m = job.m[:config.dim_width]
        self.n = job.n[:config.dim_width]
        self.k = job.k[:config.k_width]
        self.a_addr = job.a_addr[:config.addr_width]
        self.b_addr = job.b_addr[:config.addr_width]
        self.a_stride = job.a_stride[:config.addr_width]
        self.b_stride = job.b_stride[:config.addr_width]
        self.order = job.plan.order
        self.mc_tiles = job.plan.mc_tiles
        self.kc_log2 = job.plan.kc_log2[:(cw - 1).bit_length()]
        # (Block sizes are shifts and adds of the plan's fields: no registers.)
        self.mc = times_constant(job.plan.mc_tiles, config.rows)[:bw]
        self.nc = times_constant(job.plan.nc_tiles, config.cols)[:bw]
        self.kc = (Const(1, cw) << self.kc_log2)[:cw]
        self.single_chunk = Signal(name="plan_single_chunk")
        self.uses_psum = Signal(name="plan_uses_psum")
        single = ((self.k - 1) >> self.kc_log2) == 0
        m.d.sync += [
            self.single_chunk.eq(single),
            self.uses_psum.eq(~single & ((job.plan.mc_tiles != 1) | (job.plan.nc_tiles != 1))),
        ]


class _Nest:
    """Counters of the plan's step nest, one copy per engine: block (s, j), chunk c.

    ``s`` / ``j`` are the block's first row / column and ``c`` the chunk's first k;
    ``rows``, ``cols``, ``depth`` their extents within M, N and K. ``load_a`` /
    ``load_b``: the step loads that block (with K in one chunk a block equal to the
    previous step's stays). ``next_load_a`` / ``next_load_b``: the same for the next step,
    valid while stepping. ``step_s`` / ``step_c`` and their wraps: how the step moves s
    and c (for addresses kept by accumulation). ``last``: the final step.
    """

    def __init__(self, m, name, config, job, start):
        bw, cw = _block_width(config), _chunk_width(config)
        self._m = m
        self._stepping = Signal(name=f"{name}_step")
        self.s = Signal(config.dim_width, name=f"{name}_s")
        self.j = Signal(config.dim_width, name=f"{name}_j")
        self.c = Signal(config.k_width, name=f"{name}_c")
        self.load_a = Signal(name=f"{name}_load_a")
        self.load_b = Signal(name=f"{name}_load_b")
        next_s, next_j, next_c = self.s + job.mc, self.j + job.nc, self.c + job.kc
        self.c_last = next_c >= job.k
        self.s_last = next_s >= job.m
        self.j_last = next_j >= job.n
        self.rows = Mux(self.s_last, (job.m - self.s)[:bw], job.mc)
        self.cols = Mux(self.j_last, (job.n - self.j)[:bw], job.nc)
        self.depth = Mux(self.c_last, (job.k - self.c)[:cw], job.kc)
        self.last = self.c_last & self.s_last & self.j_last
        rows_outer = job.order == 0
        # c is innermost; then j (ROWS_OUTER) or s (COLS_OUTER); then the other.
        step_block = self._stepping & self.c_last
        inner_last = Mux(rows_outer, self.j_last, self.s_last)
        step_outer = step_block & inner_last
        self.step_c = self._stepping
        self.wrap_c = step_block
        self.step_s = Mux(rows_outer, step_outer, step_block)
        self.wrap_s = self.step_s & Mux(rows_outer, self.s_last, inner_last)
        step_j = Mux(rows_outer, step_block, step_outer)
        wrap_j = step_j & Mux(rows_outer, inner_last, self.j_last)
        # With K in one chunk a block is loaded again only if the step really moves it (a
        # wrap back to 0 from 0 leaves it where it is).
        self.next_load_a = ~job.single_chunk | (self.step_s & ~(self.wrap_s & (self.s == 0)))
        self.next_load_b = ~job.single_chunk | (step_j & ~(wrap_j & (self.j == 0)))
        # Each counter restarts on one condition (the flip-flops' synchronous reset).
        with m.If(start | self.wrap_c):
            m.d.sync += self.c.eq(0)
        with m.Elif(self.step_c):
            m.d.sync += self.c.eq(next_c)
        with m.If(start | self.wrap_s):
            m.d.sync += self.s.eq(0)
        with m.Elif(self.step_s):
            m.d.sync += self.s.eq(next_s)
        with m.If(start | wrap_j):
            m.d.sync += self.j.eq(0)
        with m.Elif(step_j):
            m.d.sync += self.j.eq(next_j)
        with m.If(start):
            m.d.sync += [self.load_a.eq(1), self.load_b.eq(1)]
        with m.Elif(self._stepping):
            m.d.sync += [self.load_a.eq(self.next_load_a), self.load_b.eq(self.next_load_b)]

    def step(self):
        """Advance to the next step (call inside a condition)."""
        self._m.d.comb += self._stepping.eq(1)


def _free_buffer(issued, released):
    """A loader may take a block while fewer than two of its blocks are unreleased."""
    return (issued - released)[:3] < 2


class LoadSequencer(wiring.Component):
    """Walks the plan's steps and hands each block a step loads to its loader.

    Blocks go in step order, A before B; one goes only when no loader is issuing (so the
    commands of two blocks never interleave) and its loader has a free buffer. Addresses
    are kept by accumulation: the A block's first row at k = 0 moves by ``mc * a_stride``
    per row block (read off the A loader after the job's first block: no multiplier), the
    B chunk's first row by ``b_stride << kc_log2`` per chunk.

    Attributes
    ----------
    start, abort : In(1)
    a_block : Out(stream.Signature(ABlock(config)))
    b_block : Out(stream.Signature(BBlock(config)))
    issuing : In(1)
        A loader is sending the commands of a block.
    a_next_addr : In(addr_width)
        The A loader's next command address.
    a_released, b_released : In(3)
        Blocks the feeder has released (mod 8).
    busy : Out(1)
    """

    def __init__(self, config, job):
        self._config = config
        self._job = job
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "a_block": Out(stream.Signature(ABlock(config))),
            "b_block": Out(stream.Signature(BBlock(config))),
            "issuing": In(1),
            "a_next_addr": In(config.addr_width),
            "a_released": In(3),
            "b_released": In(3),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, job = self._config, self._job
        aw = config.addr_width
        nest = _Nest(m, "seq", config, job, self.start)

        # mc * a_stride, the step of a_base from one row block to the next: the A loader's
        # address after the job's first block (a whole block of mc rows whenever there is
        # a second row block) less the block's own address.
        product = Signal(aw)
        captured = Signal()
        a_started = Signal()
        a_base = Signal(aw)         # A row s at k = 0
        b_base = Signal(aw)         # B row c at column 0
        with m.If(self.start | nest.wrap_s):
            m.d.sync += a_base.eq(job.a_addr)
        with m.Elif(nest.step_s):
            m.d.sync += a_base.eq(a_base + product)
        with m.If(self.start | nest.wrap_c):
            m.d.sync += b_base.eq(job.b_addr)
        with m.Elif(nest.step_c):
            m.d.sync += b_base.eq(b_base + (job.b_stride << job.kc_log2)[:aw])

        a_issued = Signal(3)
        b_issued = Signal(3)
        active = Signal()
        phase_b = Signal()          # the step's A block is handed over (or stays)
        m.d.comb += [
            self.a_block.payload.addr.eq(a_base + nest.c),
            self.a_block.payload.rows.eq(nest.rows),
            self.a_block.payload.depth.eq(nest.depth),
            self.b_block.payload.addr.eq(b_base + nest.j),
            self.b_block.payload.depth.eq(nest.depth),
            self.b_block.payload.cols.eq(nest.cols),
        ]
        quiet = ~self.issuing & ~self.a_block.valid & ~self.b_block.valid
        with m.If(self.start):
            m.d.sync += [captured.eq(0), a_started.eq(0)]
        with m.Elif(self.a_block.valid & self.a_block.ready):
            m.d.sync += a_started.eq(1)
        with m.Elif(a_started & ~captured & quiet):
            m.d.sync += [product.eq(self.a_next_addr - job.a_addr), captured.eq(1)]
        with m.If(self.start):
            m.d.sync += [active.eq(1), phase_b.eq(0), a_issued.eq(0), b_issued.eq(0),
                         self.a_block.valid.eq(0), self.b_block.valid.eq(0)]
        with m.Elif(self.abort):
            m.d.sync += [active.eq(0), self.a_block.valid.eq(0), self.b_block.valid.eq(0)]
        with m.Elif(self.a_block.valid):
            with m.If(self.a_block.ready):
                m.d.sync += [self.a_block.valid.eq(0), a_issued.eq(a_issued + 1),
                             phase_b.eq(1)]
        with m.Elif(self.b_block.valid):
            with m.If(self.b_block.ready):
                m.d.sync += [self.b_block.valid.eq(0), b_issued.eq(b_issued + 1),
                             phase_b.eq(0), active.eq(~nest.last)]
                nest.step()
        with m.Elif(active & ~phase_b):
            with m.If(~nest.load_a):
                m.d.sync += phase_b.eq(1)
            with m.Elif(quiet & _free_buffer(a_issued, self.a_released)):
                m.d.sync += self.a_block.valid.eq(1)
        with m.Elif(active & phase_b):
            with m.If(~nest.load_b):
                m.d.sync += [phase_b.eq(0), active.eq(~nest.last)]
                nest.step()
            with m.Elif(quiet & _free_buffer(b_issued, self.b_released)):
                m.d.sync += self.b_block.valid.eq(1)
        m.d.comb += self.busy.eq(active | self.a_block.valid | self.b_block.valid)
        return m


def _row_commands(m, loader, *, count, length, stride, tag):
    """A loader's command side: for each block taken from ``loader.block``, ``count`` read
    commands of ``length`` bytes, ``stride`` apart from the block's address, while
    ``loader.issuing``. Returns the FIFO that carries each block's ``count`` to the data
    side (two blocks in flight), and the next command's address."""
    m.submodules.sizes = sizes = fifo.SyncFIFO(width=len(count), depth=2)
    addr = Signal.like(loader.block.payload.addr)
    left = Signal.like(count)
    held_length = Signal.like(length)
    take = loader.block.valid & loader.block.ready
    m.d.comb += [loader.block.ready.eq(~loader.issuing & sizes.w_rdy),
                 sizes.w_data.eq(count), sizes.w_en.eq(take)]
    with m.If(take):
        m.d.sync += [loader.issuing.eq(1), addr.eq(loader.block.payload.addr),
                     left.eq(count), held_length.eq(length)]
    m.d.comb += [loader.cmd.valid.eq(loader.issuing & ~loader.abort),
                 loader.cmd.payload.addr.eq(addr), loader.cmd.payload.length.eq(held_length),
                 loader.cmd.payload.tag.eq(tag)]
    with m.If(loader.cmd.valid & loader.cmd.ready):
        m.d.sync += [addr.eq(addr + stride), left.eq(left - 1)]
        with m.If(left == 1):
            m.d.sync += loader.issuing.eq(0)
    with m.If(loader.start | loader.abort):
        m.d.sync += loader.issuing.eq(0)
    return sizes, addr


class ALoader(wiring.Component):
    """Reads A blocks into the A banks and lets the feeder read them.

    A block of ``rows`` rows by one chunk: one read command per row, rows in order. Row r
    of the block lives in bank ``r mod rows`` (an array row) at byte offset
    ``(r div rows) << kc_log2`` of one of the two buffers; the feeder reads all banks at one
    word and takes lane ``k mod bus_bytes`` of each.

    Attributes
    ----------
    start, abort : In(1)
    block : In(stream.Signature(ABlock(config)))
    cmd : Out(stream.Signature(ReadCommand(config)))
    data : In(stream.Signature(ReadData(config)))
    issuing : Out(1)
    next_addr : Out(addr_width)
        The next command's address (after a block: its address plus rows * a_stride).
    loaded : Out(3)
        Blocks completely written (mod 8).
    read_addr : In(...)
        Word address (the buffer in its top bit) the feeder reads on ``read_en``.
    read_en : In(1)
    read_data : Out(ArrayLayout(ArrayLayout(8, bus_bytes), rows))
        One word per bank, from the last ``read_en``.
    sram_write : Out(range(bus_bytes + 1))
        Bytes written this cycle.
    """

    def __init__(self, config, job):
        self._config = config
        self._job = job
        self.words = config.a_bank_bytes // config.bus_bytes        # per buffer
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "block": In(stream.Signature(ABlock(config))),
            "cmd": Out(stream.Signature(ReadCommand(config))),
            "data": In(stream.Signature(ReadData(config))),
            "issuing": Out(1),
            "next_addr": Out(config.addr_width),
            "loaded": Out(3),
            "read_addr": In(range(2 << (self.words - 1).bit_length())),
            "read_en": In(1),
            "read_data": Out(data.ArrayLayout(data.ArrayLayout(8, config.bus_bytes),
                                              config.rows)),
            "sram_write": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config, job = self._config, self._job
        rows, bb = config.rows, config.bus_bytes
        log2_bb = bb.bit_length() - 1
        bw = _block_width(config)

        # -- command side: one command per row ---------------------------------------------
        sizes, next_addr = _row_commands(m, self, count=self.block.payload.rows,
                                         length=self.block.payload.depth,
                                         stride=job.a_stride, tag=TAG_A)
        m.d.comb += self.next_addr.eq(next_addr)

        # -- data side: beat w of block row r goes to bank r mod rows, word
        # ((r div rows) << kc_log2) / bus_bytes + w of the buffer being loaded -------------
        bank = Signal(range(rows))
        tile = Signal(range(max(2, config.a_bank_bytes)))
        row = Signal(bw)                # rows of the block written
        word = Signal(range(self.words + 1))
        beat = self.data.payload
        fire = self.data.valid
        m.d.comb += self.data.ready.eq(1)           # SRAM writes never stall
        tile_word = (tile << job.kc_log2) >> log2_bb
        buffer = self.loaded[0]
        mems = []
        for index in range(rows):
            # The buffer is the top address bit (a buffer spans a power of two of words).
            mem = memory.Memory(shape=data.ArrayLayout(8, bb),
                                depth=2 << (self.words - 1).bit_length(), init=[],
                                attrs=NO_COLLISION)
            m.submodules[f"bank_{index}"] = mem
            mems.append(mem)
            port = mem.write_port(granularity=1)
            m.d.comb += [
                port.addr.eq(Cat((tile_word + word)[:len(port.addr) - 1], buffer)),
                port.data.eq(beat.data),
                port.en.eq(Mux(fire & (bank == index), (1 << beat.count) - 1, 0)),
            ]
            reader = RegisteredReadPort(m, mem, name=f"bank_{index}_read")
            m.d.comb += [reader.addr.eq(self.read_addr), reader.en.eq(self.read_en),
                         self.read_data[index].eq(reader.data)]
        with m.If(fire):
            m.d.comb += self.sram_write.eq(beat.count)
            m.d.sync += word.eq(word + 1)
            with m.If(beat.last):
                m.d.sync += [word.eq(0), row.eq(row + 1), bank.eq(bank + 1)]
                with m.If(bank == rows - 1):
                    m.d.sync += [bank.eq(0), tile.eq(tile + 1)]
                with m.If(row + 1 == sizes.r_data):
                    m.d.comb += sizes.r_en.eq(1)
                    m.d.sync += [row.eq(0), bank.eq(0), tile.eq(0),
                                 self.loaded.eq(self.loaded + 1)]
        with m.If(self.start):
            m.d.sync += [word.eq(0), row.eq(0), bank.eq(0), tile.eq(0), self.loaded.eq(0)]
        return m


class BLoader(wiring.Component):
    """Reads B blocks into the B banks and lets the feeder read them.

    A block of one chunk's k rows by ``cols`` columns: one read command per k row, all of
    the block's columns. Column tile q of the block (``cols`` bytes of each k row) lives in
    bank ``q mod b_banks`` at word ``((q div b_banks) << kc_log2) + k`` of one of the two
    buffers. A bus beat wider than a tile fills one word in each of ``b_banks`` banks; a
    narrower one fills lanes of one word.

    Attributes
    ----------
    start, abort : In(1)
    block : In(stream.Signature(BBlock(config)))
    cmd : Out(stream.Signature(ReadCommand(config)))
    data : In(stream.Signature(ReadData(config)))
    issuing : Out(1)
    loaded : Out(3)
    read_addr : In(...)
        Word address (buffer in its top bit), the same in every bank.
    read_en : In(1)
    read_data : Out(ArrayLayout(ArrayLayout(8, cols), b_banks))
    sram_write : Out(range(bus_bytes + 1))
    """

    def __init__(self, config, job):
        self._config = config
        self._job = job
        self.words = config.sram_depth // config.b_banks            # per bank and buffer
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "block": In(stream.Signature(BBlock(config))),
            "cmd": Out(stream.Signature(ReadCommand(config))),
            "data": In(stream.Signature(ReadData(config))),
            "issuing": Out(1),
            "loaded": Out(3),
            "read_addr": In(range(2 * self.words)),
            "read_en": In(1),
            "read_data": Out(data.ArrayLayout(data.ArrayLayout(8, config.cols),
                                              config.b_banks)),
            "sram_write": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config, job = self._config, self._job
        cols, bb, banks = config.cols, config.bus_bytes, config.b_banks
        cw = _chunk_width(config)

        # -- command side: one command per k row --------------------------------------------
        sizes, _ = _row_commands(m, self, count=self.block.payload.depth,
                                 length=self.block.payload.cols, stride=job.b_stride,
                                 tag=TAG_B)

        # -- data side ----------------------------------------------------------------------
        krow = Signal(cw)               # k rows of the block written
        tile = Signal(range(max(2, self.words)))    # bank word tile: (q div b_banks)
        lane = Signal(range(max(2, cols)))          # first lane of the beat (cols > bus)
        beat = self.data.payload
        fire = self.data.valid
        m.d.comb += self.data.ready.eq(1)
        word = Cat(((tile << job.kc_log2) + krow)[:(self.words - 1).bit_length()],
                   self.loaded[0])
        mask = Signal(bb)
        m.d.comb += mask.eq((1 << beat.count) - 1)
        for index in range(banks):
            mem = memory.Memory(shape=data.ArrayLayout(8, cols), depth=2 * self.words,
                                init=[], attrs=NO_COLLISION)
            m.submodules[f"bank_{index}"] = mem
            port = mem.write_port(granularity=1)
            if banks > 1:
                # Bytes [index * cols, (index + 1) * cols) of the beat are tile
                # w * banks + index.
                lanes = mask[index * cols:(index + 1) * cols]
                value = Value.cast(beat.data)[8 * index * cols:8 * (index + 1) * cols]
            else:
                # The beat lies inside one tile, from lane ``lane`` on.
                lanes = (mask << lane)[:cols]
                value = (Value.cast(beat.data) << (lane * 8))[:8 * cols]
            m.d.comb += [port.addr.eq(word), port.data.eq(value),
                         port.en.eq(Mux(fire, lanes, 0))]
            reader = RegisteredReadPort(m, mem, name=f"bank_{index}_read")
            m.d.comb += [reader.addr.eq(self.read_addr), reader.en.eq(self.read_en),
                         self.read_data[index].eq(reader.data)]
        with m.If(fire):
            m.d.comb += self.sram_write.eq(beat.count)
            if banks > 1 or cols == bb:
                m.d.sync += tile.eq(tile + 1)
            else:
                with m.If(lane == cols - bb):
                    m.d.sync += [lane.eq(0), tile.eq(tile + 1)]
                with m.Else():
                    m.d.sync += lane.eq(lane + bb)
            with m.If(beat.last):
                m.d.sync += [tile.eq(0), lane.eq(0), krow.eq(krow + 1)]
                with m.If(krow + 1 == sizes.r_data):
                    m.d.comb += sizes.r_en.eq(1)
                    m.d.sync += [krow.eq(0), self.loaded.eq(self.loaded + 1)]
        with m.If(self.start):
            m.d.sync += [tile.eq(0), lane.eq(0), krow.eq(0), self.loaded.eq(0)]
        return m


class ReadArbiter(wiring.Component):
    """The loaders' commands onto the one read DMA, and its data back by tag.

    The load sequencer lets only one loader issue at a time, so the arbiter passes
    whichever command is offered (A first, for a definite choice).

    Attributes
    ----------
    a_cmd, b_cmd : In(stream.Signature(ReadCommand(config)))
    cmd : Out(stream.Signature(ReadCommand(config)))
    data : In(stream.Signature(ReadData(config)))
    a_data, b_data : Out(stream.Signature(ReadData(config)))
    """

    def __init__(self, config):
        super().__init__({
            "a_cmd": In(stream.Signature(ReadCommand(config))),
            "b_cmd": In(stream.Signature(ReadCommand(config))),
            "cmd": Out(stream.Signature(ReadCommand(config))),
            "data": In(stream.Signature(ReadData(config))),
            "a_data": Out(stream.Signature(ReadData(config))),
            "b_data": Out(stream.Signature(ReadData(config))),
        })

    def elaborate(self, platform):
        m = Module()
        grant_a = self.a_cmd.valid
        m.d.comb += [
            self.cmd.valid.eq(self.a_cmd.valid | self.b_cmd.valid),
            self.cmd.payload.eq(Mux(grant_a, self.a_cmd.payload, self.b_cmd.payload)),
            self.a_cmd.ready.eq(self.cmd.ready & grant_a),
            self.b_cmd.ready.eq(self.cmd.ready & ~grant_a),
        ]
        is_a = self.data.payload.tag == TAG_A
        m.d.comb += [
            self.a_data.payload.eq(self.data.payload),
            self.b_data.payload.eq(self.data.payload),
            self.a_data.valid.eq(self.data.valid & is_a),
            self.b_data.valid.eq(self.data.valid & ~is_a),
            self.data.ready.eq(Mux(is_a, self.a_data.ready, self.b_data.ready)),
        ]
        return m


class Feeder(wiring.Component):
    """Streams the plan's tiles through the array, one k-step per cycle.

    For each step it waits until the step's A and B blocks are both loaded, then feeds
    its tiles (column tiles outer, row tiles inner) back to back: per k, the A banks at
    the tile's word (lane ``k mod bus_bytes``) and the B word of the tile, with rows past
    M and columns past N zeroed. A tile that leaves the array at the end of the step is
    announced before its first beat: its partial-sum command (op, and its place in the
    block) to the partial-sum unit, and, when it is final, its placement to the C path;
    its last beat is marked ``last``. After the step's last tile it releases each block
    the next step does not use.

    Attributes
    ----------
    start, abort : In(1)
    busy : Out(1)
    a_loaded, b_loaded : In(3)
    a_released, b_released : Out(3)
    a_read_addr, a_read_en, a_read_data, b_read_addr, b_read_en, b_read_data
        The loaders' read ports.
    operands : Out(stream.Signature(OperandsLayout(config)))
    tiles : Out(stream.Signature(TileInfo(config)))
    psum : Out(stream.Signature(PsumCommand(config)))
    macs, padded_macs : Out
    """

    def __init__(self, config, job, a_words, b_words):
        self._config = config
        self._job = job
        self._a_words, self._b_words = a_words, b_words
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "busy": Out(1),
            "a_loaded": In(3),
            "b_loaded": In(3),
            "a_released": Out(3),
            "b_released": Out(3),
            "a_read_addr": Out(range(2 << (a_words - 1).bit_length())),
            "a_read_en": Out(1),
            "a_read_data": In(data.ArrayLayout(data.ArrayLayout(8, config.bus_bytes),
                                               config.rows)),
            "b_read_addr": Out(range(2 * b_words)),
            "b_read_en": Out(1),
            "b_read_data": In(data.ArrayLayout(data.ArrayLayout(8, config.cols),
                                               config.b_banks)),
            "operands": Out(stream.Signature(OperandsLayout(config))),
            "tiles": Out(stream.Signature(TileInfo(config))),
            "psum": Out(stream.Signature(PsumCommand(config))),
            "macs": Out(range(config.rows * config.cols + 1)),
            "padded_macs": Out(range(config.rows * config.cols + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config, job = self._config, self._job
        rows, cols, bb, banks = config.rows, config.cols, config.bus_bytes, config.b_banks
        log2_bb = bb.bit_length() - 1
        log2_banks = banks.bit_length() - 1
        bw, cw = _block_width(config), _chunk_width(config)
        nest = _Nest(m, "feed", config, job, self.start)

        # The tile within the step: t (rows from the block's first), jt (columns), and its
        # sequence number, which is its place in the block's partial sums (every chunk of
        # a block walks the same tiles in the same order).
        t_index = Signal(8)             # row tile within the block
        j_index = Signal(8)             # column tile within the block
        t = times_constant(t_index, rows)[:bw]
        jt = times_constant(j_index, cols)[:bw]
        seq = Signal(range(max(2, config.psum_tiles)))
        t_last = t + rows >= nest.rows
        jt_last = jt + cols >= nest.cols
        tile_rows = Mux(t_last, (nest.rows - t)[:len(range(rows + 1))], rows)
        tile_cols = Mux(jt_last, (nest.cols - jt)[:len(range(cols + 1))], cols)
        step_last_tile = t_last & jt_last

        # What the step's tiles do as they leave the array (systole.plan.psum_op).
        op = Signal(PsumOp)
        leaves = Signal()
        with m.If(~job.uses_psum):
            m.d.comb += [op.eq(PsumOp.OUT), leaves.eq(nest.c_last)]
        with m.Else():
            m.d.comb += [op.eq(Mux(nest.c == 0, PsumOp.WRITE,
                                   Mux(nest.c_last, PsumOp.ADD_OUT, PsumOp.ADD))),
                         leaves.eq(1)]
        final = leaves & ((op == PsumOp.OUT) | (op == PsumOp.ADD_OUT))

        # Placements of announced tiles wait in queues for the partial-sum unit and the C
        # path (the array holds a few tiles between being fed and leaving). The command
        # queue is deeper than the final tiles the C path can hold back (its four, the
        # writer's two), so only the C path ever stops the feeder. Without a partial-sum
        # SRAM every tile leaves OUT, the array's default: no commands, no queue.
        m.submodules.tile_queue = tile_queue = BlockRAMFIFOBuffered(
            width=TileInfo(config).size, depth=4)
        m.d.comb += [
            self.tiles.valid.eq(tile_queue.r_rdy),
            self.tiles.payload.eq(tile_queue.r_data),
            tile_queue.r_en.eq(self.tiles.ready),
        ]
        if config.psum_depth:
            m.submodules.psum_queue = psum_queue = BlockRAMFIFOBuffered(
                width=PsumCommand(config).size, depth=8)
            m.d.comb += [
                self.psum.valid.eq(psum_queue.r_rdy),
                self.psum.payload.eq(psum_queue.r_data),
                psum_queue.r_en.eq(self.psum.ready),
            ]
            psum_room = psum_queue.w_rdy
        else:
            psum_room = Const(1)
        announce = Signal(TileInfo(config))
        command = Signal(PsumCommand(config))
        m.d.comb += [announce.row0.eq(nest.s + t), announce.col0.eq(nest.j + jt),
                     announce.rows.eq(tile_rows), announce.cols.eq(tile_cols),
                     command.op.eq(op), command.tile.eq(seq)]

        active = Signal()
        streaming = Signal()
        k = Signal(cw)
        begin = Signal()
        a_ready = self.a_loaded != self.a_released
        b_ready = self.b_loaded != self.b_released
        can_begin = (a_ready & b_ready & (~leaves | psum_room)
                     & (~final | tile_queue.w_rdy))

        # Stage 0 reads the SRAMs; stage 1 holds the words for the array.
        s1_valid = Signal()
        s1_ready = self.operands.ready | ~s1_valid
        s0_valid = Signal()
        s0_fire = s0_valid & s1_ready
        a_word = ((t_index << job.kc_log2) + k) >> log2_bb
        b_word = ((j_index >> log2_banks) << job.kc_log2) + k
        m.d.comb += [
            self.a_read_addr.eq(Cat(a_word[:(self._a_words - 1).bit_length()],
                                    self.a_released[0])),
            self.a_read_en.eq(s0_fire),
            self.b_read_addr.eq(Cat(b_word[:(self._b_words - 1).bit_length()],
                                    self.b_released[0])),
            self.b_read_en.eq(s0_fire),
        ]
        s1_lane = Signal(range(bb))
        s1_bank = Signal(range(banks))
        s1_rows = Signal(range(rows + 1))
        s1_cols = Signal(range(cols + 1))
        s1_last = Signal()

        with m.If(self.start):
            m.d.sync += [active.eq(1), streaming.eq(0), t_index.eq(0),
                         j_index.eq(0), seq.eq(0), self.a_released.eq(0),
                         self.b_released.eq(0)]
        with m.Elif(self.abort):
            m.d.sync += [active.eq(0), streaming.eq(0)]
        with m.Elif(active & ~streaming):
            with m.If(can_begin):
                m.d.comb += [begin.eq(1),
                             tile_queue.w_en.eq(final), tile_queue.w_data.eq(announce)]
                if config.psum_depth:
                    m.d.comb += [psum_queue.w_en.eq(leaves), psum_queue.w_data.eq(command)]
                m.d.sync += streaming.eq(1)
        with m.Elif(streaming):
            m.d.comb += s0_valid.eq(1)
            with m.If(s0_fire):
                tile_end = k + 1 == nest.depth
                m.d.sync += [
                    s1_lane.eq(k[:log2_bb] if bb > 1 else 0),
                    s1_bank.eq(j_index[:log2_banks] if banks > 1 else 0),
                    s1_rows.eq(tile_rows),
                    s1_cols.eq(tile_cols),
                    s1_last.eq(tile_end & leaves),
                ]
                with m.If(tile_end):
                    m.d.sync += [streaming.eq(0), seq.eq(seq + 1), t_index.eq(t_index + 1)]
                    with m.If(t_last):
                        m.d.sync += [t_index.eq(0), j_index.eq(j_index + 1)]
                    with m.If(step_last_tile):
                        m.d.sync += [j_index.eq(0), seq.eq(0),
                                     active.eq(~nest.last)]
                        with m.If(nest.next_load_a | nest.last):
                            m.d.sync += self.a_released.eq(self.a_released + 1)
                        with m.If(nest.next_load_b | nest.last):
                            m.d.sync += self.b_released.eq(self.b_released + 1)
                        nest.step()
        with m.If(begin):
            m.d.sync += k.eq(0)
        with m.Elif(s0_fire):
            m.d.sync += k.eq(k + 1)
        with m.If(s0_fire):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(self.operands.ready):
            m.d.sync += s1_valid.eq(0)
        with m.If(self.start | self.abort):
            m.d.sync += s1_valid.eq(0)

        # Stage 1: each array row's byte from its bank, each column from the tile's B bank,
        # padding zeroed.
        out = self.operands.payload
        for i in range(rows):
            byte = Signal(8, name=f"feed_a_{i}")
            m.d.comb += byte.eq(Value.cast(self.a_read_data[i]).word_select(s1_lane, 8))
            m.d.comb += out.a[i].eq(Mux(i < s1_rows, byte, 0))
        b_row = self.b_read_data[0]
        for index in range(1, banks):
            b_row = Mux(s1_bank == index, self.b_read_data[index], b_row)
        b_row = data.View(data.ArrayLayout(8, cols), b_row)
        for j in range(cols):
            m.d.comb += out.b[j].eq(Mux(j < s1_cols, b_row[j], 0))
        m.d.comb += [out.last.eq(s1_last), self.operands.valid.eq(s1_valid)]
        useful = s1_rows * s1_cols
        with m.If(self.operands.valid & self.operands.ready):
            m.d.comb += [self.macs.eq(useful), self.padded_macs.eq(rows * cols - useful)]
        m.d.comb += self.busy.eq(active | s1_valid)
        return m


class TileScheduler(wiring.Component):
    """The tiling controller: load sequencer, loaders, read arbiter and feeder.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    job : In(JobDescriptor)
        Must hold still from ``start`` until ``done``; its plan has passed the checker.
    start : In(1)
        Pulse: begin the job.
    abort : In(1)
        Stop issuing reads and feeding (after an AXI error).
    busy : Out(1)
        Not every operand beat of the job has been fed yet.
    read_cmd : Out(stream.Signature(ReadCommand(config)))
    read_data : In(stream.Signature(ReadData(config)))
    operands : Out(stream.Signature(OperandsLayout(config)))
        To the array.
    tiles : Out(stream.Signature(TileInfo(config)))
        One entry per final output tile, in the order the array finishes them.
    psum : Out(stream.Signature(PsumCommand(config)))
        One entry per tile leaving the array, for the partial-sum unit.
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
            "psum": Out(stream.Signature(PsumCommand(config))),
            "macs": Out(range(config.rows * config.cols + 1)),
            "padded_macs": Out(range(config.rows * config.cols + 1)),
            "sram_a_write": Out(range(config.bus_bytes + 1)),
            "sram_b_write": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        job = _Job(m, config, self.job)
        m.submodules.sequencer = sequencer = LoadSequencer(config, job)
        m.submodules.a_loader = a_loader = ALoader(config, job)
        m.submodules.b_loader = b_loader = BLoader(config, job)
        m.submodules.arbiter = arbiter = ReadArbiter(config)
        m.submodules.feeder = feeder = Feeder(config, job, a_loader.words, b_loader.words)
        for engine in (sequencer, a_loader, b_loader, feeder):
            m.d.comb += [engine.start.eq(self.start), engine.abort.eq(self.abort)]
        connect(m, sequencer.a_block, a_loader.block)
        connect(m, sequencer.b_block, b_loader.block)
        connect(m, a_loader.cmd, arbiter.a_cmd)
        connect(m, b_loader.cmd, arbiter.b_cmd)
        connect(m, arbiter.a_data, a_loader.data)
        connect(m, arbiter.b_data, b_loader.data)
        connect(m, arbiter.cmd, wiring.flipped(self.read_cmd))
        connect(m, wiring.flipped(self.read_data), arbiter.data)
        connect(m, feeder.operands, wiring.flipped(self.operands))
        connect(m, feeder.tiles, wiring.flipped(self.tiles))
        connect(m, feeder.psum, wiring.flipped(self.psum))
        m.d.comb += [
            sequencer.issuing.eq(a_loader.issuing | b_loader.issuing),
            sequencer.a_next_addr.eq(a_loader.next_addr),
            sequencer.a_released.eq(feeder.a_released),
            sequencer.b_released.eq(feeder.b_released),
            feeder.a_loaded.eq(a_loader.loaded),
            feeder.b_loaded.eq(b_loader.loaded),
            a_loader.read_addr.eq(feeder.a_read_addr),
            a_loader.read_en.eq(feeder.a_read_en),
            feeder.a_read_data.eq(a_loader.read_data),
            b_loader.read_addr.eq(feeder.b_read_addr),
            b_loader.read_en.eq(feeder.b_read_en),
            feeder.b_read_data.eq(b_loader.read_data),
            self.macs.eq(feeder.macs),
            self.padded_macs.eq(feeder.padded_macs),
            self.sram_a_write.eq(a_loader.sram_write),
            self.sram_b_write.eq(b_loader.sram_write),
            self.busy.eq(feeder.busy),
        ]
        return m

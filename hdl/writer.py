"""The C path: result rows from the array, through the C buffer, to the write DMA."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant
from .array import ResultsLayout
from .blockram import BlockRAMFIFOBuffered
from .dma import WriteCommand, WriteData
from .job import JobDescriptor, output_bytes
from .tiler import TileInfo

__all__ = ["ResultWriter"]


class ResultWriter(wiring.Component):
    """Write finished C tiles to memory, row by row, without touching anything else.

    Rows leave the array bottom first into the C buffer (a FIFO of two tiles, so a tile
    drains while the previous one is still being written). Each row belongs to the tile
    whose placement came first from ``tiles`` (which the writer takes one tile ahead, to
    compute its address early); rows past M are dropped, and a kept row becomes one write
    command of ``cols_valid * bytes(out_format)`` bytes at
    ``c_addr + row * c_stride + col0 * bytes(out_format)`` followed by its packed bytes.

    Attributes
    ----------
    job : In(JobDescriptor)
    results : In(stream.Signature(ResultsLayout(config)))
    tiles : In(stream.Signature(TileInfo(config)))
    write_cmd : Out(stream.Signature(WriteCommand(config)))
    write_data : Out(stream.Signature(WriteData(config)))
    abort : In(1)
        Finish the row being written, start no other.
    busy : Out(1)
        A row is buffered or being written.
    sram_c_write, sram_c_read : Out
        Bytes entering / leaving the C buffer this cycle.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "job": In(JobDescriptor),
            "results": In(stream.Signature(ResultsLayout(config))),
            "tiles": In(stream.Signature(TileInfo(config))),
            "write_cmd": Out(stream.Signature(WriteCommand(config))),
            "write_data": Out(stream.Signature(WriteData(config))),
            "abort": In(1),
            "busy": Out(1),
            "sram_c_write": Out(range(4 * config.cols + 1)),
            "sram_c_read": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        rows, cols, bb = config.rows, config.cols, config.bus_bytes
        job = self.job
        width = output_bytes(job.out_format)

        layout = ResultsLayout(config)
        m.submodules.buffer = buffer = BlockRAMFIFOBuffered(width=layout.size, depth=2 * rows)
        m.d.comb += [
            buffer.w_data.eq(self.results.payload.as_value()),
            buffer.w_en.eq(self.results.valid),
            self.results.ready.eq(buffer.w_rdy),
        ]
        with m.If(self.results.valid & self.results.ready):
            m.d.comb += self.sram_c_write.eq(cols * width)
        row = data.View(layout, buffer.r_data)

        # Pack the row's elements, lowest column first, into a byte string.
        packed = Signal(8 * 4 * cols)
        as_fp32 = Cat(*[row.c[j] for j in range(cols)])
        as_bf16 = Cat(*[row.c[j][:16] for j in range(cols)])
        as_fp8 = Cat(*[row.c[j][:8] for j in range(cols)])
        m.d.comb += packed.eq(Mux(width == 4, as_fp32, Mux(width == 2, as_bf16, as_fp8)))

        # The tile being written is in registers, with the address of the row at the head
        # of the C buffer: rows leave bottom first, ``rows`` per tile, so that address and
        # the row's index in C count down from the tile's bottom row. The next tile waits
        # in a second set of registers while its bottom row's address is computed in two
        # more cycles (a product, then a sum). A tile is announced at the start of its
        # last chunk, well before its first row leaves the array, so the address is ready
        # by then: the adders and the multiplier leave the path from the C buffer's and
        # the tile queue's block RAM outputs to the write DMA. (Taking the next tile early
        # also frees its queue entry early, so the tiler no longer waits for a full queue
        # on jobs of many tiny-K tiles.)
        aw = config.addr_width
        c_addr = job.c_addr[:aw]
        c_stride = job.c_stride[:aw]
        bottom_off = Signal(aw)                 # (rows - 1) * c_stride
        m.d.sync += bottom_off.eq(c_stride * (rows - 1))

        nxt = Signal(TileInfo(config))
        nxt_stage = Signal(range(4))            # 0 empty, 1 popped, 2 product, 3 address ready
        nxt_row_off = Signal(aw)                # row0 * c_stride
        nxt_addr = Signal(aw)                   # its bottom row's address
        cur_cols = Signal.like(nxt.cols)        # the current tile's valid columns
        cur_valid = Signal()
        row_addr = Signal(aw)                   # the head row's address in C
        row_abs = Signal(config.dim_width + 1)  # and its row of C
        row_done = Signal()                     # the head row leaves the C buffer
        move = Signal()                         # the next tile becomes the current one
        m.d.comb += [
            move.eq((nxt_stage == 3) & (~cur_valid | (row_done & row.last))),
            self.tiles.ready.eq((nxt_stage == 0) | move),
        ]
        with m.If(nxt_stage == 1):
            m.d.sync += [nxt_row_off.eq(nxt.row0 * c_stride), nxt_stage.eq(2)]
        with m.If(nxt_stage == 2):
            m.d.sync += [nxt_addr.eq(c_addr + nxt_row_off + nxt.col0 * width + bottom_off),
                         nxt_stage.eq(3)]
        with m.If(move):
            m.d.sync += [cur_cols.eq(nxt.cols), cur_valid.eq(1), row_addr.eq(nxt_addr),
                         row_abs.eq(nxt.row0 + (rows - 1)), nxt_stage.eq(0)]
        with m.Elif(row_done):
            if rows > 1:                        # (one row per tile: nothing counts down)
                m.d.sync += [row_addr.eq(row_addr - c_stride), row_abs.eq(row_abs - 1)]
            with m.If(row.last):
                m.d.sync += cur_valid.eq(0)
        with m.If(self.tiles.valid & self.tiles.ready):
            m.d.sync += [nxt.eq(self.tiles.payload), nxt_stage.eq(1)]
        m.d.comb += buffer.r_en.eq(row_done)

        length = cur_cols * width
        beat = Signal(range(4 * cols // bb + 2))
        remaining = Signal(range(4 * cols + 1))
        keep = row_abs < job.m[:config.dim_width]      # M of an accepted job fits
        with m.FSM():
            with m.State("ROW"):
                with m.If(buffer.r_rdy & cur_valid & ~self.abort):
                    with m.If(keep):
                        m.d.comb += [
                            self.write_cmd.valid.eq(1),
                            self.write_cmd.payload.addr.eq(row_addr),
                            self.write_cmd.payload.length.eq(length),
                        ]
                        with m.If(self.write_cmd.ready):
                            m.d.sync += [beat.eq(0), remaining.eq(length)]
                            m.next = "DATA"
                    with m.Else():
                        m.d.comb += row_done.eq(1)
            with m.State("DATA"):
                last = ~above_constant(remaining, bb)
                m.d.comb += [
                    self.write_data.valid.eq(1),
                    self.write_data.payload.data.eq(packed.word_select(beat, 8 * bb)),
                    self.write_data.payload.count.eq(Mux(last, remaining, bb)),
                    self.write_data.payload.last.eq(last),
                ]
                with m.If(self.write_data.ready):
                    m.d.comb += self.sram_c_read.eq(Mux(last, remaining, bb))
                    m.d.sync += [beat.eq(beat + 1), remaining.eq(remaining - bb)]
                    with m.If(last):
                        m.d.comb += row_done.eq(1)
                        m.next = "ROW"
        m.d.comb += self.busy.eq(buffer.r_rdy | cur_valid | (nxt_stage != 0) |
                                 self.tiles.valid)
        return m

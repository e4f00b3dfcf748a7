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
    drains while the previous one is still being written). For each row the writer takes
    the tile's placement from ``tiles``; rows past M are dropped, and a kept row becomes
    one write command of ``cols_valid * bytes(out_format)`` bytes at
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

        tile = self.tiles.payload
        row_abs = tile.row0 + row.row
        length = tile.cols * width
        beat = Signal(range(4 * cols // bb + 2))
        remaining = Signal(range(4 * cols + 1))
        keep = row_abs < job.m[:config.dim_width]      # M of an accepted job fits
        with m.FSM():
            with m.State("ROW"):
                with m.If(buffer.r_rdy & self.tiles.valid & ~self.abort):
                    with m.If(keep):
                        m.d.comb += [
                            self.write_cmd.valid.eq(1),
                            self.write_cmd.payload.addr.eq(
                                job.c_addr + row_abs * job.c_stride + tile.col0 * width),
                            self.write_cmd.payload.length.eq(length),
                        ]
                        with m.If(self.write_cmd.ready):
                            m.d.sync += [beat.eq(0), remaining.eq(length)]
                            m.next = "DATA"
                    with m.Else():
                        m.d.comb += buffer.r_en.eq(1)
                        with m.If(row.last):
                            m.d.comb += self.tiles.ready.eq(1)
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
                        m.d.comb += buffer.r_en.eq(1)
                        with m.If(row.last):
                            m.d.comb += self.tiles.ready.eq(1)
                        m.next = "ROW"
        m.d.comb += self.busy.eq(buffer.r_rdy | self.tiles.valid)
        return m

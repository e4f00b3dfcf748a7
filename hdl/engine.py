"""The GEMM engine: tiler, array, C path and DMA behind one AXI4 master port."""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from .array import SystolicArray
from .axi import AXI4Signature
from .counters import COUNTERS, CounterBank
from .dma import DmaReader, DmaWriter, connect_axi4
from .job import JobChecker, JobDescriptor
from .registers import ErrorCode
from .tiler import TileScheduler, max_read_length
from .writer import ResultWriter

__all__ = ["GemmEngine"]


class GemmEngine(wiring.Component):
    """Checks and runs one job at a time and counts where its cycles and bytes go.

    At ``start`` the counters clear and :class:`JobChecker` latches and checks the
    descriptor (:data:`~systole.hdl.job.CHECK_CYCLES` cycles, counted as overhead). A
    rejected job ends there, with its error code and no memory access; an accepted one
    runs from the checker's latched copy.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    job : In(JobDescriptor)
        Latched at ``start``.
    start : In(1)
        Pulse, while not ``busy``.
    busy : Out(1)
    done : Out(1)
        Pulse at the end of the job, with ``error`` valid.
    error : Out(ErrorCode)
        NONE, the checker's code of a rejected descriptor, or the AXI error that aborted
        the job.
    counters : Out(StructLayout of COUNTERS)
        Cleared at ``start``, live while busy, frozen at done.
    mem : Out(AXI4Signature)
    """

    def __init__(self, config):
        self._config = config
        # The array reads rows bytes of A and cols bytes of B on every active cycle.
        self._bank = CounterBank(config, {name: 16 for name in COUNTERS}, derived={
            "sram_a_read_bytes": ("active_cycles", config.rows),
            "sram_b_read_bytes": ("active_cycles", config.cols),
        })
        super().__init__({
            "job": In(JobDescriptor),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(ErrorCode),
            "counters": Out(self._bank.values.shape()),
            "mem": Out(AXI4Signature(addr_width=config.addr_width,
                                     data_width=config.bus_width)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config

        flush = Signal()    # returns the datapath to its reset state between jobs
        m.submodules.checker = checker = JobChecker(config)
        job = checker.checked
        m.submodules.tiler = tiler = ResetInserter(flush)(TileScheduler(config))
        m.submodules.array = array = ResetInserter(flush)(SystolicArray(config))
        m.submodules.writer = writer = ResetInserter(flush)(ResultWriter(config))
        m.submodules.reader_dma = reader = DmaReader(config, max_length=max_read_length(config))
        # The result writer issues one command per tile row: at most cols fp32 results.
        m.submodules.writer_dma = writer_dma = DmaWriter(config, max_length=4 * config.cols)
        m.submodules.counters = bank = self._bank
        connect_axi4(m, self.mem, reader=reader, writer=writer_dma)

        connect(m, tiler.read_cmd, reader.cmd)
        connect(m, reader.data, tiler.read_data)
        connect(m, tiler.operands, array.operands)
        connect(m, array.results, writer.results)
        connect(m, tiler.tiles, writer.tiles)
        connect(m, writer.write_cmd, writer_dma.cmd)
        connect(m, writer.write_data, writer_dma.data)
        m.d.comb += [
            checker.job.eq(self.job),
            tiler.job.eq(job), writer.job.eq(job),
            array.job.a_format.eq(job.a_format), array.job.b_format.eq(job.b_format),
            array.job.out_format.eq(job.out_format), array.job.saturate.eq(job.saturate),
            array.job.scale_exp.eq(job.scale_exp),
        ]

        axi_error = reader.error | writer_dma.error
        dma_idle = reader.idle & writer_dma.idle
        running = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [bank.clear.eq(1), reader.clear.eq(1), writer_dma.clear.eq(1),
                                 checker.start.eq(1)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += running.eq(1)
                with m.If(checker.done & (checker.error != ErrorCode.NONE)):
                    m.d.comb += [self.done.eq(1), self.error.eq(checker.error)]
                    m.next = "IDLE"
                with m.Elif(checker.done):
                    # The checker holds the accepted descriptor: start the tiler on it.
                    m.d.comb += tiler.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(axi_error):
                    m.next = "ABORT"
                with m.Elif(~tiler.busy & array.idle & ~writer.busy & dma_idle):
                    m.d.comb += [self.done.eq(1), self.error.eq(ErrorCode.NONE)]
                    m.next = "IDLE"
            with m.State("ABORT"):
                # Stop issuing; let outstanding AXI transactions finish, then flush.
                m.d.comb += [running.eq(1), tiler.abort.eq(1), writer.abort.eq(1)]
                with m.If(dma_idle):
                    m.d.comb += [flush.eq(1), self.done.eq(1)]
                    with m.If(reader.error):
                        m.d.comb += self.error.eq(ErrorCode.AXI_READ_ERROR)
                    with m.Else():
                        m.d.comb += self.error.eq(ErrorCode.AXI_WRITE_ERROR)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(running)

        # Every running cycle falls in exactly one of the four cycle classes.
        fed = tiler.operands.valid & tiler.operands.ready
        inc = bank.increment
        m.d.comb += [
            bank.enable.eq(running),
            inc.cycles.eq(1),
            inc.active_cycles.eq(fed),
            inc.stall_store_cycles.eq(tiler.operands.valid & ~tiler.operands.ready),
            inc.stall_load_cycles.eq(~tiler.operands.valid & tiler.busy),
            inc.overhead_cycles.eq(~tiler.operands.valid & ~tiler.busy),
            inc.macs.eq(tiler.macs),
            inc.padded_macs.eq(tiler.padded_macs),
            inc.dram_read_bytes.eq(reader.r_fire * config.bus_bytes),
            inc.dram_write_bytes.eq(Mux(writer_dma.w_fire, writer_dma.w_bytes, 0)),
            inc.dram_read_bursts.eq(reader.ar_fire),
            inc.dram_write_bursts.eq(writer_dma.aw_fire),
            inc.sram_a_write_bytes.eq(tiler.sram_a_write),
            inc.sram_b_write_bytes.eq(tiler.sram_b_write),
            inc.sram_c_read_bytes.eq(writer.sram_c_read),
            inc.sram_c_write_bytes.eq(writer.sram_c_write),
            self.counters.eq(bank.values),
        ]
        return m

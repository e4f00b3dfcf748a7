"""The GEMM engine: tiler, array, C path and DMA behind one AXI4 master port."""

from amaranth.hdl import Assert, Format, Module, Mux, ResetInserter, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from .array import SystolicArray
from .axi import AXI4Signature
from .counters import COUNTERS, CounterMemory
from .dma import DmaReader, DmaWriter, connect_axi4
from .csr import FetchSignature
from .job import JobChecker
from .registers import DESCRIPTOR_REGISTERS, ErrorCode
from .tiler import TileScheduler, max_read_length
from .writer import ResultWriter

__all__ = ["GemmEngine"]


class GemmEngine(wiring.Component):
    """Checks and runs one job at a time and counts where its cycles and bytes go.

    At ``start`` the counters clear and :class:`JobChecker` fetches the descriptor from
    the CSR bank and checks it (:func:`~systole.hdl.job.check_cycles` cycles, counted as
    overhead). A rejected job ends there, with its error code and no memory access; an
    accepted one runs from the checker's latched copy.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    descriptor : Out(FetchSignature(len(DESCRIPTOR_REGISTERS)))
        To the CSR bank's fetched descriptor registers
        (:data:`~systole.hdl.registers.DESCRIPTOR_REGISTERS`).
    start : In(1)
        Pulse, while not ``busy``.
    abort : In(1)
        Pulse: end the running job with ABORTED. While the descriptor is checked it takes
        effect when the check ends (a rejected job keeps its code); while the job runs
        the DMAs halt as on an AXI error and the job ends once the bus has drained.
    busy : Out(1)
    done : Out(1)
        Pulse at the end of the job, with ``error`` valid.
    error : Out(ErrorCode)
        NONE, the checker's code of a rejected descriptor, the AXI error that aborted
        the job, or ABORTED.
    counter_index : In(range(len(COUNTERS)))
    counter_value : Out(config.counter_width)
        The counter ``counter_index`` named on the previous cycle (see
        :class:`CounterMemory`): cleared at ``start``, live while busy, frozen at done.
    mem : Out(AXI4Signature)
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "descriptor": Out(FetchSignature(len(DESCRIPTOR_REGISTERS))),
            "start": In(1),
            "abort": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(ErrorCode),
            "counter_index": In(range(len(COUNTERS))),
            "counter_value": Out(config.counter_width),
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
        connect_axi4(m, self.mem, reader=reader, writer=writer_dma)

        connect(m, wiring.flipped(self.descriptor), checker.fetch)
        connect(m, tiler.read_cmd, reader.cmd)
        connect(m, reader.data, tiler.read_data)
        connect(m, tiler.operands, array.operands)
        connect(m, tiler.psum, array.psum)
        connect(m, array.results, writer.results)
        connect(m, tiler.tiles, writer.tiles)
        connect(m, writer.write_cmd, writer_dma.cmd)
        connect(m, writer.write_data, writer_dma.data)
        m.d.comb += [
            tiler.job.eq(job), writer.job.eq(job),
            array.job.a_format.eq(job.a_format), array.job.b_format.eq(job.b_format),
            array.job.out_format.eq(job.out_format), array.job.saturate.eq(job.saturate),
            array.job.scale_exp.eq(job.scale_exp),
        ]

        axi_error = reader.error | writer_dma.error
        dma_idle = reader.idle & writer_dma.idle
        running = Signal()
        aborted = Signal()      # ABORT was written during this job

        # Every running cycle falls in exactly one of the four cycle classes.
        fed = tiler.operands.valid & tiler.operands.ready
        increments = {
            "cycles": 1,
            "active_cycles": fed,
            "stall_store_cycles": tiler.operands.valid & ~tiler.operands.ready,
            "stall_load_cycles": ~tiler.operands.valid & tiler.busy,
            "overhead_cycles": ~tiler.operands.valid & ~tiler.busy,
            "macs": tiler.macs,
            "padded_macs": tiler.padded_macs,
            "dram_read_bytes": Mux(reader.r_fire, config.bus_bytes, 0),
            "dram_write_bytes": Mux(writer_dma.w_fire, writer_dma.w_bytes, 0),
            "dram_read_bursts": reader.ar_fire,
            "dram_write_bursts": writer_dma.aw_fire,
            "sram_a_write_bytes": tiler.sram_a_write,
            "sram_b_write_bytes": tiler.sram_b_write,
            "sram_c_read_bytes": writer.sram_c_read,
            "sram_c_write_bytes": writer.sram_c_write,
            "sram_psum_read_bytes": array.psum_read,
            "sram_psum_write_bytes": array.psum_write,
        }
        # The array reads rows bytes of A and cols bytes of B on every active cycle.
        m.submodules.counters = bank = CounterMemory(
            config, {name: len(Value.cast(value)) for name, value in increments.items()},
            derived={"sram_a_read_bytes": ("active_cycles", config.rows),
                     "sram_b_read_bytes": ("active_cycles", config.cols)})
        m.d.comb += [bank.enable.eq(running), bank.read_index.eq(self.counter_index),
                     self.counter_value.eq(bank.read_value)]
        m.d.comb += [getattr(bank.increment, name).eq(value)
                     for name, value in increments.items()]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [bank.clear.eq(1), reader.clear.eq(1), writer_dma.clear.eq(1),
                                 checker.start.eq(1)]
                    m.d.sync += aborted.eq(0)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += running.eq(1)
                with m.If(self.abort):
                    m.d.sync += aborted.eq(1)
                with m.If(checker.done & (checker.error != ErrorCode.NONE)):
                    m.d.comb += [self.done.eq(1), self.error.eq(checker.error)]
                    m.next = "IDLE"
                with m.Elif(checker.done & (aborted | self.abort)):
                    m.d.comb += [self.done.eq(1), self.error.eq(ErrorCode.ABORTED)]
                    m.next = "IDLE"
                with m.Elif(checker.done):
                    # The checker holds the accepted descriptor: start the tiler on it.
                    m.d.comb += tiler.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(self.abort):
                    m.d.comb += [reader.stop.eq(1), writer_dma.stop.eq(1)]
                    m.d.sync += aborted.eq(1)
                    m.next = "ABORT"
                with m.Elif(axi_error):
                    m.next = "ABORT"
                with m.Elif(~tiler.busy & array.idle & ~writer.busy & dma_idle):
                    m.d.comb += [self.done.eq(1), self.error.eq(ErrorCode.NONE)]
                    m.next = "IDLE"
            with m.State("ABORT"):
                # Stop issuing; let outstanding AXI transactions finish, then flush.
                m.d.comb += [running.eq(1), tiler.abort.eq(1), writer.abort.eq(1)]
                with m.If(dma_idle):
                    m.d.comb += [flush.eq(1), self.done.eq(1)]
                    with m.If(aborted):
                        m.d.comb += self.error.eq(ErrorCode.ABORTED)
                    with m.Elif(reader.error):
                        m.d.comb += self.error.eq(ErrorCode.AXI_READ_ERROR)
                    with m.Else():
                        m.d.comb += self.error.eq(ErrorCode.AXI_WRITE_ERROR)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(running)
        self._invariants(m, fsm, checker, tiler, increments, bank.clear)
        return m

    def _invariants(self, m, fsm, checker, tiler, increments, clear):
        """What the engine promises, checked on every clock edge (Amaranth's simulator,
        Verilator and Icarus stop on a violation; synthesis drops the checks and what
        feeds only them).

        - A job starts only once the checker has accepted it: a descriptor with an error
          code never reaches the tiler.
        - The AXI4 master is silent unless a job runs (or drains after an abort): a
          rejected job makes no memory access.
        - At the done of an accepted job, the counter laws that hold only over a whole
          job: every byte read from the C buffer went to DRAM (``sram_c_read_bytes ==
          dram_write_bytes``), and every partial-sum row written was read back
          (``sram_psum_read_bytes == sram_psum_write_bytes``). Each is kept as a running
          difference, which stays small (what is in flight between the two ends).
        """
        mem = self.mem
        m.d.sync += [
            Assert(~tiler.start | (checker.done & (checker.error == ErrorCode.NONE)),
                   "the tiler started on a descriptor the checker did not accept"),
            Assert(~(mem.arvalid | mem.awvalid | mem.wvalid)
                   | fsm.ongoing("RUN") | fsm.ongoing("ABORT"),
                   "an AXI4 request outside a running job"),
        ]
        laws = {"sram_c_read_bytes == dram_write_bytes": ("sram_c_read_bytes",
                                                          "dram_write_bytes"),
                "sram_psum_read_bytes == sram_psum_write_bytes": ("sram_psum_read_bytes",
                                                                  "sram_psum_write_bytes")}
        accepted_done = self.done & (self.error == ErrorCode.NONE)
        for law, (left, right) in laws.items():
            difference = Signal(signed(32), name="balance_" + left)
            with m.If(clear):
                m.d.sync += difference.eq(0)
            with m.Else():
                m.d.sync += difference.eq(difference + increments[left] - increments[right])
            m.d.sync += Assert(~accepted_done | (difference == 0),
                               Format(f"at done, {law} is off by {{}}", difference))

"""The accelerator top level: CSRs over AXI4-Lite, the GEMM engine over AXI4."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out, flipped

from .counters import COUNTERS
from .csr import CSRBank
from .dma import axi4_signature
from .engine import GemmEngine
from .registers import DESCRIPTOR_REGISTERS, ErrorCode, systole_register_map

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """Systole: write a descriptor, write START, wait for done, read the counters.

    At START the descriptor is checked (over a few dozen cycles, see
    :class:`~systole.hdl.job.JobChecker`); a bad one ends the job with STATUS.ERROR and its
    code, and nothing reaches the memory bus. START while a job runs sets ERROR with
    code BUSY and leaves the running job alone. An AXI error response aborts the job
    (AXI_READ_ERROR / AXI_WRITE_ERROR) after the outstanding transactions complete, and
    so does CTRL.ABORT (ABORTED).

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    csr : AXI4-Lite subordinate port (Verilog ``csr__*``)
    mem : AXI4 manager port (Verilog ``mem__*``)
    irq : Out(1)
        STATUS.DONE & IRQ_ENABLE.DONE.
    """

    def __init__(self, config):
        self._config = config
        self._bank = CSRBank(systole_register_map(config), counter_port=True,
                             fetched=DESCRIPTOR_REGISTERS)
        super().__init__({
            "csr": Out(self._bank.axi.signature),
            "mem": Out(axi4_signature(config)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.csr = bank = self._bank
        m.submodules.engine = engine = GemmEngine(config)
        wiring.connect(m, flipped(self.csr), bank.axi)
        wiring.connect(m, flipped(self.mem), engine.mem)

        # The descriptor lives only in the bank's block RAM; the engine fetches it at START.
        wiring.connect(m, engine.descriptor, bank.fetch)

        error_code = Signal(ErrorCode)
        start = bank.ctrl.start
        with m.If(start & engine.busy):
            m.d.sync += error_code.eq(ErrorCode.BUSY)
            m.d.comb += bank.status.error_set.eq(1)
        with m.Elif(start):
            m.d.sync += error_code.eq(ErrorCode.NONE)
            m.d.comb += engine.start.eq(1)
        with m.If(engine.done):
            m.d.comb += bank.status.done_set.eq(1)
            with m.If(engine.error != ErrorCode.NONE):
                m.d.sync += error_code.eq(engine.error)
                m.d.comb += bank.status.error_set.eq(1)
        m.d.comb += [
            engine.abort.eq(bank.ctrl.abort),
            bank.status.busy.eq(engine.busy),
            bank.error_code.code.eq(error_code),
            self.irq.eq(bank.status.done & bank.irq_enable.done),
        ]
        # The counters live in the engine's block RAM (CounterMemory), read one at a time;
        # the register map lists them in COUNTERS order, as the engine indexes them.
        assert [counter.name for counter in bank.regmap.counters] == list(COUNTERS)
        m.d.comb += [engine.counter_index.eq(bank.counter_index),
                     bank.counter_value.eq(engine.counter_value)]
        return m

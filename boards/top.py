"""The board top level: the accelerator, its memory on chip, and a UART host bridge.

::

    uart_rx --> UARTReceiver --> HostBridge --AXI4-Lite--> Accelerator.csr
    uart_tx <-- UARTTransmitter <--'    |                      | Accelerator.mem (AXI4)
                                        '--AXI4--> AXI4Arbiter <'
                                                        |
                                                 on-chip AXI4 memory

The host speaks the framed protocol of docs/host-protocol.md; ``systole board gemm`` is
the host program. Everything runs in one clock domain, ``sync``.
"""

import math

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hdl.bridge import AXI4Arbiter, HostBridge
from ..hdl.simmem import AxiMemory
from ..hdl.top import Accelerator
from ..hdl.uart import UARTReceiver, UARTTransmitter, uart_divisor

__all__ = ["BoardTop", "block_ram_memory"]

#: Largest request/reply payload of the bridge (its frame buffer: one 4 Kib block RAM).
MAX_PAYLOAD = 256


def block_ram_memory(*, addr_width, data_width, size):
    """The default board memory: :class:`AxiMemory` as plain block RAM.

    Read latency 2 (the minimum), no back-pressure, four read bursts queued: the RAM is
    one synchronous read port and one byte-enabled write port, which Yosys maps to block
    RAM on ECP5 and iCE40.
    """
    return AxiMemory(addr_width=addr_width, data_width=data_width, size=size, latency=2,
                     pause=0.0, max_outstanding=4)


class BoardTop(wiring.Component):
    """Systole accelerator + on-chip AXI4 memory + UART host bridge (one clock domain, "sync").

    Parameters
    ----------
    config : SystoleConfig
    clk_freq : float
        Clock frequency in Hz (sets the UART bit time and the bridge's timeout).
    baud : int
        UART bit rate; ``clk_freq / baud`` must be at least 4 and round within 2 %.
    memory_bytes : int
        Bytes of board memory (a power of two), at addresses 0 to ``memory_bytes - 1``.
    memory : callable or None
        ``memory(addr_width=..., data_width=..., size=...)`` returning a component with a
        ``bus: In(AXI4Signature(...))`` subordinate port; None for
        :func:`block_ram_memory`.
    frame_timeout : float
        Seconds of silence inside a request frame after which the bridge abandons it.

    Attributes
    ----------
    uart_rx : In(1)
    uart_tx : Out(1)
    leds : Out(3)
        Bit 0 busy (a job is running); bit 1 done (the last job completed without error);
        bit 2 error (the last job was rejected or aborted). Done and error hold until the
        next START, so they stay visible after the host clears STATUS.

    Raises
    ------
    ValueError
        For an unusable clock/baud pair or memory size.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(3)

    def __init__(self, config, *, clk_freq, baud=115200, memory_bytes=64 * 1024, memory=None,
                 frame_timeout=0.02):
        if (isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int)
                or memory_bytes < 64 or memory_bytes & (memory_bytes - 1)):
            raise ValueError(f"memory_bytes must be a power of two of at least 64, "
                             f"not {memory_bytes!r}")
        if memory_bytes > 1 << config.addr_width:
            raise ValueError(f"memory_bytes {memory_bytes} exceeds the {config.addr_width}-bit "
                             f"address space")
        self._config = config
        self._divisor = uart_divisor(clk_freq, baud)
        # At least 32 byte times, so a frame's own bytes never time out.
        self._timeout = max(math.ceil(clk_freq * frame_timeout), 32 * 10 * self._divisor)
        self._memory_bytes = memory_bytes
        self._memory_factory = memory or block_ram_memory
        self.clk_freq = clk_freq
        self.baud = baud
        super().__init__()

    @property
    def memory_bytes(self):
        return self._memory_bytes

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def timeout_cycles(self):
        """The bridge's inter-byte timeout in clock cycles."""
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.accelerator = acc = Accelerator(config)
        m.submodules.memory = mem = self._memory_factory(
            addr_width=config.addr_width, data_width=config.bus_width, size=self._memory_bytes)
        # The accelerator has at most max_outstanding bursts in flight per channel, the
        # bridge one.
        m.submodules.arbiter = arbiter = AXI4Arbiter(addr_width=config.addr_width,
                                                     data_width=config.bus_width,
                                                     max_outstanding=config.max_outstanding)
        csr_addr_width = acc.csr.signature.addr_width
        m.submodules.bridge = bridge = HostBridge(
            csr_addr_width=csr_addr_width, addr_width=config.addr_width,
            data_width=config.bus_width, memory_bytes=self._memory_bytes,
            max_payload=MAX_PAYLOAD, timeout=self._timeout)
        m.submodules.uart_rx = rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self._divisor)

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.stream, bridge.rx)
        wiring.connect(m, bridge.tx, tx.stream)
        wiring.connect(m, bridge.csr, acc.csr)
        wiring.connect(m, acc.mem, arbiter.managers[0])
        wiring.connect(m, bridge.mem, arbiter.managers[1])
        wiring.connect(m, arbiter.sub, mem.bus)

        # LEDs from the CSR bank's status (Accelerator builds its bank in __init__).
        status, start = acc._bank.status, acc._bank.ctrl.start
        done_led, error_led = Signal(), Signal()
        with m.If(start):
            m.d.sync += [done_led.eq(0), error_led.eq(0)]
        with m.Elif(status.done_set):
            m.d.sync += done_led.eq(~status.error_set & ~error_led)
        with m.If(status.error_set):
            m.d.sync += [error_led.eq(1), done_led.eq(0)]
        m.d.comb += self.leds.eq(status.busy | done_led << 1 | error_led << 2)
        return m

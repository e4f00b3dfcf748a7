"""UART receiver and transmitter: 8 data bits, no parity, 1 stop bit (8N1), LSB first.

The bit time is a whole number of clock cycles, ``divisor`` (``round(clk_freq / baud)``);
the receiver samples each bit in its middle, so it tolerates a baud-rate mismatch of a few
percent (the usual UART budget), which the rounding of ``divisor`` must stay within.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "uart_divisor"]


def uart_divisor(clk_freq, baud):
    """Clock cycles per bit for ``baud`` at ``clk_freq``, checked to be usable.

    Raises
    ------
    ValueError
        When there are fewer than 4 cycles per bit, or the rounding error exceeds 2 %.
    """
    if not clk_freq > 0 or not baud > 0:
        raise ValueError(f"clk_freq and baud must be positive, not {clk_freq!r} and {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"A UART needs at least 4 clock cycles per bit; {clk_freq} Hz at "
                         f"{baud} baud gives {clk_freq / baud:.2f}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{clk_freq} Hz cannot make {baud} baud within 2 % (divisor "
                         f"{divisor} gives {clk_freq / divisor:.0f} baud)")
    return divisor


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an integer of at least 4 cycles per bit, "
                         f"not {divisor!r}")


class UARTReceiver(wiring.Component):
    """Bytes from a UART line.

    The line is synchronised by two flip-flops. A start bit is accepted when the line is
    still low half a bit after its falling edge; each data bit is sampled in its middle.
    A byte whose stop bit is low (a framing error, or a break) is dropped, and the receiver
    waits for the line to return high before looking for the next start bit.

    ``stream.valid`` rises for each byte and stays high until the byte is taken, or until
    the start bit of the next byte, whose bits then replace it (the bridge is always ready).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Attributes
    ----------
    rx : In(1)
        The line (idle high).
    stream : Out(stream.Signature(8))
    framing_error : Out(1)
        One-cycle pulse when a byte was dropped for a low stop bit.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"rx": In(1, init=1), "stream": Out(stream.Signature(8)),
                          "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        line_meta = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [line_meta.eq(self.rx), line.eq(line_meta)]

        timer = Signal(range(divisor))      # cycles of the bit so far
        bit_end = timer == divisor - 1
        # The data bits shift in from the top behind a marker bit; the byte is complete
        # when the marker reaches bit 0, and it stays in place as the stream's payload.
        shift = Signal(9)
        m.d.comb += self.stream.payload.eq(shift[1:])
        m.d.sync += timer.eq(timer + 1)
        with m.If(self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                # The start bit is sampled in its middle, half a bit from its falling edge.
                m.d.sync += timer.eq(divisor - divisor // 2)
                with m.If(~line):
                    m.next = "START"
            with m.State("START"):
                with m.If(bit_end):
                    m.d.sync += timer.eq(0)
                    with m.If(line):
                        m.next = "IDLE"         # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [shift.eq(1 << 8), self.stream.valid.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(bit_end):
                    m.d.sync += [timer.eq(0), shift.eq(Cat(shift[1:], line))]
                    with m.If(shift[1]):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(bit_end):
                    with m.If(line):
                        m.d.sync += self.stream.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Bytes onto a UART line, back to back when the stream keeps them coming.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Attributes
    ----------
    stream : In(stream.Signature(8))
    tx : Out(1)
        The line (idle high; a flip-flop's output, so it never glitches).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"stream": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        # Start bit, 8 data bits, stop bit, shifted out LSB first from bit 0 (the line), and
        # behind them a marker bit; zeros shift in, so the marker alone is left (bit 0 high:
        # the idle line) when the stop bit is through.
        shift = Signal(11, init=1)
        timer = Signal(range(divisor))      # cycles of the bit so far
        bit_end = timer == divisor - 1
        busy = shift[1:].any()
        # The stop bit's last cycle may load the next byte: no gap between bytes.
        finishing = (shift[1:] == 1) & bit_end
        m.d.comb += [self.stream.ready.eq(~busy | finishing), self.tx.eq(shift[0])]
        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.stream.payload, Const(0b11, 2))),
                         timer.eq(0)]
        with m.Elif(busy):
            m.d.sync += timer.eq(timer + 1)
            with m.If(bit_end):
                m.d.sync += [timer.eq(0), shift.eq(shift[1:])]
        return m

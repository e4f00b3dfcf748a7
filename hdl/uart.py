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

    ``stream.valid`` rises for each byte and stays high until the byte is taken; a byte not
    taken before the next one arrives is overwritten (the bridge is always ready).

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

        timer = Signal(range(divisor))
        bits = Signal(range(8))
        shift = Signal(8)
        with m.If(self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(divisor - 1), bits.eq(0)]
                    with m.If(line):
                        m.next = "IDLE"         # a glitch, not a start bit
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(divisor - 1), shift.eq(Cat(shift[1:], line)),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [self.stream.payload.eq(shift), self.stream.valid.eq(1)]
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
        The line (idle high; registered, so it never glitches).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"stream": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        # Start bit, 8 data bits, stop bit; shifted out LSB first.
        shift = Signal(10, init=0x3FF)
        timer = Signal(range(divisor))
        left = Signal(range(10))
        busy = Signal()
        # The stop bit's last cycle may load the next byte: no gap between bytes.
        finishing = busy & (timer == 0) & (left == 0)
        m.d.comb += self.stream.ready.eq(~busy | finishing)
        m.d.sync += self.tx.eq(shift[0])
        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.stream.payload, Const(1, 1))),
                         timer.eq(divisor - 1), left.eq(9), busy.eq(1)]
        with m.Elif(busy):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(divisor - 1), shift.eq(Cat(shift[1:], Const(1, 1))),
                             left.eq(left - 1)]
                with m.If(left == 0):
                    m.d.sync += busy.eq(0)
        return m

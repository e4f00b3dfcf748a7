"""Hardware performance counters, declared once (DESIGN.md section 4)."""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .arith import times_constant
from .blockram import NO_COLLISION, RegisteredReadPort

__all__ = ["COUNTERS", "CounterMemory"]

#: Counter names (also the JSON keys of every report) and what they count.
COUNTERS = {
    "cycles": "clock cycles from START to done",
    "active_cycles": "cycles in which an operand beat entered the array",
    "stall_load_cycles": "cycles the array waited for operands (buffers not loaded yet)",
    "stall_store_cycles": "cycles an operand beat waited for the array (result drain or "
                          "write-back back-pressure, or the spacing of short tiles)",
    "overhead_cycles": "every other cycle: setup, and the final drain and write-back",
    "macs": "useful multiply-accumulates (M*N*K for a complete job)",
    "padded_macs": "PE slots spent on the padding of edge tiles",
    "dram_read_bytes": "bytes on the AXI read data channel (bus width per R beat)",
    "dram_write_bytes": "bytes written on the AXI write data channel (strobed bytes)",
    "dram_read_bursts": "AXI read transactions (AR handshakes)",
    "dram_write_bursts": "AXI write transactions (AW handshakes)",
    "sram_a_read_bytes": "bytes the array read from the A SRAM (rows per operand beat)",
    "sram_a_write_bytes": "bytes written into the A SRAM",
    "sram_b_read_bytes": "bytes the array read from the B SRAM (cols per operand beat)",
    "sram_b_write_bytes": "bytes written into the B SRAM",
    "sram_c_read_bytes": "bytes read from the C buffer by the write DMA",
    "sram_c_write_bytes": "bytes of results entering the C buffer (whole tile rows)",
    "sram_psum_read_bytes": "bytes read from the partial-sum SRAM (a row of cols exact states "
                            "per tile row added into)",
    "sram_psum_write_bytes": "bytes written into the partial-sum SRAM (a row of cols exact "
                             "states per tile row stored)",
}


def _check_derived(derived):
    derived = dict(derived or {})
    for name, (source, factor) in derived.items():
        if name not in COUNTERS or source not in COUNTERS or source in derived:
            raise ValueError(f"Counter {name!r} cannot be derived from {source!r}")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"Factor of derived counter {name!r} must be a positive "
                             f"integer, not {factor!r}")
    return derived


class CounterMemory(wiring.Component):
    """The counters of :data:`COUNTERS` in a block RAM, read one at a time.

    A full-width counter costs a flip-flop and a carry cell per bit, and a CSR read
    multiplexer input per bit. Here each counter has only a small *pending* count in
    flip-flops; a flusher visits one counter per cycle, round robin, and adds its pending
    count into the counter's word in the RAM (read one cycle, written the next), so a
    pending count gathers at most ``len(memory)`` cycles of increments. A read returns
    the RAM word plus the pending count, so it is exact on every cycle: the counters are
    live, and frozen from the first cycle ``enable`` is low.

    ``clear`` zeroes the pending counts and marks every word stale: the flusher restarts
    from the first word, and the words it has not written since are the stale ones. It
    writes a stale word as its pending count alone, and a read of a stale word sees zero,
    so the counters read as cleared from the next cycle on.

    A counter named in ``derived`` as ``name: (source, factor)`` grows by exactly
    ``factor`` times the increment of ``source`` on every cycle, so it has no word of its
    own: it reads as ``factor * source`` (modulo ``2**counter_width``, as a counter of its
    own would), formed with shifts and adds.

    Parameters
    ----------
    config : SystoleConfig
    increment_widths : dict of str to int
        Width of each counter's increment (its largest value sizes the pending count).
    derived : dict, optional

    Attributes
    ----------
    clear, enable : In(1)
    increment : In(StructLayout)
    read_index : In(range(len(COUNTERS)))
        A counter, by its position in :data:`COUNTERS`.
    read_value : Out(config.counter_width)
        The value of the counter ``read_index`` named on the previous cycle, as of the
        end of that cycle.
    """

    def __init__(self, config, increment_widths, derived=None):
        self._config = config
        self._derived = _check_derived(derived)
        self._widths = {name: width for name, width in increment_widths.items()
                        if name not in self._derived}
        self._stored = [name for name in COUNTERS if name not in self._derived]
        super().__init__({
            "clear": In(1),
            "enable": In(1),
            "increment": In(data.StructLayout(self._widths)),
            "read_index": In(range(len(COUNTERS))),
            "read_value": Out(config.counter_width),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        stored = self._stored
        count = len(stored)
        width = config.counter_width

        # The flusher reads the word after the one it writes (count > 1): its port needs
        # no collision logic.
        words = memory.Memory(shape=width, depth=count, init=[], attrs=NO_COLLISION)
        m.submodules.words = words
        write = words.write_port()
        flush_read = RegisteredReadPort(m, words, name="flush_read")
        # Transparent: a read issued while its word is written sees the new word, whose
        # pending count has just been reset.
        host_read = words.read_port(transparent_for=(write,))

        # -- pending counts and the flusher ---------------------------------------------
        next_read = Signal(range(count))     # word the flusher reads this cycle
        flushing = Signal(range(count))      # word it writes this cycle (read last cycle)
        # The words from `flushing` on are stale (not yet written since the last clear).
        sweeping = Signal()
        m.d.comb += [flush_read.addr.eq(next_read), flush_read.en.eq(1)]
        with m.If(self.clear):
            m.d.sync += [next_read.eq(1), flushing.eq(0), sweeping.eq(1)]
        with m.Else():
            m.d.sync += [next_read.eq(Mux(next_read == count - 1, 0, next_read + 1)),
                         flushing.eq(next_read)]
            with m.If(flushing == count - 1):
                m.d.sync += sweeping.eq(0)
        pending = []
        for index, name in enumerate(stored):
            # At most count cycles of increments gather between two flushes.
            most = count * ((1 << self._widths[name]) - 1)
            held = Signal(range(most + 1), name=f"pending_{name}")
            pending.append(held)
            step = Mux(self.enable, getattr(self.increment, name), 0)
            with m.If(self.clear):
                m.d.sync += held.eq(0)
            with m.Elif(flushing == index):
                m.d.sync += held.eq(step)
            with m.Else():
                m.d.sync += held.eq(held + step)
        m.d.comb += [
            write.addr.eq(flushing),
            write.data.eq(Mux(sweeping, 0, flush_read.data) + _select(pending, flushing)),
            write.en.eq(1),
        ]

        # -- reads --------------------------------------------------------------------------
        word_of = {name: index for index, name in enumerate(stored)}
        source = [word_of[self._derived[name][0] if name in self._derived else name]
                  for name in COUNTERS]
        factor = [self._derived[name][1] if name in self._derived else 1 for name in COUNTERS]
        word_index = _select([Const(index, range(count)) for index in source], self.read_index)
        m.d.comb += host_read.addr.eq(word_index)
        asked = Signal.like(self.read_index)        # the counter being answered
        m.d.sync += asked.eq(self.read_index)
        asked_word = Signal(range(count))
        m.d.sync += asked_word.eq(word_index)
        value = (Mux(sweeping & (asked_word >= flushing), 0, host_read.data)
                 + _select(pending, asked_word))[:width]
        scaled = value
        for index, name in enumerate(COUNTERS):
            if factor[index] != 1:
                scaled = Mux(asked == index, times_constant(value, factor[index])[:width],
                             scaled)
        m.d.comb += self.read_value.eq(scaled)
        return m


def _select(values, index):
    """``values[index]`` for a signal ``index`` (a multiplexer)."""
    return Array(values)[index]

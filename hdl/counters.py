"""Hardware performance counters, declared once (DESIGN.md section 4)."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["COUNTERS", "CounterBank"]

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
}


class CounterBank(wiring.Component):
    """One counter per name in :data:`COUNTERS`.

    A counter named in ``derived`` as ``name: (source, factor)`` grows by exactly
    ``factor`` times the increment of ``source`` on every cycle, so it is not counted
    separately: its value is ``factor * source`` (modulo ``2**counter_width``, as a
    counter of its own would be), formed with shifts and adds.

    Attributes
    ----------
    clear : In(1)
        Zero every counter (at job start).
    enable : In(1)
        Count this cycle (while the job runs; low freezes the values at done).
    increment : In(StructLayout)
        Amount each counter grows by this cycle.
    values : Out(StructLayout)
        The counters.
    """

    def __init__(self, config, increment_widths, derived=None):
        self._config = config
        self._derived = dict(derived or {})
        for name, (source, factor) in self._derived.items():
            if name not in COUNTERS or source not in COUNTERS or source in self._derived:
                raise ValueError(f"Counter {name!r} cannot be derived from {source!r}")
            if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
                raise ValueError(f"Factor of derived counter {name!r} must be a positive "
                                 f"integer, not {factor!r}")
        self._widths = {name: width for name, width in increment_widths.items()
                        if name not in self._derived}
        super().__init__({
            "clear": In(1),
            "enable": In(1),
            "increment": In(data.StructLayout(self._widths)),
            "values": Out(data.StructLayout({name: config.counter_width for name in COUNTERS})),
        })

    def elaborate(self, platform):
        m = Module()
        for name, (source, factor) in self._derived.items():
            value = getattr(self.values, name)
            base = getattr(self.values, source)
            terms = [base << bit for bit in range(factor.bit_length()) if factor >> bit & 1]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            m.d.comb += value.eq(total)
        for name in COUNTERS:
            if name in self._derived:
                continue
            value = getattr(self.values, name)
            with m.If(self.clear):
                m.d.sync += value.eq(0)
            with m.Elif(self.enable):
                m.d.sync += value.eq(value + getattr(self.increment, name))
        return m

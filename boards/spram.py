"""An AXI4 subordinate memory in the iCE40 UP5K's single-port RAMs (SB_SPRAM256KA).

The UP5K has four 16K x 16-bit SPRAMs (128 KiB), four times its block RAM; they stand in for
the accelerator's DRAM on the iCEBreaker. ``data_width / 16`` SPRAMs side by side make one
word; the rest form banks selected by the high word-address bits.

Each SPRAM has one port, so the memory serves one burst at a time: reads before writes
when both wait. A read beat leaves one cycle after its address (the SPRAM's output
register), and the next address is issued while the previous beat is taken, so a burst
streams one beat per cycle when the manager is always ready. Writes take one beat per
cycle; B follows the last W beat.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.axi import AXI4Signature, RESP_OKAY

__all__ = ["SPRAMMemory", "SPRAM_WORDS", "SPRAM_COUNT"]

#: 16-bit words of one SB_SPRAM256KA, and SPRAMs in an iCE40UP5K.
SPRAM_WORDS = 16384
SPRAM_COUNT = 4


class _SPRAM(wiring.Component):
    """One SB_SPRAM256KA; a behavioural model of it when simulated (``platform is None``).

    The model follows Yosys's ``cells_sim.v``: a read (chip select, no write enable)
    loads ``dataout`` at the clock edge, which then holds until the next read.
    """
    address: In(14)
    datain: In(16)
    maskwren: In(4)
    wren: In(1)
    chipselect: In(1)
    dataout: Out(16)

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=self.address, i_DATAIN=self.datain, i_MASKWREN=self.maskwren,
                i_WREN=self.wren, i_CHIPSELECT=self.chipselect, i_CLOCK=ClockSignal(),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                o_DATAOUT=self.dataout)
            return m
        m.submodules.storage = storage = memory.Memory(shape=16, depth=SPRAM_WORDS, init=[])
        read = storage.read_port(domain="comb")
        write = storage.write_port(granularity=4)
        m.d.comb += [read.addr.eq(self.address), write.addr.eq(self.address),
                     write.data.eq(self.datain)]
        with m.If(self.chipselect & self.wren):
            m.d.comb += write.en.eq(self.maskwren)
        with m.If(self.chipselect & ~self.wren):
            m.d.sync += self.dataout.eq(read.data)
        return m


class SPRAMMemory(wiring.Component):
    """AXI4 subordinate RAM built from iCE40 SB_SPRAM256KA blocks.

    Same interface as :class:`~systole.hdl.simmem.AxiMemory`'s ``bus``: INCR bursts, one
    ID, always OKAY; addresses wrap modulo ``size``.

    Parameters
    ----------
    addr_width, data_width : int
        Of the AXI4 port; ``data_width`` 32 or 64 (two or four SPRAMs per word).
    size : int
        Bytes; a power of two, at most the 128 KiB of the four SPRAMs.

    Attributes
    ----------
    bus : In(AXI4Signature)   (the subordinate side)

    Raises
    ------
    ValueError
        For a data width the SPRAMs cannot form, or a size they cannot hold.
    """

    def __init__(self, *, addr_width, data_width, size):
        if data_width not in (32, 64):
            raise ValueError(f"SPRAM memory data_width must be 32 or 64, not {data_width!r}")
        capacity = SPRAM_COUNT * SPRAM_WORDS * 2
        if (isinstance(size, bool) or not isinstance(size, int) or size < data_width // 8
                or size & (size - 1) or size > capacity):
            raise ValueError(f"SPRAM memory size must be a power of two of at most {capacity} "
                             f"bytes, not {size!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        self._size = size
        self._columns = data_width // 16
        words = size // (data_width // 8)
        self._banks = max(1, words // SPRAM_WORDS)
        self._words = words
        super().__init__({
            "bus": In(AXI4Signature(addr_width=addr_width, data_width=data_width)),
        })

    @property
    def spram_count(self):
        """SB_SPRAM256KA blocks used."""
        return self._columns * self._banks

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        lane_bits = (self._data_width // 8 - 1).bit_length()
        word_bits = (self._words - 1).bit_length()

        rams = [[_SPRAM() for _ in range(self._columns)] for _ in range(self._banks)]
        for bank, row in enumerate(rams):
            for column, ram in enumerate(row):
                m.submodules[f"spram_{bank}_{column}"] = ram

        word = Signal(max(word_bits, 1))       # current beat's word address
        left = Signal(8)                       # beats after the current one
        bank_of = (lambda address: address[14:word_bits]) if self._banks > 1 else \
            (lambda address: Const(0))
        address = Signal(14)
        m.d.comb += address.eq(word[:14])
        chipselect = Signal()
        wren = Signal()
        mask = Signal(self._data_width // 4)   # one bit per nibble
        for bank, row in enumerate(rams):
            for column, ram in enumerate(row):
                m.d.comb += [
                    ram.address.eq(address),
                    ram.datain.eq(bus.wdata[16 * column:16 * (column + 1)]),
                    ram.maskwren.eq(mask[4 * column:4 * (column + 1)]),
                    ram.wren.eq(wren),
                    ram.chipselect.eq(chipselect & (bank_of(word) == bank)),
                ]

        # Read data: the bank that was addressed on the issuing cycle.
        read_bank = Signal(range(self._banks)) if self._banks > 1 else Const(0)
        read_words = [Cat(ram.dataout for ram in row) for row in rams]
        r_valid = Signal()
        r_last = Signal()
        m.d.comb += [
            bus.rvalid.eq(r_valid), bus.rlast.eq(r_last), bus.rresp.eq(RESP_OKAY),
            bus.rid.eq(0),
            bus.rdata.eq(Cat(read_words).word_select(read_bank, self._data_width)),
            bus.bresp.eq(RESP_OKAY), bus.bid.eq(0),
        ]
        take = r_valid & bus.rready

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += bus.arready.eq(1)
                with m.If(bus.arvalid):
                    m.d.sync += [word.eq(bus.araddr[lane_bits:]), left.eq(bus.arlen)]
                    m.next = "READ"
                with m.Else():
                    m.d.comb += bus.awready.eq(1)
                    with m.If(bus.awvalid):
                        m.d.sync += word.eq(bus.awaddr[lane_bits:])
                        m.next = "WRITE"
            with m.State("READ"):
                # Issue the current word when the output register is free or leaving.
                with m.If(~r_valid | take):
                    m.d.comb += chipselect.eq(1)
                    m.d.sync += [r_valid.eq(1), r_last.eq(left == 0), word.eq(word + 1),
                                 left.eq(left - 1)]
                    if self._banks > 1:
                        m.d.sync += read_bank.eq(bank_of(word))
                    with m.If(left == 0):
                        m.next = "READ_LAST"
            with m.State("READ_LAST"):
                with m.If(take):
                    m.d.sync += r_valid.eq(0)
                    m.next = "IDLE"
            with m.State("WRITE"):
                m.d.comb += bus.wready.eq(1)
                with m.If(bus.wvalid):
                    m.d.comb += [chipselect.eq(1), wren.eq(1),
                                 mask.eq(Cat(Cat(s, s) for s in bus.wstrb))]
                    m.d.sync += word.eq(word + 1)
                    with m.If(bus.wlast):
                        m.next = "RESPOND"
            with m.State("RESPOND"):
                m.d.comb += bus.bvalid.eq(1)
                with m.If(bus.bready):
                    m.next = "IDLE"
        return m

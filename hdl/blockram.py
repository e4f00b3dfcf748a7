"""Block RAM read ports that need no collision logic, and FIFOs kept in block RAM.

A FIFO in block RAM trades flip-flops (one logic cell per stored bit on iCE40) for block
RAMs (16 bits wide each on iCE40, 30 on the UP5K): worth it for queues of three or more
entries; shorter queues stay in registers (``_queue`` in hdl/dma.py picks by depth).
"""

from amaranth.hdl import Assert, Elaboratable, Format, Module, Mux, Signal
from amaranth.lib import fifo, memory

__all__ = ["NO_COLLISION", "BLOCK_RAM", "RegisteredReadPort", "BlockRAMFIFO",
           "BlockRAMFIFOBuffered"]

#: Attributes of a :class:`~amaranth.lib.memory.Memory` whose :class:`RegisteredReadPort`
#: ports never read a word in the cycle it is written, or never use the data read in such a
#: cycle. Yosys then maps those ports to block RAM without the logic that emulates a
#: read-before-write collision (delayed write registers and a bypass multiplexer), which
#: an iCE40 block RAM does not provide. (Ports made by ``read_port()``, transparent ones
#: included, keep their exact behaviour.)
NO_COLLISION = {"no_rw_check": 1}

#: Attributes that make Yosys map a memory to block RAM however shallow it is (it builds a
#: shallow one from flip-flops and a read multiplexer otherwise, one logic cell per bit).
BLOCK_RAM = {"ram_style": "block"}


class RegisteredReadPort:
    """``memory.read_port()`` (synchronous, not transparent, with enable) built as an
    asynchronous read port and a register that loads on ``en``.

    The behaviour is the same, except that the register is reset with its domain (the
    users here read ``data`` only after an ``en``). Yosys honours :data:`NO_COLLISION` only
    when it merges such a register into a port itself, not on a port that is synchronous
    from the start.

    Attributes
    ----------
    addr : Signal
    en : Signal
    data : Signal(memory.shape)
        The word at ``addr`` on the last cycle ``en`` was high.
    """

    def __init__(self, m, memory, *, name):
        port = memory.read_port(domain="comb")
        self.addr = port.addr
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(memory.shape, name=f"{name}_data")
        with m.If(self.en):
            m.d.sync += self.data.eq(port.data)


def _occupancy_invariants(m, *, produce, consume, level, depth, name):
    """The invariants of a circular buffer of ``depth`` entries (checked on every clock
    edge): the pointers stay in range, and ``level`` entries after the read pointer is
    the write pointer."""
    m.d.sync += [
        Assert(level <= depth, Format(name + " level {} above its depth", level)),
        Assert((produce < depth) & (consume < depth), name + " pointer out of range"),
        Assert((consume + level) % depth == produce,
               Format(name + " level {} disagrees with its pointers", level)),
    ]


class _BlockRAMQueue(fifo.FIFOInterface, Elaboratable):
    """What the two block-RAM FIFOs share: the FIFO interface and ``level``.

    Parameters
    ----------
    width : int
    depth : int
        At least 2.

    Attributes
    ----------
    level : Signal(range(depth + 1))
    """

    def __init__(self, *, width, depth):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"{type(self).__name__} depth must be an integer of at least "
                             f"2, not {depth!r}")
        super().__init__(width=width, depth=depth)
        self.level = Signal(range(depth + 1))


class BlockRAMFIFOBuffered(_BlockRAMQueue):
    """:class:`~amaranth.lib.fifo.SyncFIFOBuffered` with its storage in block RAM.

    The same ports and the same behaviour on every cycle, ``r_data`` whenever ``r_rdy`` is
    high (the same construction: a memory of ``depth - 1`` entries whose synchronous read
    port feeds the output, whose register is the port's, a :class:`RegisteredReadPort`
    here); only the memory is mapped to block RAM however small it is. Its port
    never reads the entry being written (that happens only when the memory is empty, and
    then nothing is read), so it needs no collision logic either.

    Parameters and attributes: as :class:`_BlockRAMQueue`.
    """

    def elaborate(self, platform):
        m = Module()
        inner_depth = self.depth - 1
        inner_level = Signal(range(inner_depth + 1))
        do_write = self.w_rdy & self.w_en
        do_inner_read = (inner_level != 0) & (~self.r_rdy | self.r_en)
        m.d.comb += [
            self.w_rdy.eq(inner_level != inner_depth),
            self.w_level.eq(self.level),
            self.r_level.eq(self.level),
            self.level.eq(inner_level + self.r_rdy),
        ]

        storage = memory.Memory(shape=self.width, depth=inner_depth, init=[],
                                attrs={**NO_COLLISION, **BLOCK_RAM})
        m.submodules.storage = storage
        write = storage.write_port()
        read = RegisteredReadPort(m, storage, name="storage_read")
        produce = Signal(range(inner_depth))
        consume = Signal(range(inner_depth))
        following = lambda index: Mux(index == inner_depth - 1, 0, index + 1)
        m.d.comb += [
            write.addr.eq(produce), write.data.eq(self.w_data), write.en.eq(do_write),
            read.addr.eq(consume), read.en.eq(do_inner_read), self.r_data.eq(read.data),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(following(produce))
        with m.If(do_inner_read):
            m.d.sync += consume.eq(following(consume))
        with m.If(do_write & ~do_inner_read):
            m.d.sync += inner_level.eq(inner_level + 1)
        with m.If(do_inner_read & ~do_write):
            m.d.sync += inner_level.eq(inner_level - 1)
        with m.If(do_inner_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        _occupancy_invariants(m, produce=produce, consume=consume, level=inner_level,
                              depth=inner_depth, name="BlockRAMFIFOBuffered")
        return m


class BlockRAMFIFO(_BlockRAMQueue):
    """:class:`~amaranth.lib.fifo.SyncFIFO` with its storage in block RAM.

    The same ports and the same behaviour on every cycle: ``r_data`` is the entry at the
    head, as SyncFIFO's asynchronous read gives it (whatever the level; after a reset of
    the domain other than at power-up, whenever ``r_rdy`` is high). Here a synchronous
    read port, transparent to the write port, reads the entry that will be at the head on
    the next cycle. Yosys builds the transparency from a register of the written word and
    a multiplexer: about two logic cells per bit, where SyncFIFO's flip-flop storage and
    read multiplexer take ``depth`` and more.

    Parameters and attributes: as :class:`_BlockRAMQueue`.
    """

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.d.comb += [
            self.w_rdy.eq(self.level != depth),
            self.r_rdy.eq(self.level != 0),
            self.w_level.eq(self.level),
            self.r_level.eq(self.level),
        ]
        do_read = self.r_rdy & self.r_en
        do_write = self.w_rdy & self.w_en

        storage = memory.Memory(shape=self.width, depth=depth, init=[], attrs=BLOCK_RAM)
        m.submodules.storage = storage
        write = storage.write_port()
        read = storage.read_port(transparent_for=(write,))
        produce = Signal(range(depth))
        consume = Signal(range(depth))
        following = lambda index: Mux(index == depth - 1, 0, index + 1)
        next_consume = Mux(do_read, following(consume), consume)
        m.d.comb += [
            write.addr.eq(produce), write.data.eq(self.w_data), write.en.eq(do_write),
            read.addr.eq(next_consume), self.r_data.eq(read.data),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(following(produce))
        m.d.sync += consume.eq(next_consume)
        with m.If(do_write & ~do_read):
            m.d.sync += self.level.eq(self.level + 1)
        with m.If(do_read & ~do_write):
            m.d.sync += self.level.eq(self.level - 1)
        _occupancy_invariants(m, produce=produce, consume=consume, level=self.level,
                              depth=depth, name="BlockRAMFIFO")
        return m

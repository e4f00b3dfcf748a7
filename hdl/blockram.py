"""Block RAM read ports that need no collision logic."""

from amaranth.hdl import Signal

__all__ = ["NO_COLLISION", "RegisteredReadPort"]

#: Attributes of a :class:`~amaranth.lib.memory.Memory` whose :class:`RegisteredReadPort`
#: ports never read a word in the cycle it is written, or never use the data read in such a
#: cycle. Yosys then maps those ports to block RAM without the logic that emulates a
#: read-before-write collision (delayed write registers and a bypass multiplexer), which
#: an iCE40 block RAM does not provide. (Ports made by ``read_port()``, transparent ones
#: included, keep their exact behaviour.)
NO_COLLISION = {"no_rw_check": 1}


class RegisteredReadPort:
    """``memory.read_port()`` (synchronous, not transparent, with enable) built as an
    asynchronous read port and a register that loads on ``en``.

    The behaviour is the same. Yosys honours :data:`NO_COLLISION` only when it merges such
    a register into a port itself, not on a port that is synchronous from the start.

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

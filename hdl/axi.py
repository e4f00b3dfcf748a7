"""AXI4 and AXI4-Lite interface signatures.

External bus ports keep the AMBA signal names (``araddr``, ``rvalid`` ...) so that the
exported Verilog reads like any AXI IP and bus models (cocotbext-axi) bind to them by
prefix: a port ``mem`` of :class:`AXI4Signature` becomes ``mem__araddr`` etc. in Verilog,
which ``AxiBus.from_prefix(dut, "mem_")`` finds. Internal handshakes use
``amaranth.lib.stream`` instead.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXI4Signature", "AXI4LiteSignature", "RESP_OKAY", "RESP_EXOKAY", "RESP_SLVERR",
           "RESP_DECERR", "BURST_INCR"]

RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3
BURST_INCR = 1


class AXI4Signature(wiring.Signature):
    """AXI4 manager (master) interface: five channels, INCR bursts, one ID.

    Parameters
    ----------
    addr_width, data_width, id_width : int
    """

    def __init__(self, *, addr_width, data_width, id_width=1):
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite subordinate (slave) interface, as seen from the subordinate.

    Parameters
    ----------
    addr_width : int
    data_width : int
        32 (the only width the CSR bank uses).
    """

    def __init__(self, *, addr_width, data_width=32):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": In(addr_width), "awprot": In(3), "awvalid": In(1), "awready": Out(1),
            "wdata": In(data_width), "wstrb": In(data_width // 8), "wvalid": In(1),
            "wready": Out(1),
            "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
            "araddr": In(addr_width), "arprot": In(3), "arvalid": In(1), "arready": Out(1),
            "rdata": Out(data_width), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
        })

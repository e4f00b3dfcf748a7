"""A synthesizable AXI4 memory model for fast simulation (and on-chip board memory).

The cocotbext-axi models run Python on every clock edge of every channel, which caps a
simulation at tens of thousands of cycles per second. ``AxiMemory`` does the same job in
gateware: a word-wide RAM behind an AXI4 subordinate port with a pipelined read latency
and pseudo-random back-pressure, so a whole job runs inside Verilator and the testbench only
waits for the interrupt. The testbench loads and reads the RAM through the simulator.

Two kinds of storage: an Amaranth ``Memory`` (block RAM on boards, and the Amaranth
simulator), or, with ``backdoor=True`` (:class:`SimulationTop`, Verilog simulators only),
the hand-written Verilog RAM ``systole_simram`` of :data:`SIMRAM_VERILOG`. Amaranth's
Verilog export takes about half an hour for a memory of a million words, and loading one
word per VPI call takes minutes for a few megabytes; ``systole_simram`` is a plain array
that the testbench loads with ``$readmemh`` and reads with ``$writememh`` through a file
(``sim/memory.py``, ``StorageBackdoor``).

Behaviour: INCR bursts (the only kind Systole issues), in order, one ID. A read burst's
first beat leaves no earlier than ``latency`` cycles after its AR handshake; up to
``max_outstanding`` bursts wait in a queue, so latency is hidden by outstanding reads as
with a DRAM controller. Writes complete in order; B follows the last W beat. Every ready
and valid the model drives is held low on cycles where a 16-bit LFSR falls below
``pause`` (0 to 1), with a separate LFSR tap per channel.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out, flipped

from .axi import AXI4Signature, RESP_OKAY
from .monitor import MonitoredAccelerator

__all__ = ["AxiMemory", "SimulationTop", "SIMRAM_VERILOG", "BACKDOOR_FILE"]

#: The file, in the simulator's working directory, through which the testbench loads and
#: dumps ``systole_simram``.
BACKDOOR_FILE = "systole_backdoor.hex"

#: A word-wide RAM with byte write enables, a registered read port (read-before-write, as
#: ``Memory.read_port(transparent_for=())``) and a file backdoor. The testbench writes
#: ``backdoor_op`` (1: ``$readmemh`` of the file, which may hold ``@address`` lines;
#: 2: ``$writememh`` of words ``backdoor_first`` to ``backdoor_last``) and waits until
#: ``backdoor_done`` counts it; both operations are idempotent, so repeating one while
#: the testbench clears ``backdoor_op`` is harmless. Verilog-2001, for Icarus as well.
SIMRAM_VERILOG = f"""
module systole_simram #(parameter WIDTH = 64, parameter DEPTH = 1024, parameter ABITS = 10) (
  input clk,
  input ren,
  input [ABITS-1:0] raddr,
  output reg [WIDTH-1:0] rdata,
  input [WIDTH/8-1:0] wen,
  input [ABITS-1:0] waddr,
  input [WIDTH-1:0] wdata
);
  reg [WIDTH-1:0] storage [0:DEPTH-1];
  reg [1:0] backdoor_op = 2'd0;
  reg [31:0] backdoor_first = 32'd0;
  reg [31:0] backdoor_last = 32'd0;
  reg [31:0] backdoor_done = 32'd0;
  integer lane;
  always @(posedge clk) begin
    if (ren)
      rdata <= storage[raddr];
    for (lane = 0; lane < WIDTH / 8; lane = lane + 1)
      if (wen[lane])
        storage[waddr][8 * lane +: 8] <= wdata[8 * lane +: 8];
    if (backdoor_op == 2'd1) begin
      $readmemh("{BACKDOOR_FILE}", storage);
      backdoor_done <= backdoor_done + 32'd1;
    end
    if (backdoor_op == 2'd2) begin
      $writememh("{BACKDOOR_FILE}", storage, backdoor_first, backdoor_last);
      backdoor_done <= backdoor_done + 32'd1;
    end
  end
endmodule
"""


class AxiMemory(wiring.Component):
    """AXI4 subordinate RAM with read latency and random back-pressure.

    Parameters
    ----------
    addr_width, data_width : int
        Of the AXI4 port.
    size : int
        Bytes of RAM (a power of two); addresses wrap modulo ``size``.
    latency : int
        Cycles from an AR handshake to the burst's first R beat (at least 2).
    pause : float
        Probability, per cycle and channel, that the model stalls that channel.
    max_outstanding : int
        Read bursts that may wait for their latency at once.
    backdoor : bool
        Store the words in the Verilog RAM ``systole_simram`` (Verilog simulation only; the
        exported Verilog must be followed by :data:`SIMRAM_VERILOG`) instead of an
        Amaranth ``Memory`` (``storage``).

    Attributes
    ----------
    bus : In(AXI4Signature)   (the subordinate side)
    """

    def __init__(self, *, addr_width, data_width, size, latency=32, pause=0.0,
                 max_outstanding=64, seed=1, backdoor=False):
        if size & (size - 1):
            raise ValueError(f"Memory size must be a power of two, not {size!r}")
        if not 0.0 <= pause < 1.0:
            raise ValueError(f"pause must be in [0, 1), not {pause!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        self._size = size
        self._latency = max(2, int(latency))
        self._pause = pause
        self._max_outstanding = max_outstanding
        self._seed = seed
        self._backdoor = backdoor
        self.storage = None if backdoor else memory.Memory(
            shape=data.ArrayLayout(8, data_width // 8), depth=size // (data_width // 8),
            init=[])
        super().__init__({
            "bus": In(AXI4Signature(addr_width=addr_width, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        lanes = self._data_width // 8
        lane_bits = (lanes - 1).bit_length()
        words = self._size // lanes
        rd, wr = self._ports(m, words)

        # Free-running cycle count and LFSR for pauses.
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        lfsr = Signal(16, init=(self._seed * 0x9E37) & 0xFFFF or 1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
        threshold = int(self._pause * 65536)

        def go(tap):
            if threshold == 0:
                return Const(1)
            rotated = Cat(lfsr[tap:], lfsr[:tap])
            return rotated >= threshold

        # ---- reads --------------------------------------------------------------------
        ar_queue = fifo.SyncFIFOBuffered(width=32 + self._addr_width + 8,
                                         depth=self._max_outstanding)
        m.submodules.ar_queue = ar_queue
        ar_ok = go(1)
        m.d.comb += [
            bus.arready.eq(ar_queue.w_rdy & ar_ok),
            ar_queue.w_en.eq(bus.arvalid & bus.arready),
            ar_queue.w_data.eq(Cat((now + self._latency - 1)[:32], bus.araddr, bus.arlen)),
        ]
        head_due = ar_queue.r_data[:32]
        head_addr = ar_queue.r_data[32:32 + self._addr_width]
        head_len = ar_queue.r_data[32 + self._addr_width:]

        r_active = Signal()
        r_word = Signal(range(words))
        r_left = Signal(8)
        r_valid = Signal()          # a read word sits in rd.data
        r_last = Signal()
        r_ok = go(7)
        take = r_valid & bus.rready
        # Issue the next memory read when the output beat is free or leaving.
        can_read = ~r_valid | take
        head_ready = ar_queue.r_rdy & ((now - head_due)[31] == 0) & r_ok
        issue = r_active & can_read
        m.d.comb += [rd.addr.eq(r_word), rd.en.eq(issue | ~r_valid)]
        with m.If(issue):
            m.d.sync += [r_valid.eq(1), r_last.eq(r_left == 0), r_word.eq(r_word + 1),
                         r_left.eq(r_left - 1)]
            with m.If(r_left == 0):
                # Chain the next due burst without a bubble (one-beat bursts back to back).
                with m.If(head_ready):
                    m.d.comb += ar_queue.r_en.eq(1)
                    m.d.sync += [r_word.eq(head_addr[lane_bits:]), r_left.eq(head_len)]
                with m.Else():
                    m.d.sync += r_active.eq(0)
        with m.Elif(take):
            m.d.sync += r_valid.eq(0)
        with m.If(~r_active & head_ready):
            m.d.comb += ar_queue.r_en.eq(1)
            m.d.sync += [r_active.eq(1), r_word.eq(head_addr[lane_bits:]), r_left.eq(head_len)]
        m.d.comb += [
            bus.rvalid.eq(r_valid),
            bus.rdata.eq(rd.data),
            bus.rlast.eq(r_last),
            bus.rresp.eq(RESP_OKAY),
            bus.rid.eq(0),
        ]

        # ---- writes -------------------------------------------------------------------
        w_active = Signal()
        w_word = Signal(range(words))
        b_pending = Signal(range(self._max_outstanding + 1))
        aw_ok, w_ok, b_ok = go(3), go(11), go(13)
        m.d.comb += bus.awready.eq(~w_active & aw_ok)
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [w_active.eq(1), w_word.eq(bus.awaddr[lane_bits:])]
        m.d.comb += bus.wready.eq(w_active & w_ok & (b_pending != self._max_outstanding))
        w_fire = bus.wvalid & bus.wready
        m.d.comb += [wr.addr.eq(w_word), wr.data.eq(bus.wdata),
                     wr.en.eq(Mux(w_fire, bus.wstrb, 0))]
        b_fire = bus.bvalid & bus.bready
        with m.If(w_fire):
            m.d.sync += w_word.eq(w_word + 1)
            with m.If(bus.wlast):
                m.d.sync += w_active.eq(0)
        m.d.sync += b_pending.eq(b_pending + (w_fire & bus.wlast) - b_fire)
        m.d.comb += [bus.bvalid.eq((b_pending != 0) & b_ok), bus.bresp.eq(RESP_OKAY),
                     bus.bid.eq(0)]
        return m

    def _ports(self, m, words):
        """The storage's read port (addr, en, data) and write port (addr, data, en per lane)."""
        if not self._backdoor:
            m.submodules.storage = self.storage
            return (self.storage.read_port(transparent_for=()),
                    self.storage.write_port(granularity=1))
        lanes = self._data_width // 8
        abits = max(1, (words - 1).bit_length())
        rd = _Port(addr=Signal(abits, name="rd_addr"), en=Signal(name="rd_en"),
                   data=Signal(self._data_width, name="rd_data"))
        wr = _Port(addr=Signal(abits, name="wr_addr"), en=Signal(lanes, name="wr_en"),
                   data=Signal(self._data_width, name="wr_data"))
        m.submodules.storage = Instance(
            "systole_simram", p_WIDTH=self._data_width, p_DEPTH=words, p_ABITS=abits,
            i_clk=ClockSignal(), i_ren=rd.en, i_raddr=rd.addr, o_rdata=rd.data,
            i_wen=wr.en, i_waddr=wr.addr, i_wdata=wr.data)
        return rd, wr


class _Port:
    """Signals standing in for a ``Memory`` port (``addr``, ``en``, ``data``)."""

    def __init__(self, *, addr, en, data):
        self.addr, self.en, self.data = addr, en, data


class SimulationTop(wiring.Component):
    """The :class:`~systole.hdl.monitor.MonitoredAccelerator` with an :class:`AxiMemory`
    as its external memory.

    Only the CSR port, the interrupt and the AXI monitor's report leave the module; the testbench
    loads and reads the memory (``memory.storage``, a ``systole_simram``) through its file
    backdoor. The exported Verilog must be followed by :attr:`extra_verilog`.
    """

    #: Verilog modules the export instantiates but does not define.
    extra_verilog = SIMRAM_VERILOG

    def __init__(self, config, *, mem_size, latency=32, pause=0.0, seed=1):
        self.accelerator = MonitoredAccelerator(config)
        self.memory = AxiMemory(addr_width=config.addr_width, data_width=config.bus_width,
                                size=mem_size, latency=latency, pause=pause,
                                max_outstanding=config.max_outstanding, seed=seed,
                                backdoor=True)
        super().__init__({
            "csr": Out(self.accelerator.csr.signature),
            "irq": Out(1),
            "report": Out(self.accelerator.report.signature),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        m.submodules.memory = self.memory
        wiring.connect(m, flipped(self.csr), acc.csr)
        wiring.connect(m, acc.mem, self.memory.bus)
        wiring.connect(m, flipped(self.report), acc.report)
        m.d.comb += self.irq.eq(acc.irq)
        return m

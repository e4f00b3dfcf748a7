"""An AXI4 memory for Amaranth-simulator tests, with latency, pauses, errors and checks.

:class:`AXI4Memory` is the subordinate at the other end of a DUT's AXI4 manager port (an
:class:`~systole.hdl.axi.AXI4Signature` port, or any object with the AMBA-named members of
its read channels, its write channels or both). It runs as one background testbench
(:meth:`AXI4Memory.serve`) that drives and samples every channel once per clock cycle, so
its view of the bus is exactly the handshakes at the clock edges.

Features: a ``bytearray`` memory; a read latency (cycles from the AR handshake to the
first R beat) and a write-response latency (from the last W beat to B); random pauses on
every channel from a seeded :class:`random.Random` (ready held low on AR/AW/W, valid held
back on R/B); SLVERR/DECERR for address ranges; a record of every burst and every W beat
``(beat address, wstrb)``. Protocol violations raise :class:`AXIProtocolError` out of the
simulation: a burst crossing 4 KiB, ``arlen``/``awlen`` > 255, a burst type other than
INCR, a size other than the full bus width, WLAST on the wrong beat, WSTRB lanes outside
the burst, a valid dropped or a payload changed before its handshake.

Only INCR bursts of the full bus width are modelled (all the Systole DMA issues).
"""

import random
from collections import deque

from amaranth.sim import Simulator

from systole.hdl.axi import BURST_INCR, RESP_DECERR, RESP_OKAY, RESP_SLVERR

__all__ = ["AXIProtocolError", "AXI4Memory", "simulate", "RESP_OKAY", "RESP_SLVERR",
           "RESP_DECERR"]

_PAGE = 4096
_CHANNELS = ("ar", "r", "aw", "w", "b")


class AXIProtocolError(AssertionError):
    """The manager broke an AXI4 rule the memory checks."""


class _Burst:
    __slots__ = ("addr", "beats", "ready_at", "done", "resp")

    def __init__(self, addr, beats, ready_at=0):
        self.addr = addr
        self.beats = beats
        self.ready_at = ready_at
        self.done = 0
        self.resp = RESP_OKAY


class AXI4Memory:
    """A byte-addressed memory behind an AXI4 subordinate port.

    Parameters
    ----------
    port : interface
        The DUT's manager port (``Out(AXI4Signature(...))`` or a subset with only the read
        or only the write channels).
    size : int
        Bytes of memory, at addresses ``base`` .. ``base + size - 1``. An access outside
        raises :class:`AXIProtocolError`.
    base : int
    read_latency : int
        Cycles from an AR handshake to the earliest handshake of its first R beat (>= 1).
    write_latency : int
        Cycles from the last W beat of a burst (and its AW) to the earliest B handshake.
    rng : random.Random, optional
        Source of the pauses; seed it and print the seed.
    pause : float or dict
        Probability that a channel pauses in a given cycle, for all channels or per channel
        name (``"ar"``, ``"r"``, ``"aw"``, ``"w"``, ``"b"``).

    Attributes
    ----------
    mem : bytearray
    cycle : int
        Clock edges seen so far.
    read_bursts, write_bursts : list of (address, beats)
        Every AR / AW handshake, in order.
    writes : list of (beat address, wstrb)
        Every W beat, matched to its burst, in order (including beats with wstrb 0).
    w_cycles : list of int
        The cycle of each W handshake in ``writes``.
    b_log : list of (cycle, resp)
        Every B handshake.
    r_beats : int
        R handshakes so far.
    peak_reads, peak_writes : int
        Most read bursts in flight at once (AR taken, last R beat not) and write bursts
        (AW taken, B not), for checking a manager's outstanding-transaction limit.
    """

    def __init__(self, port, size, *, base=0, read_latency=1, write_latency=1, rng=None,
                 pause=0.0):
        if read_latency < 1 or write_latency < 1:
            raise ValueError("latencies must be at least 1 cycle")
        self.port = port
        self.has_read = hasattr(port, "arvalid")
        self.has_write = hasattr(port, "awvalid")
        data = port.rdata if self.has_read else port.wdata
        self.data_bytes = len(data) // 8
        self.size_code = self.data_bytes.bit_length() - 1
        self.mem = bytearray(size)
        self.base = base
        self.read_latency = read_latency
        self.write_latency = write_latency
        self.rng = rng if rng is not None else random.Random(0)
        if isinstance(pause, dict):
            self.pause = {name: float(pause.get(name, 0.0)) for name in _CHANNELS}
        else:
            self.pause = {name: float(pause) for name in _CHANNELS}
        self.error_ranges = []
        self.cycle = 0
        self.read_bursts = []
        self.write_bursts = []
        self.writes = []
        self.w_cycles = []
        self.b_log = []
        self.r_beats = 0
        self.peak_reads = 0
        self.peak_writes = 0
        self._writes_in_flight = 0

    # -- set-up and inspection -------------------------------------------------------------

    def add_error(self, start, end, resp=RESP_SLVERR):
        """Answer every beat touching bytes ``start`` .. ``end - 1`` with ``resp``."""
        if resp not in (RESP_SLVERR, RESP_DECERR):
            raise ValueError(f"resp must be SLVERR or DECERR, not {resp!r}")
        self.error_ranges.append((start, end, resp))

    def load(self, addr, data):
        self.mem[addr - self.base:addr - self.base + len(data)] = data

    def dump(self, addr, length):
        return bytes(self.mem[addr - self.base:addr - self.base + length])

    def written_bytes(self):
        """Multiset (dict address -> times) of the bytes any W beat enabled."""
        counts = {}
        for addr, strobe in self.writes:
            for lane in range(self.data_bytes):
                if strobe >> lane & 1:
                    counts[addr + lane] = counts.get(addr + lane, 0) + 1
        return counts

    # -- the model ---------------------------------------------------------------------------

    def _fail(self, message):
        raise AXIProtocolError(f"cycle {self.cycle}: {message}")

    def _resp_for(self, addr, length):
        for start, end, resp in self.error_ranges:
            if addr < end and start < addr + length:
                return resp
        return RESP_OKAY

    def _offset(self, addr):
        offset = addr - self.base
        if offset < 0 or offset + self.data_bytes > len(self.mem):
            self._fail(f"access at {addr:#x} outside the memory "
                       f"[{self.base:#x}, {self.base + len(self.mem):#x})")
        return offset

    def _check_request(self, channel, addr, length, size, burst):
        if length > 255:
            self._fail(f"{channel}len {length} > 255")
        if burst != BURST_INCR:
            self._fail(f"{channel}burst {burst} is not INCR")
        if size != self.size_code:
            self._fail(f"{channel}size {size} is not the bus width ({self.size_code})")
        aligned = addr & ~(self.data_bytes - 1)
        last_byte = aligned + (length + 1) * self.data_bytes - 1
        if addr // _PAGE != last_byte // _PAGE:
            self._fail(f"{channel} burst at {addr:#x} of {length + 1} beats crosses 4 KiB")
        return _Burst(addr, length + 1)

    def _beat_addr(self, burst, index):
        if index == 0:
            return burst.addr
        return (burst.addr & ~(self.data_bytes - 1)) + index * self.data_bytes

    def _take_w_beat(self, burst, cycle, wdata, wstrb, wlast):
        index = burst.done
        addr = self._beat_addr(burst, index)
        if wlast != (index == burst.beats - 1):
            self._fail(f"WLAST={wlast} on beat {index} of a {burst.beats}-beat burst "
                       f"at {burst.addr:#x}")
        lane0 = addr & (self.data_bytes - 1)
        if wstrb & ((1 << lane0) - 1):
            self._fail(f"WSTRB {wstrb:#x} enables lanes below the burst start {addr:#x}")
        beat_base = addr - lane0
        self.writes.append((beat_base, wstrb))
        self.w_cycles.append(cycle)
        resp = self._resp_for(beat_base, self.data_bytes)
        if resp != RESP_OKAY:
            burst.resp = max(burst.resp, resp)
        elif wstrb:
            offset = self._offset(beat_base)
            for lane in range(self.data_bytes):
                if wstrb >> lane & 1:
                    self.mem[offset + lane] = wdata >> (8 * lane) & 0xff
        burst.done += 1
        return burst.done == burst.beats

    async def serve(self, ctx):
        """The memory's testbench: add with ``sim.add_testbench(mem.serve, background=True)``."""
        port, rng, pause = self.port, self.rng, self.pause
        nbytes = self.data_bytes
        sampled = []
        if self.has_read:
            sampled += [port.arvalid, port.araddr, port.arlen, port.arsize, port.arburst,
                        port.rready]
        if self.has_write:
            sampled += [port.awvalid, port.awaddr, port.awlen, port.awsize, port.awburst,
                        port.wvalid, port.wdata, port.wstrb, port.wlast, port.bready]

        reads = deque()          # accepted AR bursts, data not all returned
        r_beat = None            # (burst, index) presented on R
        aw_bursts = deque()      # accepted AW bursts still taking W beats
        w_early = deque()        # W beats that arrived before their AW
        responses = deque()      # (ready_at, resp) for B
        b_resp = None            # response presented on B
        ar_wait = aw_wait = w_wait = None    # payloads offered but not yet taken
        driven = {}

        def drive(signal, value):
            # Signals are not hashable; their identity is.
            if driven.get(id(signal)) != value:
                ctx.set(signal, value)
                driven[id(signal)] = value

        ready = dict.fromkeys(("ar", "aw", "w"), False)
        for name in ("arready", "rvalid", "awready", "wready", "bvalid"):
            if hasattr(port, name):
                drive(getattr(port, name), 0)
        while True:
            _, _, *values = await ctx.tick().sample(*sampled)
            # `values` were sampled at the clock edge that ended cycle `self.cycle`.
            self.cycle += 1
            now = self.cycle
            values = iter(values)
            if self.has_read:
                arvalid, araddr, arlen, arsize, arburst, rready = (next(values) for _ in range(6))
                payload = (araddr, arlen, arsize, arburst)
                if ar_wait is not None and (not arvalid or payload != ar_wait):
                    self._fail("ARVALID dropped or AR payload changed before ARREADY")
                ar_wait = None
                if arvalid:
                    if ready["ar"]:
                        burst = self._check_request("ar", *payload)
                        burst.ready_at = now - 1 + self.read_latency
                        reads.append(burst)
                        self.peak_reads = max(self.peak_reads, len(reads))
                        self.read_bursts.append((burst.addr, burst.beats))
                    else:
                        ar_wait = payload
                if r_beat is not None and rready:
                    burst, _ = r_beat
                    r_beat = None
                    self.r_beats += 1
                    burst.done += 1
                    if burst.done == burst.beats:
                        reads.popleft()
            if self.has_write:
                (awvalid, awaddr, awlen, awsize, awburst, wvalid, wdata, wstrb, wlast,
                 bready) = (next(values) for _ in range(10))
                payload = (awaddr, awlen, awsize, awburst)
                if aw_wait is not None and (not awvalid or payload != aw_wait):
                    self._fail("AWVALID dropped or AW payload changed before AWREADY")
                aw_wait = None
                if awvalid:
                    if ready["aw"]:
                        burst = self._check_request("aw", *payload)
                        aw_bursts.append(burst)
                        self._writes_in_flight += 1
                        self.peak_writes = max(self.peak_writes, self._writes_in_flight)
                        self.write_bursts.append((burst.addr, burst.beats))
                    else:
                        aw_wait = payload
                beat = (wdata, wstrb, wlast)
                if w_wait is not None and (not wvalid or beat != w_wait):
                    self._fail("WVALID dropped or W payload changed before WREADY")
                w_wait = None
                if wvalid:
                    if ready["w"]:
                        w_early.append((now, *beat))
                    else:
                        w_wait = beat
                while aw_bursts and w_early:
                    burst = aw_bursts[0]
                    if self._take_w_beat(burst, *w_early.popleft()):
                        aw_bursts.popleft()
                        responses.append((now - 1 + self.write_latency, burst.resp))
                if b_resp is not None and bready:
                    self.b_log.append((now, b_resp))
                    self._writes_in_flight -= 1
                    b_resp = None

            # Drive the next cycle.
            if self.has_read:
                ready["ar"] = rng.random() >= pause["ar"]
                drive(port.arready, int(ready["ar"]))
                if r_beat is None and reads and reads[0].ready_at <= now \
                        and rng.random() >= pause["r"]:
                    burst = reads[0]
                    index = burst.done
                    addr = self._beat_addr(burst, index)
                    beat_base = addr & ~(nbytes - 1)
                    resp = self._resp_for(beat_base, nbytes)
                    if resp == RESP_OKAY:
                        offset = self._offset(beat_base)
                        rdata = int.from_bytes(self.mem[offset:offset + nbytes], "little")
                    else:
                        rdata = 0
                    r_beat = (burst, index)
                    drive(port.rdata, rdata)
                    drive(port.rresp, resp)
                    drive(port.rlast, int(index == burst.beats - 1))
                    drive(port.rid, 0)
                drive(port.rvalid, int(r_beat is not None))
            if self.has_write:
                ready["aw"] = rng.random() >= pause["aw"]
                ready["w"] = rng.random() >= pause["w"]
                drive(port.awready, int(ready["aw"]))
                drive(port.wready, int(ready["w"]))
                if b_resp is None and responses and responses[0][0] <= now \
                        and rng.random() >= pause["b"]:
                    _, b_resp = responses.popleft()
                    drive(port.bresp, b_resp)
                    drive(port.bid, 0)
                drive(port.bvalid, int(b_resp is not None))


def simulate(dut, *testbenches, memories=(), cycles=100_000, vcd=None):
    """Run ``testbenches`` (async functions of ``ctx``) with ``memories`` serving the bus.

    Returns when every testbench has returned; raises :class:`TimeoutError` if that takes
    more than ``cycles`` clock cycles (a hang).
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for memory in memories:
        sim.add_testbench(memory.serve, background=True)

    async def watchdog(ctx):
        for _ in range(cycles):
            await ctx.tick()
        raise TimeoutError(f"testbenches still running after {cycles} cycles")

    sim.add_testbench(watchdog, background=True)
    for bench in testbenches:
        sim.add_testbench(bench)
    if vcd is not None:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()

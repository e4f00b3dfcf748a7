"""An AXI protocol monitor in gateware, for the simulated accelerator's two buses.

:class:`AxiMonitor` watches an AXI4 manager port (the accelerator's memory bus) and an
AXI4-Lite subordinate port (its CSRs) and latches one sticky bit per broken rule
(:class:`AxiRule`), with the cycle of the first. It runs inside the simulator at the
model's speed, so the system tests check every beat of every job without stepping a
clock from Python: the testbench reads the bits once a job has ended.

The rules are AXI4's, and where Systole's DMA promises more than AXI4 asks (INCR bursts of
the full bus width; a burst's W beats no earlier than its AWVALID, see
:class:`~systole.hdl.dma.DmaWriter`) the monitor holds it to that promise. It also counts
the R beats and the strobed W bytes it saw, which the testbench compares with the
accelerator's own DRAM counters.
"""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out, flipped

from .axi import BURST_INCR

__all__ = ["AxiRule", "MonitorSignature", "AxiMonitor", "MonitoredAccelerator",
           "violated_rules"]

_PAGE = 4096


class AxiRule(enum.IntEnum):
    """The bit of ``violations`` that each rule sets when it is broken."""
    AW_STABLE = 0        # AWVALID dropped, or the AW payload changed, before AWREADY
    W_STABLE = 1         # the same on W
    B_STABLE = 2         # the same on B (the memory's side)
    AR_STABLE = 3        # the same on AR
    R_STABLE = 4         # the same on R (the memory's side)
    BURST = 5            # a burst that is not INCR of the full bus width
    PAGE = 6             # a burst crossing a 4 KiB boundary
    WLAST = 7            # WLAST not exactly on the burst's last beat
    WSTRB = 8            # a strobe on a lane below the burst's start address
    W_EARLY = 9          # a W beat before its burst's AWVALID
    READ_LIMIT = 10      # more reads outstanding than max_outstanding
    RLAST = 11           # RLAST not exactly on the burst's last beat
    R_UNEXPECTED = 12    # an R beat with no read outstanding
    B_UNEXPECTED = 13    # a B before its burst's AW and last W were both accepted
    ID = 14              # RID or BID not the ID of the oldest request waiting for it
    LITE_STABLE = 15     # VALID or payload broken before READY on an AXI4-Lite channel
    LITE_UNEXPECTED = 16  # an AXI4-Lite response with no request waiting for it
    CAPACITY = 17        # more requests in flight than the monitor can track


def violated_rules(bits):
    """The names of the rules set in a ``violations`` value."""
    return [rule.name for rule in AxiRule if bits >> rule & 1]


class MonitorSignature(wiring.Signature):
    """What the monitor reports: the sticky rule bits, the cycle (since reset) of the
    first, and the R beats and strobed W bytes it has seen."""

    def __init__(self):
        super().__init__({
            "violations": Out(len(AxiRule)),
            "first_cycle": Out(32),
            "read_beats": Out(48),
            "write_bytes": Out(48),
        })


def _tap(signature):
    """Every member of ``signature`` as an input: the monitor only listens."""
    return wiring.Signature({name: In(member.shape)
                             for name, member in signature.members.items()})


def _unstable(m, valid, ready, payload, name):
    """High when a channel that waited for READY last cycle drops VALID or changes its
    payload."""
    waiting = Signal(name=f"{name}_waiting")
    held = Signal(len(payload), name=f"{name}_held")
    m.d.sync += [waiting.eq(valid & ~ready), held.eq(payload)]
    return waiting & (~valid | (payload != held))


def _pending(m, up, down, limit, name):
    """A count of requests waiting for their response (saturating at ``limit``): the value
    before this cycle's changes."""
    count = Signal(range(limit + 1), name=name)
    with m.If(up & ~down & (count != limit)):
        m.d.sync += count.eq(count + 1)
    with m.Elif(down & ~up & (count != 0)):
        m.d.sync += count.eq(count - 1)
    return count


class AxiMonitor(wiring.Component):
    """Checks an AXI4 manager port and an AXI4-Lite subordinate port on every cycle.

    ``report`` holds the sticky bits; ``broken`` is the rules broken on this cycle (the
    formal harnesses of sim/formal.py assume and assert on it).

    Parameters
    ----------
    mem_signature : AXI4Signature
        The manager port watched as ``mem``.
    csr_signature : AXI4LiteSignature or None
        The subordinate port watched as ``csr`` (None: no AXI4-Lite port).
    max_outstanding : int
        Read bursts the manager may have in flight (``SystoleConfig.max_outstanding``).
    write_depth : int, optional
        Write bursts the monitor tracks between AWVALID and their B response (default
        ``max_outstanding + 2``).
    """

    def __init__(self, mem_signature, csr_signature, *, max_outstanding, write_depth=None):
        self._data_bytes = mem_signature.data_width // 8
        self._id_width = mem_signature.id_width
        self._max_outstanding = max_outstanding
        self._write_depth = write_depth or max_outstanding + 2
        self._has_csr = csr_signature is not None
        super().__init__({
            "mem": In(_tap(mem_signature)),
            **({"csr": In(_tap(csr_signature))} if self._has_csr else {}),
            "report": Out(MonitorSignature()),
            "broken": Out(len(AxiRule)),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.mem
        nbytes = self._data_bytes
        size_code = nbytes.bit_length() - 1
        conditions = {rule: [] for rule in AxiRule}

        def flag(rule, condition):
            conditions[rule].append(condition)

        aw_fire = bus.awvalid & bus.awready
        w_fire = bus.wvalid & bus.wready
        b_fire = bus.bvalid & bus.bready
        ar_fire = bus.arvalid & bus.arready
        r_fire = bus.rvalid & bus.rready

        # -- VALID held until READY, payload stable ------------------------------------------
        channels = {
            "aw": (AxiRule.AW_STABLE,
                   Cat(bus.awid, bus.awaddr, bus.awlen, bus.awsize, bus.awburst)),
            "w": (AxiRule.W_STABLE, Cat(bus.wdata, bus.wstrb, bus.wlast)),
            "b": (AxiRule.B_STABLE, Cat(bus.bid, bus.bresp)),
            "ar": (AxiRule.AR_STABLE,
                   Cat(bus.arid, bus.araddr, bus.arlen, bus.arsize, bus.arburst)),
            "r": (AxiRule.R_STABLE, Cat(bus.rid, bus.rdata, bus.rresp, bus.rlast)),
        }
        for name, (rule, payload) in channels.items():
            flag(rule, _unstable(m, getattr(bus, f"{name}valid"), getattr(bus, f"{name}ready"),
                                 payload, f"mem_{name}"))
        # -- every burst: INCR, full width, inside one 4 KiB page ----------------------------
        for prefix, fire in (("aw", aw_fire), ("ar", ar_fire)):
            addr, beats = getattr(bus, f"{prefix}addr"), getattr(bus, f"{prefix}len") + 1
            flag(AxiRule.BURST, fire & ((getattr(bus, f"{prefix}burst") != BURST_INCR) |
                                        (getattr(bus, f"{prefix}size") != size_code)))
            first_beat = addr[size_code:12]
            flag(AxiRule.PAGE, fire & (first_beat + beats > _PAGE // nbytes))

        # -- writes: each W beat against its burst's AW --------------------------------------
        # A burst is known from its first AWVALID cycle on (AW_STABLE holds it there), so
        # the W side takes bursts in AWVALID order, the B side in AW handshake order.
        burst_layout = data.StructLayout({"offset": range(nbytes), "len": 8})
        announced = fifo.SyncFIFO(width=burst_layout.size, depth=self._write_depth)
        m.submodules.announced = announced
        aw_waited = Signal()
        m.d.sync += aw_waited.eq(bus.awvalid & ~bus.awready)
        new_aw = bus.awvalid & ~aw_waited
        this_aw = Signal(burst_layout)
        m.d.comb += [this_aw.offset.eq(bus.awaddr[:size_code]), this_aw.len.eq(bus.awlen)]
        # The burst the W beats belong to: the oldest announced one, or one announced now.
        w_burst = Signal(burst_layout)
        w_known = announced.r_rdy | new_aw
        m.d.comb += w_burst.eq(Mux(announced.r_rdy, announced.r_data, this_aw))
        w_beat = Signal(9)
        w_end = w_fire & w_known & (w_beat == w_burst.len)
        bypass = new_aw & ~announced.r_rdy & w_end
        m.d.comb += [
            announced.w_en.eq(new_aw & ~bypass),
            announced.w_data.eq(this_aw),
            announced.r_en.eq(w_end & announced.r_rdy),
        ]
        flag(AxiRule.CAPACITY, new_aw & ~bypass & ~announced.w_rdy)
        flag(AxiRule.W_EARLY, w_fire & ~w_known)
        flag(AxiRule.WLAST, w_fire & w_known & (bus.wlast != (w_beat == w_burst.len)))
        below_start = Cat(lane < w_burst.offset for lane in range(nbytes))
        flag(AxiRule.WSTRB, w_fire & w_known & (w_beat == 0) & (bus.wstrb & below_start).any())
        with m.If(w_fire & w_known):
            m.d.sync += w_beat.eq(Mux(w_end, 0, w_beat + 1))

        # B: after both its burst's AW handshake and its WLAST handshake, with the AW's ID.
        aw_ids = fifo.SyncFIFO(width=self._id_width, depth=self._write_depth)
        m.submodules.aw_ids = aw_ids
        m.d.comb += [aw_ids.w_en.eq(aw_fire), aw_ids.w_data.eq(bus.awid),
                     aw_ids.r_en.eq(b_fire)]
        flag(AxiRule.CAPACITY, aw_fire & ~aw_ids.w_rdy)
        w_done = _pending(m, w_fire & bus.wlast, b_fire, self._write_depth, "mem_w_done")
        flag(AxiRule.B_UNEXPECTED, b_fire & (~aw_ids.r_rdy | (w_done == 0)))
        flag(AxiRule.ID, b_fire & aw_ids.r_rdy & (bus.bid != aw_ids.r_data))

        # -- reads: R beats in AR order, the outstanding limit -------------------------------
        read_layout = data.StructLayout({"id": self._id_width, "len": 8})
        reads = fifo.SyncFIFO(width=read_layout.size, depth=self._max_outstanding + 1)
        m.submodules.reads = reads
        head = Signal(read_layout)
        m.d.comb += head.eq(reads.r_data)
        r_beat = Signal(8)
        r_end = r_fire & reads.r_rdy & (r_beat == head.len)
        m.d.comb += [reads.w_en.eq(ar_fire), reads.w_data.eq(Cat(bus.arid, bus.arlen)),
                     reads.r_en.eq(r_end)]
        flag(AxiRule.CAPACITY, ar_fire & ~reads.w_rdy)
        flag(AxiRule.READ_LIMIT,
             ar_fire & ~r_end & (reads.level >= self._max_outstanding))
        flag(AxiRule.R_UNEXPECTED, r_fire & ~reads.r_rdy)
        flag(AxiRule.RLAST, r_fire & reads.r_rdy & (bus.rlast != (r_beat == head.len)))
        flag(AxiRule.ID, r_fire & reads.r_rdy & (bus.rid != head.id))
        with m.If(r_fire & reads.r_rdy):
            m.d.sync += r_beat.eq(Mux(r_end, 0, r_beat + 1))

        # -- AXI4-Lite: the handshake rule, a response only for a request waiting for one ---
        if self._has_csr:
            self._check_lite(m, flag)

        broken = Signal(len(AxiRule))
        m.d.comb += [broken.eq(Cat(Cat(conditions[rule]).any() if conditions[rule] else
                                   Const(0, 1) for rule in AxiRule)),
                     self.broken.eq(broken)]

        # -- the report -----------------------------------------------------------------------
        report = self.report
        cycle = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        with m.If((report.violations == 0) & broken.any()):
            m.d.sync += report.first_cycle.eq(cycle)
        m.d.sync += [
            report.violations.eq(report.violations | broken),
            report.read_beats.eq(report.read_beats + r_fire),
            report.write_bytes.eq(report.write_bytes +
                                  Mux(w_fire, sum(bus.wstrb[i] for i in range(nbytes)), 0)),
        ]
        return m

    def _check_lite(self, m, flag):
        lite = self.csr
        lite_payloads = {
            "aw": Cat(lite.awaddr, lite.awprot), "w": Cat(lite.wdata, lite.wstrb),
            "b": lite.bresp, "ar": Cat(lite.araddr, lite.arprot),
            "r": Cat(lite.rdata, lite.rresp),
        }
        for name, payload in lite_payloads.items():
            flag(AxiRule.LITE_STABLE,
                 _unstable(m, getattr(lite, f"{name}valid"), getattr(lite, f"{name}ready"),
                           payload, f"csr_{name}"))

        lite_b = lite.bvalid & lite.bready
        lite_r = lite.rvalid & lite.rready
        lite_aw = _pending(m, lite.awvalid & lite.awready, lite_b, 15, "csr_aw_waiting")
        lite_w = _pending(m, lite.wvalid & lite.wready, lite_b, 15, "csr_w_waiting")
        lite_ar = _pending(m, lite.arvalid & lite.arready, lite_r, 15, "csr_ar_waiting")
        flag(AxiRule.LITE_UNEXPECTED, (lite_b & ((lite_aw == 0) | (lite_w == 0))) |
                                      (lite_r & (lite_ar == 0)))


class MonitoredAccelerator(wiring.Component):
    """The accelerator with an :class:`AxiMonitor` on its memory and CSR ports: the same
    ports (``csr``, ``mem``, ``irq``) and the monitor's ``report``. The simulated top level
    of the system tests (with a cocotbext-axi memory; inside ``SimulationTop`` with the
    gateware one)."""

    def __init__(self, config):
        from .top import Accelerator
        self.accelerator = Accelerator(config)
        self._max_outstanding = config.max_outstanding
        super().__init__({
            "csr": Out(self.accelerator.csr.signature),
            "mem": Out(self.accelerator.mem.signature),
            "irq": Out(1),
            "report": Out(MonitorSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        wiring.connect(m, flipped(self.csr), acc.csr)
        wiring.connect(m, flipped(self.mem), acc.mem)
        m.submodules.monitor = monitor = AxiMonitor(
            acc.mem.signature, acc.csr.signature, max_outstanding=self._max_outstanding)
        for tap, port in ((monitor.mem, acc.mem), (monitor.csr, acc.csr)):
            m.d.comb += [getattr(tap, name).eq(getattr(port, name))
                         for name in tap.signature.members]
        wiring.connect(m, flipped(self.report), monitor.report)
        m.d.comb += self.irq.eq(acc.irq)
        return m

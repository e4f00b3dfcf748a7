"""The host bridge: a framed byte protocol onto the CSRs (AXI4-Lite) and the memory (AXI4).

The protocol is specified in docs/host-protocol.md; its constants are declared here once
(:class:`Command`, :class:`Status`, the sync bytes, :func:`crc16`) and the host side
(``systole.sim.uart_port``) imports them. In short, a request is::

    0xA5  CMD  SEQ  ADDR[4]  LEN[2]  PAYLOAD[LEN if a write]  CRC[2]

and the reply ``0x5A STATUS SEQ LEN[2] PAYLOAD[LEN] CRC[2]`` (multi-byte fields little-
endian, the CRC-16/CCITT-FALSE over everything after the sync byte, sent most significant
byte first so that the CRC of a whole good frame is 0).

The bridge buffers a request's payload in a block RAM and checks the CRC before it acts,
so a damaged frame has no effect. It then answers every request it saw begin: an ACK
(``Status.OK``) with the data read, or a NAK whose status says why. After a damaged frame
it first waits for the line to go quiet for ``timeout`` cycles (flushing the rest of the
frame) and then NAKs, so the host's retry meets an idle receiver; a frame cut short is
NAK'd ``timeout`` cycles after its last byte. A write frame that repeats the sequence
number of the frame executed last is acknowledged without being executed again, so a host
that lost an ACK can retry any write (even CTRL.START) safely.

The memory path is a second AXI4 manager (single-beat byte accesses with one write
strobe); :class:`AXI4Arbiter` shares the memory between it and the accelerator.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant
from .axi import AXI4LiteSignature, AXI4Signature, BURST_INCR, RESP_OKAY
from .blockram import NO_COLLISION, RegisteredReadPort

__all__ = ["REQUEST_SYNC", "REPLY_SYNC", "PROTOCOL_VERSION", "Command", "Status", "crc16",
           "HostBridge", "AXI4Arbiter"]

REQUEST_SYNC = 0xA5
REPLY_SYNC = 0x5A
PROTOCOL_VERSION = 1
_CRC_POLY = 0x1021
_CRC_INIT = 0xFFFF
_PING_BYTES = 8


class Command(enum.Enum, shape=8):
    """Request commands (the CMD byte)."""
    PING = 0x00         #: reply: version, 0, max payload (2), memory bytes (4)
    REG_READ = 0x01     #: LEN bytes (a multiple of 4) of consecutive 32-bit CSRs from ADDR
    REG_WRITE = 0x02    #: payload: LEN bytes of 32-bit CSR values for ADDR, ADDR + 4 ...
    MEM_READ = 0x03     #: LEN bytes of board memory from ADDR
    MEM_WRITE = 0x04    #: payload: LEN bytes for board memory at ADDR


class Status(enum.Enum, shape=8):
    """Reply statuses (the STATUS byte). Below 0x10 the frame was damaged: retry it."""
    OK = 0x00           #: the ACK
    CRC_ERROR = 0x01    #: the frame's CRC did not match
    TIMEOUT = 0x02      #: the frame stopped before its end (inter-byte timeout)
    TOO_LONG = 0x03     #: LEN exceeds the bridge's payload buffer
    BAD_COMMAND = 0x10  #: unknown CMD
    BAD_LENGTH = 0x11   #: LEN not allowed for CMD
    BAD_ADDRESS = 0x12  #: ADDR (+ LEN) outside the CSR space or the memory, or unaligned
    BUS_ERROR = 0x13    #: the AXI bus answered SLVERR/DECERR (e.g. an unmapped CSR)


def crc16(data, crc=_CRC_INIT):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no final XOR) of bytes."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def _crc16_step(crc, byte):
    """The gateware twin of :func:`crc16` for one byte.

    The CRC register after a byte is a linear (GF(2)) function of ``crc ^ byte << 8``:
    each output bit is the XOR of the input bits found by running :func:`crc16` on unit
    vectors. (Unrolling the shift loop with ``Mux`` would duplicate the expression tree at
    every step.)
    """
    value = crc ^ Cat(Const(0, 8), byte)
    columns = [crc16(b"\0", crc=1 << i) for i in range(16)]
    bits = []
    for out in range(16):
        terms = [value[i] for i in range(16) if columns[i] >> out & 1]
        bits.append(_xor(terms))
    return Cat(*bits)


def _xor(terms):
    result = terms[0]
    for term in terms[1:]:
        result = result ^ term
    return result


def _sum_above(addr, length, bound):
    """``addr + length > bound`` for a constant ``bound``, with an adder only as wide as
    ``length``: above it, ``addr`` is compared with the constant (see
    :func:`~.arith.above_constant`)."""
    width = len(length)
    if len(addr) <= width:
        return above_constant(addr + length, bound)
    low = addr[:width] + length         # width + 1 bits
    high = addr[width:]
    high_bound, low_bound = bound >> width, bound & ((1 << width) - 1)
    # addr + length = high * 2**width + low, and low < 2**(width + 1).
    above = above_constant(high, high_bound) | ((high == high_bound)
                                                & above_constant(low, low_bound))
    if high_bound:
        above |= (high == high_bound - 1) & above_constant(low, low_bound + (1 << width))
    return above


class HostBridge(wiring.Component):
    """Framed host protocol (docs/host-protocol.md) onto AXI4-Lite CSRs and AXI4 memory.

    Parameters
    ----------
    csr_addr_width : int
        Address width of the CSR bus; register accesses must lie below ``2**csr_addr_width``.
    addr_width, data_width : int
        Of the AXI4 memory port.
    memory_bytes : int
        Size of the memory; accesses must lie below it (it is also reported by PING).
    max_payload : int
        Longest payload of a request or reply (bytes of the block-RAM frame buffer), a
        multiple of 4 between 4 and 65532.
    timeout : int
        Inter-byte timeout in clock cycles: a frame with a longer gap is abandoned.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Bytes from the host (always taken).
    tx : Out(stream.Signature(8))
        Bytes to the host.
    csr : In(AXI4LiteSignature)
        AXI4-Lite manager (connect it to the accelerator's ``csr``).
    mem : Out(AXI4Signature)
        AXI4 manager onto the memory.
    """

    def __init__(self, *, csr_addr_width, addr_width, data_width, memory_bytes,
                 max_payload=256, timeout=1 << 16):
        if not (isinstance(max_payload, int) and 4 <= max_payload <= 65532
                and max_payload % 4 == 0):
            raise ValueError(f"max_payload must be a multiple of 4 between 4 and 65532, "
                             f"not {max_payload!r}")
        if not (isinstance(timeout, int) and timeout >= 16):
            raise ValueError(f"timeout must be an integer of at least 16 cycles, "
                             f"not {timeout!r}")
        if not (isinstance(memory_bytes, int) and 0 < memory_bytes <= 1 << min(addr_width, 32)):
            raise ValueError(f"memory_bytes must be between 1 and 2**addr_width, "
                             f"not {memory_bytes!r}")
        if data_width not in (8, 16, 32, 64, 128, 256):
            raise ValueError(f"data_width must be a power of two from 8 to 256, "
                             f"not {data_width!r}")
        self._csr_addr_width = csr_addr_width
        self._addr_width = addr_width
        self._data_width = data_width
        self._memory_bytes = memory_bytes
        self._max_payload = max_payload
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "csr": In(AXI4LiteSignature(addr_width=csr_addr_width)),
            "mem": Out(AXI4Signature(addr_width=addr_width, data_width=data_width)),
        })

    @property
    def max_payload(self):
        return self._max_payload

    def elaborate(self, platform):
        m = Module()
        lanes = self._data_width // 8
        lane_bits = (lanes - 1).bit_length()
        max_payload = self._max_payload
        rx, tx, csr, mem = self.rx, self.tx, self.csr, self.mem
        rx_byte = rx.payload

        # The frame buffer: a request's payload, then the reply's. Every loop counts
        # ``count`` down and moves its byte at buffer address ``count - 1``, so a payload is
        # stored back to front and read the same way. The read port reads that address on
        # every cycle; ``fetched`` says its data is current (``count`` did not move in the
        # cycle before, and the cycles that write never move a byte to be read next).
        # ``count`` also numbers the header bytes of a request and of a reply, from 7 down.
        buffer = memory.Memory(shape=8, depth=max_payload, init=[], attrs=NO_COLLISION)
        m.submodules.buffer = buffer
        wr = buffer.write_port()
        rd = RegisteredReadPort(m, buffer, name="buffer_read")
        count = Signal(range(max(max_payload, _PING_BYTES) + 1))
        last = Signal.like(count)           # count - 1: the buffer address of the byte
        fetched = Signal()
        m.d.comb += [last.eq(count - 1), rd.addr.eq(last), rd.en.eq(1), wr.addr.eq(last),
                     rx.ready.eq(1)]
        m.d.sync += fetched.eq(1)

        def step():
            m.d.sync += [count.eq(last), fetched.eq(0)]

        # The request: CMD as its low three bits and a flag for any other value; the 32-bit
        # ADDR in the bits the buses reach, ``target`` (then the address of each access),
        # and a flag for any bit above them; LEN (then the reply's LEN).
        reach = min(32, max((self._memory_bytes - 1).bit_length(), self._csr_addr_width))
        command = Signal(3)
        unknown = Signal()
        seq = Signal(8)
        target = Signal(reach)
        far = Signal()
        length = Signal(range(max(max_payload, 0xFF) + 1))
        # The reply's STATUS: ``damage`` for a damaged frame (its low bits; zero once the CRC
        # has checked), otherwise ``outcome``, the status of the frame executed last, which
        # is also the answer to a repeated write.
        damage = Signal(2)
        outcome = Signal(Status)
        word = Signal(32)                   # a CSR value being scattered or gathered
        # The complement of the CRC, so that its initial value (0xFFFF) is a reset.
        crc_complement = Signal(16)
        crc = ~crc_complement
        crc_high = Signal()                 # the CRC's high byte is through
        aw_done = Signal()                  # also the AR of a read
        w_done = Signal()
        last_seq = Signal(8)
        last_valid = Signal()
        # Cycles since the last byte. It wraps around (the states that look at it leave on
        # the first cycle it is expired).
        timer = Signal(range(self._timeout + 1))
        with m.If(rx.valid):
            m.d.sync += timer.eq(0)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        expired = Signal()
        m.d.sync += expired.eq(~rx.valid & above_constant(timer, self._timeout - 2))

        # One CRC unit: it takes the received byte, or in the reply states the sent one.
        replying = Signal()
        crc_init = Signal()
        crc_byte = Mux(replying, tx.payload, rx_byte)
        with m.If(crc_init):
            m.d.sync += crc_complement.eq(_CRC_INIT ^ 0xFFFF)
        with m.Elif(Mux(replying, tx.valid & tx.ready, rx.valid)):
            m.d.sync += crc_complement.eq(~_crc16_step(crc, crc_byte))

        known = ~unknown
        is_ping = known & (command == Command.PING)
        is_reg = known & ((command == Command.REG_READ) | (command == Command.REG_WRITE))
        is_read = known & ((command == Command.REG_READ) | (command == Command.MEM_READ))
        is_write = known & ((command == Command.REG_WRITE) | (command == Command.MEM_WRITE))
        # Each bus access moves a 32-bit register or one byte.
        advance = target.eq(target + Mux(is_reg, 4, 1))
        # Reply payloads: the PING fields (read back to front, as the buffer is) or the buffer.
        ping_info = Cat(Const(PROTOCOL_VERSION, 8), Const(0, 8), Const(max_payload, 16),
                        Const(self._memory_bytes % (1 << 32), 32))
        ping_byte = Cat(*reversed([ping_info[8 * i:8 * i + 8] for i in range(_PING_BYTES)]))

        # Constant AXI4 fields: single-beat INCR bursts of the full bus width.
        m.d.comb += [
            mem.arlen.eq(0), mem.arsize.eq(lane_bits), mem.arburst.eq(BURST_INCR),
            mem.arid.eq(0), mem.araddr.eq(Cat(Const(0, lane_bits), target[lane_bits:])),
            mem.awlen.eq(0), mem.awsize.eq(lane_bits), mem.awburst.eq(BURST_INCR),
            mem.awid.eq(0), mem.awaddr.eq(Cat(Const(0, lane_bits), target[lane_bits:])),
            mem.wdata.eq(rd.data.replicate(lanes)), mem.wlast.eq(1),
            mem.wstrb.eq(Const(1, lanes) << target[:lane_bits] if lane_bits else 1),
            csr.araddr.eq(target), csr.awaddr.eq(target), csr.wdata.eq(word),
            csr.wstrb.eq(0xF), csr.arprot.eq(0), csr.awprot.eq(0),
            csr.rready.eq(1), mem.rready.eq(1), csr.bready.eq(1), mem.bready.eq(1),
        ]

        with m.FSM():
            with m.State("HUNT"):
                # A frame that stops before its end is NAK'd TIMEOUT, unless found damaged.
                m.d.comb += crc_init.eq(1)
                m.d.sync += [count.eq(7), seq.eq(0), damage.eq(Status.TIMEOUT.value),
                             crc_high.eq(0)]
                with m.If(rx.valid & (rx_byte == REQUEST_SYNC)):
                    m.next = "HEADER"

            # -- receive: header, payload, CRC; an inter-byte gap abandons the frame ------
            with m.State("HEADER"):
                # ``count`` runs from 7 (CMD) to 0 (the high byte of LEN).
                with m.If(expired):
                    m.next = "REPLY"
                with m.Elif(rx.valid):
                    step()
                    with m.Switch(count[:3]):
                        with m.Case(7):
                            m.d.sync += [command.eq(rx_byte),
                                         unknown.eq(above_constant(rx_byte, 4))]
                        with m.Case(6):
                            m.d.sync += seq.eq(rx_byte)
                        for byte in range(4):
                            low = 8 * byte
                            inside = max(0, min(8, reach - low))
                            with m.Case(5 - byte):
                                if inside:
                                    m.d.sync += target[low:low + inside].eq(rx_byte)
                                if inside < 8:
                                    beyond = rx_byte[inside:].any()
                                    m.d.sync += far.eq(beyond if byte == reach // 8
                                                       else far | beyond)
                        with m.Case(1):
                            m.d.sync += length[:8].eq(rx_byte)
                        with m.Case(0):
                            if len(length) > 8:
                                m.d.sync += length[8:].eq(rx_byte)
                            with m.If(above_constant(Cat(length[:8], rx_byte), max_payload)):
                                m.d.sync += damage.eq(Status.TOO_LONG.value)
                                m.next = "DISCARD"
                            with m.Else():
                                m.next = "LENGTH"
            with m.State("LENGTH"):
                m.d.sync += [count.eq(length), fetched.eq(0)]
                m.next = "BODY"
            with m.State("BODY"):
                # A write's payload into the buffer, then the two CRC bytes; ``count`` is
                # LEN again for the execution.
                with m.If(expired):
                    m.next = "REPLY"
                with m.Elif(rx.valid):
                    with m.If(crc_high):
                        with m.If(_crc16_step(crc, rx_byte) == 0):
                            m.next = "EXECUTE"
                        with m.Else():
                            m.d.sync += damage.eq(Status.CRC_ERROR.value)
                            m.next = "DISCARD"
                    with m.Elif(is_write & (count != 0)):
                        m.d.comb += [wr.data.eq(rx_byte), wr.en.eq(1)]
                        step()
                    with m.Else():
                        m.d.sync += [crc_high.eq(1), count.eq(length), fetched.eq(0)]
            with m.State("DISCARD"):
                # Let the rest of a damaged frame pass, so the NAK meets a quiet line.
                with m.If(expired):
                    m.next = "REPLY"

            # -- execute -----------------------------------------------------------------
            with m.State("EXECUTE"):
                csr_ok = (target[:2] == 0) & ~far & ~_sum_above(target, length,
                                                                  1 << self._csr_addr_width)
                mem_ok = ~far & ~_sum_above(target, length, self._memory_bytes)
                m.d.sync += damage.eq(0)
                m.next = "REPLY"
                with m.If(is_write & last_valid & (seq == last_seq)):
                    pass            # a retry of the write executed last: its outcome stands
                with m.Elif(unknown):
                    m.d.sync += outcome.eq(Status.BAD_COMMAND)
                with m.Elif(is_ping ^ (count == 0) | is_reg & (count[:2] != 0)):
                    m.d.sync += outcome.eq(Status.BAD_LENGTH)
                with m.Elif(~is_ping & ~Mux(is_reg, csr_ok, mem_ok)):
                    m.d.sync += outcome.eq(Status.BAD_ADDRESS)
                with m.Else():
                    m.d.sync += outcome.eq(Status.OK)
                    with m.If(~is_ping):
                        m.next = "NEXT"

            with m.State("NEXT"):
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                with m.If(count == 0):
                    m.next = "REPLY"
                with m.Elif(is_read):
                    m.next = "READ"
                with m.Elif(is_reg):
                    m.next = "SHIFT"
                with m.Else():
                    m.next = "WRITE"        # the byte is rd.data

            # Reads: a CSR word into ``word``, or a memory byte into the buffer.
            with m.State("READ"):
                m.d.comb += [csr.arvalid.eq(is_reg & ~aw_done), mem.arvalid.eq(~is_reg & ~aw_done)]
                with m.If(Mux(is_reg, csr.arready, mem.arready)):
                    m.d.sync += aw_done.eq(1)
                with m.If(Mux(is_reg, csr.rvalid, mem.rvalid)):
                    m.d.sync += advance
                    with m.If(Mux(is_reg, csr.rresp, mem.rresp) != RESP_OKAY):
                        m.d.sync += outcome.eq(Status.BUS_ERROR)
                        m.next = "REPLY"
                    with m.Elif(is_reg):
                        m.d.sync += word.eq(csr.rdata)
                        m.next = "SHIFT"
                    with m.Else():
                        lane_data = (mem.rdata.word_select(target[:lane_bits], 8) if lane_bits
                                     else mem.rdata)
                        m.d.comb += [wr.en.eq(1), wr.data.eq(lane_data)]
                        step()
                        m.next = "NEXT"
            # A CSR word out of ``word`` into the buffer, or into ``word`` out of it.
            with m.State("SHIFT"):
                with m.If(fetched):
                    m.d.comb += [wr.en.eq(is_read), wr.data.eq(word[:8])]
                    m.d.sync += word.eq(Cat(word[8:], rd.data))
                    step()
                    with m.If(last[:2] == 0):
                        with m.If(is_read):
                            m.next = "NEXT"
                        with m.Else():
                            m.next = "WRITE"
            # Writes: a CSR word, or one buffer byte; AW and W in either order.
            with m.State("WRITE"):
                m.d.comb += [csr.awvalid.eq(is_reg & ~aw_done), csr.wvalid.eq(is_reg & ~w_done),
                             mem.awvalid.eq(~is_reg & ~aw_done), mem.wvalid.eq(~is_reg & ~w_done)]
                with m.If(Mux(is_reg, csr.awready, mem.awready)):
                    m.d.sync += aw_done.eq(1)
                with m.If(Mux(is_reg, csr.wready, mem.wready)):
                    m.d.sync += w_done.eq(1)
                with m.If(Mux(is_reg, csr.bvalid, mem.bvalid)):
                    m.d.sync += advance
                    with m.If(Mux(is_reg, csr.bresp, mem.bresp) != RESP_OKAY):
                        m.d.sync += outcome.eq(Status.BUS_ERROR)
                        m.next = "REPLY"
                    with m.Else():
                        with m.If(~is_reg):
                            step()
                        m.next = "NEXT"

            # -- reply: header, payload from the buffer, CRC (most significant byte first)
            with m.State("REPLY"):
                # An executed frame is remembered for duplicate detection (a repeated write
                # is remembered again, unchanged). Only an ACK of a read has a payload.
                ok = (damage == 0) & (outcome == Status.OK)
                with m.If(damage == 0):
                    m.d.sync += [last_seq.eq(seq), last_valid.eq(1)]
                with m.If(~(ok & is_read)):
                    m.d.sync += length.eq(Mux(ok & is_ping, _PING_BYTES, 0))
                m.d.sync += count.eq(7)
                m.next = "REPLY_HEADER"
            with m.State("REPLY_HEADER"):
                m.d.comb += replying.eq(1)
                header = Cat(Const(0, 24), length[8:], Const(0, 16 - len(length)), length[:8],
                             seq, Mux(damage != 0, damage, outcome), Const(REPLY_SYNC, 8))
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header.word_select(count[:3], 8)),
                             crc_init.eq(count[:3] == 7)]
                with m.If(tx.ready):
                    step()
                    with m.If(count[:3] == 3):
                        m.d.sync += [count.eq(length), crc_high.eq(0)]
                        m.next = "REPLY_BODY"
            with m.State("REPLY_BODY"):
                m.d.comb += replying.eq(1)
                # Sending the high CRC byte through the CRC unit shifts the low one up.
                with m.If(count != 0):
                    m.d.comb += [tx.valid.eq(fetched),
                                 tx.payload.eq(Mux(is_ping, ping_byte.word_select(last[:3], 8),
                                                   rd.data))]
                    with m.If(tx.valid & tx.ready):
                        step()
                with m.Else():
                    m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc[8:])]
                    with m.If(tx.ready):
                        m.d.sync += crc_high.eq(1)
                        with m.If(crc_high):
                            m.next = "HUNT"
        return m


class AXI4Arbiter(wiring.Component):
    """Two AXI4 managers onto one subordinate; reads and writes arbitrated separately.

    A channel's grant moves to the other manager only when the granted one has no
    transaction outstanding on it (no AR without its last R beat; no AW without its B, no
    W burst without its AW) and
    is not offering a request (so no valid is ever withdrawn); the accelerator (manager 0)
    therefore keeps the memory for a whole job burst-stream while it has reads in flight,
    and the bridge's single-byte accesses go in between. Both managers use ID 0.

    Parameters
    ----------
    addr_width, data_width : int
    max_outstanding : int
        The most bursts either manager has in flight on a channel (ARs without their last
        R beat; AWs without their B); it sizes the arbiter's transaction counters.

    Attributes
    ----------
    managers : list of two In(AXI4Signature)
    sub : Out(AXI4Signature)
    """

    def __init__(self, *, addr_width, data_width, max_outstanding=1023):
        if not (isinstance(max_outstanding, int) and max_outstanding >= 1):
            raise ValueError(f"max_outstanding must be a positive integer, "
                             f"not {max_outstanding!r}")
        self._max_outstanding = max_outstanding
        signature = AXI4Signature(addr_width=addr_width, data_width=data_width)
        super().__init__({"managers": In(signature).array(2), "sub": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        sub = self.sub
        first, second = self.managers

        def route(grant, names_to_sub, names_to_manager, valid_to_sub, ready_from_sub):
            for name in names_to_sub:
                m.d.comb += getattr(sub, name).eq(
                    Mux(grant, getattr(second, name), getattr(first, name)))
            for name in names_to_manager:
                m.d.comb += [getattr(first, name).eq(getattr(sub, name)),
                             getattr(second, name).eq(getattr(sub, name))]
            for valid in valid_to_sub:
                m.d.comb += getattr(sub, valid).eq(
                    Mux(grant, getattr(second, valid), getattr(first, valid)))
            for ready in ready_from_sub:
                m.d.comb += [getattr(first, ready).eq(getattr(sub, ready) & ~grant),
                             getattr(second, ready).eq(getattr(sub, ready) & grant)]

        # Reads: AR to the subordinate, R back to the granted manager.
        r_grant = Signal()
        route(r_grant, ["arid", "araddr", "arlen", "arsize", "arburst"],
              ["rid", "rdata", "rresp", "rlast"], ["arvalid"], ["arready"])
        m.d.comb += [sub.rready.eq(Mux(r_grant, second.rready, first.rready)),
                     first.rvalid.eq(sub.rvalid & ~r_grant),
                     second.rvalid.eq(sub.rvalid & r_grant)]
        most = self._max_outstanding
        reads = Signal(range(most + 1))
        ar_fire = sub.arvalid & sub.arready
        r_done = sub.rvalid & sub.rready & sub.rlast
        m.d.sync += reads.eq(reads + ar_fire - r_done)
        r_granted_valid = Mux(r_grant, second.arvalid, first.arvalid)
        r_other_valid = Mux(r_grant, first.arvalid, second.arvalid)
        with m.If((reads == 0) & ~r_granted_valid & r_other_valid):
            m.d.sync += r_grant.eq(~r_grant)

        # Writes: AW and W to the subordinate, B back to the granted manager.
        w_grant = Signal()
        route(w_grant, ["awid", "awaddr", "awlen", "awsize", "awburst", "wdata", "wstrb",
                        "wlast"],
              ["bid", "bresp"], ["awvalid", "wvalid"], ["awready", "wready"])
        m.d.comb += [sub.bready.eq(Mux(w_grant, second.bready, first.bready)),
                     first.bvalid.eq(sub.bvalid & ~w_grant),
                     second.bvalid.eq(sub.bvalid & w_grant)]
        writes = Signal(range(most + 1))
        # AXI4 lets W beats run ahead of their AW: count W bursts against AWs as well.
        w_ahead = Signal(range(-most - 1, most + 1))
        aw_fire = sub.awvalid & sub.awready
        wlast_fire = sub.wvalid & sub.wready & sub.wlast
        b_done = sub.bvalid & sub.bready
        m.d.sync += [writes.eq(writes + aw_fire - b_done),
                     w_ahead.eq(w_ahead + wlast_fire - aw_fire)]
        w_granted_valid = Mux(w_grant, second.awvalid | second.wvalid,
                              first.awvalid | first.wvalid)
        w_other_valid = Mux(w_grant, first.awvalid | first.wvalid,
                            second.awvalid | second.wvalid)
        with m.If((writes == 0) & (w_ahead == 0) & ~w_granted_valid & w_other_valid):
            m.d.sync += w_grant.eq(~w_grant)
        return m

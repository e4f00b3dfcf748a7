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

        # The frame buffer: a request's payload, then the reply's. It is read at the address
        # it is written, but a byte read in a cycle that writes is never used (the states
        # that use rd.data write nothing, and enter with ``fetched`` low).
        buffer = memory.Memory(shape=8, depth=max_payload, init=[], attrs=NO_COLLISION)
        m.submodules.buffer = buffer
        wr = buffer.write_port()
        rd = RegisteredReadPort(m, buffer, name="buffer_read")

        cmd = Signal(8)
        seq = Signal(8)
        # The 32-bit address of a request is kept in the bits either bus can reach, and
        # a flag for any bit above them (such a request is out of range on both buses).
        reach = min(32, max(self._addr_width, self._csr_addr_width))
        addr = Signal(reach)
        addr_far = Signal()
        # Lengths beyond max_payload are refused as the header's last byte arrives.
        length = Signal(range(max_payload + 1))
        index = Signal(range(max(max_payload, 8) + 1))  # byte of header, payload or reply
        crc = Signal(16)
        status = Signal(Status)
        reply_len = Signal(range(max(max_payload, _PING_BYTES) + 1))
        target = Signal(reach)      # bus address of the current access
        word = Signal(32)           # a CSR value being gathered or scattered
        fetched = Signal()          # rd.data holds buffer[index]
        aw_done = Signal()
        w_done = Signal()
        last_seq = Signal(8)
        last_valid = Signal()
        last_status = Signal(Status)
        timer = Signal(range(self._timeout + 1))

        rx_byte = rx.payload
        # One CRC unit: it takes the received byte, or in the reply states the sent one.
        crc_byte = Signal(8)
        crc_in = Signal(16)
        m.d.comb += [crc_byte.eq(rx_byte), crc_in.eq(_crc16_step(crc, crc_byte))]
        m.d.comb += [rx.ready.eq(1), rd.addr.eq(index), rd.en.eq(1), wr.addr.eq(index)]

        is_write = (cmd == Command.REG_WRITE) | (cmd == Command.MEM_WRITE)
        end = Signal(max(reach, len(length)) + 1)
        m.d.comb += end.eq(addr + length)
        ping_info = Cat(Const(PROTOCOL_VERSION, 8), Const(0, 8), Const(max_payload, 16),
                        Const(self._memory_bytes % (1 << 32), 32))

        # Constant AXI4 fields: single-beat INCR bursts of the full bus width.
        m.d.comb += [
            mem.arlen.eq(0), mem.arsize.eq(lane_bits), mem.arburst.eq(BURST_INCR),
            mem.arid.eq(0), mem.araddr.eq(Cat(Const(0, lane_bits), target[lane_bits:])),
            mem.awlen.eq(0), mem.awsize.eq(lane_bits), mem.awburst.eq(BURST_INCR),
            mem.awid.eq(0), mem.awaddr.eq(Cat(Const(0, lane_bits), target[lane_bits:])),
            mem.wdata.eq(word[:8].replicate(lanes)), mem.wlast.eq(1),
            mem.wstrb.eq(Const(1, lanes) << target[:lane_bits] if lane_bits else 1),
            csr.araddr.eq(target), csr.awaddr.eq(target), csr.wdata.eq(word),
            csr.wstrb.eq(0xF), csr.arprot.eq(0), csr.awprot.eq(0),
        ]

        def reply(new_status, new_len=0):
            m.d.sync += [status.eq(new_status), reply_len.eq(new_len), index.eq(0)]
            m.next = "REPLY_HEADER"

        def write_address_and_data(bus, next_state):
            """AW and W of one write, in either order; then ``next_state`` waits for B."""
            m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
            with m.If(bus.awready):
                m.d.sync += aw_done.eq(1)
            with m.If(bus.wready):
                m.d.sync += w_done.eq(1)
            with m.If((aw_done | bus.awready) & (w_done | bus.wready)):
                m.next = next_state

        def finish(new_status, new_len=0):
            """End of an executed frame: remember it for duplicate detection, then reply."""
            m.d.sync += [last_seq.eq(seq), last_valid.eq(1), last_status.eq(new_status)]
            reply(new_status, new_len)

        with m.FSM():
            with m.State("HUNT"):
                with m.If(rx.valid & (rx_byte == REQUEST_SYNC)):
                    m.d.sync += [crc.eq(_CRC_INIT), index.eq(0), timer.eq(0), seq.eq(0),
                                 addr_far.eq(0)]
                    m.next = "HEADER"

            # -- receive: header, payload, CRC; an inter-byte gap abandons the frame ------
            for state in ("HEADER", "PAYLOAD", "CRC"):
                with m.State(state):
                    with m.If(rx.valid):
                        m.d.sync += [crc.eq(crc_in), index.eq(index + 1), timer.eq(0)]
                        if state == "HEADER":
                            fields = [cmd.eq(rx_byte), seq.eq(rx_byte)]
                            for low in range(0, 32, 8):
                                inside = max(0, min(8, reach - low))
                                field = []
                                if inside:
                                    field.append(addr[low:low + inside].eq(rx_byte[:inside]))
                                if inside < 8:
                                    field.append(addr_far.eq(addr_far | rx_byte[inside:].any()))
                                fields.append(field)
                            fields += [length[:8].eq(rx_byte), length[8:].eq(rx_byte)]
                            with m.Switch(index):
                                for i, field in enumerate(fields):
                                    with m.Case(i):
                                        m.d.sync += field
                            with m.If(index == len(fields) - 1):
                                m.d.sync += index.eq(0)
                                new_length = Cat(length[:8], rx_byte)
                                with m.If(above_constant(new_length, max_payload)):
                                    m.d.sync += status.eq(Status.TOO_LONG)
                                    m.next = "DISCARD"
                                with m.Elif(is_write & (new_length != 0)):
                                    m.next = "PAYLOAD"
                                with m.Else():
                                    m.next = "CRC"
                        elif state == "PAYLOAD":
                            m.d.comb += [wr.data.eq(rx_byte), wr.en.eq(1)]
                            with m.If(index == length - 1):
                                m.d.sync += index.eq(0)
                                m.next = "CRC"
                        else:
                            with m.If(index == 1):
                                with m.If(crc_in == 0):
                                    m.next = "EXECUTE"
                                with m.Else():
                                    m.d.sync += [status.eq(Status.CRC_ERROR), timer.eq(0)]
                                    m.next = "DISCARD"
                    with m.Else():
                        m.d.sync += timer.eq(timer + 1)
                        with m.If(timer == self._timeout - 1):
                            reply(Status.TIMEOUT)

            with m.State("DISCARD"):
                # Let the rest of a damaged frame pass, so the NAK meets a quiet line.
                with m.If(rx.valid):
                    m.d.sync += timer.eq(0)
                with m.Else():
                    m.d.sync += timer.eq(timer + 1)
                    with m.If(timer == self._timeout - 1):
                        reply(status)

            # -- execute -----------------------------------------------------------------
            with m.State("EXECUTE"):
                m.d.sync += [target.eq(addr), index.eq(0), fetched.eq(0),
                             aw_done.eq(0), w_done.eq(0)]
                csr_ok = ((addr[:2] == 0) & ~addr_far
                          & ~above_constant(end, 1 << self._csr_addr_width))
                mem_ok = ~addr_far & ~above_constant(end, self._memory_bytes)
                reg_len_ok = (length != 0) & (length[:2] == 0)
                with m.If(is_write & last_valid & (seq == last_seq)):
                    reply(last_status)          # a retry of the write executed last
                with m.Else():
                    with m.Switch(cmd):
                        with m.Case(Command.PING):
                            with m.If(length != 0):
                                finish(Status.BAD_LENGTH)
                            with m.Else():
                                m.next = "PING"
                        with m.Case(Command.REG_READ, Command.REG_WRITE):
                            with m.If(~reg_len_ok):
                                finish(Status.BAD_LENGTH)
                            with m.Elif(~csr_ok):
                                finish(Status.BAD_ADDRESS)
                            with m.Else():
                                with m.If(cmd == Command.REG_READ):
                                    m.next = "REG_READ_AR"
                                with m.Else():
                                    m.next = "REG_WRITE_LOAD"
                        with m.Case(Command.MEM_READ, Command.MEM_WRITE):
                            with m.If(length == 0):
                                finish(Status.BAD_LENGTH)
                            with m.Elif(~mem_ok):
                                finish(Status.BAD_ADDRESS)
                            with m.Elif(cmd == Command.MEM_READ):
                                m.next = "MEM_READ_AR"
                            with m.Else():
                                m.next = "MEM_WRITE_LOAD"
                        with m.Default():
                            finish(Status.BAD_COMMAND)

            with m.State("PING"):
                m.d.comb += [wr.en.eq(1), wr.data.eq(ping_info.word_select(index[:3], 8))]
                m.d.sync += index.eq(index + 1)
                with m.If(index == _PING_BYTES - 1):
                    finish(Status.OK, _PING_BYTES)

            # CSR reads: one AXI4-Lite read per word, its bytes into the buffer.
            with m.State("REG_READ_AR"):
                m.d.comb += csr.arvalid.eq(1)
                with m.If(csr.arready):
                    m.next = "REG_READ_R"
            with m.State("REG_READ_R"):
                m.d.comb += csr.rready.eq(1)
                with m.If(csr.rvalid):
                    m.d.sync += [word.eq(csr.rdata), target.eq(target + 4)]
                    with m.If(csr.rresp != RESP_OKAY):
                        finish(Status.BUS_ERROR)
                    with m.Else():
                        m.next = "REG_READ_STORE"
            with m.State("REG_READ_STORE"):
                m.d.comb += [wr.en.eq(1), wr.data.eq(word.word_select(index[:2], 8))]
                m.d.sync += index.eq(index + 1)
                with m.If(index[:2] == 3):
                    with m.If(index == length - 1):
                        finish(Status.OK, length)
                    with m.Else():
                        m.next = "REG_READ_AR"

            # CSR writes: gather a word from the buffer, then one AXI4-Lite write.
            with m.State("REG_WRITE_LOAD"):
                m.d.sync += fetched.eq(~fetched)
                with m.If(fetched):
                    m.d.sync += [word.word_select(index[:2], 8).eq(rd.data),
                                 index.eq(index + 1)]
                    with m.If(index[:2] == 3):
                        m.next = "REG_WRITE_AW"
            with m.State("REG_WRITE_AW"):
                write_address_and_data(csr, "REG_WRITE_B")
            with m.State("REG_WRITE_B"):
                m.d.comb += csr.bready.eq(1)
                with m.If(csr.bvalid):
                    m.d.sync += [target.eq(target + 4), aw_done.eq(0), w_done.eq(0)]
                    with m.If(csr.bresp != RESP_OKAY):
                        finish(Status.BUS_ERROR)
                    with m.Elif(index == length):
                        finish(Status.OK)
                    with m.Else():
                        m.next = "REG_WRITE_LOAD"

            # Memory reads: one single-beat AXI4 read per byte.
            with m.State("MEM_READ_AR"):
                m.d.comb += mem.arvalid.eq(1)
                with m.If(mem.arready):
                    m.next = "MEM_READ_R"
            with m.State("MEM_READ_R"):
                m.d.comb += mem.rready.eq(1)
                with m.If(mem.rvalid):
                    lane_data = (mem.rdata.word_select(target[:lane_bits], 8) if lane_bits
                                 else mem.rdata)
                    m.d.comb += [wr.en.eq(1), wr.data.eq(lane_data)]
                    m.d.sync += [index.eq(index + 1), target.eq(target + 1)]
                    with m.If(mem.rresp != RESP_OKAY):
                        finish(Status.BUS_ERROR)
                    with m.Elif(index == length - 1):
                        finish(Status.OK, length)
                    with m.Else():
                        m.next = "MEM_READ_AR"

            # Memory writes: one single-beat AXI4 write with one byte strobe per byte.
            with m.State("MEM_WRITE_LOAD"):
                m.d.sync += fetched.eq(~fetched)
                with m.If(fetched):
                    m.d.sync += word[:8].eq(rd.data)
                    m.next = "MEM_WRITE_AW"
            with m.State("MEM_WRITE_AW"):
                write_address_and_data(mem, "MEM_WRITE_B")
            with m.State("MEM_WRITE_B"):
                m.d.comb += mem.bready.eq(1)
                with m.If(mem.bvalid):
                    m.d.sync += [index.eq(index + 1), target.eq(target + 1),
                                 aw_done.eq(0), w_done.eq(0)]
                    with m.If(mem.bresp != RESP_OKAY):
                        finish(Status.BUS_ERROR)
                    with m.Elif(index == length - 1):
                        finish(Status.OK)
                    with m.Else():
                        m.next = "MEM_WRITE_LOAD"

            # -- reply: header, payload from the buffer, CRC (most significant byte first)
            with m.State("REPLY_HEADER"):
                header = Cat(Const(REPLY_SYNC, 8), status, seq, reply_len,
                             Const(0, 16 - len(reply_len)))
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header.word_select(index[:3], 8)),
                             crc_byte.eq(tx.payload)]
                with m.If(tx.ready):
                    m.d.sync += [index.eq(index + 1), crc.eq(Mux(index == 0, _CRC_INIT, crc_in))]
                    with m.If(index == 4):
                        m.d.sync += [index.eq(0), fetched.eq(0)]
                        with m.If(reply_len != 0):
                            m.next = "REPLY_PAYLOAD"
                        with m.Else():
                            m.next = "REPLY_CRC"
            with m.State("REPLY_PAYLOAD"):
                m.d.sync += fetched.eq(1)
                m.d.comb += [tx.valid.eq(fetched), tx.payload.eq(rd.data), crc_byte.eq(rd.data)]
                with m.If(fetched & tx.ready):
                    m.d.sync += [crc.eq(crc_in), index.eq(index + 1),
                                 fetched.eq(0)]
                    with m.If(index == reply_len - 1):
                        m.d.sync += index.eq(0)
                        m.next = "REPLY_CRC"
            with m.State("REPLY_CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(Mux(index == 0, crc[8:], crc[:8]))]
                with m.If(tx.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == 1):
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

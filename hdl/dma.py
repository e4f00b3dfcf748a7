"""AXI4 master DMA engines: the accelerator's only path to external memory.

A command names one contiguous byte range at any byte alignment. Between the engines and
the rest of the accelerator, the bytes of a command travel *lane-0 aligned*: the command's
first byte is in byte lane 0 of its first beat, bytes are contiguous, and every beat but
the last of a command is full. On the bus, beats are naturally aligned: the engines shift
bytes between the two views (:class:`DmaReader` after the R channel, :class:`DmaWriter`
before the W channel), so no other block ever deals with the byte offset of an address.

Both engines split a command into INCR bursts greedily: each burst is as long as the
command's remaining beats, ``config.max_burst`` and the distance to the next 4 KiB boundary
allow. So a command of ``n`` bus beats starting at beat ``p`` of a 4 KiB page takes
:func:`burst_count` bursts.

The reader drives the AR and R channels, the writer AW, W and B; :func:`connect_axi4` (or
the :class:`AXI4Master` wrapper) puts both on one :class:`~systole.hdl.axi.AXI4Signature`
port.
"""

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import above_constant, below_constant
from .axi import AXI4Signature, BURST_INCR
from .blockram import BlockRAMFIFO

__all__ = ["MAX_LENGTH", "LENGTH_SHAPE", "TAG_SHAPE", "ReadCommand", "ReadData",
           "WriteCommand", "WriteData", "axi4_signature", "read_channels", "write_channels",
           "PAGE_BYTES", "burst_count", "DmaReader", "DmaWriter", "AXI4Master", "connect_axi4"]

#: Longest command, in bytes (one command = one ``length`` field of 17 bits).
MAX_LENGTH = 65536
LENGTH_SHAPE = unsigned(17)
TAG_SHAPE = unsigned(2)

#: AXI4: no burst crosses a 4 KiB boundary.
PAGE_BYTES = 4096


def ReadCommand(config):
    """One read: ``length`` bytes (1 to 65536) from byte address ``addr``.

    ``tag`` is returned with every data beat of the command.
    """
    return data.StructLayout({
        "addr": config.addr_width,
        "length": LENGTH_SHAPE,
        "tag": TAG_SHAPE,
    })


def ReadData(config):
    """One beat of read data, lane-0 aligned (see the module documentation).

    ``count`` is the number of valid bytes, lanes 0 to ``count - 1`` (``bus_bytes`` on every
    beat but the last of a command); ``last`` marks the command's final beat.
    """
    return data.StructLayout({
        "data": config.bus_width,
        "count": range(config.bus_bytes + 1),
        "last": 1,
        "tag": TAG_SHAPE,
    })


def WriteCommand(config):
    """One write: ``length`` bytes (1 to 65536) to byte address ``addr``."""
    return data.StructLayout({
        "addr": config.addr_width,
        "length": LENGTH_SHAPE,
    })


def WriteData(config):
    """One beat of write data, lane-0 aligned exactly like :func:`ReadData`.

    The writer takes the byte count from the command; ``count`` and ``last`` are carried so
    that a producer can be checked, and must agree with the command.
    """
    return data.StructLayout({
        "data": config.bus_width,
        "count": range(config.bus_bytes + 1),
        "last": 1,
    })


def axi4_signature(config):
    """The accelerator's AXI4 memory port: ``config.addr_width`` by ``config.bus_width``."""
    return AXI4Signature(addr_width=config.addr_width, data_width=config.bus_width)


def _channels(config, prefixes):
    full = axi4_signature(config)
    return wiring.Signature({name: member for name, member in full.members.items()
                             if name.startswith(prefixes)})


def read_channels(config):
    """The AR and R members of :func:`axi4_signature` (AMBA names), manager's view."""
    return _channels(config, ("ar", "r"))


def write_channels(config):
    """The AW, W and B members of :func:`axi4_signature` (AMBA names), manager's view."""
    return _channels(config, ("aw", "w", "b"))


def burst_count(addr, length, *, bus_bytes, max_burst):
    """Number of INCR bursts the engines use for ``length`` bytes at byte address ``addr``.

    The reference the tests and the performance model compare the hardware against.
    """
    beat = addr // bus_bytes
    beats = (addr + length + bus_bytes - 1) // bus_bytes - beat
    page_beats = PAGE_BYTES // bus_bytes
    bursts = 0
    while beats:
        n = min(beats, max_burst, page_beats - beat % page_beats)
        beat += n
        beats -= n
        bursts += 1
    return bursts


def _log2(n):
    return n.bit_length() - 1


def _check_max_length(max_length):
    if isinstance(max_length, bool) or not isinstance(max_length, int) \
            or not 1 <= max_length <= MAX_LENGTH:
        raise ValueError(f"max_length must be an integer between 1 and {MAX_LENGTH}, "
                         f"not {max_length!r}")


def _rotate_up(value, offset):
    """``value`` rotated up by ``offset`` bytes: byte ``i`` of the result is byte
    ``(i - offset) % (len(value) // 8)`` of ``value``. One 2:1 multiplexer per bit and
    offset bit."""
    for bit in range(len(offset)):
        value = Mux(offset[bit], value.rotate_left(8 << bit), value)
    return value


def _rotate_down(value, offset):
    """``value`` rotated down by ``offset`` bytes (see :func:`_rotate_up`): byte ``i`` of
    the result is byte ``(i + offset) % (len(value) // 8)`` of ``value``."""
    for bit in range(len(offset)):
        value = Mux(offset[bit], value.rotate_right(8 << bit), value)
    return value


def _spills(offset, end_lane):
    """Whether a command takes one bus beat more than lane-0 aligned beats, from its byte
    ``offset`` in its first bus beat and ``end_lane``, the offset plus the length modulo
    the bus width: its last lane-0 aligned beat then reaches past the bus beat it starts
    in."""
    return (end_lane != 0) & (end_lane <= offset)


class _TwoEntryQueue(wiring.Component):
    """:class:`~amaranth.lib.fifo.SyncFIFO` of depth 2, as seen at its ports on every cycle
    (``r_data`` when ``r_rdy`` is high), with the head entry always in one register.

    ``r_data`` is that register rather than a multiplexer over both entries: the head takes
    the second entry or the written one, the second entry takes every write it can.

    Attributes
    ----------
    w_data : In(width)
    w_en : In(1)
    w_rdy : Out(1)
    r_data : Out(width)
    r_en : In(1)
    r_rdy : Out(1)
    """

    def __init__(self, width):
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        second = Signal.like(self.w_data)
        second_full = Signal()
        m.d.comb += self.w_rdy.eq(~second_full)
        read = self.r_rdy & self.r_en
        write = self.w_rdy & self.w_en
        with m.If(~second_full):
            m.d.sync += second.eq(self.w_data)
        with m.If(~self.r_rdy | self.r_en):
            m.d.sync += self.r_data.eq(Mux(second_full, second, self.w_data))
        m.d.sync += [
            self.r_rdy.eq(write | second_full | (self.r_rdy & ~read)),
            second_full.eq(Mux(second_full, ~read, write & self.r_rdy & ~read)),
            Assert(~second_full | self.r_rdy, "two-entry queue: second entry without a head"),
        ]
        return m


def _queue(*, width, depth):
    """A queue with the ports and the behaviour of ``SyncFIFO(width=width, depth=depth)``:
    in block RAM from three entries on, in registers below."""
    if depth > 2:
        return BlockRAMFIFO(width=width, depth=depth)
    if depth == 2:
        return _TwoEntryQueue(width)
    return fifo.SyncFIFO(width=width, depth=depth)


def _error_and_halt(m, *, bad, clear, error, halted, drained):
    """Sticky ``error`` on a bad response; ``halted`` from then until ``clear`` (or an
    earlier one) has been seen and the engine has ``drained``. Shared by both engines."""
    with m.If(bad):
        m.d.sync += [error.eq(1), halted.eq(1)]
    with m.Else():
        with m.If(clear):
            m.d.sync += error.eq(0)
        with m.If(halted & (~error | clear) & drained):
            m.d.sync += halted.eq(0)


def _queue_invariants(m, engine, outstanding, limit, queues):
    """What an engine relies on and checks on every clock edge: at most ``limit`` bursts
    in flight, and no entry written into a full queue (``queues``, by name: the engine
    writes them without looking at ``w_rdy``, or where it does, the check says that
    its condition is right)."""
    m.d.sync += Assert(outstanding <= limit, f"{engine}: more than {limit} bursts in flight")
    for name, queue in queues.items():
        m.d.sync += Assert(~queue.w_en | queue.w_rdy, f"{engine}: {name} written while full")


class _BurstPlanner:
    """Address-channel half shared by both engines: one command at a time into bursts.

    Drives ``valid``/``addr``/``len``/``size``/``burst`` of an AR or AW channel from
    registers. A burst is *loaded* into the channel registers when the channel is free and
    ``allow`` is high; it is counted as outstanding from then on (one cycle earlier than
    the handshake, which only makes the limit conservative).
    """

    def __init__(self, config, m, *, valid, ready, addr, len_, size, burst, id_, allow,
                 max_length=MAX_LENGTH):
        bus_bytes = config.bus_bytes
        self.shift = shift = _log2(bus_bytes)
        max_beats = (max_length + 2 * (bus_bytes - 1)) // bus_bytes

        len_width = Shape.cast(range(config.max_burst)).width
        self.busy = busy = Signal()
        self.next_beat = next_beat = Signal(config.addr_width - shift)   # bus beat address
        self.beats_left = beats_left = Signal(range(max_beats))     # bus beats, minus one

        page_beats = PAGE_BYTES // bus_bytes
        page_beat = next_beat[:12 - shift]
        # The page end is less than max_burst beats away, against the address bits; the
        # beats to it, minus one, are then the complement of the position's low bits.
        near_page_end = above_constant(page_beat, page_beats - config.max_burst)
        cap = Mux(near_page_end, ~page_beat[:len_width], config.max_burst - 1)
        rest_fits = beats_left <= cap           # this burst is the command's last
        self.length = length = Signal(len_width)     # AxLEN of the burst loaded now
        m.d.comb += length.eq(Mux(rest_fits, beats_left, cap))

        self.load = load = Signal()
        self.finishing = finishing = Signal()        # the command's last burst loads now
        m.d.comb += [
            load.eq(busy & allow & (~valid | ready)),
            finishing.eq(load & rest_fits),
            size.eq(shift),
            burst.eq(BURST_INCR),
            id_.eq(0),
        ]
        with m.If(load):
            m.d.sync += [
                valid.eq(1),
                addr.eq(Cat(Const(0, shift), next_beat)),
                len_.eq(length),
                next_beat.eq(next_beat + length + 1),
                beats_left.eq(beats_left - length - 1),
            ]
            with m.If(finishing):
                m.d.sync += busy.eq(0)
        with m.Elif(ready):
            m.d.sync += valid.eq(0)

    def start(self, m, addr, end):
        """Begin a command at byte address ``addr`` whose bytes end ``end`` bytes after the
        start of its first bus beat (the offset plus the length). ``sync`` statements, so
        call after the ``load`` logic."""
        m.d.sync += [
            self.busy.eq(1),
            self.next_beat.eq(addr[self.shift:]),
            self.beats_left.eq((end - 1) >> self.shift),
        ]


class DmaReader(wiring.Component):
    """AXI4 read engine: byte-range commands in, lane-0 aligned data beats out.

    Each command is split into INCR bursts (see :func:`burst_count`) whose first address
    is the command's address aligned down to the bus width. Up to
    ``config.max_outstanding`` bursts are in flight, and bursts of later commands are
    issued while data of earlier ones is still returning, so a memory that is always ready
    delivers one beat per cycle whatever its latency, given enough beats in flight
    (``max_outstanding * max_burst`` beats cover a latency of about that many cycles).

    Realignment keeps the previous R beat: output beat ``j`` of a command at byte offset
    ``o`` is bytes ``o`` .. ``o + bus_bytes - 1`` of the bus beats ``j`` and ``j + 1``
    concatenated. When the command's last bytes all come from its last bus beat, one extra
    output beat is emitted after it (overlapping the next command's first bus beat when
    that beat alone produces no output). Output beats pass through a two-entry FIFO, so
    ``rready`` never depends combinationally on ``data.ready``.

    An R beat with SLVERR or DECERR sets the sticky ``error`` and halts the reader: no
    further AR is issued, the remaining beats of the bursts already issued are accepted
    and discarded, the command being split, the queued commands and the output beats not
    yet delivered are discarded (``data.valid`` may fall without a handshake), and
    ``idle`` rises once the bus has drained. While ``error`` is set, commands are accepted
    and dropped. After ``clear``, commands wait (``cmd.ready`` low) until the drain is
    complete and then run normally; ``idle`` is low until then.

    Parameters
    ----------
    config : SystoleConfig
    max_length : int
        Longest command the user issues, in bytes (at most :data:`MAX_LENGTH`, the
        default); the engine's length and beat registers are sized for it.

    Attributes
    ----------
    bus : Out(read_channels(config))
        AR and R channels of the AXI4 memory port.
    cmd : In(stream.Signature(ReadCommand(config)))
    data : Out(stream.Signature(ReadData(config)))
    error : Out(1)
        Sticky: an R beat carried SLVERR or DECERR, or ``stop`` was raised.
    stop : In(1)
        A pulse: halt as after an error response (the job was aborted).
    clear : In(1)
        Clears ``error`` (a pulse; an error in the same cycle wins).
    idle : Out(1)
        No command pending, no burst outstanding, no data beat undelivered (and not
        draining after ``clear``).
    ar_fire : Out(1)
        An AR handshake happened this cycle (one burst).
    r_fire : Out(1)
        An R handshake happened this cycle (one bus beat, ``bus_bytes`` bytes).
    """

    def __init__(self, config, *, max_length=MAX_LENGTH):
        _check_max_length(max_length)
        self._config = config
        self._max_length = max_length
        super().__init__({
            "bus": Out(read_channels(config)),
            "cmd": In(stream.Signature(ReadCommand(config))),
            "data": Out(stream.Signature(ReadData(config))),
            "error": Out(1),
            "stop": In(1),
            "clear": In(1),
            "idle": Out(1),
            "ar_fire": Out(1),
            "r_fire": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        bus = self.bus
        nbytes = config.bus_bytes
        shift = _log2(nbytes)

        halted = Signal()       # after an error, until the bus has drained
        dropping = halted & self.error     # ... and until `clear`: commands are discarded
        outstanding = Signal(range(config.max_outstanding + 1))

        planner = _BurstPlanner(config, m, valid=bus.arvalid, ready=bus.arready,
                                addr=bus.araddr, len_=bus.arlen, size=bus.arsize,
                                burst=bus.arburst, id_=bus.arid,
                                allow=~halted & (outstanding != config.max_outstanding),
                                max_length=self._max_length)
        length_shape = range(self._max_length + 1)

        # What the R side needs of each command, in command order.
        info_layout = data.StructLayout({
            "offset": shift, "length": length_shape, "tag": TAG_SHAPE,
            # Misaligned and longer than its first bus beat: that beat completes no output
            # beat.
            "waits": 1,
            # ... and not one bus beat more than output beats: a flush beat ends it.
            "flushes": 1,
        })
        info_fifo = m.submodules.info_fifo = BlockRAMFIFO(
            width=info_layout.size, depth=config.max_outstanding + 2)
        out_layout = ReadData(config)
        out_queue = m.submodules.out_queue = _TwoEntryQueue(out_layout.size)
        # A flush beat is the last of its command and holds fewer than nbytes bytes.
        flush_layout = data.StructLayout({
            "data": config.bus_width - 8, "count": range(nbytes), "tag": TAG_SHAPE})

        # -- command intake ---------------------------------------------------------------
        cmd = self.cmd.payload
        cmd_length = cmd.length[:Shape.cast(length_shape).width]
        new_info = data.View(info_layout, info_fifo.w_data)
        take = self.cmd.valid & self.cmd.ready
        offset_in = cmd.addr[:shift]
        end_in = offset_in + cmd_length             # bytes from the first bus beat's start
        end_lane_in = end_in[:shift]
        waits = (offset_in != 0) & above_constant(end_in, nbytes)
        m.d.comb += [
            self.cmd.ready.eq(dropping |
                              (~halted & (~planner.busy | planner.finishing) & info_fifo.w_rdy)),
            new_info.offset.eq(offset_in),
            new_info.length.eq(cmd_length),
            new_info.tag.eq(cmd.tag),
            new_info.waits.eq(waits),
            new_info.flushes.eq(waits & ~_spills(offset_in, end_lane_in)),
            info_fifo.w_en.eq(take & ~halted),
        ]
        with m.If(take & ~halted):
            planner.start(m, cmd.addr, end_in)

        # -- R side: realign bus beats into lane-0 aligned output beats ----------------------
        head = data.View(info_layout, info_fifo.r_data)
        first = Signal(init=1)          # the next bus beat is the head command's first
        remaining = Signal(length_shape)  # bytes of the head command still to output
        hold = Signal(config.bus_width)   # previous bus beat, rotated like `rotated`
        flush = Signal()                 # an output beat made of `flush_beat` is owed
        flush_beat = Signal(flush_layout)

        offset = head.offset
        aligned = offset == 0
        rem = Mux(first, head.length, remaining)
        holds_only = first & head.waits
        ends = ~above_constant(rem, nbytes)
        after = rem - nbytes
        # A flushing command's last bus beat is the one that finds more than nbytes but at
        # most 2 * nbytes bytes left (earlier ones find more): the rest after a full output
        # beat is in its upper lanes, and one flush beat follows.
        owes_flush = head.flushes & ~ends & ~above_constant(rem, 2 * nbytes)

        # Output lane i takes byte i + offset, if that is below nbytes (`upper`), of this bus
        # beat when the output beat starts in it (`own`), else of the previous one; and
        # otherwise byte i + offset - nbytes of this bus beat (none when the output beat
        # starts in it). Each is lane i of its bus beat rotated down by the offset.
        rotated = _rotate_down(bus.rdata, offset)
        upper = [below_constant(offset, nbytes - lane) for lane in range(nbytes)]
        own = first | aligned           # the output beat starts in this bus beat
        lanes = [rotated.word_select(lane, 8) for lane in range(nbytes)]
        held = [hold.word_select(lane, 8) for lane in range(nbytes)]

        fire = bus.rvalid & bus.rready
        bad = fire & bus.rresp[1]               # SLVERR or DECERR
        good = fire & ~bad & ~halted
        m.d.comb += [
            bus.rready.eq(halted | (info_fifo.r_rdy & (holds_only |
                                                       (~flush & out_queue.w_rdy)))),
            self.r_fire.eq(fire),
            self.ar_fire.eq(bus.arvalid & bus.arready),
        ]

        beat_out = Signal(out_layout)
        m.d.comb += [
            beat_out.data.eq(Cat(Mux(upper[lane], Mux(own, lanes[lane], held[lane]),
                                     Mux(own, 0, lanes[lane]))
                                 for lane in range(nbytes))),
            beat_out.count.eq(Mux(ends, rem, nbytes)),
            beat_out.last.eq(ends),
            beat_out.tag.eq(head.tag),
        ]
        flushed = Signal(out_layout)
        m.d.comb += [
            flushed.data.eq(flush_beat.data),
            flushed.count.eq(flush_beat.count),
            flushed.last.eq(1),
            flushed.tag.eq(flush_beat.tag),
        ]
        emit_flush = flush & out_queue.w_rdy & ~halted
        emit_beat = good & ~holds_only
        m.d.comb += [
            out_queue.w_en.eq(emit_flush | emit_beat),
            out_queue.w_data.eq(Mux(emit_flush, flushed, beat_out)),
        ]
        with m.If(emit_flush):
            m.d.sync += flush.eq(0)

        pop = Signal()
        with m.If(good):
            m.d.sync += [hold.eq(rotated), first.eq(0), remaining.eq(rem)]
            with m.If(~holds_only):
                m.d.sync += remaining.eq(after)
                with m.If(ends):
                    m.d.comb += pop.eq(1)
                    m.d.sync += first.eq(1)
                with m.Elif(owes_flush):
                    m.d.comb += pop.eq(1)
                    m.d.sync += [
                        first.eq(1),
                        flush.eq(1),
                        # The upper lanes, as a first bus beat gives them; the top lane
                        # never holds a flushed byte (the offset is not 0).
                        flush_beat.data.eq(Cat(Mux(upper[lane], lanes[lane], 0)
                                               for lane in range(nbytes - 1))),
                        flush_beat.count.eq(after),
                        flush_beat.tag.eq(head.tag),
                    ]
        m.d.comb += info_fifo.r_en.eq(pop | halted)

        m.d.comb += [
            self.data.valid.eq(out_queue.r_rdy & ~halted),
            self.data.payload.eq(out_queue.r_data),
            out_queue.r_en.eq(self.data.ready | halted),
        ]

        # -- outstanding bursts, errors ------------------------------------------------------
        m.d.sync += outstanding.eq(outstanding + planner.load - (fire & bus.rlast))
        # Halted until the bus has drained and the queues have been emptied (one entry
        # per cycle).
        _error_and_halt(m, bad=bad | self.stop, clear=self.clear, error=self.error, halted=halted,
                        drained=(outstanding == 0) & ~info_fifo.r_rdy & ~out_queue.r_rdy)
        with m.If(halted):
            m.d.sync += [planner.busy.eq(0), first.eq(1), flush.eq(0)]
        _queue_invariants(m, "DmaReader", outstanding, config.max_outstanding,
                          {"info_fifo": info_fifo, "out_queue": out_queue})

        m.d.comb += self.idle.eq(~planner.busy & (outstanding == 0) & ~info_fifo.r_rdy &
                                 ~flush & ~out_queue.r_rdy & ~(halted & ~self.error))
        return m


class DmaWriter(wiring.Component):
    """AXI4 write engine: byte-range commands and lane-0 aligned data in, bursts out.

    Each command is split into INCR bursts exactly as :class:`DmaReader` splits reads.
    The W side shifts the lane-0 aligned input into the address's byte lanes (bus beat
    ``j`` is the upper ``o`` bytes of input beat ``j - 1`` followed by the lower bytes of
    input beat ``j``, ``o`` being the address's byte offset), emitting one extra bus beat
    after the last input beat when the command's end spills into it. WSTRB comes from the
    command alone (first and last beats partial), so no byte outside
    ``[addr, addr + length)`` is ever written, whatever the data stream says.

    The W side starts a burst only once its AW has been loaded (AWVALID asserted); it never
    waits for AWREADY. Up to ``config.max_outstanding`` bursts await their B response.

    A B response with SLVERR or DECERR sets the sticky ``error`` and halts the writer: no
    further AW is issued, bursts whose AW is already out are completed with WSTRB = 0
    (writing nothing, and taking no data), the queued commands are discarded, and ``idle``
    rises once every B response is in. While ``error`` is set, commands and data beats are
    accepted and dropped (so a producer stopped mid-beat can finish its handshake). After
    ``clear``, commands and data wait (``ready`` low) until the drain is complete and then
    run normally; ``idle`` is low until then.

    Parameters
    ----------
    config : SystoleConfig
    max_length : int
        Longest command the user issues, in bytes (at most :data:`MAX_LENGTH`, the
        default); the engine's length and beat registers are sized for it.

    Attributes
    ----------
    bus : Out(write_channels(config))
        AW, W and B channels of the AXI4 memory port.
    cmd : In(stream.Signature(WriteCommand(config)))
    data : In(stream.Signature(WriteData(config)))
    error : Out(1)
        Sticky: a B response carried SLVERR or DECERR, or ``stop`` was raised.
    stop : In(1)
        A pulse: halt as after an error response (the job was aborted).
    clear : In(1)
        Clears ``error`` (a pulse; an error in the same cycle wins).
    idle : Out(1)
        No command pending, no beat waiting, every B response received (and not draining
        after ``clear``).
    aw_fire : Out(1)
        An AW handshake happened this cycle (one burst).
    w_fire : Out(1)
        A W handshake happened this cycle.
    w_bytes : Out(range(bus_bytes + 1))
        Bytes written by this cycle's W handshake (population count of WSTRB), else 0.
    """

    def __init__(self, config, *, max_length=MAX_LENGTH):
        _check_max_length(max_length)
        self._config = config
        self._max_length = max_length
        super().__init__({
            "bus": Out(write_channels(config)),
            "cmd": In(stream.Signature(WriteCommand(config))),
            "data": In(stream.Signature(WriteData(config))),
            "error": Out(1),
            "stop": In(1),
            "clear": In(1),
            "idle": Out(1),
            "aw_fire": Out(1),
            "w_fire": Out(1),
            "w_bytes": Out(range(config.bus_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        bus = self.bus
        nbytes = config.bus_bytes
        shift = _log2(nbytes)
        length_shape = range(self._max_length + 1)

        halted = Signal()       # after an error, until the bus has drained
        dropping = halted & self.error     # ... and until `clear`: commands are discarded
        outstanding = Signal(range(config.max_outstanding + 1))   # AW loaded, B not in

        planner = _BurstPlanner(config, m, valid=bus.awvalid, ready=bus.awready,
                                addr=bus.awaddr, len_=bus.awlen, size=bus.awsize,
                                burst=bus.awburst, id_=bus.awid,
                                allow=~halted & (outstanding != config.max_outstanding),
                                max_length=self._max_length)

        # What the W side needs of each command, in command order.
        info_layout = data.StructLayout({
            "offset": shift,
            "end_lane": shift,                  # bytes in the last bus beat, 0 if full
            "spill": 1,                         # one bus beat more than input beats
        })
        info_fifo = m.submodules.info_fifo = BlockRAMFIFO(
            width=info_layout.size, depth=config.max_outstanding + 2)
        # The bursts whose AW is loaded and whose W is not complete (each awaits its B, so
        # there are at most max_outstanding), as the planner cut them.
        burst_layout = data.StructLayout({
            "len": range(config.max_burst),     # AWLEN
            "final": 1,                         # the command's last burst
        })
        burst_fifo = m.submodules.burst_fifo = _queue(
            width=burst_layout.size, depth=config.max_outstanding)

        # -- command intake ---------------------------------------------------------------
        cmd = self.cmd.payload
        cmd_length = cmd.length[:Shape.cast(length_shape).width]
        new_info = data.View(info_layout, info_fifo.w_data)
        take = self.cmd.valid & self.cmd.ready
        offset_in = cmd.addr[:shift]
        end_in = offset_in + cmd_length             # bytes from the first bus beat's start
        end_lane_in = end_in[:shift]
        m.d.comb += [
            self.cmd.ready.eq(dropping |
                              (~halted & (~planner.busy | planner.finishing) & info_fifo.w_rdy)),
            new_info.offset.eq(offset_in),
            new_info.end_lane.eq(end_lane_in),
            new_info.spill.eq(_spills(offset_in, end_lane_in)),
            info_fifo.w_en.eq(take & ~halted),
        ]
        with m.If(take & ~halted):
            planner.start(m, cmd.addr, end_in)
        new_burst = data.View(burst_layout, burst_fifo.w_data)
        m.d.comb += [
            new_burst.len.eq(planner.length),
            new_burst.final.eq(planner.finishing),
            burst_fifo.w_en.eq(planner.load),
        ]

        # -- W side --------------------------------------------------------------------------
        head = data.View(info_layout, info_fifo.r_data)
        burst = data.View(burst_layout, burst_fifo.r_data)
        first = Signal(init=1)              # the next bus beat is the head command's first
        burst_beat = Signal(range(config.max_burst))   # beats already sent of this burst
        # Lanes of the previous input beat, rotated like `rotated`, that later bus beats
        # take (all but the top one: the offset is not 0 when they do).
        prev = Signal(config.bus_width - 8)
        w_bytes = Signal.like(self.w_bytes)

        offset = head.offset
        starting = burst_beat == 0
        last = burst_beat == burst.len
        final = last & burst.final
        needs_input = ~(head.spill & final)

        end_lane = head.end_lane
        lanes = [(~first | (lane >= offset)) & (~final | (end_lane == 0) | (lane < end_lane))
                 for lane in range(nbytes)]
        strobe = Cat(lanes)

        slot_free = ~bus.wvalid | bus.wready
        go = (info_fifo.r_rdy & slot_free & burst_fifo.r_rdy &
              (halted | ~needs_input | self.data.valid))
        m.d.comb += self.data.ready.eq(dropping | (~halted & go & needs_input))

        # Bus lane i takes input byte i - offset of this beat, or of the previous one if
        # i < offset: lane i of either, rotated up by the offset.
        rotated = _rotate_up(self.data.payload.data, offset)
        with m.If(go):
            m.d.sync += [
                bus.wvalid.eq(1),
                bus.wdata.eq(Cat(*(Mux(lane < offset, prev.word_select(lane, 8),
                                       rotated.word_select(lane, 8))
                                   for lane in range(nbytes - 1)),
                                 rotated.word_select(nbytes - 1, 8))),
                bus.wstrb.eq(Mux(halted, 0, strobe)),
                bus.wlast.eq(last),
                w_bytes.eq(Mux(halted, 0, sum(lanes))),
                prev.eq(rotated[:-8]),
                first.eq(0),
                burst_beat.eq(Mux(last, 0, burst_beat + 1)),
            ]
            with m.If(final):
                m.d.sync += first.eq(1)
        with m.Elif(bus.wready):
            m.d.sync += bus.wvalid.eq(0)

        # Halted and between bursts with no AW left to serve: drop the queued commands.
        drop = halted & starting & ~burst_fifo.r_rdy
        m.d.comb += [
            info_fifo.r_en.eq((go & final) | drop),
            burst_fifo.r_en.eq(go & last),
        ]
        with m.If(drop):
            m.d.sync += first.eq(1)

        w_fire = bus.wvalid & bus.wready
        m.d.comb += [
            self.aw_fire.eq(bus.awvalid & bus.awready),
            self.w_fire.eq(w_fire),
            self.w_bytes.eq(Mux(w_fire, w_bytes, 0)),
            bus.bready.eq(1),
        ]

        # -- outstanding bursts, errors ------------------------------------------------------
        b_fire = bus.bvalid
        bad = b_fire & bus.bresp[1]
        m.d.sync += outstanding.eq(outstanding + planner.load - b_fire)
        _error_and_halt(m, bad=bad | self.stop, clear=self.clear, error=self.error, halted=halted,
                        drained=(outstanding == 0) & ~info_fifo.r_rdy & ~bus.wvalid)
        with m.If(halted):
            m.d.sync += planner.busy.eq(0)
        # The burst queue is written on every AW load unchecked: its bursts await their
        # B, so the outstanding limit keeps room for the next one.
        _queue_invariants(m, "DmaWriter", outstanding, config.max_outstanding,
                          {"info_fifo": info_fifo, "burst_fifo": burst_fifo})

        m.d.comb += self.idle.eq(~planner.busy & (outstanding == 0) & ~info_fifo.r_rdy &
                                 ~bus.wvalid & ~(halted & ~self.error))
        return m


def connect_axi4(m, bus, *, reader=None, writer=None):
    """Drive the AXI4 port ``bus`` from a :class:`DmaReader` and a :class:`DmaWriter`.

    The reader owns AR and R, the writer AW, W and B; channels of a missing engine stay
    idle (their outputs are left at 0).
    """
    for engine in (reader, writer):
        if engine is None:
            continue
        for name, member in engine.bus.signature.members.items():
            ours, theirs = getattr(engine.bus, name), getattr(bus, name)
            if member.flow == wiring.Out:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)


class AXI4Master(wiring.Component):
    """A :class:`DmaReader` and a :class:`DmaWriter` sharing one AXI4 port.

    The engines' own ports (``reader.cmd``, ``writer.data`` ...) are connected directly by
    the parent module.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    bus : Out(axi4_signature(config))
    reader : DmaReader
    writer : DmaWriter
    """

    def __init__(self, config):
        self.reader = DmaReader(config)
        self.writer = DmaWriter(config)
        super().__init__({"bus": Out(axi4_signature(config))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = self.reader
        m.submodules.writer = self.writer
        connect_axi4(m, self.bus, reader=self.reader, writer=self.writer)
        return m

"""Host side of the board's UART bridge: frame codec, retries, and a port for the driver.

:class:`BridgePort` gives :class:`~systole.sim.driver.SystoleDriver` its four coroutines
(``read32``, ``write32``, ``read_memory``, ``write_memory``) over the framed protocol of
docs/host-protocol.md. It talks to a *link*, an object with three coroutines::

    await link.send(data)                 # bytes to the board
    await link.receive(count, timeout)    # up to count bytes; fewer after timeout seconds
    await link.drain(quiet)               # drop input until the line is quiet that long

:class:`SerialLink` makes a link of a pyserial ``Serial`` (a real board, or the simulated
board behind a pseudo-terminal); the cocotb testbench (``systole.sim.tb_board``) has one
that drives the UART pins in simulation. The protocol constants come from the gateware
(``systole.hdl.bridge``), declared once.

Every request is retried, with the same sequence number, when its reply is a NAK for a
damaged frame, is itself damaged, or does not come within ``timeout``. The board executes a
retried write only once (it acknowledges a repeat of the write it executed last without
executing it), so retries never repeat a CTRL.START or a W1C clear.
"""

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from ..formats import output_format
from ..hdl.bridge import (PROTOCOL_VERSION, REPLY_SYNC, REQUEST_SYNC, Command, Status,
                          crc16)
from . import golden
from .driver import GemmJob

__all__ = ["BridgeError", "Reply", "encode_request", "encode_reply", "decode_reply",
           "BridgePort", "SerialLink", "LinkStats", "BoardGemm", "gemm_layout",
           "run_board_gemm"]

#: Statuses that mean "the frame was damaged on the way": the host retries them.
RETRYABLE = frozenset({Status.CRC_ERROR, Status.TIMEOUT, Status.TOO_LONG})
_HEADER = struct.Struct("<BBIH")       # CMD SEQ ADDR LEN
_REPLY_HEADER = struct.Struct("<BBH")  # STATUS SEQ LEN


class BridgeError(RuntimeError):
    """A request failed: the board refused it (``status`` is a :class:`Status`), or no good
    reply came after every retry (``status`` is None)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: Status
    seq: int
    payload: bytes


def _with_crc(body):
    return body + crc16(body).to_bytes(2, "big")


def encode_request(command, seq, address, length, payload=b""):
    """One request frame: sync, CMD, SEQ, ADDR, LEN, payload, CRC (see the spec)."""
    command = Command(command)
    if not 0 <= seq < 256:
        raise ValueError(f"seq must be a byte, not {seq!r}")
    if not 0 <= address < 1 << 32:
        raise ValueError(f"address must fit 32 bits, not {address!r}")
    if not 0 <= length < 1 << 16:
        raise ValueError(f"length must fit 16 bits, not {length!r}")
    writes = command in (Command.REG_WRITE, Command.MEM_WRITE)
    if writes and len(payload) != length:
        raise ValueError(f"{command.name} of length {length} needs {length} payload bytes, "
                         f"not {len(payload)}")
    if not writes and payload:
        raise ValueError(f"{command.name} carries no payload")
    body = _HEADER.pack(command.value, seq, address, length) + bytes(payload)
    return bytes([REQUEST_SYNC]) + _with_crc(body)


def encode_reply(status, seq, payload=b""):
    """One reply frame (what the board sends; used by tests and models)."""
    body = _REPLY_HEADER.pack(Status(status).value, seq, len(payload)) + bytes(payload)
    return bytes([REPLY_SYNC]) + _with_crc(body)


def decode_reply(frame):
    """A :class:`Reply` from one whole reply frame, or ValueError saying what is wrong."""
    frame = bytes(frame)
    if len(frame) < 7 or frame[0] != REPLY_SYNC:
        raise ValueError(f"not a reply frame: {frame.hex()}")
    status, seq, length = _REPLY_HEADER.unpack(frame[1:5])
    if len(frame) != 7 + length:
        raise ValueError(f"reply of LEN {length} has {len(frame)} bytes, not {7 + length}")
    if crc16(frame[1:]) != 0:
        raise ValueError(f"reply CRC mismatch: {frame.hex()}")
    try:
        status = Status(status)
    except ValueError:
        raise ValueError(f"unknown reply status {status:#04x}") from None
    return Reply(status, seq, frame[5:5 + length])


@dataclass
class LinkStats:
    """What the host saw: requests, retries, and why it retried."""
    requests: int = 0
    retries: int = 0
    naks: dict = field(default_factory=dict)      # Status name -> count
    bad_replies: int = 0                          # damaged, stale or missing replies

    def as_dict(self):
        return {"requests": self.requests, "retries": self.retries, "naks": dict(self.naks),
                "bad_replies": self.bad_replies}


class BridgePort:
    """Registers and memory of a board through its UART bridge (the driver's port).

    Parameters
    ----------
    link : object
        See the module docstring.
    timeout : float
        Seconds to wait for the next byte of a reply before giving up on it (and retrying).
    retries : int
        Further attempts after the first, per request.
    quiet : float
        Seconds of silence that end a damaged reply before the request is retried.

    Call :meth:`connect` first: it PINGs the board and learns its payload size and memory.
    """

    def __init__(self, link, *, timeout=1.0, retries=8, quiet=0.05):
        self.link = link
        self.timeout = timeout
        self.retries = retries
        self.quiet = quiet
        self.seq = 0
        self.max_payload = 4            # until PING says more
        self.memory_bytes = None
        self.stats = LinkStats()

    async def connect(self):
        """PING the board; check the protocol version; return the PING fields as a dict."""
        info = await self.transact(Command.PING, 0, 0)
        version, _, max_payload, memory_bytes = struct.unpack("<BBHI", info)
        if version != PROTOCOL_VERSION:
            raise BridgeError(f"the board speaks host protocol version {version}; this host "
                              f"speaks {PROTOCOL_VERSION}")
        self.max_payload = max_payload
        self.memory_bytes = memory_bytes or (1 << 32)
        return {"version": version, "max_payload": max_payload, "memory_bytes": memory_bytes}

    async def _receive_exactly(self, count):
        data = await self.link.receive(count, self.timeout)
        if len(data) != count:
            raise _NoReply(f"reply stopped after {len(data)} of {count} bytes")
        return data

    async def _read_reply(self):
        # Hunt for the sync byte; anything before it is noise.
        skipped = 0
        while True:
            byte = await self.link.receive(1, self.timeout)
            if not byte:
                raise _NoReply("no reply" if not skipped else
                               f"no reply sync byte after {skipped} bytes of noise")
            if byte[0] == REPLY_SYNC:
                break
            skipped += 1
            if skipped > 4 * self.max_payload + 64:
                raise _NoReply(f"no reply sync byte in {skipped} bytes")
        header = await self._receive_exactly(4)
        length = _REPLY_HEADER.unpack(header)[2]
        if length > max(self.max_payload, 8):
            raise _NoReply(f"reply LEN {length} exceeds the payload size {self.max_payload}")
        rest = await self._receive_exactly(length + 2)
        try:
            return decode_reply(bytes([REPLY_SYNC]) + header + rest)
        except ValueError as error:
            raise _NoReply(str(error)) from None

    async def transact(self, command, address, length, payload=b""):
        """One request with retries; returns the reply payload of its ACK.

        Raises
        ------
        BridgeError
            The board refused the request (status not retryable), or every attempt failed.
        """
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFF
        frame = encode_request(command, seq, address, length, payload)
        self.stats.requests += 1
        problems = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            await self.link.send(frame)
            try:
                reply = await self._read_reply()
            except _NoReply as error:
                self.stats.bad_replies += 1
                problems.append(str(error))
                await self.link.drain(self.quiet)
                continue
            if reply.status in RETRYABLE:
                self.stats.naks[reply.status.name] = self.stats.naks.get(reply.status.name, 0) + 1
                problems.append(f"NAK {reply.status.name}")
                continue
            if reply.seq != seq:
                self.stats.bad_replies += 1
                problems.append(f"reply for seq {reply.seq}, not {seq}")
                await self.link.drain(self.quiet)
                continue
            if reply.status is not Status.OK:
                raise BridgeError(f"{Command(command).name} at {address:#x} (length {length}) "
                                  f"refused by the board: {reply.status.name}", reply.status)
            want = length if command in (Command.REG_READ, Command.MEM_READ) else \
                8 if command == Command.PING else 0
            if len(reply.payload) != want:
                raise BridgeError(f"{Command(command).name} reply carries "
                                  f"{len(reply.payload)} bytes, not {want}")
            return reply.payload
        raise BridgeError(f"{Command(command).name} at {address:#x}: no good reply in "
                          f"{self.retries + 1} attempts ({'; '.join(problems[-4:])})")

    # -- the driver's port ---------------------------------------------------------------

    async def read32(self, address):
        return int.from_bytes(await self.transact(Command.REG_READ, address, 4), "little")

    async def write32(self, address, value):
        await self.transact(Command.REG_WRITE, address, 4, int(value).to_bytes(4, "little"))

    def _check_range(self, address, length):
        if self.memory_bytes is not None and address + length > self.memory_bytes:
            raise ValueError(f"memory range {address:#x}+{length} exceeds the board's "
                             f"{self.memory_bytes} bytes")

    async def write_memory(self, address, data):
        data = bytes(data)
        self._check_range(address, len(data))
        for start in range(0, len(data), self.max_payload):
            chunk = data[start:start + self.max_payload]
            await self.transact(Command.MEM_WRITE, address + start, len(chunk), chunk)

    async def read_memory(self, address, length):
        self._check_range(address, length)
        parts = []
        for start in range(0, length, self.max_payload):
            count = min(self.max_payload, length - start)
            parts.append(await self.transact(Command.MEM_READ, address + start, count))
        return b"".join(parts)


class _NoReply(Exception):
    pass


class SerialLink:
    """A link over a pyserial ``Serial`` (or anything with ``write``, ``read``, ``timeout``
    and ``reset_input_buffer``). Blocking calls inside coroutines: the host is one task."""

    def __init__(self, serial):
        self.serial = serial

    async def send(self, data):
        self.serial.reset_input_buffer()
        self.serial.write(bytes(data))
        self.serial.flush()

    async def receive(self, count, timeout):
        # pyserial's timeout bounds a whole read(); read in pieces so that it bounds the
        # silence between bytes instead.
        self.serial.timeout = timeout
        data = bytearray()
        while len(data) < count:
            piece = self.serial.read(count - len(data))
            if not piece:
                break
            data += piece
        return bytes(data)

    async def drain(self, quiet):
        self.serial.timeout = quiet
        deadline = time.monotonic() + 30 * max(quiet, 0.01) + 1.0
        while self.serial.read(4096) and time.monotonic() < deadline:
            pass


@dataclass
class BoardGemm:
    """Result of :func:`run_board_gemm`: C as the board wrote it, the job's outcome."""
    c: np.ndarray
    counters: dict
    error: str
    job: GemmJob
    end: int            # first byte of board memory past the job's regions and guards


def gemm_layout(m, n, k, a_format, b_format, out_format, *, saturate=True, scale_exp=0,
                base=0x40, guard=64):
    """Where a GEMM lives in board memory: A, B, then C (64-byte aligned), each followed by
    ``guard`` bytes that the job must leave alone. Returns (GemmJob, end)."""
    ob = output_format(out_format).width // 8
    a_addr = base
    b_addr = a_addr + m * k + guard
    c_addr = (b_addr + k * n + guard + 63) // 64 * 64
    end = c_addr + m * n * ob + guard
    job = GemmJob(m=m, n=n, k=k, a_addr=a_addr, b_addr=b_addr, c_addr=c_addr, a_stride=k,
                  b_stride=n, c_stride=n * ob, a_format=a_format, b_format=b_format,
                  out_format=out_format, saturate=saturate, scale_exp=scale_exp)
    return job, end


async def run_board_gemm(driver, a, b, out_format="fp32", *, saturate=True, scale_exp=0):
    """C = A.B on a board: A and B into its memory, the job, C back; see :func:`gemm_layout`.

    ``driver`` is a :class:`~systole.sim.driver.SystoleDriver` whose port is a connected
    :class:`BridgePort`. Arguments as in :func:`systole.sim.golden.gemm`.

    Raises
    ------
    TypeError
        When A or B is not an fp8 array.
    ValueError
        When the shapes do not match, the output format is unknown, or the job does not fit
        the board's memory.
    """
    output_format(out_format)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"A and B must be matrices with A's columns equal to B's rows, "
                         f"not {a.shape} and {b.shape}")
    m, k = a.shape
    n = b.shape[1]
    job, end = gemm_layout(m, n, k, golden.format_of(a.dtype).name,
                           golden.format_of(b.dtype).name, out_format, saturate=saturate,
                           scale_exp=scale_exp)
    port = driver.port
    if port.memory_bytes is not None and end > port.memory_bytes:
        raise ValueError(f"a {m}x{n}x{k} GEMM needs {end} bytes of board memory; the board "
                         f"has {port.memory_bytes}")
    await port.write_memory(job.a_addr, np.ascontiguousarray(a).view(np.uint8).tobytes())
    await port.write_memory(job.b_addr, np.ascontiguousarray(b).view(np.uint8).tobytes())
    outcome = await driver.run(job)
    raw = await port.read_memory(job.c_addr, m * job.c_stride)
    c = np.frombuffer(raw, dtype=golden.dtype_for(out_format)).reshape(m, n).copy()
    return BoardGemm(c=c, counters=outcome.counters, error=outcome.error, job=job, end=end)

"""cocotb-side external memory: a cocotbext-axi RAM with a pipelined read latency.

cocotbext-axi's ``AxiRam`` answers each read burst as soon as it takes the AR beat and
handles bursts one after another, so it has no latency to hide. ``LatencyAxiRam`` keeps its
write side and replaces the read side with two coroutines: one accepts AR beats as fast as
the (paused) channel allows and stamps each with ``now + latency`` cycles; the other sends
the bursts' R beats in order, each burst no earlier than its stamp. Outstanding reads are
therefore limited only by the DMA, as with a real DRAM controller. A reset drops every
read in flight, so a job cut short by a reset leaves no stale R beat for the next one.
"""

import collections
import logging
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import Event, FallingEdge, RisingEdge
from cocotbext.axi import AxiRam
from cocotbext.axi.constants import AxiResp

__all__ = ["LatencyAxiRam", "StorageBackdoor", "random_pauses", "quiet_axi_logs"]


def quiet_axi_logs():
    """cocotbext-axi logs every burst at INFO: thousands of lines and most of the run time."""
    for name in ("cocotb.mem", "cocotbext.axi", "cocotb.systole.mem_", "cocotb.systole.csr_"):
        logging.getLogger(name).setLevel(logging.WARNING)


def random_pauses(rng, probability):
    """A cocotbext-axi pause generator: pause each cycle with the given probability."""
    while True:
        yield rng.random() < probability


class LatencyAxiRam(AxiRam):
    """AxiRam whose read bursts return ``latency`` cycles after their AR beat.

    Parameters
    ----------
    bus : cocotbext.axi.AxiBus
    clock, reset : cocotb handles
    size : int
        Bytes of memory, from address 0.
    latency : int
        Cycles from an AR handshake to the first R beat of that burst (at least 1).
    error_range : tuple(int, int) or None
        Reads and writes touching [start, end) get SLVERR (AXI error injection).
    """

    def __init__(self, bus, clock, reset=None, *, size, latency=1, error_range=None):
        self.latency = max(1, int(latency))
        self.error_range = error_range
        self._clock = clock
        self._now = 0
        self._pending = collections.deque()
        self._pending_event = Event()
        super().__init__(bus, clock, reset, size=size)
        quiet_axi_logs()
        self.read_if.log.setLevel(logging.WARNING)
        self.write_if.log.setLevel(logging.WARNING)
        read_if = self.read_if
        read_if.ar_channel.queue_occupancy_limit = 1024
        # Replace the serial read process with the pipelined one.
        read_if._process_read = self._accept_reads
        cocotb.start_soon(self._tick())
        self._sender = cocotb.start_soon(self._send_reads())
        if reset is not None:
            cocotb.start_soon(self._drop_reads_at_reset(reset))
        self._wrap_writes()

    def _in_error_range(self, address, length):
        if self.error_range is None:
            return False
        start, end = self.error_range
        return address < end and address + length > start

    def _wrap_writes(self):
        write = self.write_if._write

        async def checked_write(address, data):
            if self._in_error_range(address, len(data)):
                raise ValueError("injected write error")
            await write(address, data)
        self.write_if._write = checked_write

    async def _tick(self):
        while True:
            await RisingEdge(self._clock)
            self._now += 1

    async def _drop_reads_at_reset(self, reset):
        """A reset ends every read in flight: the bursts waiting for their latency and the
        one being sent. (cocotbext-axi resets the channels and restarts the AR side.)"""
        while True:
            await RisingEdge(reset)
            self._sender.cancel()
            self._pending.clear()
            self.read_if.r_channel.clear()
            await FallingEdge(reset)
            self._sender = cocotb.start_soon(self._send_reads())

    async def _accept_reads(self):
        read_if = self.read_if
        while True:
            ar = await read_if.ar_channel.recv()
            self._pending.append((self._now + self.latency, ar))
            self._pending_event.set()

    async def _send_reads(self):
        read_if = self.read_if
        lanes = read_if.byte_lanes
        while True:
            while not self._pending:
                self._pending_event.clear()
                await self._pending_event.wait()
            due, ar = self._pending.popleft()
            while self._now < due:
                await RisingEdge(self._clock)
            arid = int(getattr(ar, "arid", 0))
            addr = int(ar.araddr)
            length = int(getattr(ar, "arlen", 0)) + 1
            size = 2 ** int(getattr(ar, "arsize", (lanes - 1).bit_length()))
            assert 0x1000 - (addr & ~(size - 1) & 0xFFF) >= size * length, \
                f"read burst at {addr:#x} of {length} beats crosses 4 KiB"
            cur = (addr // size) * size
            for n in range(length):
                word = (cur // lanes) * lanes
                r = read_if.r_channel._transaction_obj()
                r.rid = arid
                r.rlast = n == length - 1
                r.rresp = AxiResp.OKAY
                if self._in_error_range(word, lanes):
                    data = bytes(lanes)
                    r.rresp = AxiResp.SLVERR
                else:
                    data = await read_if._read(word, lanes)
                r.rdata = int.from_bytes(data, "little")
                await read_if.r_channel.send(r)
                cur += size


class StorageBackdoor:
    """Host access to the gateware memory model's RAM (``systole_simram``, hdl/simmem.py).

    Offers ``read``/``write`` like cocotbext-axi's memory, as coroutines: a write becomes
    one ``$readmemh`` of a file of whole words (the partial words at its ends are first
    read back and merged), a read one ``$writememh`` of the words it covers, so megabytes
    move in well under a second instead of one VPI call per word.

    Parameters
    ----------
    ram : cocotb handle
        The ``systole_simram`` instance (``dut.memory.storage``).
    clock : cocotb handle
        Its clock; each access waits for the RAM to act on a clock edge.
    lanes : int
        Bytes per word.
    """

    error_range = None      # error injection needs the cocotbext-axi model

    def __init__(self, ram, clock, lanes):
        from ..hdl.simmem import BACKDOOR_FILE
        self.ram = ram
        self.clock = clock
        self.lanes = lanes
        self.path = Path(BACKDOOR_FILE).resolve()     # the simulator's working directory

    async def _act(self, op):
        done = int(self.ram.backdoor_done.value)
        self.ram.backdoor_op.value = op
        while int(self.ram.backdoor_done.value) == done:
            await RisingEdge(self.clock)
        self.ram.backdoor_op.value = 0
        await RisingEdge(self.clock)

    async def _dump(self, first, last):
        """Bytes of words [first, last)."""
        if last <= first:
            return b""
        self.ram.backdoor_first.value = first
        self.ram.backdoor_last.value = last - 1
        await self._act(2)
        # One word per line; Icarus adds "// 0x..." address comments and "@" lines.
        words = [word for line in self.path.read_text().splitlines()
                 for word in line.split("//")[0].split() if not word.startswith("@")]
        if len(words) != last - first:
            raise RuntimeError(f"$writememh gave {len(words)} words, expected {last - first}")
        digits = 2 * self.lanes
        raw = bytes.fromhex("".join(word.zfill(digits) for word in words))
        # Each line is one word, most significant byte first.
        return np.frombuffer(raw, np.uint8).reshape(-1, self.lanes)[:, ::-1].tobytes()

    async def write(self, address, data):
        lanes = self.lanes
        first = address // lanes
        head = address - first * lanes
        buf = bytearray(await self._dump(first, first + 1))[:head] if head else bytearray()
        buf += bytes(data)
        tail = (-len(buf)) % lanes
        if tail:
            last = first + len(buf) // lanes
            buf += (await self._dump(last, last + 1))[lanes - tail:]
        words = np.frombuffer(bytes(buf), np.uint8).reshape(-1, lanes)[:, ::-1]
        lines = np.frombuffer(words.tobytes().hex().encode(), dtype=f"S{2 * lanes}")
        self.path.write_bytes(f"@{first:x}\n".encode() + b"\n".join(lines) + b"\n")
        await self._act(1)

    async def read(self, address, length):
        lanes = self.lanes
        first = address // lanes
        last = (address + length + lanes - 1) // lanes
        raw = await self._dump(first, last)
        return raw[address - first * lanes:][:length]

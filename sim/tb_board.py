"""cocotb testbench for ``BoardTop``: the host protocol over the UART pins.

The testbench is the wire between a host and the simulated board. ``UartPins`` drives the
board's ``uart_rx`` and samples its ``uart_tx`` bit by bit (one Python wake-up per bit; the
clock runs in the simulator). Two modes, chosen by ``mode`` in ``$SYSTOLE_TB`` (JSON):

``"host"``
    The host runs inside the testbench (``BridgePort`` over ``CocotbLink``, simulated time):
    raw frames check each NAK (corrupted, truncated, over-long, noise) and that a damaged
    frame changes nothing; then GEMM jobs run through ``SystoleDriver`` over the bridge, the
    last one on a noisy line (bit flips and dropped bytes both ways). Every job is checked
    bit-exact against ``golden.gemm`` with the counter laws, and the whole memory image is
    read back (nothing but C changed). Results go to ``output``.

``"pty"``
    The board is served on a pseudo-terminal (its name written to ``ready_file``), so that
    any host program, ``systole board gemm --port /dev/pts/N`` included, talks to it through
    pyserial. Optional line noise; ends when ``stop_file`` appears (or after
    ``max_seconds``).

Parameters (``$SYSTOLE_TB``)::

    {"mode": "host" | "pty", "config": {...}, "clk_freq": 921600, "baud": 115200,
     "memory_bytes": 16384, "seed": 1, "jobs": [{"m":.., "n":.., "k":.., ...}],
     "noise": {"flip": 0.002, "drop": 0.001}, "output": "results.json",
     "ready_file": "...", "stop_file": "...", "max_seconds": 600}
"""

import json
import os
import random
import select
import time
import tty

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import Event, FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout

from ..hdl.bridge import Command, Status
from . import golden
from .driver import SystoleDriver
from .stimulus import random_fp8
from .tb_accel import config_from_json, counter_law_violations
from .uart_port import BridgePort, LinkStats, encode_request, gemm_layout, run_board_gemm

__all__ = ["UartPins", "LineNoise", "CocotbLink", "board_clock_ps", "SIM_BAUD",
           "SIM_CYCLES_PER_BIT", "build_board", "run_board"]

TOPLEVEL = "systole_board"
#: The simulated board's UART: 115200 baud at 8 clock cycles per bit (a 921.6 kHz clock),
#: so simulated time is the time a real link of that baud rate would take.
SIM_BAUD = 115200
SIM_CYCLES_PER_BIT = 8


def board_clock_ps(clk_freq):
    """The simulated clock period in picoseconds (the board's clock period, made even so
    that both clock phases are whole picoseconds)."""
    return 2 * round(1e12 / clk_freq / 2)


class UartPins:
    """The host end of the UART: bytes onto ``uart_rx``, bytes from ``uart_tx``."""

    def __init__(self, dut, bit_ps):
        self.dut = dut
        self.bit_ps = bit_ps
        self.received = Queue()
        self._outgoing = bytearray()
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        dut.uart_rx.value = 1
        cocotb.start_soon(self._transmit())
        cocotb.start_soon(self._receive())

    def write(self, data):
        """Queue bytes for the line (returns at once)."""
        self._outgoing += data
        self._idle.clear()
        self._wake.set()

    async def flush(self):
        """Wait until every queued byte is on the line."""
        await self._idle.wait()

    @property
    def sending(self):
        return not self._idle.is_set()

    async def _transmit(self):
        pin = self.dut.uart_rx
        while True:
            while not self._outgoing:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            byte = self._outgoing.pop(0)
            for bit in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                pin.value = bit
                await Timer(self.bit_ps, unit="ps")

    async def _receive(self):
        pin = self.dut.uart_tx
        while True:
            await FallingEdge(pin)
            await Timer(self.bit_ps // 2, unit="ps")
            if int(pin.value):
                continue                       # a glitch
            byte = 0
            for i in range(8):
                await Timer(self.bit_ps, unit="ps")
                byte |= int(pin.value) << i
            await Timer(self.bit_ps, unit="ps")
            if int(pin.value):                 # stop bit
                self.received.put_nowait(byte)


class LineNoise:
    """Damage on the line: each byte has its bit flipped with probability ``flip`` and is
    lost with probability ``drop`` (a lost byte truncates its frame). Seeded."""

    def __init__(self, seed, flip=0.0, drop=0.0):
        self.rng = random.Random(seed)
        self.flip = flip
        self.drop = drop
        self.flipped = 0
        self.dropped = 0

    def apply(self, data):
        out = bytearray()
        for byte in data:
            if self.drop and self.rng.random() < self.drop:
                self.dropped += 1
                continue
            if self.flip and self.rng.random() < self.flip:
                byte ^= 1 << self.rng.randrange(8)
                self.flipped += 1
            out.append(byte)
        return bytes(out)

    def as_dict(self):
        return {"flip": self.flip, "drop": self.drop, "flipped": self.flipped,
                "dropped": self.dropped}


class CocotbLink:
    """A :class:`~systole.sim.uart_port.BridgePort` link over :class:`UartPins`; timeouts
    are simulated seconds. ``noise`` (a :class:`LineNoise`, or None) damages both ways."""

    def __init__(self, pins, noise=None):
        self.pins = pins
        self.noise = noise

    async def send(self, data):
        while not self.pins.received.empty():
            self.pins.received.get_nowait()
        if self.noise:
            data = self.noise.apply(data)
        self.pins.write(data)
        await self.pins.flush()

    async def _next(self, timeout):
        while True:
            try:
                byte = await with_timeout(self.pins.received.get(), round(timeout * 1e12), "ps")
            except SimTimeoutError:
                return None
            if self.noise:
                damaged = self.noise.apply(bytes([byte]))
                if not damaged:
                    continue
                byte = damaged[0]
            return byte

    async def receive(self, count, timeout):
        data = bytearray()
        while len(data) < count:
            byte = await self._next(timeout)
            if byte is None:
                break
            data.append(byte)
        return bytes(data)

    async def drain(self, quiet):
        while await self._next(quiet) is not None:
            pass


class BoardTB:
    """Clock, reset and UART pins of a simulated ``BoardTop``."""

    def __init__(self, dut, params):
        self.dut = dut
        self.params = params
        self.config = config_from_json(params["config"])
        self.clk_freq = float(params["clk_freq"])
        self.baud = int(params["baud"])
        self.period_ps = board_clock_ps(self.clk_freq)
        divisor = round(self.clk_freq / self.baud)
        self.pins = UartPins(dut, divisor * self.period_ps)

    async def start(self):
        Clock(self.dut.clk, self.period_ps, unit="ps").start()
        self.dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        for _ in range(4):
            await RisingEdge(self.dut.clk)

    def byte_seconds(self):
        return 10 / self.baud


# -- "host" mode ------------------------------------------------------------------------------

async def _raw_exchange(link, frame, timeout):
    """Send raw bytes; return the reply (decoded) or None when none comes."""
    await link.send(frame)
    port = BridgePort(link, timeout=timeout)
    port.max_payload = 1 << 16
    try:
        return await port._read_reply()
    except Exception:           # noqa: BLE001 - the caller reports the missing reply
        return None


async def _protocol_checks(tb, link, port, timeout):
    """Each kind of damaged frame is NAK'd for its reason and changes nothing."""
    problems = []
    sentinel = b"SYSTOLE!"
    await port.write_memory(0x20, sentinel)
    good = encode_request(Command.MEM_WRITE, 0xC0, 0x20, 8, b"damaged!")
    flipped = bytearray(good)
    flipped[12] ^= 0x20
    bad_address = bytearray(good)
    bad_address[3] ^= 0x01
    cases = [
        ("payload bit flipped", bytes(flipped), Status.CRC_ERROR),
        ("address bit flipped", bytes(bad_address), Status.CRC_ERROR),
        ("truncated", good[:9], Status.TIMEOUT),
        ("noise then a lone sync byte", b"\x00\xff\x13\xa5", Status.TIMEOUT),
        ("over-long LEN", encode_request(Command.MEM_READ, 0xC1, 0, 0xFFFF), Status.TOO_LONG),
        ("unknown command", bytes([0xA5]) + _with_crc(bytes([0x7F, 0xC2, 0, 0, 0, 0, 0, 0])),
         Status.BAD_COMMAND),
        ("memory range past the end", encode_request(Command.MEM_READ, 0xC3,
                                                     port.memory_bytes - 4, 8),
         Status.BAD_ADDRESS),
        ("unmapped register", encode_request(Command.REG_READ, 0xC4, 0xFFC, 4),
         Status.BUS_ERROR),
    ]
    for name, frame, want in cases:
        reply = await _raw_exchange(link, frame, timeout)
        got = reply.status if reply else None
        if got is not want:
            problems.append(f"{name}: reply {got}, expected {want.name}")
    if await port.read_memory(0x20, 8) != sentinel:
        problems.append("a damaged frame changed memory")
    return problems


async def _led_checks(tb, driver):
    """A rejected job (K > max_k) lights the error LED, writes nothing and leaves the
    accelerator ready; the LEDs are busy, done, error (bits 0, 1, 2)."""
    problems = []
    k = tb.config.max_k + 1
    job, _ = gemm_layout(1, 1, k, "e4m3", "e4m3", "fp32")
    before = await driver.port.read_memory(job.c_addr, 4)
    outcome = await driver.run(job)
    if outcome.error != "K_TOO_LARGE":
        problems.append(f"K = {k} gave error {outcome.error}, expected K_TOO_LARGE")
    if int(tb.dut.leds.value) != 0b100:
        problems.append(f"leds {int(tb.dut.leds.value):03b} after a rejected job, expected "
                        f"100 (error)")
    if await driver.port.read_memory(job.c_addr, 4) != before:
        problems.append("a rejected job wrote C")
    return problems


def _with_crc(body):
    from ..hdl.bridge import crc16
    return body + crc16(body).to_bytes(2, "big")


async def _check_gemm(tb, driver, spec, nprng):
    """One GEMM through the bridge; returns (result, problems)."""
    config = tb.config
    port = driver.port
    a = random_fp8(nprng, (spec["m"], spec["k"]), spec["a_format"])
    b = random_fp8(nprng, (spec["k"], spec["n"]), spec["b_format"])
    job, end = gemm_layout(spec["m"], spec["n"], spec["k"], spec["a_format"],
                           spec["b_format"], spec["out_format"])
    # Random guard bytes everywhere, so that a stray write anywhere shows.
    image = np.frombuffer(nprng.bytes(end), dtype=np.uint8).copy()
    await port.write_memory(0, image.tobytes())
    started = time.perf_counter()
    run = await run_board_gemm(driver, a, b, spec["out_format"], saturate=spec["saturate"],
                               scale_exp=spec["scale_exp"])
    expected = golden.gemm(a, b, spec["out_format"], saturate=spec["saturate"],
                           scale_exp=spec["scale_exp"])
    problems = []
    if run.error != "NONE":
        problems.append(f"error code {run.error}")
    bit_exact = bool(np.array_equal(golden.to_bits(run.c), golden.to_bits(expected)))
    if not bit_exact:
        problems.append(f"C differs from golden.gemm in "
                        f"{int(np.sum(golden.to_bits(run.c) != golden.to_bits(expected)))} "
                        f"elements")
    problems += [f"counter law broken: {law}"
                 for law in counter_law_violations(config, spec, run.counters)]
    # The whole image: A and B in place, guards untouched, C the golden bits.
    after = np.frombuffer(await port.read_memory(0, end), dtype=np.uint8)
    want = image.copy()
    want[job.a_addr:job.a_addr + a.size] = a.view(np.uint8).ravel()
    want[job.b_addr:job.b_addr + b.size] = b.view(np.uint8).ravel()
    c_bits = golden.to_bits(expected)
    c_bytes = c_bits.astype(c_bits.dtype.newbyteorder("<")).view(np.uint8).ravel()
    want[job.c_addr:job.c_addr + c_bytes.size] = c_bytes
    if not np.array_equal(after, want):
        wrong = np.flatnonzero(after != want)
        problems.append(f"{len(wrong)} memory bytes differ from the expected image, first "
                        f"at {[hex(int(x)) for x in wrong[:8]]}")
    return {"spec": spec, "error": run.error, "bit_exact": bit_exact,
            "counters": run.counters, "seconds": time.perf_counter() - started}, problems


async def run_host_mode(dut, params):
    tb = BoardTB(dut, params)
    seed = int(params["seed"])
    nprng = np.random.default_rng(seed)
    await tb.start()
    # Host timeouts in simulated seconds: a full reply is about 270 byte times; the board
    # NAKs a damaged frame after its own inter-byte timeout.
    timeout = float(params.get("host_timeout", 0.1))
    link = CocotbLink(tb.pins)
    port = BridgePort(link, timeout=timeout, quiet=40 * tb.byte_seconds())
    info = await port.connect()
    driver = SystoleDriver(port, tb.config)
    failures = [f"protocol: {p}" for p in await _protocol_checks(tb, link, port, timeout)]
    failures += [f"leds: {p}" for p in await _led_checks(tb, driver)]
    results = []
    for index, spec in enumerate(params["jobs"]):
        noise = spec.get("noise")
        link.noise = LineNoise(seed * 1000 + index, **noise) if noise else None
        port.stats = LinkStats()
        result, problems = await _check_gemm(tb, driver, spec, nprng)
        result["link"] = port.stats.as_dict()
        result["noise"] = link.noise.as_dict() if link.noise else None
        link.noise = None
        results.append(result)
        if int(tb.dut.leds.value) != 0b010:
            problems.append(f"leds {int(tb.dut.leds.value):03b} after the job, expected 010 "
                            f"(done)")
        if problems:
            failures.append(f"job {index} {spec}: " + "; ".join(problems))
    if params.get("output"):
        with open(params["output"], "w") as f:
            json.dump({"seed": seed, "ping": info, "results": results}, f)
    assert not failures, (f"seed={seed}: {len(failures)} failures (reproduce with "
                          f"SYSTOLE_SEED={seed}):\n" + "\n".join(failures))


# -- "pty" mode ---------------------------------------------------------------------------------

async def run_pty_mode(dut, params):
    tb = BoardTB(dut, params)
    await tb.start()
    noise_params = params.get("noise") or {}
    noise = LineNoise(int(params.get("seed", 1)), **noise_params) if noise_params else None
    master, slave = os.openpty()
    tty.setraw(slave)                   # no echo, no line editing: a byte pipe
    name = os.ttyname(slave)
    os.set_blocking(master, False)
    ready_file = params.get("ready_file")
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            f.write(name)
        os.replace(ready_file + ".tmp", ready_file)
    dut._log.info("simulated board on %s", name)
    stop_file = params.get("stop_file")
    deadline = time.monotonic() + float(params.get("max_seconds", 3600))
    byte_ps = tb.pins.bit_ps * 10
    quiet_polls = 0
    to_host, from_host = 0, 0

    async def forward_replies():
        nonlocal to_host
        while True:
            byte = await tb.pins.received.get()
            data = noise.apply(bytes([byte])) if noise else bytes([byte])
            if data:
                os.write(master, data)
                to_host += 1

    cocotb.start_soon(forward_replies())
    while True:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            data = b""
        if data:
            from_host += len(data)
            tb.pins.write(noise.apply(data) if noise else data)
            quiet_polls = 0
        else:
            quiet_polls += 1
        # When nothing has moved for a while and no job runs, wait in wall time rather than
        # simulating idle cycles at full speed.
        idle = (quiet_polls > 2000 and not tb.pins.sending and tb.pins.received.empty()
                and not int(dut.leds.value) & 1)
        if idle:
            select.select([master], [], [], 0.005)
            if (stop_file and os.path.exists(stop_file)) or time.monotonic() > deadline:
                break
        await Timer(byte_ps, unit="ps")
    os.close(master)
    os.close(slave)
    if params.get("output"):
        with open(params["output"], "w") as f:
            json.dump({"pty": name, "bytes_from_host": from_host, "bytes_to_host": to_host,
                       "noise": noise.as_dict() if noise else None}, f)


def _board_source_digest():
    from pathlib import Path
    import hashlib
    return hashlib.sha256((Path(__file__).resolve().parent.parent / "boards" / "top.py")
                          .read_bytes()).hexdigest()[:16]


def build_board(config, *, clk_freq, baud=SIM_BAUD, memory_bytes=16384,
                simulator="verilator"):
    """Build (or reuse from the cache) the simulator model of ``BoardTop``."""
    from ..boards.top import BoardTop
    from . import verilog
    key = f"{config!r}|board|{clk_freq}|{baud}|{memory_bytes}|{_board_source_digest()}"
    return verilog.build(lambda: BoardTop(config, clk_freq=clk_freq, baud=baud,
                                          memory_bytes=memory_bytes),
                         TOPLEVEL, key, simulator)


def run_board(config, params, *, memory_bytes=16384, simulator="verilator", workdir,
              log_file=None):
    """Run this testbench on a built board (``params`` as in the module docstring; config,
    clock, baud and memory are filled in). Raises AssertionError when the test failed."""
    from pathlib import Path
    from . import verilog
    clk_freq = SIM_BAUD * SIM_CYCLES_PER_BIT
    build_dir = build_board(config, clk_freq=clk_freq, memory_bytes=memory_bytes,
                            simulator=simulator)
    params = dict(params, config={k: (list(v) if isinstance(v, tuple) else v)
                                  for k, v in config.__dict__.items()},
                  clk_freq=clk_freq, baud=SIM_BAUD, memory_bytes=memory_bytes)
    work = Path(workdir)
    return verilog.run(build_dir, TOPLEVEL, "systole.sim.tb_board", simulator=simulator,
                       test_dir=work, extra_env={"SYSTOLE_TB": json.dumps(params)},
                       results_xml=str(work / "results.xml"), log_file=log_file)


@cocotb.test()
async def board(dut):
    params = json.loads(os.environ["SYSTOLE_TB"])
    if params["mode"] == "pty":
        await run_pty_mode(dut, params)
    else:
        await run_host_mode(dut, params)

"""The board path: UART, host bridge and protocol, BoardTop end to end.

Three tiers. Amaranth-simulator unit tests check the UART (bit timing, framing errors) and
the bridge at byte level against the protocol spec (docs/host-protocol.md): every command,
every NAK, duplicate suppression, the arbiter sharing the memory. A cocotb system test runs
``BoardTop`` on Verilator with the host inside the testbench, driving the UART pins: a GEMM
through the bridge, bit-exact against ``golden.gemm`` with the counter laws, after
corrupted, truncated and over-long frames and with a noisy line. The pseudo-terminal test
runs ``systole board gemm --port /dev/pts/N`` against the simulated board.
"""

import os
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from systole import SystoleConfig
from systole.hdl.bridge import AXI4Arbiter, Command, HostBridge, Status, crc16
from systole.hdl.csr import CSRBank
from systole.hdl.registers import systole_register_map
from systole.hdl.simmem import AxiMemory
from systole.hdl.uart import UARTReceiver, UARTTransmitter, uart_divisor
from systole.sim.uart_port import decode_reply, encode_reply, encode_request

from helpers import require_simulator, run_simulation

CONFIG = SystoleConfig(rows=4, cols=4, sram_depth=64, max_k=1024)


def _seed(default):
    return int(os.environ.get("SYSTOLE_SEED", default))


# -- codec ---------------------------------------------------------------------------------

def test_crc16_check_value():
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert crc16(b"123456789") == 0x29B1


def test_frames_round_trip():
    frame = encode_request(Command.MEM_WRITE, 7, 0x1234, 3, b"abc")
    assert frame[0] == 0xA5 and crc16(frame[1:]) == 0
    assert frame[1:10] == bytes([4, 7, 0x34, 0x12, 0, 0, 3, 0]) + b"a"
    reply = decode_reply(encode_reply(Status.OK, 7, b"xyz"))
    assert (reply.status, reply.seq, reply.payload) == (Status.OK, 7, b"xyz")
    damaged = bytearray(encode_reply(Status.OK, 7, b"xyz"))
    damaged[5] ^= 0x10
    with pytest.raises(ValueError, match="reply CRC mismatch"):
        decode_reply(damaged)
    with pytest.raises(ValueError, match="MEM_WRITE of length 4 needs 4 payload bytes, not 3"):
        encode_request(Command.MEM_WRITE, 0, 0, 4, b"abc")
    with pytest.raises(ValueError, match="MEM_READ carries no payload"):
        encode_request(Command.MEM_READ, 0, 0, 4, b"abcd")


def test_uart_divisor_checks():
    assert uart_divisor(921600, 115200) == 8
    with pytest.raises(ValueError, match="at least 4 clock cycles per bit"):
        uart_divisor(300000, 115200)
    with pytest.raises(ValueError, match="cannot make 115200 baud within 2 %"):
        uart_divisor(115200 * 4.5, 115200)


# -- UART ----------------------------------------------------------------------------------

class _Loopback(wiring.Component):
    def __init__(self, divisor):
        self.tx = UARTTransmitter(divisor)
        self.rx = UARTReceiver(divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_loopback(divisor):
    """Back-to-back bytes through transmitter and receiver; 10 bit times per byte."""
    seed = _seed(divisor)
    print(f"seed={seed}")
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(24)] + [0x00, 0xFF, 0x55]
    dut = _Loopback(divisor)
    got, times = [], []

    async def sender(ctx):
        for byte in data:
            ctx.set(dut.tx.stream.valid, 1)
            ctx.set(dut.tx.stream.payload, byte)
            await ctx.tick().until(dut.tx.stream.ready)
        ctx.set(dut.tx.stream.valid, 0)

    async def receiver(ctx):
        ctx.set(dut.rx.stream.ready, 1)
        cycle = 0
        while len(got) < len(data):
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.rx.stream.valid):
                got.append(ctx.get(dut.rx.stream.payload))
                times.append(cycle)

    run_simulation(dut, sender, receiver)
    assert got == data, f"seed={seed}"
    assert {b - a for a, b in zip(times, times[1:])} == {10 * divisor}


def test_uart_receiver_framing_error_and_glitch():
    """A low stop bit drops the byte; a short glitch is no start bit; the next byte is
    received."""
    divisor = 8
    dut = UARTReceiver(divisor)
    got, errors = [], []

    async def line(ctx):
        async def bits(values):
            for value in values:
                ctx.set(dut.rx, value)
                await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        await bits([0] + [1, 0, 1, 0, 1, 0, 1, 0] + [0, 0, 0])   # stop bit low: a break
        await bits([1] * 5)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(2)                                 # a glitch
        await bits([1] * 5)
        await bits([0] + [0, 1, 1, 0, 0, 0, 1, 0] + [1] * 4)      # 0x46

    async def monitor(ctx):
        ctx.set(dut.stream.ready, 1)
        for _ in range(400):
            await ctx.tick()
            if ctx.get(dut.stream.valid):
                got.append(ctx.get(dut.stream.payload))
            if ctx.get(dut.framing_error):
                errors.append(1)

    run_simulation(dut, line, monitor)
    assert got == [0x46] and errors == [1]


# -- bridge at byte level --------------------------------------------------------------------

_TIMEOUT = 200          # cycles; short so that timeouts are cheap to simulate
_MEMORY = 1024


class _BridgeBench(wiring.Component):
    """HostBridge onto a real CSR bank and an AxiMemory, behind the arbiter (manager 0
    left to the test)."""

    def __init__(self, data_width=64):
        self.bank = CSRBank(systole_register_map(CONFIG))
        self.bridge = HostBridge(csr_addr_width=self.bank.axi.signature.addr_width,
                                 addr_width=32, data_width=data_width, memory_bytes=_MEMORY,
                                 max_payload=32, timeout=_TIMEOUT)
        self.memory = AxiMemory(addr_width=32, data_width=data_width, size=_MEMORY, latency=3)
        self.arbiter = AXI4Arbiter(addr_width=32, data_width=data_width)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = self.bank
        m.submodules.bridge = self.bridge
        m.submodules.memory = self.memory
        m.submodules.arbiter = self.arbiter
        wiring.connect(m, self.bridge.csr, self.bank.axi)
        wiring.connect(m, self.bridge.mem, self.arbiter.managers[1])
        wiring.connect(m, self.arbiter.sub, self.memory.bus)
        return m


def _run_bridge(exchanges, *, other_manager=None, data_width=64):
    """Send each request's bytes (and wait for its reply when asked), collect the reply
    frames; return the decoded replies and the bench."""
    dut = _BridgeBench(data_width)
    replies = []
    done = []
    sent = bytearray()          # every byte the bridge transmitted

    async def monitor(ctx):
        ctx.set(dut.bridge.tx.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.bridge.tx.valid,
                                                            dut.bridge.tx.payload):
            if valid:
                sent.append(payload)

    async def host(ctx):
        cursor = 0
        for data, expect_reply in exchanges:
            for byte in data:
                ctx.set(dut.bridge.rx.valid, 1)
                ctx.set(dut.bridge.rx.payload, byte)
                await ctx.tick()
                ctx.set(dut.bridge.rx.valid, 0)
                await ctx.tick().repeat(3)
            if not expect_reply:
                continue
            for _ in range(20 * _TIMEOUT):
                frame = sent[cursor:]
                if len(frame) >= 5 and len(frame) >= 7 + (frame[3] | frame[4] << 8):
                    break
                await ctx.tick()
            frame = bytes(sent[cursor:cursor + 7 + (frame[3] | frame[4] << 8)]
                          if len(frame) >= 5 else frame)
            cursor += len(frame)
            replies.append(frame)
            await ctx.tick().repeat(4)
        done.append(True)

    benches = [host]
    if other_manager is not None:
        benches.append(other_manager(dut, done))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in benches:
        sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    return [decode_reply(frame) for frame in replies], dut


def _request(command, seq, address, length, payload=b""):
    return (encode_request(command, seq, address, length, payload), True)


@pytest.mark.parametrize("data_width", [32, 64, 128])
def test_bridge_commands(data_width):
    regmap = systole_register_map(CONFIG)
    m_addr = regmap["M"].address
    data = bytes(range(100, 123))
    replies, dut = _run_bridge([
        _request(Command.PING, 1, 0, 0),
        _request(Command.REG_READ, 2, regmap["ID"].address, 8),
        _request(Command.REG_WRITE, 3, m_addr, 8, (77).to_bytes(4, "little")
                 + (0x12345678).to_bytes(4, "little")),
        _request(Command.REG_READ, 4, m_addr, 8),
        _request(Command.MEM_WRITE, 5, 0x2F5, len(data), data),     # unaligned, 4 words
        _request(Command.MEM_READ, 6, 0x2F0, 32),
        _request(Command.MEM_READ, 7, _MEMORY - 1, 2),               # past the end
        _request(Command.REG_READ, 8, 0x2, 4),                       # unaligned register
        _request(Command.REG_READ, 9, 0x0, 6),                       # not whole registers
        _request(Command.REG_READ, 10, 0xFF0, 4),                    # unmapped: SLVERR
        _request(0x04, 11, 0, 0),                                    # MEM_WRITE of nothing
    ] + [(encode_request(Command.PING, 12, 0, 0)[:1] + bytes([0x7E, 12, 0, 0, 0, 0, 0, 0])
          + crc16(bytes([0x7E, 12, 0, 0, 0, 0, 0, 0])).to_bytes(2, "big"), True)],
        data_width=data_width)
    id_words = [regmap["ID"].reset, regmap["VERSION"].reset]
    expected = [
        (Status.OK, 1, bytes([1, 0, 32, 0]) + _MEMORY.to_bytes(4, "little")),
        (Status.OK, 2, b"".join(w.to_bytes(4, "little") for w in id_words)),
        (Status.OK, 3, b""),
        (Status.OK, 4, (77).to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")),
        (Status.OK, 5, b""),
        (Status.OK, 6, bytes(5) + data + bytes(4)),
        (Status.BAD_ADDRESS, 7, b""),
        (Status.BAD_ADDRESS, 8, b""),
        (Status.BAD_LENGTH, 9, b""),
        (Status.BUS_ERROR, 10, b""),
        (Status.BAD_LENGTH, 11, b""),
        (Status.BAD_COMMAND, 12, b""),
    ]
    assert [(r.status, r.seq, r.payload) for r in replies] == expected


def test_bridge_recovers_from_damaged_frames():
    """Every damaged frame is NAK'd with its reason and has no effect; the next good frame
    works. A repeated write sequence number is acknowledged but not executed again."""
    good = encode_request(Command.MEM_WRITE, 20, 0x10, 4, b"good")
    flipped = bytearray(good)
    flipped[9] ^= 0x04                                   # payload bit: CRC error
    wrong_address = bytearray(encode_request(Command.MEM_WRITE, 21, 0x20, 4, b"evil"))
    wrong_address[4] ^= 0x01                             # address bit: CRC error
    too_long = encode_request(Command.MEM_READ, 22, 0, 33)
    replies, dut = _run_bridge([
        (b"\x00\x13\xA5", False),                        # noise, then a lone sync byte ...
        (b"", True),                                     # ... abandoned: TIMEOUT
        (bytes(flipped), True),
        (bytes(wrong_address), True),
        (good[:7], True),                                # truncated: TIMEOUT
        (too_long, True),
        (good, True),
        (encode_request(Command.MEM_WRITE, 20, 0x10, 4, b"dupl"), True),   # same SEQ
        (encode_request(Command.MEM_READ, 23, 0x10, 4), True),
        (encode_request(Command.MEM_READ, 24, 0x20, 4), True),
    ])
    assert [r.status for r in replies] == [
        Status.TIMEOUT, Status.CRC_ERROR, Status.CRC_ERROR, Status.TIMEOUT, Status.TOO_LONG,
        Status.OK, Status.OK, Status.OK, Status.OK]
    assert replies[-2].payload == b"good"               # the duplicate was not executed
    assert replies[-1].payload == bytes(4)              # the damaged frame wrote nothing


def test_arbiter_shares_the_memory():
    """Manager 0 streams bursts while the bridge reads and writes; both see their data."""
    seed = _seed(5)
    print(f"seed={seed}")
    rng = random.Random(seed)
    words = {addr: rng.randrange(1 << 64) for addr in range(0x200, 0x300, 8)}
    results = {}

    def other_manager(dut, done):
        async def bench(ctx):
            bus = dut.arbiter.managers[0]
            # Write 32 words in 4 bursts, then read them back in 4 bursts, twice over.
            for _ in range(2):
                for burst in range(4):
                    base = 0x200 + burst * 64
                    ctx.set(bus.awaddr, base)
                    ctx.set(bus.awlen, 7)
                    ctx.set(bus.awsize, 3)
                    ctx.set(bus.awvalid, 1)
                    await ctx.tick().until(bus.awready)
                    ctx.set(bus.awvalid, 0)
                    for beat in range(8):
                        ctx.set(bus.wdata, words[base + 8 * beat])
                        ctx.set(bus.wstrb, 0xFF)
                        ctx.set(bus.wlast, beat == 7)
                        ctx.set(bus.wvalid, 1)
                        await ctx.tick().until(bus.wready)
                    ctx.set(bus.wvalid, 0)
                    ctx.set(bus.bready, 1)
                    await ctx.tick().until(bus.bvalid)
                    ctx.set(bus.bready, 0)
                for burst in range(4):
                    base = 0x200 + burst * 64
                    ctx.set(bus.araddr, base)
                    ctx.set(bus.arlen, 7)
                    ctx.set(bus.arsize, 3)
                    ctx.set(bus.arvalid, 1)
                    await ctx.tick().until(bus.arready)
                    ctx.set(bus.arvalid, 0)
                    ctx.set(bus.rready, 1)
                    for beat in range(8):
                        data, = await ctx.tick().sample(bus.rdata).until(bus.rvalid)
                        results[base + 8 * beat] = data
                    ctx.set(bus.rready, 0)
        return bench

    payload = bytes(rng.randrange(256) for _ in range(32))
    exchanges = []
    for i in range(6):
        exchanges.append(_request(Command.MEM_WRITE, 2 * i, 0x40 + 32 * i, 32, payload))
        exchanges.append(_request(Command.MEM_READ, 2 * i + 1, 0x40 + 32 * i, 32))
    replies, _ = _run_bridge(exchanges, other_manager=other_manager)
    assert all(r.status is Status.OK for r in replies)
    assert all(r.payload == payload for r in replies[1::2])
    assert results == words, f"seed={seed}"


# -- the board under cocotb ------------------------------------------------------------------

def test_board_gemm_over_uart(tmp_path):
    """GEMMs through the UART pins: NAKs for every kind of damaged frame, then jobs
    bit-exact with the counter laws and an untouched memory image, the last on a noisy
    line."""
    import json

    from systole.sim.tb_board import run_board
    require_simulator("verilator")
    seed = _seed(21)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    jobs = [
        {"m": 16, "n": 12, "k": 40, "a_format": "e4m3", "b_format": "e5m2",
         "out_format": "fp32", "saturate": True, "scale_exp": 0},
        {"m": 5, "n": 7, "k": 9, "a_format": "e5m2", "b_format": "e4m3",
         "out_format": "e4m3", "saturate": False, "scale_exp": -3,
         "noise": {"flip": 0.003, "drop": 0.002}},
    ]
    output = tmp_path / "results.json"
    run_board(CONFIG, {"mode": "host", "seed": seed, "jobs": jobs, "output": str(output)},
              workdir=tmp_path, log_file=tmp_path / "sim.log")
    results = json.loads(output.read_text())["results"]
    assert [r["bit_exact"] for r in results] == [True, True]
    noisy = results[-1]
    print(f"noisy job: {noisy['noise']}, host: {noisy['link']}")
    assert noisy["noise"]["flipped"] + noisy["noise"]["dropped"] > 0
    assert noisy["link"]["retries"] > 0


def test_board_gemm_through_a_pseudo_terminal(tmp_path, capsys):
    """`systole board gemm --port /dev/pts/N` against `systole board sim` on a noisy line:
    the CLI's own check (bit-exact against golden.gemm), and the counter laws."""
    import json
    import subprocess
    import sys
    import time

    from systole.cli import main
    from systole.sim.tb_accel import counter_law_violations
    require_simulator("verilator")
    seed = _seed(3)
    print(f"seed={seed} (rerun with SYSTOLE_SEED={seed})")
    ready, stop = tmp_path / "pty", tmp_path / "stop"
    server = subprocess.Popen(
        [sys.executable, "-m", "systole.cli", "board", "sim", "--rows", "4", "--cols", "4",
         "--sram-depth", "64", "--max-k", "1024", "--memory-bytes", "16384",
         "--noise-flip", "0.002", "--noise-drop", "0.0005", "--seed", str(seed),
         "--ready-file", str(ready), "--stop-file", str(stop), "--max-seconds", "600",
         "--log", str(tmp_path / "sim.log")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 900
        while not ready.exists():
            assert server.poll() is None, f"board sim ended early:\n{server.stdout.read()}"
            assert time.monotonic() < deadline, "board sim did not come up"
            time.sleep(0.2)
        # A job the board's configuration cannot run is refused before any upload.
        with pytest.raises(SystemExit) as refused:
            main(["board", "gemm", "--port", ready.read_text(), "-M", "16", "-N", "12",
                  "-K", "2000", "--timeout", "2"])
        assert refused.value.code == ("systole board gemm: K = 2000 exceeds the board's "
                                      "max_k = 1024")
        report = tmp_path / "report.json"
        status = main(["board", "gemm", "--port", ready.read_text(), "-M", "16", "-N", "12",
                       "-K", "40", "--seed", str(seed), "--timeout", "2", "--rows", "4",
                       "--json", str(report)])
    finally:
        stop.touch()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()           # the simulator child stops on its own max_seconds
            raise
    out = capsys.readouterr().out
    print(out)
    assert status == 0
    assert "check against golden.gemm: bit-exact" in out
    result = json.loads(report.read_text())
    assert result["bit_exact"] and result["config"]["rows"] == 4
    spec = {"m": 16, "n": 12, "k": 40, "out_format": "fp32"}
    assert counter_law_violations(CONFIG, spec, result["counters"]) == []
    assert server.returncode == 0


def test_board_gemm_rejects_options_that_do_not_match(tmp_path):
    from systole.board import _check_options
    from systole.cli import _parser
    args = _parser().parse_args(["board", "gemm", "--port", "x", "--rows", "8",
                                 "--formats", "e4m3"])
    with pytest.raises(SystemExit, match=r"--rows 8 but the board has 4; --formats "
                                         r"\('e4m3',\) but the board has \('e4m3', 'e5m2'\)"):
        _check_options(args, CONFIG)


def test_board_gemm_bad_port_is_a_clear_error():
    from systole.cli import main
    with pytest.raises(SystemExit, match=r"cannot open /nonexistent/tty"):
        main(["board", "gemm", "--port", "/nonexistent/tty"])

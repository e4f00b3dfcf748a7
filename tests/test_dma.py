"""The AXI4 DMA engines against the simulated AXI4 memory (tests/axi_memory.py).

Both engines sit behind one :class:`AXI4Master` port, as in the accelerator. Random byte
ranges (1 byte, less than a beat, across a 4 KiB boundary, longer than ``max_burst`` beats,
back to back with different tags) run with random latency and pauses on every AXI channel
and on the engines' own streams. Checked on every test:

- the reader delivers exactly the memory's bytes, lane-0 aligned, with exact ``count``,
  ``last`` and ``tag``;
- the writer writes exactly the command's bytes: the whole memory (guard bytes around each
  range included) is compared, and every byte is enabled by exactly one W beat;
- the bursts on the bus are exactly those the stated rules predict (computed here, not by
  the code under test), and the event strobes count them;
- error responses set ``error``, the engine drains back to ``idle`` without hanging, and
  after ``clear`` it works again.

Reproduce a failure with the printed seed: ``./run pytest tests/test_dma.py -k "64-2"``.
"""

import random

import pytest

from systole import SystoleConfig
from systole.hdl.dma import AXI4Master, burst_count

from axi_memory import RESP_DECERR, RESP_OKAY, RESP_SLVERR, AXI4Memory, simulate
from helpers import stream_put

MEM_SIZE = 16 * 4096
PAGE = 4096


# -- the stated rules, independently of the gateware ------------------------------------------

def predicted_bursts(addr, length, bus_bytes, max_burst):
    """(address, beats) of every burst: the naturally aligned beats covering the range, cut
    at each 4 KiB boundary, each piece cut into max_burst-beat bursts and one remainder."""
    first = addr // bus_bytes * bus_bytes
    end = -(-(addr + length) // bus_bytes) * bus_bytes
    bursts = []
    piece = first
    while piece < end:
        piece_end = min(end, (piece // PAGE + 1) * PAGE)
        beats = (piece_end - piece) // bus_bytes
        for k in range(-(-beats // max_burst)):            # ceil(beats / max_burst)
            bursts.append((piece + k * max_burst * bus_bytes,
                           min(max_burst, beats - k * max_burst)))
        piece = piece_end
    return bursts


def bus_beats(addr, length, bus_bytes):
    return -(-(addr % bus_bytes + length) // bus_bytes)


def random_ranges(rng, config, count, *, disjoint):
    """Random (addr, length) of every kind the engines must handle, in random order."""
    nbytes, burst_bytes = config.bus_bytes, config.bus_bytes * config.max_burst
    kinds = ["byte", "sub_beat", "page_cross", "long"]
    kinds += [rng.choice(["byte", "sub_beat", "short", "short", "page_cross", "long"])
              for _ in range(count - len(kinds))]
    rng.shuffle(kinds)
    taken = []
    ranges = []
    for kind in kinds:
        for _ in range(1000):
            if kind == "byte":
                length = 1
            elif kind == "sub_beat":
                length = rng.randint(2, nbytes - 1)
            elif kind == "short":
                length = rng.randint(1, 4 * nbytes)
            elif kind == "page_cross":
                length = rng.randint(2, 6 * nbytes)
            else:
                length = rng.randint(burst_bytes + 1, burst_bytes + min(burst_bytes, 16 * nbytes))
            if kind == "page_cross":
                addr = rng.randint(1, MEM_SIZE // PAGE - 1) * PAGE - rng.randint(1, length - 1)
            else:
                addr = rng.randint(16, MEM_SIZE - length - 16)
            # Guard bytes: at least one beat of untouched memory between ranges.
            if not disjoint or all(addr + length + nbytes <= a or a + n + nbytes <= addr
                                   for a, n in taken):
                break
        else:
            raise AssertionError("could not place a disjoint range")
        taken.append((addr, length))
        ranges.append((addr, length))
    return ranges


def random_config(rng, bus_width):
    return SystoleConfig(bus_width=bus_width, max_burst=rng.choice([1, 2, 5, 16, 256]),
                         max_outstanding=rng.choice([1, 3, 4, 8]))


def random_pauses(rng, dense=False):
    """Pause probabilities per AXI channel, and for the DMA's own data stream. Dense runs
    (no pauses anywhere) put commands back to back on the bus, where the hand-over from one
    command to the next is exercised hardest."""
    if dense:
        return dict.fromkeys(("ar", "r", "aw", "w", "b", "data"), 0.0)
    return {name: rng.choice([0.0, 0.2, 0.5]) for name in ("ar", "r", "aw", "w", "b", "data")}


async def pause(ctx, rng, probability):
    while probability and rng.random() < probability:
        await ctx.tick()


def strobe_counter(signals, counts, done):
    """A testbench adding up the event strobes ``signals`` (name -> signal) into ``counts``
    every cycle until ``done()``."""
    async def bench(ctx):
        while not done():
            _, _, *values = await ctx.tick().sample(*signals.values())
            for name, value in zip(signals, values):
                counts[name] = counts.get(name, 0) + value
    return bench


# -- reader -------------------------------------------------------------------------------------

def run_reads(config, mem, commands, rng, *, pauses, cycles):
    """Issue ``commands`` (addr, length, tag) on the reader; return the beats per command
    and the number of AR and R strobes seen."""
    dut = mem.dut
    reader = dut.reader
    got = []
    strobes = {"ar": 0, "r": 0}

    async def commander(ctx):
        for addr, length, tag in commands:
            await pause(ctx, rng, pauses["data"])
            await stream_put(ctx, reader.cmd, {"addr": addr, "length": length, "tag": tag})

    async def consumer(ctx):
        beats = []
        while len(got) < len(commands) or not ctx.get(reader.idle):
            ready = not pauses["data"] or rng.random() >= pauses["data"]
            ctx.set(reader.data.ready, ready)
            _, _, valid, payload, ar, r = await ctx.tick().sample(
                reader.data.valid, reader.data.payload, reader.ar_fire, reader.r_fire)
            strobes["ar"] += ar
            strobes["r"] += r
            if valid and ready:
                beats.append((payload.data, payload.count, payload.last, payload.tag))
                if payload.last:
                    got.append(beats)
                    beats = []
        assert not beats, "beats after the last command"

    simulate(dut, commander, consumer, memories=[mem], cycles=cycles)
    return got, strobes


def check_read(config, mem, command, beats, context):
    addr, length, tag = command
    nbytes = config.bus_bytes
    want = mem.dump(addr, length)
    assert len(beats) == -(-length // nbytes), f"{context}: {len(beats)} beats"
    data = bytearray()
    for i, (word, count, last, beat_tag) in enumerate(beats):
        final = i == len(beats) - 1
        assert beat_tag == tag, f"{context}: beat {i} tag {beat_tag}"
        assert last == final, f"{context}: beat {i} last={last}"
        assert count == (length - i * nbytes if final else nbytes), \
            f"{context}: beat {i} count={count}"
        data += word.to_bytes(nbytes, "little")[:count]
    assert bytes(data) == want, f"{context}: data differs"


def make_memory(config, rng, *, latency, pauses):
    dut = AXI4Master(config)
    mem = AXI4Memory(dut.bus, MEM_SIZE, read_latency=latency, write_latency=latency,
                     rng=rng, pause=pauses)
    mem.dut = dut
    mem.mem[:] = rng.randbytes(MEM_SIZE)
    return mem


def _random_setup(kind, bus_width, seed):
    """Seeded configuration, pauses and memory for one random read or write test."""
    rng = random.Random(f"{kind}-{bus_width}-{seed}")
    config = random_config(rng, bus_width)
    pauses = random_pauses(rng, dense=seed % 2 == 0)
    latency = rng.choice([1, 2, 9, 33])
    context = f"seed={seed} bus_width={bus_width} max_burst={config.max_burst} " \
              f"max_outstanding={config.max_outstanding} latency={latency} pauses={pauses}"
    print(context)
    mem = make_memory(config, rng, latency=latency, pauses=pauses)
    return rng, config, pauses, mem, context


SEEDS = [1, 2, 3, 4, 5, 6]           # even seeds run dense (no pauses anywhere)
COMMANDS = 24


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bus_width", [32, 64, 128])
def test_read_random(bus_width, seed):
    rng, config, pauses, mem, context = _random_setup("read", bus_width, seed)
    commands = [(addr, length, rng.randrange(4))
                for addr, length in random_ranges(rng, config, COMMANDS, disjoint=False)]

    got, strobes = run_reads(config, mem, commands, rng, pauses=pauses, cycles=50_000)

    assert len(got) == len(commands), context
    for i, (command, beats) in enumerate(zip(commands, got)):
        check_read(config, mem, command, beats, f"{context} command {i} {command}")
    want = [b for addr, length, _ in commands
            for b in predicted_bursts(addr, length, config.bus_bytes, config.max_burst)]
    assert mem.read_bursts == want, context
    assert strobes["ar"] == len(want) == sum(
        burst_count(a, n, bus_bytes=config.bus_bytes, max_burst=config.max_burst)
        for a, n, _ in commands), context
    assert strobes["r"] == mem.r_beats == sum(bus_beats(a, n, config.bus_bytes)
                                              for a, n, _ in commands), context
    assert mem.peak_reads <= config.max_outstanding, context


@pytest.mark.parametrize("aligned", [True, False])
def test_read_throughput(aligned):
    """Law: with a memory that is always ready, latency L = 32 and enough bursts in flight,
    a read of n bus beats delivers its last output beat at most n + L + 2 cycles after the
    command handshake.

    Enough: a burst slot freed by an RLAST at edge t is refilled by an AR handshake at
    t + 2, whose data comes at t + 2 + L; the other bursts in flight carry
    (max_outstanding - 1) * max_burst = 48 >= L + 1 beats, so R never runs dry.

    The 2 cycles: the cycle after the command handshake loads the first AR into the channel
    registers (1), and each R beat reaches ``data`` through the two-entry output FIFO one
    cycle after its handshake (1). The AR handshake itself and the first R beat are the L
    cycles, and the remaining n - 1 beats follow one per cycle. A misaligned read of 4096
    bytes takes 513 bus beats for 512 output beats; its last output beat leaves with the
    last bus beat, so the same law holds with n counted in bus beats.
    """
    config = SystoleConfig(bus_width=64, max_burst=16, max_outstanding=4)
    latency = 32
    rng = random.Random(7)
    mem = make_memory(config, rng, latency=latency, pauses=0.0)
    addr, length = (0x1000, 4096) if aligned else (0x1003, 4096)
    n = bus_beats(addr, length, config.bus_bytes)
    reader = mem.dut.reader
    cycles = {}

    async def bench(ctx):
        ctx.set(reader.cmd.payload, {"addr": addr, "length": length, "tag": 1})
        ctx.set(reader.cmd.valid, 1)
        ctx.set(reader.data.ready, 1)
        cycle = 0
        beats = []
        while True:
            _, _, cmd_fire, valid, payload = await ctx.tick().sample(
                reader.cmd.valid & reader.cmd.ready, reader.data.valid, reader.data.payload)
            cycle += 1
            if cmd_fire:
                ctx.set(reader.cmd.valid, 0)
                cycles["cmd"] = cycle
            if valid:
                beats.append((payload.data, payload.count, payload.last, payload.tag))
                if payload.last:
                    cycles["last"] = cycle
                    break
        check_read(config, mem, (addr, length, 1), beats, "throughput")

    simulate(mem.dut, bench, memories=[mem], cycles=5_000)
    elapsed = cycles["last"] - cycles["cmd"]
    print(f"{n} bus beats, latency {latency}: {elapsed} cycles")
    assert elapsed <= n + latency + 2, f"{elapsed} cycles for {n} beats"


# (bus_width, resp, early_clear, seed). Early: `clear` is pulsed as soon as the error shows
# and the next command follows at once; otherwise both wait for `idle`.
ERROR_CASES = [
    (32, RESP_SLVERR, True, 1),
    (64, RESP_DECERR, False, 1),
    (128, RESP_SLVERR, True, 1),
    (128, RESP_DECERR, False, 2),
    (64, RESP_DECERR, True, 24),    # error on the last beat in flight, commands still queued
    # No error response: ``stop`` (CTRL.ABORT's path) at a random cycle halts the engine.
    (32, None, True, 3),
    (64, None, False, 4),
    (128, None, True, 5),
]


async def pulse(ctx, signal):
    ctx.set(signal, 1)
    await ctx.tick()
    ctx.set(signal, 0)


def stopper(engine, rng, stopped):
    """A testbench that pulses ``engine.stop`` at a random cycle while commands are in
    flight, and records that cycle in ``stopped``."""
    async def bench(ctx):
        cycle = rng.randrange(5, 40)
        await ctx.tick().repeat(cycle)
        stopped.append(cycle)
        await pulse(ctx, engine.stop)
    return bench


@pytest.mark.parametrize("bus_width,resp,early_clear,seed", ERROR_CASES)
def test_read_error(bus_width, resp, early_clear, seed):
    """An error beat (or ``stop``) sets ``error``; the reader drains to ``idle`` although the consumer stops
    taking data, and after ``clear`` the next command is read correctly: no stale beat or
    command of the aborted job leaks into it."""
    rng = random.Random(f"read-error-{bus_width}-{seed}")
    config = random_config(rng, bus_width)
    context = f"seed={seed} bus_width={bus_width} resp={resp} max_burst={config.max_burst} " \
              f"max_outstanding={config.max_outstanding} early_clear={early_clear}"
    print(context)
    mem = make_memory(config, rng, latency=20, pauses=random_pauses(rng))
    ranges = random_ranges(rng, config, 7, disjoint=True)
    commands = [(a, n, i % 4) for i, (a, n) in enumerate(ranges)]
    clean = commands.pop()
    reader = mem.dut.reader
    stopped = []
    stops = [stopper(reader, rng, stopped)] if resp is None else []
    if resp is not None:
        bad_addr, bad_len, _ = commands[2]
        mem.add_error(bad_addr + bad_len // 2, bad_addr + bad_len // 2 + 1, resp)
    aborted = []
    finished = []
    after = []

    async def commander(ctx):
        for addr, length, tag in commands:
            if aborted:
                break
            await stream_put(ctx, reader.cmd, {"addr": addr, "length": length, "tag": tag})
        finished.append("commander")

    async def consumer(ctx):
        # Take data (with pauses) until the error shows, then stop taking it and stop
        # offering commands: a job being aborted. The reader must drain the bus by itself.
        while not ctx.get(reader.error):
            ctx.set(reader.data.ready, rng.random() >= 0.5)
            await ctx.tick()
        aborted.append(True)
        ctx.set(reader.data.ready, 0)
        if early_clear:
            await pulse(ctx, reader.clear)
        while "commander" not in finished or not (early_clear or ctx.get(reader.idle)):
            await ctx.tick()
        if not early_clear:
            assert ctx.get(reader.error), f"{context}: error not sticky"
            await pulse(ctx, reader.clear)
        assert not ctx.get(reader.error), f"{context}: error not cleared"
        addr, length, tag = clean
        await stream_put(ctx, reader.cmd, {"addr": addr, "length": length, "tag": tag})
        ctx.set(reader.data.ready, 1)
        while True:
            _, _, valid, payload = await ctx.tick().sample(reader.data.valid,
                                                           reader.data.payload)
            if valid:
                after.append((payload.data, payload.count, payload.last, payload.tag))
                if payload.last:
                    break
        await ctx.tick().until(reader.idle)
        assert not ctx.get(reader.error), f"{context}: error after clear"
        finished.append("consumer")

    counts = {}
    counter = strobe_counter({"ar": reader.ar_fire, "r": reader.r_fire}, counts,
                             lambda: "consumer" in finished)
    simulate(mem.dut, commander, consumer, counter, *stops, memories=[mem], cycles=20_000)
    check_read(config, mem, clean, after, f"{context}: read after clear")
    assert counts["ar"] == len(mem.read_bursts), context
    assert counts["r"] == mem.r_beats, context
    assert mem.peak_reads <= config.max_outstanding, context


# -- writer -------------------------------------------------------------------------------------

def data_beats(payload, nbytes):
    """The lane-0 aligned beats carrying ``payload``."""
    chunks = [payload[i:i + nbytes] for i in range(0, len(payload), nbytes)]
    return [{"data": int.from_bytes(chunk, "little"), "count": len(chunk),
             "last": i == len(chunks) - 1} for i, chunk in enumerate(chunks)]


def run_writes(mem, commands, rng, *, pauses, cycles):
    """Write ``commands`` (addr, payload bytes); return the AW/W strobe counts."""
    writer = mem.dut.writer
    nbytes = mem.data_bytes
    strobes = {"aw": 0, "w": 0, "bytes": 0}
    sent = []

    async def commander(ctx):
        for addr, payload in commands:
            await pause(ctx, rng, pauses["data"])
            await stream_put(ctx, writer.cmd, {"addr": addr, "length": len(payload)})

    async def producer(ctx):
        for addr, payload in commands:
            for beat in data_beats(payload, nbytes):
                await pause(ctx, rng, pauses["data"])
                await stream_put(ctx, writer.data, beat)
            sent.append(addr)

    async def monitor(ctx):
        await ctx.tick()
        while len(sent) < len(commands) or not ctx.get(writer.idle):
            _, _, aw, w, w_bytes = await ctx.tick().sample(writer.aw_fire, writer.w_fire,
                                                            writer.w_bytes)
            strobes["aw"] += aw
            strobes["w"] += w
            strobes["bytes"] += w_bytes
        assert not ctx.get(writer.error)

    simulate(mem.dut, commander, producer, monitor, memories=[mem], cycles=cycles)
    return strobes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bus_width", [32, 64, 128])
def test_write_random(bus_width, seed):
    rng, config, pauses, mem, context = _random_setup("write", bus_width, seed)
    ranges = random_ranges(rng, config, COMMANDS, disjoint=True)
    commands = [(addr, rng.randbytes(length)) for addr, length in ranges]
    expected = bytearray(mem.mem)
    for addr, payload in commands:
        expected[addr:addr + len(payload)] = payload

    strobes = run_writes(mem, commands, rng, pauses=pauses, cycles=50_000)

    for i, (addr, payload) in enumerate(commands):
        assert mem.dump(addr, len(payload)) == payload, f"{context}: command {i} at {addr:#x}"
    assert mem.mem == expected, f"{context}: bytes outside the ranges changed"
    written = mem.written_bytes()
    want_written = {a: 1 for addr, payload in commands for a in range(addr, addr + len(payload))}
    assert written == want_written, f"{context}: WSTRB enabled the wrong bytes"
    want = [b for addr, payload in commands
            for b in predicted_bursts(addr, len(payload), config.bus_bytes, config.max_burst)]
    assert mem.write_bursts == want, context
    assert strobes["aw"] == len(want), context
    assert strobes["w"] == len(mem.writes) == sum(bus_beats(a, len(p), config.bus_bytes)
                                                  for a, p in commands), context
    assert strobes["bytes"] == sum(len(p) for _, p in commands), context
    assert mem.peak_writes <= config.max_outstanding, context


def test_write_throughput():
    """Law: with a memory that is always ready, B latency L = 32 and enough bursts in
    flight, a write of n bus beats is idle again (every B in) at most n + L + 3 cycles after
    the command handshake, with the data stream always valid.

    The 3 cycles: loading the first AW (1), the W side starting the burst once the AW is
    loaded (1) and the W output register (1); then n beats one per cycle, and the last B
    arrives L cycles after the last W beat.
    """
    config = SystoleConfig(bus_width=64, max_burst=16, max_outstanding=4)
    latency = 32
    rng = random.Random(8)
    mem = make_memory(config, rng, latency=latency, pauses=0.0)
    addr, length = 0x1000, 4096
    n = bus_beats(addr, length, config.bus_bytes)
    writer = mem.dut.writer
    payload = rng.randbytes(length)
    beats = data_beats(payload, config.bus_bytes)
    cycles = {}

    async def bench(ctx):
        ctx.set(writer.cmd.payload, {"addr": addr, "length": length})
        ctx.set(writer.cmd.valid, 1)
        ctx.set(writer.data.valid, 1)
        ctx.set(writer.data.payload, beats[0])
        index = cycle = 0
        while True:
            _, _, cmd_fire, data_fire, idle = await ctx.tick().sample(
                writer.cmd.valid & writer.cmd.ready, writer.data.valid & writer.data.ready,
                writer.idle)
            cycle += 1
            if cmd_fire:
                ctx.set(writer.cmd.valid, 0)
                cycles["cmd"] = cycle
            if data_fire:
                index += 1
                if index == len(beats):
                    ctx.set(writer.data.valid, 0)
                else:
                    ctx.set(writer.data.payload, beats[index])
            if idle and index == len(beats):
                cycles["idle"] = cycle
                break

    simulate(mem.dut, bench, memories=[mem], cycles=5_000)
    assert mem.dump(addr, length) == payload
    elapsed = cycles["idle"] - cycles["cmd"]
    print(f"{n} bus beats, B latency {latency}: {elapsed} cycles")
    assert elapsed <= n + latency + 3, f"{elapsed} cycles for {n} beats"


@pytest.mark.parametrize("bus_width,resp,early_clear,seed", ERROR_CASES)
def test_write_error(bus_width, resp, early_clear, seed):
    """An error response (or ``stop``) sets ``error``; the writer drains to ``idle`` although the producer
    stops sending data, enables no byte once the error is in (bar the beat already on W),
    writes nothing outside the commands' ranges, and after ``clear`` the next command is
    written correctly."""
    rng = random.Random(f"write-error-{bus_width}-{seed}")
    config = random_config(rng, bus_width)
    context = f"seed={seed} bus_width={bus_width} resp={resp} max_burst={config.max_burst} " \
              f"max_outstanding={config.max_outstanding} early_clear={early_clear}"
    print(context)
    mem = make_memory(config, rng, latency=20, pauses=random_pauses(rng))
    ranges = random_ranges(rng, config, 7, disjoint=True)
    commands = [(addr, rng.randbytes(length)) for addr, length in ranges]
    clean = commands.pop()
    writer = mem.dut.writer
    stopped = []
    stops = [stopper(writer, rng, stopped)] if resp is None else []
    bad = (0, 0)
    if resp is not None:
        bad_addr, bad_payload = commands[1]
        bad = (bad_addr + len(bad_payload) // 2, bad_addr + len(bad_payload) // 2 + 1)
        mem.add_error(*bad, resp)
    before = bytes(mem.mem)
    nbytes = config.bus_bytes
    aborted = []
    finished = []

    # Commands and data are offered until the error shows (a job being aborted).
    async def commander(ctx):
        for addr, payload in commands:
            if aborted:
                break
            await stream_put(ctx, writer.cmd, {"addr": addr, "length": len(payload)})
        finished.append("commander")

    async def producer(ctx):
        for addr, payload in commands:
            for beat in data_beats(payload, nbytes):
                await pause(ctx, rng, 0.2)
                if aborted:
                    finished.append("producer")
                    return
                await stream_put(ctx, writer.data, beat)
        finished.append("producer")

    async def supervisor(ctx):
        await ctx.tick().until(writer.error)
        aborted.append(True)
        if early_clear:
            await pulse(ctx, writer.clear)
        while len(finished) < 2 or not (early_clear or ctx.get(writer.idle)):
            await ctx.tick()
        if not early_clear:
            assert ctx.get(writer.error), f"{context}: error not sticky"
            await pulse(ctx, writer.clear)
        assert not ctx.get(writer.error), f"{context}: error not cleared"
        addr, payload = clean
        await stream_put(ctx, writer.cmd, {"addr": addr, "length": len(payload)})
        for beat in data_beats(payload, nbytes):
            await stream_put(ctx, writer.data, beat)
        await ctx.tick().until(writer.idle)
        assert not ctx.get(writer.error), f"{context}: error after clear"
        finished.append("supervisor")

    counts = {}
    counter = strobe_counter({"aw": writer.aw_fire, "w": writer.w_fire,
                              "bytes": writer.w_bytes}, counts,
                             lambda: "supervisor" in finished)
    simulate(mem.dut, commander, producer, supervisor, counter, *stops, memories=[mem],
             cycles=20_000)
    assert counts["aw"] == len(mem.write_bursts), context
    assert counts["w"] == len(mem.writes), context
    assert counts["bytes"] == sum(bin(strobe).count("1") for _, strobe in mem.writes), context
    assert mem.peak_writes <= config.max_outstanding, context

    # Once the error response (or the stop) is in, the writer only completes bursts
    # already announced on AW, with WSTRB = 0 (the one beat already in the W register
    # excepted).
    error_cycle = (stopped[0] if resp is None else
                   min(cycle for cycle, r in mem.b_log if r != RESP_OKAY))
    clean_start = len(mem.writes) - bus_beats(clean[0], len(clean[1]), nbytes)
    late = [(cycle, addr, strobe) for cycle, (addr, strobe)
            in zip(mem.w_cycles[:clean_start], mem.writes[:clean_start])
            if cycle > error_cycle and strobe]
    assert len(late) <= 1, f"{context}: enabled writes after the error: {late}"
    inside = {a for addr, payload in commands + [clean] for a in range(addr, addr + len(payload))}
    outside = set(mem.written_bytes()) - inside
    assert not outside, f"{context}: wrote outside the commands at {sorted(outside)[:4]}"
    for a in range(*bad):
        assert mem.mem[a] == before[a], f"{context}: wrote the failing byte {a:#x}"
    for a in range(MEM_SIZE):
        if a not in inside:
            assert mem.mem[a] == before[a], f"{context}: byte {a:#x} outside changed"
    addr, payload = clean
    assert mem.dump(addr, len(payload)) == payload, f"{context}: write after clear"


def test_unexpected_response_trips_the_writers_invariant():
    """The engines check their invariants on every clock edge (hdl/dma.py,
    ``_queue_invariants``): a B response with no burst in flight, which no AXI4 slave may
    send, takes the writer's outstanding count past its limit, and Amaranth's simulator
    stops on the violated assertion."""
    from amaranth.sim import Simulator

    from systole.hdl.dma import DmaWriter
    config = SystoleConfig(rows=1, cols=4, bus_width=32, max_outstanding=2)
    writer = DmaWriter(config)
    sim = Simulator(writer)
    sim.add_clock(1e-6)

    async def stray_response(ctx):
        ctx.set(writer.bus.bvalid, 1)
        for _ in range(2):
            await ctx.tick()

    sim.add_testbench(stray_response)
    with pytest.raises(AssertionError, match="DmaWriter: more than 2 bursts in flight"):
        sim.run()

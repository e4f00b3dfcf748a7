"""JobChecker on the Amaranth simulator: every rule of ErrorCode, in order, against a
reference written from the rules (docs/registers.md), and the checker's latency."""

import os

import numpy as np
import pytest

from systole.config import SystoleConfig
from systole.hdl.fp8 import Fp8Format, OutFormat
from systole.hdl.job import JobChecker, check_cycles
from systole.hdl.registers import DESCRIPTOR_REGISTERS, ErrorCode, systole_register_map

from helpers import run_simulation

_OUT_BYTES = {OutFormat.FP32: 4, OutFormat.BF16: 2, OutFormat.E4M3: 1, OutFormat.E5M2: 1}


def _reference(config, d):
    """The first failing rule of docs/registers.md's error table, or NONE."""
    ob = _OUT_BYTES[d["out_format"]]
    if 0 in (d["m"], d["n"], d["k"]):
        return ErrorCode.BAD_DIMENSION
    if d["k"] > config.max_k:
        return ErrorCode.K_TOO_LARGE
    if d["a_stride"] < d["k"] or d["b_stride"] < d["n"] or d["c_stride"] < d["n"] * ob:
        return ErrorCode.BAD_STRIDE
    if d["c_addr"] % ob or d["c_stride"] % ob:
        return ErrorCode.MISALIGNED_OUTPUT
    limit = 1 << config.addr_width
    ends = [d["a_addr"] + (d["m"] - 1) * d["a_stride"] + d["k"],
            d["b_addr"] + (d["k"] - 1) * d["b_stride"] + d["n"],
            d["c_addr"] + (d["m"] - 1) * d["c_stride"] + d["n"] * ob]
    if max(ends) > limit:
        return ErrorCode.ADDRESS_OVERFLOW
    enabled = {Fp8Format.from_name(name) for name in config.formats}
    if d["a_format"] not in enabled or d["b_format"] not in enabled:
        return ErrorCode.BAD_FORMAT
    return ErrorCode.NONE


def _words(regmap, d):
    """The descriptor registers' words for the descriptor ``d``, in
    DESCRIPTOR_REGISTERS order."""
    values = {"M": d["m"], "N": d["n"], "K": d["k"],
              "A_STRIDE": d["a_stride"], "B_STRIDE": d["b_stride"], "C_STRIDE": d["c_stride"],
              "FORMAT": regmap["FORMAT"].encode(
                  a_format=d["a_format"], b_format=d["b_format"], out_format=d["out_format"],
                  saturate=d["saturate"], scale_exp=d["scale_exp"])}
    for operand in "ABC":
        address = d[f"{operand.lower()}_addr"]
        values[f"{operand}_ADDR_LO"] = address & 0xFFFFFFFF
        values[f"{operand}_ADDR_HI"] = address >> 32
    return [values[name] for name in DESCRIPTOR_REGISTERS]


def _valid(config, **overrides):
    d = dict(m=5, n=6, k=7, a_addr=0, b_addr=0x100, c_addr=0x200, a_stride=7, b_stride=6,
             c_stride=24, a_format=Fp8Format.E4M3, b_format=Fp8Format.E4M3,
             out_format=OutFormat.FP32, saturate=1, scale_exp=0)
    d.update(overrides)
    return d


def _edge_cases(config):
    top = (1 << 32) - 1                         # M, N, K and strides are 32-bit registers
    limit = min(1 << config.addr_width, top)
    return [
        _valid(config),
        _valid(config, m=0), _valid(config, n=0), _valid(config, k=0),
        _valid(config, k=config.max_k + 1, a_stride=config.max_k + 1),
        _valid(config, k=config.max_k, a_stride=config.max_k, m=1, n=1, b_stride=1,
               c_stride=4),
        _valid(config, a_stride=6), _valid(config, b_stride=5), _valid(config, c_stride=20),
        _valid(config, c_addr=0x202), _valid(config, c_stride=26),
        _valid(config, out_format=OutFormat.BF16, c_stride=13),
        _valid(config, out_format=OutFormat.E4M3, c_addr=0x201, c_stride=7),
        # exactly at and one past the end of memory, for each operand
        _valid(config, a_addr=limit - 4 * 7 - 7), _valid(config, a_addr=limit - 4 * 7 - 6),
        _valid(config, b_addr=limit - 6 * 6 - 6), _valid(config, b_addr=limit - 6 * 6 - 5),
        _valid(config, c_addr=limit - 4 * 24 - 24), _valid(config, c_addr=limit - 4 * 24 - 20),
        _valid(config, a_addr=1 << 40), _valid(config, c_addr=top << 32),
        # products far beyond memory, huge strides of single rows
        _valid(config, m=top, c_stride=top, a_stride=top),
        _valid(config, m=1, a_stride=top, c_stride=top - 3),
        _valid(config, k=1, b_stride=top, a_stride=1),
        _valid(config, m=limit, a_stride=7), _valid(config, m=limit // 8, a_stride=7),
        _valid(config, m=2, a_stride=limit - 7), _valid(config, m=2, a_stride=limit - 6),
        _valid(config, n=limit, b_stride=limit, c_stride=min(4 * limit, top), k=1, m=1,
               a_stride=1,
               b_addr=0, c_addr=0, out_format=OutFormat.E4M3),
        _valid(config, a_format=Fp8Format.E5M2), _valid(config, b_format=Fp8Format.E5M2),
    ]


def _random_cases(config, rng, count):
    cases = []
    aw = config.addr_width
    for _ in range(count):
        def dim(bits):
            return int(rng.integers(0, 1 << int(rng.integers(0, bits + 1))))
        d = _valid(config, m=dim(min(aw, 32)), n=dim(min(aw, 32)), k=dim(14),
                   out_format=OutFormat(int(rng.integers(4))),
                   a_format=Fp8Format(int(rng.integers(2))),
                   b_format=Fp8Format(int(rng.integers(2))))
        ob = _OUT_BYTES[d["out_format"]]
        d["a_stride"] = min((1 << 32) - 1, d["k"] + dim(4))
        d["b_stride"] = min((1 << 32) - 1, d["n"] + dim(4))
        d["c_stride"] = min((1 << 32) - 1, d["n"] * ob + ob * dim(3))
        for name in ("a_addr", "b_addr", "c_addr"):
            d[name] = int(rng.integers(0, 1 << min(aw + 1, 62))) & ~(3 if name == "c_addr" else 0)
        cases.append(d)
    return cases


@pytest.mark.parametrize("config", [
    SystoleConfig(rows=2, cols=2, formats=("e4m3",), max_k=4096, addr_width=17),
    SystoleConfig(rows=2, cols=2, addr_width=32),
    SystoleConfig(rows=2, cols=2, formats=("e5m2",), addr_width=40, max_k=1 << 20),
], ids=["aw17-e4m3", "aw32", "aw40-e5m2"])
def test_checker_matches_the_rules(config):
    seed = int(os.environ.get("SYSTOLE_SEED", 31))
    rng = np.random.default_rng(seed)
    cases = _edge_cases(config) + _random_cases(config, rng, 150)
    expected = [_reference(config, d) for d in cases]
    assert {code for code in expected} >= {ErrorCode.NONE, ErrorCode.ADDRESS_OVERFLOW}
    regmap = systole_register_map(config)
    dut = JobChecker(config)
    failures = []

    async def bench(ctx):
        for number, (d, want) in enumerate(zip(cases, expected)):
            words = _words(regmap, d)
            # Every fourth case, the bank's read port is busy now and then: the checker
            # waits for it, one cycle more than check_cycles per busy cycle it asked in.
            busy_port = number % 4 == 3
            ctx.set(dut.start, 1)
            cycles = stalls = 0
            while True:
                free = not (busy_port and rng.random() < 0.3)
                ctx.set(dut.fetch.free, free)
                fetched = ctx.get(dut.fetch.index) if ctx.get(dut.fetch.en) else None
                if fetched is not None and not (ctx.get(dut.fetch.hold) and free):
                    failures.append((d, "fetch without hold or free port"))
                stalls += bool(ctx.get(dut.fetch.hold)) and not free
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycles += 1
                # The bank's word the cycle after its fetch, garbage on every other cycle:
                # the checker must take each word when it arrives.
                ctx.set(dut.fetch.data, words[fetched] if fetched is not None
                        else int(rng.integers(1 << 32)))
                if ctx.get(dut.done):
                    break
                assert ctx.get(dut.busy)
            got = ctx.get(dut.error)
            if got != want or cycles != check_cycles(config, d["m"], d["k"]) + stalls:
                failures.append((d, want, got, cycles, stalls))
            if want == ErrorCode.NONE:
                # Addresses are computed modulo 2**addr_width; a stride only matters between
                # rows, so an accepted job's stride may be any value modulo it.
                held = {name: ctx.get(getattr(dut.checked, name)) for name in d}
                modulus = 1 << config.addr_width
                if any(held[name] != d[name] if not name.endswith("stride")
                       else held[name] % modulus != d[name] % modulus for name in d):
                    failures.append((d, "latched", held, cycles))
            await ctx.tick()
            assert not ctx.get(dut.busy) and not ctx.get(dut.fetch.hold)

    run_simulation(dut, bench)
    assert not failures, f"seed {seed}: {len(failures)} wrong, first {failures[:3]}"

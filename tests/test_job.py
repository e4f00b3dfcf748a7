"""JobChecker on the Amaranth simulator: every rule of ErrorCode, in order, against a
reference written from the rules (docs/registers.md; the plan rules are
:func:`systole.plan.check` itself), and the checker's latency."""

import os

import numpy as np
import pytest

from systole import plan as tiling
from systole.config import SystoleConfig
from systole.hdl.fp8 import Fp8Format, OutFormat
from systole.hdl.job import JobChecker, check_cycles
from systole.hdl.registers import DESCRIPTOR_REGISTERS, ErrorCode, systole_register_map

from helpers import run_simulation

_OUT_BYTES = {OutFormat.FP32: 4, OutFormat.BF16: 2, OutFormat.E4M3: 1, OutFormat.E5M2: 1}


def _plan_reason(config, d):
    """Why the descriptor's plan cannot run (systole.plan.check, and zero tile counts,
    which no TilingPlan has), or None."""
    mc_tiles, nc_tiles, kc_log2, order = d["plan"]
    if mc_tiles == 0 or nc_tiles == 0:
        return f"zero tiles: {mc_tiles} x {nc_tiles}"
    plan = tiling.TilingPlan(mc_tiles, nc_tiles, kc_log2, tiling.LoopOrder(order))
    return tiling.check(config, d["m"], d["n"], d["k"], plan)


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
    if _plan_reason(config, d):
        return ErrorCode.BAD_PLAN
    spans = [(d[f"{operand}_addr"], end - 1) for operand, end in zip("abc", ends)]
    if any(spans[2][0] <= last and first <= spans[2][1] for first, last in spans[:2]):
        return ErrorCode.OVERLAP
    return ErrorCode.NONE


def _words(regmap, d):
    """The descriptor registers' words for the descriptor ``d``, in
    DESCRIPTOR_REGISTERS order."""
    values = {"M": d["m"], "N": d["n"], "K": d["k"],
              "A_STRIDE": d["a_stride"], "B_STRIDE": d["b_stride"], "C_STRIDE": d["c_stride"],
              "FORMAT": regmap["FORMAT"].encode(
                  a_format=d["a_format"], b_format=d["b_format"], out_format=d["out_format"],
                  saturate=d["saturate"], scale_exp=d["scale_exp"]),
              "PLAN": regmap["PLAN"].encode(**dict(zip(_PLAN_FIELDS, d["plan"])))}
    for operand in "ABC":
        address = d[f"{operand.lower()}_addr"]
        values[f"{operand}_ADDR_LO"] = address & 0xFFFFFFFF
        values[f"{operand}_ADDR_HI"] = address >> 32
    return [values[name] for name in DESCRIPTOR_REGISTERS]


_PLAN_FIELDS = ("mc_tiles", "nc_tiles", "kc_log2", "order")


def _smallest_plan(config):
    """Blocks of one tile, the shortest K chunk: a plan every job of these tests can run."""
    return (1, 1, tiling.kc_log2_range(config)[0], 0)


def _valid(config, **overrides):
    fmt = Fp8Format.from_name(config.formats[0])
    d = dict(m=5, n=6, k=7, a_addr=0, b_addr=0x100, c_addr=0x200, a_stride=7, b_stride=6,
             c_stride=24, a_format=fmt, b_format=fmt,
             out_format=OutFormat.FP32, saturate=1, scale_exp=0, plan=_smallest_plan(config))
    d.update(overrides)
    return d


def _edge_cases(config):
    top = (1 << 32) - 1                         # M, N, K and strides are 32-bit registers
    limit = min(1 << config.addr_width, top)
    low = tiling.kc_log2_range(config)[0]
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
        *[_valid(config, **{operand: fmt}) for fmt in Fp8Format
          for operand in ("a_format", "b_format")],
        # BAD_PLAN comes last: after BAD_FORMAT, after ADDRESS_OVERFLOW
        _valid(config, plan=(0, 1, low, 0)), _valid(config, plan=(1, 1, low - 1, 1)),
        *[_valid(config, a_format=fmt, plan=(1, 0, low, 0)) for fmt in Fp8Format],
        _valid(config, a_addr=1 << 40, plan=(1, 1, 31, 0)),
        # OVERLAP comes after BAD_PLAN. A ends at byte 34, B spans 0x100..0x123 and C
        # 0x200..0x277: C on A's last byte or one past it, A on C's last byte or one past
        # it, B inside C, C on B, and A on B (allowed: both are only read).
        _valid(config, out_format=OutFormat.E4M3, c_addr=34, c_stride=6),
        _valid(config, out_format=OutFormat.E4M3, c_addr=35, c_stride=6),
        _valid(config, a_addr=0x277), _valid(config, a_addr=0x278),
        _valid(config, b_addr=0x210), _valid(config, c_addr=0x100), _valid(config, b_addr=0),
        _valid(config, c_addr=0x100, plan=(0, 1, low, 0)),
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
        if rng.random() < 0.3:
            d["plan"] = _random_plan(config, rng, d["k"])
        cases.append(d)
    return cases


def _random_plan(config, rng, k):
    """Plan fields near the limits of the rules for a chunk near K's: zero and too many
    tiles, A and B blocks just fitting or not, blocks of about as many tiles as the
    partial-sum SRAM holds, chunks just inside and outside the buffers."""
    low, high = tiling.kc_log2_range(config)
    kc_log2 = int(rng.integers(max(0, low - 2), min(31, high + 2) + 1))
    if rng.random() < 0.5 and k >= 1:
        # a chunk of about K: one chunk or two
        kc_log2 = min(31, max(0, (k - 1).bit_length() - int(rng.integers(0, 2))))
    banks = config.b_banks
    a_limit = config.a_bank_bytes >> kc_log2
    b_limit = banks * ((config.sram_depth // banks) >> kc_log2)

    def near(bound):
        return int(np.clip(bound + int(rng.integers(-1, 2)), 0, 255))
    order = int(rng.integers(0, 2))
    # Blocks of exactly as many tiles as the partial-sum SRAM holds, or one more.
    target = max(1, config.psum_tiles) + int(rng.integers(0, 2))
    shapes = [(mc_tiles, target // mc_tiles) for mc_tiles in range(1, 256)
              if target % mc_tiles == 0 and target // mc_tiles < 256]
    if shapes and rng.random() < 0.25:
        return (*shapes[int(rng.integers(len(shapes)))], kc_log2, order)
    choices = [lambda: 0, lambda: 1, lambda: int(rng.integers(0, 256)),
               lambda: int(rng.integers(1, 9))]
    mc_tiles = rng.choice(choices + [lambda: near(a_limit)])()
    nc_tiles = rng.choice(choices + [lambda: near(b_limit)])()
    return (mc_tiles, nc_tiles, kc_log2, order)


def _check_all(config, cases, expected, rng, seed):
    """Run every descriptor through the checker: its verdict, its latency, and what it
    latched for an accepted job."""
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
                held = {name: ctx.get(getattr(dut.checked, name)) for name in d
                        if name != "plan"}
                held["plan"] = tuple(ctx.get(getattr(dut.checked.plan, name))
                                     for name in _PLAN_FIELDS)
                modulus = 1 << config.addr_width
                if any(held[name] != d[name] if not name.endswith("stride")
                       else held[name] % modulus != d[name] % modulus for name in d):
                    failures.append((d, "latched", held, cycles))
            await ctx.tick()
            assert not ctx.get(dut.busy) and not ctx.get(dut.fetch.hold)

    run_simulation(dut, bench)
    assert not failures, f"seed {seed}: {len(failures)} wrong, first {failures[:3]}"


@pytest.mark.parametrize("config", [
    SystoleConfig(rows=2, cols=2, formats=("e4m3",), max_k=4096, addr_width=17),
    SystoleConfig(rows=2, cols=2, addr_width=32),
    SystoleConfig(rows=2, cols=2, formats=("e5m2",), addr_width=40, max_k=1 << 20),
], ids=["aw17-e4m3", "aw32", "aw40-e5m2"])
def test_checker_matches_the_rules(config):
    seed = int(os.environ.get("SYSTOLE_SEED", 31))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    cases = _edge_cases(config) + _random_cases(config, rng, 150)
    expected = [_reference(config, d) for d in cases]
    assert {code for code in expected} >= {ErrorCode.NONE, ErrorCode.ADDRESS_OVERFLOW,
                                           ErrorCode.BAD_PLAN, ErrorCode.OVERLAP} | (
        {ErrorCode.BAD_FORMAT} if len(config.formats) < len(Fp8Format) else set())
    _check_all(config, cases, expected, rng, seed)


def _plan_job(config, m, n, k, out_format, plan):
    """A descriptor of these dimensions that is valid but for its plan: A, B and C packed."""
    ob = _OUT_BYTES[out_format]
    b_addr = m * k
    c_addr = -(-(b_addr + k * n) // 4) * 4
    return _valid(config, m=m, n=n, k=k, a_addr=0, b_addr=b_addr, c_addr=c_addr, a_stride=k,
                  b_stride=n, c_stride=n * ob, out_format=out_format, plan=plan)


def _limits(config, kc_log2):
    """Most row and column tiles of a block with this chunk (0 for a chunk out of range)."""
    low, high = tiling.kc_log2_range(config)
    if not low <= kc_log2 <= high:
        return 0, 0
    banks = config.b_banks
    return (min(255, config.a_bank_bytes >> kc_log2),
            min(255, banks * ((config.sram_depth // banks) >> kc_log2)))


def _plan_edge_cases(config):
    """Each plan rule at its boundary, for the shortest and longest chunks and one step
    beyond them, with K in one chunk and in two."""
    low, high = tiling.kc_log2_range(config)
    cases = []
    for kc_log2 in sorted({low, high} | {c for c in (low - 1, high + 1) if 0 <= c < 32}):
        a_limit, b_limit = _limits(config, kc_log2)
        shapes = [(a_limit, 1), (a_limit + 1, 1), (1, b_limit), (1, b_limit + 1), (0, 1), (1, 0)]
        # The largest block the partial-sum SRAM holds, and the smallest it does not.
        bound = max(1, config.psum_tiles)
        fitting = [(mc * min(b_limit, bound // mc), mc, min(b_limit, bound // mc))
                   for mc in range(1, min(a_limit, bound) + 1)]
        beyond = [(mc * -(-(bound + 1) // mc), mc, -(-(bound + 1) // mc))
                  for mc in range(1, a_limit + 1) if -(-(bound + 1) // mc) <= b_limit]
        shapes += [max(fitting)[1:]] if fitting else []
        shapes += [min(beyond)[1:]] if beyond else []
        for k in {1 << kc_log2, (1 << kc_log2) + 1}:
            k = min(k, config.max_k)
            cases += [_plan_job(config, 3, 5, k, OutFormat.FP32, (mc, nc, kc_log2, index % 2))
                      for index, (mc, nc) in enumerate(shapes) if mc < 256 and nc < 256]
    return cases


def _plan_cases(config, rng, count):
    """Descriptors valid but for their plans: random shapes, K around a chunk boundary."""
    cases = []
    for _ in range(count):
        m, n = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        k = int(rng.integers(1, config.max_k + 1))
        fields = _random_plan(config, rng, k)
        if rng.random() < 0.7:
            # K one below, at or one above a multiple of the chunk (one chunk or several)
            kc = 1 << fields[2]
            k = int(np.clip(kc * int(rng.integers(1, 3)) + int(rng.integers(-1, 2)), 1,
                            config.max_k))
        cases.append(_plan_job(config, m, n, k, OutFormat(int(rng.integers(4))), fields))
    return cases


@pytest.mark.parametrize("config", [
    SystoleConfig(),
    SystoleConfig(rows=2, cols=2, bus_width=32, sram_depth=16, row_tiles=3, psum_depth=0,
                  max_k=1024, addr_width=20),
    SystoleConfig(rows=4, cols=4, bus_width=128, sram_depth=256, row_tiles=1, psum_depth=24,
                  max_k=4096),
    SystoleConfig(rows=1, cols=8, sram_depth=4096, row_tiles=16, psum_depth=1 << 16,
                  max_k=1 << 16),
], ids=["default", "2x2-bus32-no-psum", "4x4-bus128-psum6", "1x8-psum65536"])
def test_checker_plan_rules_are_plan_check(config):
    """BAD_PLAN exactly when systole.plan.check rejects the plan (or a tile count is zero),
    for descriptors otherwise valid; every rule of the plan is met on both sides."""
    seed = int(os.environ.get("SYSTOLE_SEED", 37))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    cases = _plan_edge_cases(config) + _plan_cases(config, rng, 250)
    for d in cases:
        d_valid = dict(d, plan=_smallest_plan(config))
        assert _reference(config, d_valid) == ErrorCode.NONE, (seed, d)
    expected = [ErrorCode.BAD_PLAN if _plan_reason(config, d) else ErrorCode.NONE
                for d in cases]
    # Every rule decides some of the cases (the partial-sum rule only where the SRAM holds
    # fewer tiles than the largest block has).
    rules = {"zero": "zero", "K chunk": "chunk", "an A": "A", "a B": "B", "a C": "psum"}
    met = {next(rule for start, rule in rules.items() if reason.startswith(start))
           if reason else "ok" for reason in (_plan_reason(config, d) for d in cases)}
    largest = _limits(config, tiling.kc_log2_range(config)[0])
    psum_reachable = largest[0] * largest[1] > max(1, config.psum_tiles)
    wanted = {"ok", "zero", "chunk", "A", "B"} | ({"psum"} if psum_reachable else set())
    assert met == wanted, f"seed {seed}: rules met {sorted(met)}, wanted {sorted(wanted)}"
    _check_all(config, cases, expected, rng, seed)

"""The normaliser against ``golden.round_to_format``: random states plus the edge cases."""

import numpy as np
import pytest

from systole import SystoleConfig
from systole.formats import OUTPUT_FORMATS
from systole.hdl.fp8 import OutFormat
from systole.hdl.normalizer import Normalizer
from systole.sim import golden

from helpers import run_simulation

CONFIG = SystoleConfig(rows=1, cols=1)
#: The iCEBreaker's accumulator (E4M3 only, K up to 4096) and the widest one (K up to 2**31).
OTHER_CONFIGS = [SystoleConfig(rows=1, cols=1, formats=("e4m3",), max_k=4096),
                 SystoleConfig(rows=1, cols=1, max_k=1 << 31)]


def _edge_cases(rng, fmt_name, config=CONFIG):
    """(acc, scale_exp) pairs placed on the rounding decisions of ``fmt_name``.

    For each target exponent from below half the smallest subnormal to beyond the largest
    finite value, a magnitude whose kept significand is even or odd (or all ones, to carry
    into the next binade) is followed by a tail that is exactly half an ulp (a tie),
    just below or just above it.
    """
    spec = OUTPUT_FORMATS[fmt_name]
    lsb = config.acc_lsb_exp
    cases = []
    for exponent in range(spec.emin - spec.man_bits - 3, spec.max_exp + 3):
        # Quantum of the result at this exponent, and how many bits are kept.
        quantum = max(exponent, spec.emin) - spec.man_bits
        kept_bits = exponent - quantum + 1
        if kept_bits < 1:
            kept = [0]
            tail_bits = exponent - quantum + 1
        else:
            top = 1 << (kept_bits - 1)
            kept = [top, top + 1, 2 * top - 1, top | int(rng.integers(0, top))]
            tail_bits = 8
        for significand in kept:
            for tail in ("tie", "below", "above", "zero"):
                half = 1 << (tail_bits - 1) if tail_bits >= 1 else 0
                low = {"tie": half, "below": half - 1, "above": half + 1, "zero": 0}[tail]
                if tail_bits < 1:
                    continue
                mag = (significand << tail_bits) | max(low, 0)
                if mag == 0:
                    continue
                # value = mag * 2**(lsb + scale) must have its leading bit at `exponent`
                # when the significand has kept_bits bits; pick scale accordingly.
                lead = mag.bit_length() - 1
                want_lead_exp = quantum - tail_bits + lead
                scale = want_lead_exp - lead - lsb
                # Keep the magnitude in the accumulator and the scale in its field by
                # trading powers of two between them.
                while scale > 127:
                    mag <<= 1
                    scale -= 1
                while scale < -128 and mag.bit_length() > 1 and mag & 1 == 0:
                    mag >>= 1
                    scale += 1
                if not -128 <= scale <= 127 or mag.bit_length() >= config.acc_width - 1:
                    continue
                sign = -1 if rng.random() < 0.5 else 1
                cases.append((sign * mag, scale))
    return cases


def _run(states, fmt_name, saturate, seed, config=CONFIG):
    """Drive (acc, scale, nan, pos_inf, neg_inf, neg_zero) states; return output bits.

    One state enters per advancing cycle; between them the pipeline is held (``advance``
    low, for a seeded random number of cycles) with unrelated values on the inputs, and
    ``bits`` must not change while it is held. The result of the state presented at
    advancing cycle n is read after advancing cycle n + LATENCY - 1.
    """
    dut = Normalizer(config)
    latency = Normalizer.LATENCY
    got = np.zeros(len(states), dtype=np.uint32)
    rng = np.random.default_rng(seed)
    out_format = OutFormat.from_name(fmt_name)

    def present(ctx, acc, scale, nan, pos_inf, neg_inf, neg_zero):
        ctx.set(dut.state, {"acc": acc, "nan": nan, "pos_inf": pos_inf,
                            "neg_inf": neg_inf, "neg_zero": neg_zero})
        ctx.set(dut.scale_exp, scale)

    async def bench(ctx):
        ctx.set(dut.out_format, out_format)
        ctx.set(dut.saturate, saturate)
        for n in range(len(states) + latency - 1):
            while rng.random() < 0.2:
                # Held: other inputs must neither enter nor disturb the pipeline.
                ctx.set(dut.advance, 0)
                present(ctx, *states[int(rng.integers(len(states)))])
                ctx.set(dut.out_format, OutFormat(int(rng.integers(4))))
                ctx.set(dut.saturate, int(rng.integers(2)))
                held = ctx.get(dut.bits)
                await ctx.tick()
                assert ctx.get(dut.bits) == held, f"seed={seed}: bits changed while held"
            ctx.set(dut.advance, 1)
            ctx.set(dut.out_format, out_format)
            ctx.set(dut.saturate, saturate)
            if n < len(states):
                present(ctx, *states[n])
            await ctx.tick()
            if n >= latency - 1:
                got[n - latency + 1] = ctx.get(dut.bits)

    run_simulation(dut, bench)
    return got


def _expected(states, fmt_name, saturate, config=CONFIG):
    out = []
    for acc, scale, nan, pos_inf, neg_inf, neg_zero in states:
        bits = golden.round_to_format(
            np.array([acc], dtype=object), config.acc_lsb_exp, fmt_name, saturate=saturate,
            scale_exp=scale, nan=np.array([nan]), pos_inf=np.array([pos_inf]),
            neg_inf=np.array([neg_inf]), neg_zero=np.array([neg_zero]))
        out.append(int(bits[0]))
    return np.array(out, dtype=np.uint32)


def _seeded(base, fmt_name, saturate):
    """A seed per (test, format, mode), printed so a failure reproduces, and its rng."""
    seed = base + list(OUTPUT_FORMATS).index(fmt_name) * 2 + saturate
    print(f"seed={seed}")
    return seed, np.random.default_rng(seed)


def _check(states, fmt_name, saturate, seed, config=CONFIG):
    """The normaliser's bits for every state equal the golden model's, bit for bit."""
    np.testing.assert_array_equal(_run(states, fmt_name, saturate, seed, config),
                                  _expected(states, fmt_name, saturate, config),
                                  err_msg=f"seed={seed}")


def _random_states(rng, count, config=CONFIG):
    """``count`` random states of every magnitude, then the accumulator's extremes and zero
    with either sign rule."""
    states = []
    limit = config.acc_width - 1
    for _ in range(count):
        width = int(rng.integers(0, limit))
        acc = int(rng.integers(0, 1 << min(width, 62))) << max(0, width - 62)
        acc |= int(rng.integers(0, 2))
        acc = -acc if rng.random() < 0.5 else acc
        scale = int(rng.choice([0, rng.integers(-24, 25), rng.integers(-128, 128)]))
        flags = rng.random(4) < [0.02, 0.03, 0.03, 0.5]
        states.append((acc, scale, *map(bool, flags)))
    for acc in (0, (1 << limit) - 1, -((1 << limit) - 1), -(1 << limit)):
        for scale in (-128, 0, 127):
            for neg_zero in (False, True):
                states.append((acc, scale, False, False, False, neg_zero))
    return states


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("fmt_name", ["fp32", "bf16", "e4m3", "e5m2"])
def test_random_states(fmt_name, saturate):
    seed, rng = _seeded(1000, fmt_name, saturate)
    _check(_random_states(rng, 1500), fmt_name, saturate, seed)


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("fmt_name", ["fp32", "bf16", "e4m3", "e5m2"])
def test_rounding_edges(fmt_name, saturate):
    seed, rng = _seeded(2000, fmt_name, saturate)
    states = [(acc, scale, False, False, False, False) for acc, scale in _edge_cases(rng, fmt_name)]
    # Specials: NaN wins over Inf; +Inf and -Inf together are NaN; Inf with any finite sum.
    for flags in [(1, 0, 0, 0), (1, 1, 0, 0), (0, 1, 1, 0), (0, 1, 0, 0), (0, 0, 1, 0),
                  (0, 0, 0, 1)]:
        for acc in (0, 12345, -12345):
            states.append((acc, 0, *map(bool, flags)))
    assert len(states) > 100
    _check(states, fmt_name, saturate, seed)


@pytest.mark.parametrize("config", OTHER_CONFIGS, ids=lambda config: f"acc{config.acc_width}")
@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("fmt_name", ["fp32", "bf16", "e4m3", "e5m2"])
def test_accumulator_widths(fmt_name, saturate, config):
    """Random states and rounding edges for the other accumulator widths."""
    seed, rng = _seeded(3000 + config.acc_width * 10, fmt_name, saturate)
    states = _random_states(rng, 500, config)
    states += [(acc, scale, False, False, False, False)
               for acc, scale in _edge_cases(rng, fmt_name, config)]
    _check(states, fmt_name, saturate, seed, config)

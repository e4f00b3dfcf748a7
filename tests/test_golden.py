"""The golden model against an independent, slow reference written here.

The reference shares no code with systole.sim.golden: it decodes fp8 encodings with
Python ints and Fractions straight from the OCP OFP8 v1.0 tables, sums exactly with
Fraction, and rounds by binary search over the output format's (monotonic) code space,
deciding ties by the parity of the code. Every comparison is on raw bits, never with a
tolerance. Randomised tests print their seed and carry it in the assertion message:
rerun one with ``./run pytest tests/test_golden.py -k "<test id>"``.
"""

import functools
import itertools
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from systole.sim import golden

FP8_PAIRS = [("e4m3", "e4m3"), ("e4m3", "e5m2"), ("e5m2", "e4m3"), ("e5m2", "e5m2")]
OUT_FORMATS = ["fp32", "bf16", "e4m3", "e5m2"]
NP_DTYPE = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2,
            "fp32": np.float32, "bf16": ml_dtypes.bfloat16}
BITS_DTYPE = {"e4m3": np.uint8, "e5m2": np.uint8, "fp32": np.uint32, "bf16": np.uint16}


# -- the reference ----------------------------------------------------------------------

# Format facts, written out from OCP OFP8 v1.0 and IEEE 754, not taken from systole.formats.
#   width, man_bits, bias, largest finite code, Inf code (None: no Inf), canonical NaN.
REF_FORMATS = {
    "e4m3": (8, 3, 7, 0x7E, None, 0x7F),          # S.1111.111 is the only NaN; max 448
    "e5m2": (8, 2, 15, 0x7B, 0x7C, 0x7E),         # S.11111.00 Inf, S.11111.xx NaN; max 57344
    "fp32": (32, 23, 127, 0x7F7FFFFF, 0x7F800000, 0x7FC00000),
    "bf16": (16, 7, 127, 0x7F7F, 0x7F80, 0x7FC0),
}


def ref_magnitude(fmt, code):
    """Value of a non-negative code read as exponent/mantissa fields, no specials.

    Also gives the value just past the largest finite one for ``max code + 1``: 480 for
    E4M3, 65536 for E5M2, 2**128 for fp32 — the point overflow is decided against.
    """
    _, man_bits, bias, *_ = REF_FORMATS[fmt]
    exponent, mantissa = code >> man_bits, code & ((1 << man_bits) - 1)
    if exponent == 0:
        return Fraction(mantissa) * Fraction(2) ** (1 - bias - man_bits)
    return Fraction((1 << man_bits) + mantissa) * Fraction(2) ** (exponent - bias - man_bits)


def ref_decode(fmt, code):
    """An fp8 encoding as ("nan",), ("inf", negative) or ("num", value, negative)."""
    width, _, _, max_code, inf_code, _ = REF_FORMATS[fmt]
    negative = bool(code >> (width - 1))
    magnitude_code = code & ((1 << (width - 1)) - 1)
    if magnitude_code == inf_code:
        return ("inf", negative)
    if magnitude_code > max_code:
        return ("nan",)
    value = ref_magnitude(fmt, magnitude_code)
    return ("num", -value if negative else value, negative)


def ref_dot(fa, a_codes, fb, b_codes):
    """Exact dot product: ("nan",), ("inf", negative) or ("num", sum, all_products_minus_zero)."""
    total, every_minus_zero, infs = Fraction(0), True, set()
    terms = [(ref_decode(fa, x), ref_decode(fb, y)) for x, y in zip(a_codes, b_codes)]
    if any(x[0] == "nan" or y[0] == "nan" for x, y in terms):
        return ("nan",)
    for x, y in terms:
        negative = x[-1] != y[-1]
        if x[0] == "inf" or y[0] == "inf":
            if (x[0] == "num" and x[1] == 0) or (y[0] == "num" and y[1] == 0):
                return ("nan",)                         # Inf x 0
            infs.add(negative)
            every_minus_zero = False
            continue
        product = x[1] * y[1]
        every_minus_zero &= product == 0 and negative
        total += product
    if len(infs) == 2:
        return ("nan",)                                 # +Inf + -Inf
    if infs:
        return ("inf", infs.pop())
    return ("num", total, every_minus_zero)


@functools.lru_cache(maxsize=None)
def ref_round_magnitude(fmt, x):
    """Round-to-nearest-even of a Fraction x >= 0 into fmt's code space.

    Returns a non-negative code; ``max code + 1`` means overflow. Binary search for the
    largest code whose value is <= x, then pick the nearer of it and the next code, ties
    to the even code (the code's lowest bit is the mantissa's lowest bit).
    """
    _, _, _, max_code, _, _ = REF_FORMATS[fmt]
    lo, hi = 0, max_code + 1
    if x >= ref_magnitude(fmt, hi):
        return hi
    while hi - lo > 1:                      # invariant: value(lo) <= x < value(hi)
        mid = (lo + hi) // 2
        if ref_magnitude(fmt, mid) <= x:
            lo = mid
        else:
            hi = mid
    below, above = x - ref_magnitude(fmt, lo), ref_magnitude(fmt, hi) - x
    if below != above:
        return lo if below < above else hi
    return lo if lo % 2 == 0 else hi


def ref_encode(fmt, result, saturate, scale_exp=0):
    """Raw bits of a ref_dot result in an output format."""
    width, _, _, max_code, inf_code, nan_code = REF_FORMATS[fmt]
    sign_bit = 1 << (width - 1)
    if result[0] == "nan":
        return nan_code
    if result[0] == "inf":
        negative = result[1]
        code = max_code if (width == 8 and saturate) else inf_code
    else:
        x = result[1] * Fraction(2) ** scale_exp
        negative = result[2] if x == 0 else x < 0
        code = ref_round_magnitude(fmt, abs(x))
        if code > max_code:
            if width == 8 and saturate:
                code = max_code
            else:
                code = inf_code
    if code is None:                        # E4M3 has no Inf: non-saturating gives NaN
        return nan_code
    return code | (sign_bit if negative else 0)


def ref_gemm(a, b, out, saturate=True, scale_exp=0):
    fa, fb = golden.format_of(a.dtype).name, golden.format_of(b.dtype).name
    a_codes, b_codes = a.view(np.uint8).tolist(), b.view(np.uint8).T.tolist()
    bits = [[ref_encode(out, ref_dot(fa, row, fb, col), saturate, scale_exp) for col in b_codes]
            for row in a_codes]
    return np.array(bits, dtype=BITS_DTYPE[out])


def gemm_bits(a, b, out, saturate=True, scale_exp=0):
    return golden.gemm(a, b, out, saturate=saturate, scale_exp=scale_exp).view(BITS_DTYPE[out])


def fp8(fmt, values):
    """Exact fp8 matrix from a nested list of Python numbers (each must be representable)."""
    array = np.array(values, dtype=np.float64)
    result = array.astype(np.float32).astype(NP_DTYPE[fmt])
    finite = np.isfinite(array)
    assert (result.astype(np.float64)[finite] == array[finite]).all(), \
        f"{values} not exact in {fmt}"
    return result


def codes(fmt, values):
    return np.array(values, dtype=np.uint8).view(NP_DTYPE[fmt])


# -- the reference checks itself against known facts -----------------------------------


def test_reference_knows_the_ocp_tables():
    assert ref_decode("e4m3", 0x7E) == ("num", 448, False)
    assert ref_decode("e4m3", 0x01) == ("num", Fraction(1, 512), False)
    assert ref_decode("e4m3", 0x08) == ("num", Fraction(1, 64), False)
    assert ref_decode("e4m3", 0xFF) == ("nan",) and ref_decode("e4m3", 0x7F) == ("nan",)
    assert ref_decode("e5m2", 0x7B) == ("num", 57344, False)
    assert ref_decode("e5m2", 0x01) == ("num", Fraction(1, 65536), False)
    assert ref_decode("e5m2", 0x04) == ("num", Fraction(1, 16384), False)
    assert ref_decode("e5m2", 0xFC) == ("inf", True)
    assert [ref_decode("e5m2", c) for c in (0x7D, 0x7E, 0x7F)] == [("nan",)] * 3
    assert ref_magnitude("e4m3", 0x7F) == 480 and ref_magnitude("e5m2", 0x7C) == 65536
    # Every finite code agrees with ml_dtypes' own decoding.
    for fmt in ("e4m3", "e5m2"):
        values = np.arange(256, dtype=np.uint8).view(NP_DTYPE[fmt]).astype(np.float64)
        for code, value in enumerate(values):
            decoded = ref_decode(fmt, code)
            if decoded[0] == "num":
                assert Fraction(float(value)) == decoded[1], (fmt, code)


# -- exhaustive single products ---------------------------------------------------------


@pytest.mark.parametrize("fa, fb", FP8_PAIRS)
def test_every_single_product(fa, fb):
    """All 65536 (a, b) pairs as one 256 x 1 x 256 GEMM, fp32 output."""
    a = codes(fa, np.arange(256).reshape(256, 1))
    b = codes(fb, np.arange(256).reshape(1, 256))
    np.testing.assert_array_equal(gemm_bits(a, b, "fp32"), ref_gemm(a, b, "fp32"))


@pytest.mark.parametrize("out", ["bf16", "e4m3", "e5m2"])
@pytest.mark.parametrize("saturate", [True, False])
def test_every_single_e5m2_product_narrow_outputs(out, saturate):
    """The widest-range pair into the narrow outputs: rounding, overflow and underflow."""
    a = codes("e5m2", np.arange(256).reshape(256, 1))
    b = codes("e5m2", np.arange(256).reshape(1, 256))
    np.testing.assert_array_equal(gemm_bits(a, b, out, saturate),
                                  ref_gemm(a, b, out, saturate))


# -- random GEMMs -----------------------------------------------------------------------

SCALES = [-128, -120, -110, -100, -30, -8, 0, 5, 20, 100, 115, 127]


def random_operand(rng, fmt, shape, mode):
    """Random fp8 codes. 'finite': any finite code; 'narrow': codes near 1.0 (carries,
    ties, cancellation); 'specials': finite with NaN, Inf, zeros, max and min subnormal
    sprinkled in."""
    width, man_bits, bias, max_code, inf_code, nan_code = REF_FORMATS[fmt]
    if mode == "narrow":
        one = bias << man_bits
        magnitude = rng.integers(one - 6, one + 7, shape)
    else:
        magnitude = rng.integers(0, max_code + 1, shape)
    if mode == "specials":
        specials = [0, 1, max_code, nan_code] + ([inf_code] if inf_code else [])
        pick = rng.random(shape) < 0.15
        magnitude = np.where(pick, rng.choice(specials, shape), magnitude)
    signs = rng.integers(0, 2, shape) << (width - 1)
    return codes(fmt, (magnitude | signs).astype(np.uint8))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("out", OUT_FORMATS)
@pytest.mark.parametrize("fa, fb", FP8_PAIRS)
def test_random_gemm(fa, fb, out, saturate, seed):
    rng = np.random.default_rng([seed, FP8_PAIRS.index((fa, fb)), OUT_FORMATS.index(out),
                                 saturate])
    print(f"seed={seed}")
    for mode in ("finite", "narrow", "specials"):
        m, k, n = rng.integers(1, 5), rng.integers(1, 13), rng.integers(1, 5)
        a = random_operand(rng, fa, (m, k), mode)
        b = random_operand(rng, fb, (k, n), mode)
        for scale_exp in SCALES:
            np.testing.assert_array_equal(
                gemm_bits(a, b, out, saturate, scale_exp),
                ref_gemm(a, b, out, saturate, scale_exp),
                err_msg=f"seed={seed} mode={mode} scale_exp={scale_exp}\n"
                        f"a={a.view(np.uint8).tolist()}\nb={b.view(np.uint8).tolist()}")


@pytest.mark.parametrize("seed", range(4))
def test_result_does_not_depend_on_k_order(seed):
    """Law: C is the same for any permutation of the reduction index."""
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    for fa, fb in FP8_PAIRS:
        a = random_operand(rng, fa, (5, 40), "specials" if seed == 3 else "finite")
        b = random_operand(rng, fb, (40, 6), "specials" if seed == 3 else "finite")
        order = rng.permutation(40)
        for out in OUT_FORMATS:
            np.testing.assert_array_equal(gemm_bits(a, b, out),
                                          gemm_bits(a[:, order], b[order], out),
                                          err_msg=f"seed={seed} {fa}x{fb}->{out}")


@pytest.mark.parametrize("seed", range(2))
def test_large_k_against_reference(seed):
    """Long reductions (the limb and chunk arithmetic) on a few elements."""
    rng = np.random.default_rng(100 + seed)
    print(f"seed={seed}")
    for fa, fb in FP8_PAIRS:
        a = random_operand(rng, fa, (2, 3000), "finite")
        b = random_operand(rng, fb, (3000, 2), "finite")
        for out in ("fp32", "bf16"):
            np.testing.assert_array_equal(gemm_bits(a, b, out), ref_gemm(a, b, out),
                                          err_msg=f"seed={seed} {fa}x{fb}->{out}")


def test_k_longer_than_one_float64_chunk():
    """K = 2**20 + 3 against an exact dot product of the decoded integers."""
    rng = np.random.default_rng(5)
    print("seed=5")
    k = (1 << 20) + 3
    for fa, fb in FP8_PAIRS:
        a = random_operand(rng, fa, (1, k), "finite")
        b = random_operand(rng, fb, (k, 2), "finite")
        if fa == fb == "e4m3":
            a[0, :1000] = fp8("e4m3", [[448.0] * 1000])   # push the partial sums up
            b[:1000] = fp8("e4m3", [[-448.0, 448.0]] * 1000)
        scaled = {}     # exact value * 2**40 of every code, as a Python int
        for fmt in (fa, fb):
            scaled[fmt] = np.array([int(v[1] * 2 ** 40) if v[0] == "num" else 0
                                    for v in (ref_decode(fmt, c) for c in range(256))],
                                   dtype=object)
        left = scaled[fa][a.view(np.uint8)[0]]
        for j in range(2):
            total = Fraction(int(np.dot(left, scaled[fb][b.view(np.uint8)[:, j]])), 2 ** 80)
            want = ref_encode("fp32", ("num", total, False), True)
            assert int(gemm_bits(a, b[:, j:j + 1], "fp32")[0, 0]) == want, f"{fa}x{fb} j={j}"


def test_huge_sums_take_the_wide_path():
    """E5M2 maxima: sums beyond 2**62 units of 2**-32 are still exact."""
    a = fp8("e5m2", [[57344.0] * 64, [57344.0] * 63 + [-57344.0]])
    b = fp8("e5m2", [[57344.0], [-4.0]] * 32)
    for out in OUT_FORMATS:
        for scale_exp in (-128, -40, 0, 127):
            np.testing.assert_array_equal(gemm_bits(a, b, out, True, scale_exp),
                                          ref_gemm(a, b, out, True, scale_exp))


# -- targeted cases ---------------------------------------------------------------------


def dot_bits(fa, a_row, fb, b_col, out, saturate=True, scale_exp=0):
    """One dot product, by golden and by reference; both must agree. Returns the bits."""
    a, b = fp8(fa, [a_row]), fp8(fb, [[v] for v in b_col])
    got = int(gemm_bits(a, b, out, saturate, scale_exp)[0, 0])
    want = int(ref_gemm(a, b, out, saturate, scale_exp)[0, 0])
    assert got == want, f"{a_row} . {b_col} -> {out}: golden {got:#x}, reference {want:#x}"
    return got


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("out, nan_bits", [("fp32", 0x7FC00000), ("bf16", 0x7FC0),
                                           ("e4m3", 0x7F), ("e5m2", 0x7E)])
def test_special_values(out, nan_bits):
    sat = out in ("e4m3", "e5m2")
    width = {"fp32": 32, "bf16": 16, "e4m3": 8, "e5m2": 8}[out]
    inf = {"fp32": 0x7F800000, "bf16": 0x7F80, "e4m3": 0x7E, "e5m2": 0x7B}[out]
    sign = 1 << (width - 1)
    # Any NaN operand among the terms, even times zero, even next to Inf.
    assert dot_bits("e4m3", [NAN, 1], "e4m3", [0, 1], out) == nan_bits
    assert dot_bits("e5m2", [1, 1], "e5m2", [-NAN, INF], out) == nan_bits
    assert dot_bits("e4m3", [-NAN], "e4m3", [-1], out) == nan_bits      # canonical, sign clear
    # Inf x 0 and +Inf + -Inf.
    assert dot_bits("e5m2", [INF, 1], "e5m2", [0, 1], out) == nan_bits
    assert dot_bits("e5m2", [-0.0], "e5m2", [-INF], out) == nan_bits
    assert dot_bits("e5m2", [INF, INF], "e5m2", [1, -1], out) == nan_bits
    assert dot_bits("e4m3", [2, -3], "e5m2", [INF, INF], out) == nan_bits
    # One sign of Inf wins over any finite sum; saturating fp8 gives +-max.
    assert dot_bits("e5m2", [INF, 57344], "e5m2", [1, -57344], out) == inf
    assert dot_bits("e4m3", [-448, 2], "e5m2", [INF, -INF], out) == inf | sign
    assert dot_bits("e5m2", [-INF, -INF], "e5m2", [-2, -0.5], out) == inf
    if sat:
        nonsat = nan_bits if out == "e4m3" else 0x7C
        assert dot_bits("e5m2", [INF], "e5m2", [1], out, saturate=False) == nonsat
        assert dot_bits("e5m2", [INF], "e5m2", [-1], out, saturate=False) == \
            (nan_bits if out == "e4m3" else 0xFC)
    # Signed zeros: -0 only when every product is -0.
    assert dot_bits("e4m3", [-0.0], "e4m3", [3], out) == sign
    assert dot_bits("e4m3", [-0.0, 0.0], "e5m2", [3, -1], out) == sign
    assert dot_bits("e4m3", [-0.0, 0.0], "e4m3", [3, 1], out) == 0
    assert dot_bits("e4m3", [-0.0, -0.0], "e4m3", [-0.0, 1], out) == 0      # (-0)(-0) = +0
    assert dot_bits("e5m2", [1, -1], "e5m2", [-1, -1], out) == 0            # exact cancel: +0
    assert dot_bits("e5m2", [-2, 2, -0.0], "e5m2", [1, 1, 1], out) == 0
    assert dot_bits("e4m3", [0.0], "e4m3", [-0.0], out, scale_exp=-128) == sign


def test_fp8_overflow_thresholds():
    # E4M3: 448 is max; 464 is the midpoint to 480 and ties to even (448); above overflows.
    for saturate, over in ((True, 0x7E), (False, 0x7F)):
        assert dot_bits("e4m3", [448], "e4m3", [1], "e4m3", saturate) == 0x7E
        assert dot_bits("e4m3", [448, 16], "e4m3", [1, 1], "e4m3", saturate) == 0x7E
        assert dot_bits("e4m3", [448, 16, 1], "e4m3", [1, 1, 2 ** -9], "e4m3", saturate) == over
        assert dot_bits("e4m3", [448, 16], "e4m3", [1, 1.125], "e4m3", saturate) == over
        assert dot_bits("e4m3", [448, 32], "e4m3", [-1, -1], "e4m3", saturate) == \
            (0xFE if saturate else 0x7F)                # the NaN is canonical: sign clear
        assert dot_bits("e4m3", [448], "e4m3", [1], "e4m3", saturate, scale_exp=1) == over
        assert dot_bits("e4m3", [448], "e4m3", [1], "e4m3", saturate, scale_exp=-1) == 0x76
    # E5M2: 57344 is max (odd mantissa); the midpoint 61440 ties up to 65536 and overflows.
    for saturate, over in ((True, 0x7B), (False, 0x7C)):
        assert dot_bits("e5m2", [57344], "e5m2", [1], "e5m2", saturate) == 0x7B
        assert dot_bits("e5m2", [57344, 4096], "e5m2", [1, 1], "e5m2", saturate) == over
        assert dot_bits("e5m2", [57344, 4096, -1], "e5m2", [1, 1, 2 ** -16], "e5m2",
                        saturate) == 0x7B
        assert dot_bits("e5m2", [-57344, -4096], "e5m2", [1, 1], "e5m2", saturate) == over | 0x80
        # The same sums into E4M3: far beyond 448.
        assert dot_bits("e5m2", [57344], "e5m2", [1], "e4m3", saturate) == \
            (0x7E if saturate else 0x7F)


def test_fp32_bf16_overflow_and_subnormals_through_the_scale():
    # fp32 / bf16 ignore `saturate`: overflow is Inf either way.
    for saturate in (True, False):
        assert dot_bits("e5m2", [57344], "e5m2", [57344], "fp32", saturate, 127) == 0x7F800000
        assert dot_bits("e5m2", [-57344], "e5m2", [57344], "bf16", saturate, 127) == 0xFF80
    # 2**-32 * 2**-118 = 2**-150: exactly half the fp32 min subnormal, ties to (signed) zero.
    tiny = 2.0 ** -16
    assert dot_bits("e5m2", [tiny], "e5m2", [tiny], "fp32", True, -118) == 0
    assert dot_bits("e5m2", [-tiny], "e5m2", [tiny], "fp32", True, -118) == 0x80000000
    assert dot_bits("e5m2", [tiny, tiny], "e5m2", [tiny, tiny], "fp32", True, -118) == 1
    assert dot_bits("e5m2", [3 * tiny], "e5m2", [tiny], "fp32", True, -118) == 2
    assert dot_bits("e5m2", [tiny], "e5m2", [tiny], "fp32", True, -117) == 1
    assert dot_bits("e5m2", [tiny], "e5m2", [tiny], "fp32", True, -100) == 1 << 17
    # 2**-126 - 2**-150: a tie between the largest subnormal and the smallest normal (even).
    assert dot_bits("e5m2", [2.0 ** -4, -tiny], "e5m2", [2.0 ** -4, tiny], "fp32", True,
                    -118) == 0x00800000
    assert dot_bits("e5m2", [2.0 ** -4, -tiny], "e5m2", [2.0 ** -4, tiny], "bf16", True,
                    -118) == 0x0080


def test_ties_and_carries():
    # bf16 keeps 8 significant bits: 257 ties down to 256, 259 up to 260, 511 carries to 512.
    assert dot_bits("e4m3", [256, 1], "e4m3", [1, 1], "bf16") == 0x4380
    assert dot_bits("e4m3", [256, 3], "e4m3", [1, 1], "bf16") == 0x4382
    assert dot_bits("e4m3", [256, 240, 15], "e4m3", [1, 1, 1], "bf16") == 0x4400
    # A sticky bit far below the tie point breaks the tie.
    assert dot_bits("e4m3", [256, 1, 2 ** -9], "e4m3", [1, 1, 2 ** -9], "bf16") == 0x4381
    assert dot_bits("e4m3", [256, 1, -2 ** -9], "e4m3", [1, 1, 2 ** -9], "bf16") == 0x4380
    # fp32: 2**24 + 1 ties to 2**24; 2**24 + 3 to 2**24 + 4.
    assert dot_bits("e5m2", [4096, 1], "e5m2", [4096, 1], "fp32") == 0x4B800000
    assert dot_bits("e5m2", [4096, 3], "e5m2", [4096, 1], "fp32") == 0x4B800002
    # E4M3 output: 1 + 1/16 ties to 1; 1 + 3/16 to 1.25; 15.5 carries to 16.
    assert dot_bits("e4m3", [1, 0.0625], "e4m3", [1, 1], "e4m3") == 0x38
    assert dot_bits("e4m3", [1, 0.1875], "e4m3", [1, 1], "e4m3") == 0x3A
    assert dot_bits("e4m3", [15, 0.5], "e4m3", [1, 1], "e4m3") == 0x58
    # E4M3 output underflow: half the min subnormal 2**-9 goes to zero, a bit more does not.
    assert dot_bits("e4m3", [2 ** -5], "e4m3", [2 ** -5], "e4m3") == 0x00
    assert dot_bits("e4m3", [-2 ** -5], "e4m3", [2 ** -5], "e4m3") == 0x80
    assert dot_bits("e4m3", [2 ** -5, 2 ** -9], "e4m3", [2 ** -5, 2 ** -9], "e4m3") == 0x01
    assert dot_bits("e4m3", [2 ** -5], "e4m3", [3 * 2 ** -5], "e4m3") == 0x02     # 1.5 ulp
    # E5M2 output underflow at 2**-17.
    assert dot_bits("e5m2", [2 ** -8], "e5m2", [2 ** -9], "e5m2") == 0x00
    assert dot_bits("e5m2", [-2 ** -8, -2 ** -16], "e5m2", [2 ** -9, 2 ** -16], "e5m2") == 0x81


# -- round_to_format --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("out", OUT_FORMATS)
def test_round_to_format_random_big_integers(out, seed):
    rng = np.random.default_rng([seed, OUT_FORMATS.index(out)])
    print(f"seed={seed}")
    for lsb_exp in (-400, -300, -200, -180, -160, -149, -100, -32, -18, 0, 20, 60):
        acc = []
        for _ in range(60):
            bits = int(rng.integers(0, 201))
            value = int.from_bytes(rng.bytes(26), "little") >> (208 - bits)
            pattern = rng.random()
            if pattern < 0.25:          # long runs of ones and zeros: carries
                value = ((1 << bits) - 1) >> int(rng.integers(0, bits + 1)) << int(
                    rng.integers(0, 8))
            elif pattern < 0.5:         # a tie for one of the output precisions, maybe
                precision = int(rng.choice([3, 4, 8, 24]))    # broken by a far sticky bit
                low = int(rng.integers(0, 150))
                value = ((int(rng.integers(1 << (precision - 1), 1 << precision)) << 1 | 1)
                         << low) | int(rng.integers(0, 2))
            acc.append(-value if rng.random() < 0.5 else value)
        acc = np.array(acc + [0], dtype=object)
        flags = rng.random((4, acc.size)) < 0.08
        for saturate, scale_exp in ((True, 0), (False, 0), (True, -128), (False, 127)):
            got = golden.round_to_format(acc, lsb_exp, out, saturate=saturate,
                                         scale_exp=scale_exp, nan=flags[0], pos_inf=flags[1],
                                         neg_inf=flags[2], neg_zero=flags[3])
            want = []
            for v, nan, pos, neg, nz in zip(acc, *flags):
                if nan or (pos and neg):
                    result = ("nan",)
                elif pos or neg:
                    result = ("inf", bool(neg))
                else:
                    result = ("num", v * Fraction(2) ** lsb_exp, bool(nz))
                want.append(ref_encode(out, result, saturate, scale_exp))
            np.testing.assert_array_equal(
                got, np.array(want, dtype=BITS_DTYPE[out]),
                err_msg=f"seed={seed} lsb_exp={lsb_exp} saturate={saturate} "
                        f"scale_exp={scale_exp}")


@pytest.mark.parametrize("out", OUT_FORMATS)
def test_round_to_format_int64_edges(out):
    edges = [0, 1, -1, 2 ** 24 + 1, 2 ** 53 + 1, 2 ** 61 + 2 ** 37, 2 ** 62 - 1, 2 ** 62,
             2 ** 62 + 2 ** 38, 2 ** 62 + 2 ** 38 + 1, -(2 ** 62 + 2 ** 38 + 1),
             2 ** 63 - 2 ** 39 - 1, 2 ** 63 - 2 ** 39, 2 ** 63 - 1, -2 ** 62, -(2 ** 63) + 1,
             -(2 ** 63)]
    int64 = np.array(edges, dtype=np.int64)
    for lsb_exp in (-180, -140, -70, -32, 0, 66):
        want = np.array([ref_encode(out, ("num", v * Fraction(2) ** lsb_exp, False), True)
                         for v in edges], dtype=BITS_DTYPE[out])
        np.testing.assert_array_equal(golden.round_to_format(int64, lsb_exp, out), want,
                                      err_msg=f"int64 lsb_exp={lsb_exp}")
        np.testing.assert_array_equal(
            golden.round_to_format(np.array(edges, dtype=object), lsb_exp, out), want,
            err_msg=f"object lsb_exp={lsb_exp}")
    assert golden.round_to_format(np.zeros((2, 3), np.int32), 0, out).shape == (2, 3)


def test_round_to_format_huge_values_and_exponents():
    assert golden.round_to_format(np.array([3 << 1000], dtype=object), -1000, "fp32")[0] \
        == 0x40400000
    assert golden.round_to_format(np.array([1], dtype=np.int64), 10 ** 9, "fp32")[0] \
        == 0x7F800000
    assert golden.round_to_format(np.array([-1], dtype=np.int64), -10 ** 9, "bf16")[0] == 0x8000
    assert golden.round_to_format(np.array([0], dtype=np.int64), 10 ** 9, "e4m3",
                                  neg_zero=np.array([True]))[0] == 0x80


# -- exact_gemm and helpers -------------------------------------------------------------


@pytest.mark.parametrize("fa, fb, lsb_exp", [("e4m3", "e4m3", -18), ("e4m3", "e5m2", -25),
                                             ("e5m2", "e4m3", -25), ("e5m2", "e5m2", -32)])
def test_exact_gemm_is_the_exact_sum(fa, fb, lsb_exp):
    rng = np.random.default_rng(7)
    print("seed=7")
    a = random_operand(rng, fa, (4, 9), "specials")
    b = random_operand(rng, fb, (9, 5), "specials")
    exact = golden.exact_gemm(a, b)
    assert exact.lsb_exp == lsb_exp
    assert exact.acc.dtype == object and exact.acc.shape == (4, 5)
    a_codes, b_codes = a.view(np.uint8).tolist(), b.view(np.uint8).T.tolist()
    for i, j in itertools.product(range(4), range(5)):
        want = ref_dot(fa, a_codes[i], fb, b_codes[j])
        got = (exact.nan[i, j], exact.pos_inf[i, j], exact.neg_inf[i, j])
        assert got == (want[0] == "nan", want == ("inf", False), want == ("inf", True)), (i, j)
        if want[0] == "num":
            assert exact.acc[i, j] * Fraction(2) ** lsb_exp == want[1], (i, j)
            assert exact.neg_zero[i, j] == want[2], (i, j)
        else:
            assert exact.acc[i, j] == 0 and not exact.neg_zero[i, j], (i, j)
            assert type(exact.acc[i, j]) is int


def test_exact_gemm_special_flags():
    a = fp8("e5m2", [[INF, 1.0], [INF, -2.0], [1.0, NAN], [-0.0, 1.0], [2.0, 3.0], [0.0, -1.0]])
    b = fp8("e5m2", [[1.0], [-INF]])
    exact = golden.exact_gemm(a, b)
    # +Inf + -Inf, +Inf + +Inf, NaN, -0 + -Inf, 2 + -Inf, 0 + +Inf
    assert exact.nan[:, 0].tolist() == [True, False, True, False, False, False]
    assert exact.pos_inf[:, 0].tolist() == [False, True, False, False, False, True]
    assert exact.neg_inf[:, 0].tolist() == [False, False, False, True, True, False]
    assert exact.acc[:, 0].tolist() == [0] * 6
    assert not exact.neg_zero.any()


def test_exact_gemm_rounds_like_gemm():
    rng = np.random.default_rng(11)
    print("seed=11")
    a = random_operand(rng, "e5m2", (6, 50), "specials")
    b = random_operand(rng, "e5m2", (50, 7), "specials")
    exact = golden.exact_gemm(a, b)
    for out in OUT_FORMATS:
        np.testing.assert_array_equal(
            golden.round_to_format(exact.acc, exact.lsb_exp, out, saturate=False, scale_exp=3,
                                   nan=exact.nan, pos_inf=exact.pos_inf,
                                   neg_inf=exact.neg_inf, neg_zero=exact.neg_zero),
            gemm_bits(a, b, out, False, 3))


def test_dtypes_and_bits_helpers():
    for name in OUT_FORMATS:
        assert golden.dtype_for(name) == np.dtype(NP_DTYPE[name])
        assert golden.format_of(NP_DTYPE[name]).name == name
        bits = np.arange(0, 256, 7, dtype=BITS_DTYPE[name])
        values = golden.from_bits(bits, name)
        assert values.dtype == np.dtype(NP_DTYPE[name])
        np.testing.assert_array_equal(golden.to_bits(values), bits)
    assert golden.gemm(fp8("e4m3", [[1]]), fp8("e4m3", [[1]]), "bf16").dtype == ml_dtypes.bfloat16


# -- bad arguments ----------------------------------------------------------------------


def test_bad_arguments():
    a, b = fp8("e4m3", [[1, 2]]), fp8("e5m2", [[1], [2]])
    with pytest.raises(TypeError, match=r"^a must be a numpy array, not list$"):
        golden.gemm([[1.0]], b)
    with pytest.raises(TypeError, match=r"^b must have dtype float8_e4m3fn or float8_e5m2, "
                                        r"not float32$"):
        golden.gemm(a, np.ones((2, 1), np.float32))
    with pytest.raises(TypeError, match=r"^a must have dtype .* not float8_e4m3fnuz$"):
        golden.gemm(np.ones((1, 2), ml_dtypes.float8_e4m3fnuz), b)
    with pytest.raises(ValueError, match=r"^a must be a 2-D matrix, not 1-D with shape \(2,\)$"):
        golden.gemm(a[0], b)
    with pytest.raises(ValueError, match=r"^Inner dimensions differ: a is 1x2, b is 1x1$"):
        golden.gemm(a, b[:1])
    with pytest.raises(ValueError, match=r"^b must have no zero-size dimension, "
                                         r"not shape \(2, 0\)$"):
        golden.gemm(a, b[:, :0])
    with pytest.raises(ValueError, match=r"^Unknown output format 'fp16'; expected one of "
                                         r"\['bf16', 'e4m3', 'e5m2', 'fp32'\]$"):
        golden.gemm(a, b, "fp16")
    with pytest.raises(ValueError, match=r"^scale_exp must be between -128 and 127, not 128$"):
        golden.gemm(a, b, scale_exp=128)
    with pytest.raises(ValueError, match=r"^scale_exp must be between -128 and 127, not -129$"):
        golden.gemm(a, b, scale_exp=-129)
    with pytest.raises(TypeError, match=r"^scale_exp must be an integer, not 1.0$"):
        golden.gemm(a, b, scale_exp=1.0)
    with pytest.raises(TypeError, match=r"^scale_exp must be an integer, not True$"):
        golden.gemm(a, b, scale_exp=True)
    with pytest.raises(TypeError, match=r"^saturate must be a bool, not 1$"):
        golden.gemm(a, b, saturate=1)
    with pytest.raises(TypeError, match=r"^acc must be an integer array, not float64$"):
        golden.round_to_format(np.ones(2), 0, "fp32")
    with pytest.raises(TypeError, match=r"^acc must hold integers, not 1.5$"):
        golden.round_to_format(np.array([1, 1.5], dtype=object), 0, "fp32")
    with pytest.raises(TypeError, match=r"^lsb_exp must be an integer, not -32.0$"):
        golden.round_to_format(np.ones(2, np.int64), -32.0, "fp32")
    with pytest.raises(TypeError, match=r"^nan must be a boolean array, not int64$"):
        golden.round_to_format(np.ones(2, np.int64), 0, "fp32", nan=np.ones(2, np.int64))
    with pytest.raises(ValueError, match=r"^neg_zero has shape \(3,\), which does not "
                                         r"broadcast to acc's shape \(2,\)$"):
        golden.round_to_format(np.ones(2, np.int64), 0, "fp32", neg_zero=np.ones(3, bool))
    with pytest.raises(TypeError, match=r"^dtype float16 is not a Systole format"):
        golden.format_of(np.float16)
    with pytest.raises(TypeError, match=r"^x must be a numpy array, not float$"):
        golden.to_bits(1.0)
    with pytest.raises(ValueError, match=r"^bits must be 8-bit encodings in \[0, 2\*\*8\) "
                                         r"for e4m3$"):
        golden.from_bits([256], "e4m3")
    with pytest.raises(TypeError, match=r"^bits must be an integer array, not float64$"):
        golden.from_bits([1.0], "e4m3")


# -- the accuracy report ----------------------------------------------------------------


def test_accuracy_report_runs_and_systole_rounds_once(tmp_path, capsys):
    import json

    from systole.sim import accuracy

    out = tmp_path / "accuracy.json"
    assert accuracy.main(["--k", "200", "--m", "3", "--n", "4", "--format", "e5m2",
                          "--seed", "3", "--json", str(out)]) == 0
    assert "fp8 tensor-core model" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert (report["k"], report["m"], report["n"], report["format"]) == (200, 3, 4, "e5m2")
    systole = report["methods"]["systole"]
    assert systole["max_rel_error"] <= 2.0 ** -24 and systole["correctly_rounded"] == 1.0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fa, fb, k", [("e4m3", "e4m3", 1), ("e4m3", "e4m3", 300),
                                       ("e4m3", "e4m3", 1 << 17), ("e4m3", "e5m2", 8),
                                       ("e5m2", "e4m3", 3)])
def test_fast_path_matches_the_general_path(fa, fb, k, seed):
    """gemm's float64 fast path (finite operands, one float64 product exact: the module
    docstring) against the limb path, bit for bit, on every output format, overflow mode
    and some scales; with an all-zero row of A whose products are all -0 against a column
    of positive B (signed-zero rule), subnormals and the largest values. Also through
    golden.prepare."""
    rng = np.random.default_rng([seed, k, FP8_PAIRS.index((fa, fb))])
    print(f"seed={seed}")
    m, n = (2, 3) if k > 1000 else (5, 7)
    a = random_operand(rng, fa, (m, k), "finite")
    b = random_operand(rng, fb, (k, n), "finite")
    a[0] = codes(fa, np.full(k, 0x80, np.uint8))           # -0 row
    b[:, 0] = np.abs(b[:, 0].astype(np.float32)).astype(NP_DTYPE[fb])
    b[0, 1] = codes(fb, np.uint8(0x7E if fb == "e4m3" else 0x7B))   # max finite
    assert golden._fast_path_exact(a, b)
    prepared = golden.prepare(b)
    assert prepared.values is not None
    for out in OUT_FORMATS:
        for saturate in (True, False):
            for scale_exp in (0, -40, 20):
                general = golden._gemm_general(a, b, golden.output_format(out), saturate,
                                               scale_exp).view(BITS_DTYPE[out])
                msg = f"seed={seed} {fa}x{fb} k={k} -> {out} saturate={saturate} {scale_exp}"
                np.testing.assert_array_equal(
                    gemm_bits(a, b, out, saturate, scale_exp), general, err_msg=msg)
                np.testing.assert_array_equal(
                    golden.gemm(a, prepared, out, saturate=saturate,
                                scale_exp=scale_exp).view(BITS_DTYPE[out]), general,
                    err_msg=msg)
    assert golden.gemm(a, b, "fp32").view(np.uint32)[0, 0] == 0x80000000   # -0 kept


def test_prepared_operand_with_specials_takes_the_general_path():
    a = np.array([[1.0, 2.0]], np.float32).astype(NP_DTYPE["e5m2"])
    b = np.array([[np.inf], [1.0]], np.float32).astype(NP_DTYPE["e5m2"])
    prepared = golden.prepare(b)
    assert prepared.values is None
    np.testing.assert_array_equal(golden.gemm(a, prepared).view(np.uint32),
                                  golden.gemm(a, b).view(np.uint32))
    assert np.isposinf(golden.gemm(a, prepared)[0, 0])

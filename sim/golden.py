"""The golden model: what Systole computes, bit for bit (DESIGN.md section 2).

``C[i, j] = round_out(2**scale_exp * sum_k A[i, k] * B[k, j])`` where every product and the
whole sum are exact and ``round_out`` is one round-to-nearest-even into the output format,
with the special-value, signed-zero and overflow rules of the numerics contract
(docs/numerics.md). Every test and every report takes its reference results from here.

How it stays exact and fast: each fp8 operand is decoded (through a 256-entry table built
from the bit patterns) into a signed integer multiple of ``2**fmt.lsb_exp``; the integers
are split into limbs narrow enough that every partial sum of a float64 matrix product of
two limb matrices is an integer below 2**53, so BLAS computes those products exactly in any
summation order. The limb products are recombined as integers and rounded with integer
round-to-nearest-even (bit length, shift, guard and sticky bits). No result ever passes
through a float cast: ml_dtypes casts from float64 go through float32 (double rounding) and
its float32 -> E4M3 cast overflows to NaN.

The fast path: where neither operand holds a NaN or an Inf and one limb per operand is
exact (E4M3 x E4M3 up to K = 2**17: products below 2**36 units of 2**-18, sums below
2**53), the operand values themselves (a float64 table of the 256 encodings) go into one
float64 matrix product, which is then the exact sum in any summation order; it is scaled
to an int64 multiple of 2**lsb_exp and rounded as above. Only the signed-zero rule needs
the decoded operands, and only on the rows and columns of exact-zero sums. An operand
that many products share (a weight matrix) can be decoded once with :func:`prepare`.
"""

from dataclasses import dataclass
from numbers import Integral

import ml_dtypes
import numpy as np

from systole.formats import E4M3, E5M2, FP32, BF16, INPUT_FORMATS, output_format

__all__ = ["ExactSum", "PreparedOperand", "gemm", "prepare", "exact_gemm", "round_to_format",
           "to_bits", "from_bits", "dtype_for", "format_of", "SCALE_EXP_MIN", "SCALE_EXP_MAX"]

#: Range of the per-job output scale exponent (a signed 8-bit field in the hardware).
SCALE_EXP_MIN = -128
SCALE_EXP_MAX = 127

_DTYPES = {
    "e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "fp32": np.dtype(np.float32),
    "bf16": np.dtype(ml_dtypes.bfloat16),
}
_FORMATS = {"e4m3": E4M3, "e5m2": E5M2, "fp32": FP32, "bf16": BF16}
_BITS_DTYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: np.dtype(np.uint32)}

# Float64 matrix products are exact while every partial sum stays below 2**53.
_FLOAT64_EXACT_BITS = 53
# Longest reduction done in one float64 matrix product; longer K is chunked.
_K_CHUNK = 1 << 20
# Magnitudes below 2**62 take the vectorised int64 rounding path.
_INT64_MAG_BITS = 62
# Exponents are clamped to +-2**20: far beyond any overflow or underflow threshold, and
# small enough that shifting them into an encoding never overflows int64.
_EXP_CLAMP = 1 << 20


def dtype_for(fmt_name):
    """Numpy dtype that holds values of a format.

    Parameters
    ----------
    fmt_name : str or FloatFormat
        "e4m3", "e5m2", "fp32" or "bf16".

    Returns
    -------
    numpy.dtype
        ``float8_e4m3fn``, ``float8_e5m2``, ``float32`` or ``bfloat16``.

    Raises
    ------
    ValueError
        For an unknown format name.
    """
    return _DTYPES[output_format(fmt_name).name]


def format_of(dtype):
    """Reverse of :func:`dtype_for`: the format a numpy dtype holds.

    Parameters
    ----------
    dtype : numpy.dtype or anything ``numpy.dtype()`` accepts

    Returns
    -------
    FloatFormat

    Raises
    ------
    TypeError
        For a dtype that is none of the four Systole formats.
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{dtype!r} is not a numpy dtype") from None
    for name, candidate in _DTYPES.items():
        if dtype == candidate:
            return _FORMATS[name]
    raise TypeError(f"dtype {dtype} is not a Systole format; expected one of "
                    f"{', '.join(str(d) for d in _DTYPES.values())}")


def to_bits(x):
    """Raw encodings of a float32 / bfloat16 / fp8 array.

    Parameters
    ----------
    x : numpy.ndarray
        Of dtype float32, bfloat16, float8_e4m3fn or float8_e5m2.

    Returns
    -------
    numpy.ndarray
        uint32, uint16 or uint8 view of the same bits.

    Raises
    ------
    TypeError
        If ``x`` is not a numpy array of one of those dtypes.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, not {type(x).__name__}")
    fmt = format_of(x.dtype)
    return x.view(_BITS_DTYPES[fmt.width])


def from_bits(bits, out_format):
    """Values from raw encodings: the inverse of :func:`to_bits`.

    Parameters
    ----------
    bits : array_like of int
        Encodings, each in ``[0, 2**width)``.
    out_format : str or FloatFormat
        "fp32", "bf16", "e4m3" or "e5m2".

    Returns
    -------
    numpy.ndarray
        Of dtype ``dtype_for(out_format)``.

    Raises
    ------
    TypeError
        If ``bits`` is not integer-valued.
    ValueError
        For an unknown format or an encoding that does not fit its width.
    """
    fmt = output_format(out_format)
    bits = np.asarray(bits)
    if bits.dtype.kind not in "iu":
        raise TypeError(f"bits must be an integer array, not {bits.dtype}")
    if bits.size and (bits.min() < 0 or int(bits.max()) >> fmt.width):
        raise ValueError(f"bits must be {fmt.width}-bit encodings in [0, 2**{fmt.width}) "
                         f"for {fmt.name}")
    return bits.astype(_BITS_DTYPES[fmt.width]).view(_DTYPES[fmt.name])


@dataclass(frozen=True, eq=False)
class ExactSum:
    """The exact result of an fp8 GEMM, before output rounding.

    Where none of the special flags is set, ``C[i, j]`` is exactly
    ``acc[i, j] * 2**lsb_exp``.

    Attributes
    ----------
    acc : numpy.ndarray of object (Python int), shape (M, N)
        Exact finite sums as integer multiples of ``2**lsb_exp``; 0 where ``nan``,
        ``pos_inf`` or ``neg_inf`` is set.
    lsb_exp : int
        ``a_format.lsb_exp + b_format.lsb_exp``: -18 for E4M3 x E4M3, -25 mixed,
        -32 for E5M2 x E5M2.
    nan : numpy.ndarray of bool
        A NaN operand among the terms, an Inf x 0 product, or both +Inf and -Inf products.
    pos_inf, neg_inf : numpy.ndarray of bool
        Not NaN, and at least one +Inf (respectively -Inf) product. Never both.
    neg_zero : numpy.ndarray of bool
        Every product is -0 (so the sum is zero and the result is -0).
    """

    acc: np.ndarray
    lsb_exp: int
    nan: np.ndarray
    pos_inf: np.ndarray
    neg_inf: np.ndarray
    neg_zero: np.ndarray


# -- decoding ---------------------------------------------------------------------------


def _decode_table(fmt):
    """Per-encoding facts of an fp8 format, from its bit fields (no float arithmetic)."""
    codes = np.arange(256)
    exp_field = (codes >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1)
    man_field = codes & ((1 << fmt.man_bits) - 1)
    negative = (codes >> (fmt.width - 1)).astype(bool)
    magnitude_code = codes & ((1 << (fmt.width - 1)) - 1)
    if fmt.ieee_specials:
        inf = magnitude_code == fmt.inf_code
    else:
        inf = np.zeros(256, bool)
    nan = ~inf & (magnitude_code > fmt.max_finite_code)
    # value = man_field * 2**lsb_exp (subnormal) or (2**man_bits + man_field) * 2**(exp-1+lsb).
    significand = np.where(exp_field == 0, man_field, man_field + (1 << fmt.man_bits))
    shift = np.maximum(exp_field - 1, 0)
    magnitude = np.where(nan | inf, 0, significand << shift).astype(np.int64)
    return {"magnitude": magnitude, "negative": negative, "nan": nan, "inf": inf,
            "zero": (magnitude == 0) & ~nan & ~inf}


_DECODE = {name: _decode_table(fmt) for name, fmt in INPUT_FORMATS.items()}
# Value of each encoding as a float64 (0 for NaN and Inf), from the integer magnitudes:
# exact, since every finite fp8 value has at most 4 significant bits.
_VALUES = {name: np.where(t["negative"], -1.0, 1.0) * np.ldexp(t["magnitude"].astype(np.float64),
                                                               INPUT_FORMATS[name].lsb_exp)
           for name, t in _DECODE.items()}
_SPECIAL = {name: t["nan"] | t["inf"] for name, t in _DECODE.items()}


class PreparedOperand:
    """An fp8 matrix decoded once for the fast path of :func:`gemm`, for an operand that
    many GEMMs share (a weight matrix). :func:`gemm` takes it in place of the array.

    Attributes
    ----------
    array : numpy.ndarray
        A read-only copy of the fp8 matrix.
    values : numpy.ndarray of float64, or None
        Its exact values, where it holds no NaN or Inf (else None: the general path).
    """

    def __init__(self, x):
        _check_operand("operand", x)
        self.array = np.array(x, copy=True)
        self.array.setflags(write=False)
        name = format_of(x.dtype).name
        codes = self.array.view(np.uint8)
        self.values = None if _SPECIAL[name][codes].any() else _VALUES[name][codes]

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype


def prepare(x):
    """Decode an fp8 matrix once for repeated use as an operand of :func:`gemm`.

    Parameters
    ----------
    x : numpy.ndarray, 2-D, dtype float8_e4m3fn or float8_e5m2

    Returns
    -------
    PreparedOperand
    """
    return PreparedOperand(x)


class _Operand:
    """An fp8 matrix decoded into sign / magnitude / special masks."""

    def __init__(self, x):
        self.fmt = format_of(x.dtype)
        table = _DECODE[self.fmt.name]
        codes = x.view(np.uint8)
        self.magnitude = table["magnitude"][codes]
        self.negative = table["negative"][codes]
        self.nan = table["nan"][codes]
        self.inf = table["inf"][codes]
        self.zero = table["zero"][codes]

    def limbs(self, count):
        """Split the signed integer values into ``count`` limbs: (float64 matrix, offset)."""
        width = -(-self.fmt.magnitude_bits // count)
        sign = np.where(self.negative, -1.0, 1.0)
        return [(sign * ((self.magnitude >> (i * width)) & ((1 << width) - 1)), i * width)
                for i in range(count)]


def _check_operand(name, x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.dtype not in (_DTYPES["e4m3"], _DTYPES["e5m2"]):
        raise TypeError(f"{name} must have dtype float8_e4m3fn or float8_e5m2, not {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, not {x.ndim}-D with shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} must have no zero-size dimension, not shape {x.shape}")


def _check_operands(a, b):
    _check_operand("a", a)
    _check_operand("b", b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"Inner dimensions differ: a is {a.shape[0]}x{a.shape[1]}, "
                         f"b is {b.shape[0]}x{b.shape[1]}")


def _check_scale_exp(scale_exp):
    if isinstance(scale_exp, (bool, np.bool_)) or not isinstance(scale_exp, Integral):
        raise TypeError(f"scale_exp must be an integer, not {scale_exp!r}")
    if not SCALE_EXP_MIN <= scale_exp <= SCALE_EXP_MAX:
        raise ValueError(f"scale_exp must be between {SCALE_EXP_MIN} and {SCALE_EXP_MAX}, "
                         f"not {scale_exp!r}")
    return int(scale_exp)


def _check_saturate(saturate):
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"saturate must be a bool, not {saturate!r}")
    return bool(saturate)


# -- exact accumulation -----------------------------------------------------------------


def _limb_plan(bits_a, bits_b, k):
    """Fewest limbs per operand such that every limb matrix product is exact in float64
    and the chunk sums add up in int64."""
    chunk = min(k, _K_CHUNK)
    budget = min(_FLOAT64_EXACT_BITS - (chunk - 1).bit_length(),
                 _INT64_MAG_BITS - (k - 1).bit_length())
    best = None
    for na in range(1, 9):
        for nb in range(1, 9):
            if -(-bits_a // na) + -(-bits_b // nb) <= budget:
                key = (na * nb, abs(na - nb))
                if best is None or key < best[0]:
                    best = (key, na, nb)
    return best[1], best[2]


def _count(left, right):
    """Matrix product of 0/1 indicator matrices: exact counts (float32 is exact below 2**24)."""
    dtype = np.float32 if left.shape[1] < 1 << 24 else np.float64
    return left.astype(dtype) @ right.astype(dtype)


def _special_flags(a, b):
    """NaN, +Inf and -Inf masks of the M x N result (mutually exclusive)."""
    m, n = a.nan.shape[0], b.nan.shape[1]
    nan = a.nan.any(axis=1)[:, None] | b.nan.any(axis=0)[None, :]
    pos_inf = np.zeros((m, n), bool)
    neg_inf = np.zeros((m, n), bool)
    if a.inf.any() or b.inf.any():
        a_nonzero = ~a.zero & ~a.nan
        b_nonzero = ~b.zero & ~b.nan
        nan |= _count(np.hstack([a.inf, a.zero]), np.vstack([b.zero, b.inf])) > 0
        left = np.hstack([a.inf & ~a.negative, a.inf & a.negative,
                          a_nonzero & ~a.negative, a_nonzero & a.negative])
        plus = np.vstack([b_nonzero & ~b.negative, b_nonzero & b.negative,
                          b.inf & ~b.negative, b.inf & b.negative])
        minus = np.vstack([b_nonzero & b.negative, b_nonzero & ~b.negative,
                           b.inf & b.negative, b.inf & ~b.negative])
        counts = _count(left, np.hstack([plus, minus]))
        pos_inf = counts[:, :n] > 0
        neg_inf = counts[:, n:] > 0
        nan |= pos_inf & neg_inf
    pos_inf &= ~nan
    neg_inf &= ~nan
    return nan, pos_inf, neg_inf


def _neg_zero(a, b, candidates):
    """Where ``candidates`` (exact sum zero, no special value) holds: is every product -0?

    That is, for every k a factor is zero and the factor signs differ. Only the candidate
    elements are checked, a bounded number of rows at a time, so this costs nothing for
    typical data and stays linear in M * N * K when every sum is zero.
    """
    neg_zero = np.zeros(candidates.shape, bool)
    rows, cols = np.nonzero(candidates)
    if rows.size == 0 or not (a.zero.any() or b.zero.any()):
        return neg_zero
    k = a.zero.shape[1]
    b_zero, b_negative = b.zero.T, b.negative.T
    step = max(1, (1 << 22) // k)
    for start in range(0, rows.size, step):
        i, j = rows[start:start + step], cols[start:start + step]
        every = ((a.zero[i] | b_zero[j]) & (a.negative[i] != b_negative[j])).all(axis=1)
        neg_zero[i, j] = every
    return neg_zero


def _exact_terms(a, b):
    """The exact sum as terms: list of (int64 matrix P, offset), sum of P * 2**offset."""
    k = a.magnitude.shape[1]
    na, nb = _limb_plan(a.fmt.magnitude_bits, b.fmt.magnitude_bits, k)
    a_limbs, b_limbs = a.limbs(na), b.limbs(nb)
    terms = []
    for a_limb, a_offset in a_limbs:
        for b_limb, b_offset in b_limbs:
            total = None
            for start in range(0, k, _K_CHUNK):
                part = (a_limb[:, start:start + _K_CHUNK] @ b_limb[start:start + _K_CHUNK])
                part = part.astype(np.int64)
                total = part if total is None else total + part
            terms.append((total, a_offset + b_offset))
    return terms


def _terms_to_object(terms):
    acc = np.zeros(terms[0][0].shape, dtype=object)
    for product, offset in terms:
        acc = acc + (product.astype(object) << offset)
    return acc


def _terms_to_reduced(terms):
    """Combine exact terms into (negative, magnitude < 2**62, shift) for rounding."""
    if len(terms) == 1 and terms[0][1] == 0:
        return _reduce_int64(terms[0][0])
    bound = sum(np.abs(p.astype(np.float64)) * 2.0 ** offset for p, offset in terms)
    fits = bound < 2.0 ** (_INT64_MAG_BITS - 1)
    acc = np.zeros(fits.shape, np.int64)
    for product, offset in terms:
        acc += np.where(fits, product, 0) << offset
    negative, magnitude, shift = _reduce_int64(acc)
    if not fits.all():
        index = np.nonzero(~fits)
        big = _terms_to_object([(p[index], offset) for p, offset in terms])
        negative[index], magnitude[index], shift[index] = _reduce_object(big)
    return negative, magnitude, shift


def exact_gemm(a, b):
    """Exact fp8 matrix product, before output rounding.

    Parameters
    ----------
    a : numpy.ndarray, shape (M, K), dtype float8_e4m3fn or float8_e5m2
    b : numpy.ndarray, shape (K, N), dtype float8_e4m3fn or float8_e5m2

    Returns
    -------
    ExactSum

    Raises
    ------
    TypeError
        If an operand is not a numpy array of an fp8 dtype.
    ValueError
        If an operand is not 2-D, has a zero-size dimension, or the inner dimensions differ.
    """
    _check_operands(a, b)
    da, db = _Operand(a), _Operand(b)
    nan, pos_inf, neg_inf = _special_flags(da, db)
    acc = _terms_to_object(_exact_terms(da, db))
    special = nan | pos_inf | neg_inf
    acc[special] = 0
    neg_zero = _neg_zero(da, db, (acc == 0) & ~special)
    return ExactSum(acc=acc, lsb_exp=da.fmt.lsb_exp + db.fmt.lsb_exp, nan=nan,
                    pos_inf=pos_inf, neg_inf=neg_inf, neg_zero=neg_zero)


# -- rounding ---------------------------------------------------------------------------


def _reduce_int64(acc):
    """Split an int64 array into sign, magnitude (< 2**62, with sticky bit) and shift."""
    acc = np.asarray(acc, dtype=np.int64)
    negative = acc < 0
    # abs() of int64 min wraps; take magnitudes as uint64 and reduce what is too wide.
    magnitude = np.where(negative, -(acc + 1), acc).astype(np.uint64) + negative.astype(np.uint64)
    shift = np.zeros(acc.shape, np.int64)
    wide = magnitude >> np.uint64(_INT64_MAG_BITS) != 0
    if wide.any():
        # At most two bits too wide: shift them out into a sticky bit.
        drop = np.where(magnitude >> np.uint64(_INT64_MAG_BITS + 1) != 0, 2, 1).astype(np.uint64)
        lost = magnitude & ((np.uint64(1) << drop) - np.uint64(1))
        reduced = (magnitude >> drop) | (lost != 0).astype(np.uint64)
        magnitude = np.where(wide, reduced, magnitude)
        shift = np.where(wide, drop.astype(np.int64), 0)
    return negative, magnitude.astype(np.int64), shift


def _reduce_object(acc):
    """Like _reduce_int64, for an object array of Python ints of any size."""
    flat = acc.reshape(-1)
    negative = np.zeros(flat.shape, bool)
    magnitude = np.zeros(flat.shape, np.int64)
    shift = np.zeros(flat.shape, np.int64)
    for i, value in enumerate(flat):
        if type(value) is not int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
                raise TypeError(f"acc must hold integers, not {value!r}")
            value = int(value)
        if value < 0:
            negative[i] = True
            value = -value
        excess = value.bit_length() - _INT64_MAG_BITS
        if excess > 0:
            sticky = (value & ((1 << excess) - 1)) != 0
            value = (value >> excess) | sticky
            shift[i] = excess
        magnitude[i] = value
    return negative.reshape(acc.shape), magnitude.reshape(acc.shape), shift.reshape(acc.shape)


def _bit_length(x):
    """Vectorised int.bit_length for non-negative int64 arrays."""
    length = np.zeros(x.shape, np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        high = x >> step != 0
        length += np.where(high, step, 0)
        x = np.where(high, x >> step, x)
    return length + x


def _round_reduced(negative, magnitude, exponent, fmt, saturate, nan, pos_inf, neg_inf,
                   neg_zero):
    """Round ``(-1)**negative * magnitude * 2**exponent`` into ``fmt``; return raw bits.

    ``magnitude`` is int64 below 2**62; when it was reduced from a wider value its lowest
    bit is a sticky bit, which is always at least 2 bits below the rounding position.
    """
    exponent = np.clip(exponent, -_EXP_CLAMP, _EXP_CLAMP)
    man_bits = fmt.man_bits
    quantum_min = fmt.lsb_exp
    top = exponent + _bit_length(magnitude) - 1
    # Exponent of the result's last place: man_bits below the top bit, or the subnormal LSB.
    quantum = np.maximum(top - man_bits, quantum_min)
    right = np.clip(quantum - exponent, 0, 63)
    left = np.clip(exponent - quantum, 0, 63)
    kept = (magnitude >> right) << left
    half = np.left_shift(1, np.maximum(right - 1, 0))
    rest = np.where(right > 0, magnitude & (half - 1 + half), 0)
    half = np.where(right > 0, half, 1)
    round_up = (rest > half) | ((rest == half) & (kept & 1 == 1))
    kept = kept + round_up
    # code = ((quantum - lsb) << man_bits) + kept covers subnormals, normals and a carry
    # into the next binade (kept == 2 << man_bits) alike.
    binade = np.minimum(quantum - quantum_min, _EXP_CLAMP)
    code = np.where(kept == 0, 0, (binade << man_bits) + kept)
    overflow = code > fmt.max_finite_code

    nan = nan | (pos_inf & neg_inf)
    inf = pos_inf | neg_inf
    if fmt.width > 8 or not saturate:
        huge = fmt.inf_code          # None for non-saturating E4M3: becomes NaN below
    else:
        huge = fmt.max_finite_code
    if huge is None:
        nan = nan | inf | (overflow & ~inf)
        huge = 0
    code = np.where(overflow | inf, huge, code)
    sign = np.where(inf, neg_inf, np.where(magnitude == 0, neg_zero, negative))
    code = code | (sign.astype(np.int64) << (fmt.width - 1))
    code = np.where(nan, fmt.canonical_nan, code)
    return code.astype(_BITS_DTYPES[fmt.width])


def _flag(name, value, shape):
    if value is None:
        return np.zeros(shape, bool)
    value = np.asarray(value)
    if value.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array, not {value.dtype}")
    try:
        return np.broadcast_to(value, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {value.shape}, which does not broadcast to "
                         f"acc's shape {shape}") from None


def round_to_format(acc, lsb_exp, out_format, *, saturate=True, scale_exp=0, nan=None,
                    pos_inf=None, neg_inf=None, neg_zero=None):
    """Round exact integers times a power of two into an output format, as the hardware's
    normaliser does.

    Parameters
    ----------
    acc : array_like of int
        int64 (or narrower) array, or object array of Python ints of any size, any shape.
    lsb_exp : int
        The value is ``acc * 2**(lsb_exp + scale_exp)``.
    out_format : str or FloatFormat
        "fp32", "bf16", "e4m3" or "e5m2".
    saturate : bool
        fp8 overflow mode: True clamps to +-max finite (Inf too); False gives NaN (E4M3)
        or +-Inf (E5M2). fp32 and bf16 always overflow to +-Inf.
    scale_exp : int
        Output scale exponent in [-128, 127].
    nan, pos_inf, neg_inf, neg_zero : array_like of bool, optional
        Special-value flags broadcastable to ``acc``'s shape; default all False. NaN wins,
        and ``pos_inf & neg_inf`` is NaN; ``neg_zero`` only matters where ``acc == 0``.
        Elsewhere a result that rounds to zero takes the sign of ``acc``.

    Returns
    -------
    numpy.ndarray
        Raw encodings: uint32 (fp32), uint16 (bf16) or uint8 (fp8), shape of ``acc``.

    Raises
    ------
    TypeError
        For non-integer ``acc``, ``lsb_exp`` or ``scale_exp``, non-bool ``saturate`` or flags.
    ValueError
        For an unknown format, a scale out of range, or flags of the wrong shape.
    """
    fmt = output_format(out_format)
    saturate = _check_saturate(saturate)
    scale_exp = _check_scale_exp(scale_exp)
    if isinstance(lsb_exp, (bool, np.bool_)) or not isinstance(lsb_exp, Integral):
        raise TypeError(f"lsb_exp must be an integer, not {lsb_exp!r}")
    acc = np.asarray(acc)
    if acc.dtype == object:
        negative, magnitude, shift = _reduce_object(acc)
    elif acc.dtype.kind == "i" or (acc.dtype.kind == "u" and acc.dtype.itemsize < 8):
        negative, magnitude, shift = _reduce_int64(acc)
    elif acc.dtype.kind == "u":
        negative, magnitude, shift = _reduce_object(acc.astype(object))
    else:
        raise TypeError(f"acc must be an integer array, not {acc.dtype}")
    flags = [_flag(name, value, acc.shape) for name, value in
             (("nan", nan), ("pos_inf", pos_inf), ("neg_inf", neg_inf), ("neg_zero", neg_zero))]
    base = max(-_EXP_CLAMP, min(_EXP_CLAMP, int(lsb_exp) + scale_exp))
    return _round_reduced(negative, magnitude, shift + base, fmt, saturate, *flags)


# -- the GEMM ---------------------------------------------------------------------------


def gemm(a, b, out_format="fp32", *, saturate=True, scale_exp=0):
    """Systole's fp8 matrix product, bit-exact.

    Parameters
    ----------
    a : numpy.ndarray, shape (M, K), dtype float8_e4m3fn or float8_e5m2
    b : numpy.ndarray, shape (K, N), dtype float8_e4m3fn or float8_e5m2
        The two operand formats may differ. Either may be a :class:`PreparedOperand`.
    out_format : str or FloatFormat
        "fp32" (default), "bf16", "e4m3" or "e5m2".
    saturate : bool
        fp8 output overflow mode (OCP OFP8 5.2.1): True clamps to +-max finite, Inf
        included; False gives NaN for E4M3 and +-Inf for E5M2. No effect on fp32 / bf16,
        which overflow to +-Inf as IEEE 754 does.
    scale_exp : int
        The exact sum is multiplied by ``2**scale_exp`` (in [-128, 127]) before rounding.

    Returns
    -------
    numpy.ndarray, shape (M, N)
        dtype float32, bfloat16, float8_e4m3fn or float8_e5m2. NaNs are canonical.

    Raises
    ------
    TypeError
        Wrong operand type or dtype, non-integer ``scale_exp``, non-bool ``saturate``.
    ValueError
        Non-2-D operands, zero-size dimensions, inner dimension mismatch, unknown
        ``out_format``, ``scale_exp`` out of range.
    """
    prepared_a = a if isinstance(a, PreparedOperand) else None
    prepared_b = b if isinstance(b, PreparedOperand) else None
    a = a.array if prepared_a else a
    b = b.array if prepared_b else b
    _check_operands(a, b)
    fmt = output_format(out_format)
    saturate = _check_saturate(saturate)
    scale_exp = _check_scale_exp(scale_exp)
    if _fast_path_exact(a, b):
        a_values = _finite_values(a, prepared_a)
        b_values = _finite_values(b, prepared_b) if a_values is not None else None
        if b_values is not None:
            return _gemm_fast(a, b, a_values, b_values, fmt, saturate, scale_exp)
    return _gemm_general(a, b, fmt, saturate, scale_exp)


def _fast_path_exact(a, b):
    """One float64 matrix product of the values is exact for this format pair and K."""
    fa, fb = format_of(a.dtype), format_of(b.dtype)
    k = a.shape[1]
    return (fa.magnitude_bits + fb.magnitude_bits + (k - 1).bit_length()
            <= _FLOAT64_EXACT_BITS and k <= _K_CHUNK)


def _finite_values(x, prepared):
    """The float64 values of ``x``, or None if it holds a NaN or an Inf."""
    if prepared is not None:
        return prepared.values
    name = format_of(x.dtype).name
    codes = x.view(np.uint8)
    if _SPECIAL[name][codes].any():
        return None
    return _VALUES[name][codes]


def _gemm_fast(a, b, a_values, b_values, fmt, saturate, scale_exp):
    """:func:`gemm` for operands without NaN or Inf where a float64 product is exact."""
    lsb_exp = format_of(a.dtype).lsb_exp + format_of(b.dtype).lsb_exp
    exact = a_values @ b_values                     # every partial sum is exact
    acc = np.ldexp(exact, -lsb_exp).astype(np.int64)
    negative, magnitude, shift = _reduce_int64(acc)
    none = np.zeros(acc.shape, bool)
    neg_zero = none
    zero = acc == 0
    if zero.any():
        # The signed-zero rule needs the factors: decode only the rows and columns involved.
        rows, cols = np.nonzero(zero.any(axis=1))[0], np.nonzero(zero.any(axis=0))[0]
        sub = _neg_zero(_Operand(a[rows]), _Operand(b[:, cols]), zero[np.ix_(rows, cols)])
        neg_zero = np.zeros(acc.shape, bool)
        neg_zero[np.ix_(rows, cols)] = sub
    bits = _round_reduced(negative, magnitude, shift + (lsb_exp + scale_exp), fmt, saturate,
                          none, none, none, neg_zero)
    return bits.view(_DTYPES[fmt.name])


def _gemm_general(a, b, fmt, saturate, scale_exp):
    """:func:`gemm` for any operands: decoded integers, limbs, the special-value rules."""
    da, db = _Operand(a), _Operand(b)
    nan, pos_inf, neg_inf = _special_flags(da, db)
    negative, magnitude, shift = _terms_to_reduced(_exact_terms(da, db))
    neg_zero = _neg_zero(da, db, (magnitude == 0) & ~(nan | pos_inf | neg_inf))
    exponent = shift + (da.fmt.lsb_exp + db.fmt.lsb_exp + scale_exp)
    bits = _round_reduced(negative, magnitude, exponent, fmt, saturate,
                          nan, pos_inf, neg_inf, neg_zero)
    return bits.view(_DTYPES[fmt.name])

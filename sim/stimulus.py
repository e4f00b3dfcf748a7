"""Seeded random fp8 operands for tests, testbenches and the demo.

Finite values come from two sources: uniformly random encodings (every exponent, so sums
span the whole dynamic range and exercise wide alignment) and rounded normal samples
(similar magnitudes, so sums cancel and round at every bit). Specials (NaN, +-Inf, +-0,
+-max, +-min subnormal) are sprinkled in at a chosen rate.
"""

import ml_dtypes
import numpy as np

from ..formats import input_format

__all__ = ["FP8_DTYPES", "random_fp8", "special_values"]

FP8_DTYPES = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}


def special_values(fmt):
    """Raw encodings of the interesting values of an fp8 format, as uint8."""
    spec = input_format(fmt)
    codes = [0x00, 0x80, 0x01, 0x81, spec.max_finite_code, 0x80 | spec.max_finite_code,
             spec.canonical_nan]
    if spec.ieee_specials:
        codes += [spec.inf_code, 0x80 | spec.inf_code]
    return np.array(codes, dtype=np.uint8)


def _finite_codes(fmt, codes):
    """Replace NaN/Inf encodings in ``codes`` by zero (keeps the rest)."""
    spec = input_format(fmt)
    magnitude = codes & 0x7F
    if spec.ieee_specials:
        special = magnitude >= spec.inf_code
    else:
        special = magnitude == spec.canonical_nan
    return np.where(special, codes & 0x80, codes).astype(np.uint8)


def random_fp8(rng, shape, fmt, *, specials=0.0, style="mixed"):
    """Random fp8 array.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple
    fmt : "e4m3" or "e5m2"
    specials : float
        Probability that an element is replaced by a special value.
    style : "uniform", "normal" or "mixed"
        Uniform random finite encodings, normal samples rounded to fp8, or half of each
        (chosen per element).
    """
    dtype = FP8_DTYPES[input_format(fmt).name]
    uniform = _finite_codes(fmt, rng.integers(0, 256, size=shape, dtype=np.uint8))
    # Cast through float32 only to make test data; the golden model never does this.
    normal = (rng.standard_normal(size=shape).astype(np.float32)
              * np.float32(2.0) ** rng.integers(-4, 5)).astype(dtype).view(np.uint8)
    normal = _finite_codes(fmt, normal)
    if style == "uniform":
        codes = uniform
    elif style == "normal":
        codes = normal
    elif style == "mixed":
        codes = np.where(rng.random(size=shape) < 0.5, uniform, normal)
    else:
        raise ValueError(f"Unknown style {style!r}; expected 'uniform', 'normal' or 'mixed'")
    if specials:
        pool = special_values(fmt)
        mask = rng.random(size=shape) < specials
        codes = np.where(mask, pool[rng.integers(0, len(pool), size=shape)], codes)
    return codes.astype(np.uint8).view(dtype)

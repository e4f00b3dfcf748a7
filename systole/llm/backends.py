"""The GEMM backends every linear layer of the model runs through.

A backend turns a weight ``W`` (out_features x in_features, float32: the dequantised GGUF
tensor) into a :class:`Linear` whose ``__call__(x)`` computes ``x @ W.T`` for an M x K
float32 activation matrix, in one of these numeric modes:

``fp32``
    The reference: float32 operands and BLAS float32 accumulation.
``systole``
    Systole's numerics. Each activation row (token) is quantised to E4M3 with its own
    power-of-two scale ``2**e_i``, each weight row (output channel) with ``2**f_j``
    (:func:`quantize_rows`); the fp8 GEMM is ``golden.gemm`` (exact sum, one
    round-to-nearest-even into fp32: bit-identical to the RTL); the host multiplies
    result ``(i, j)`` by ``2**(e_i + f_j)``.
``fp8-fp32seq``
    The same fp8 operands and scales, but products added into an fp32 running sum one at
    a time (``systole.sim.accuracy.fp32_sequential``), as a GPU without exact
    accumulation would.
``bf16``
    Weights and activations rounded to bfloat16; products (exact in float32) summed by
    BLAS in float32.

Why the host-side scale is exact: scaling by a power of two only shifts the exponent, so
``round(S) * 2**n == round(S * 2**n)`` for round-to-nearest-even while both sides are
normal fp32 numbers. The fp32 result of golden.gemm times ``2**(e_i + f_j)`` is therefore
the one correctly rounded value of the exactly scaled sum, which is what the hardware's
own per-job ``scale_exp`` would give, as long as the product stays in the normal range
(at least 2**-126 in magnitude, below 2**128). :func:`apply_scales` checks that range on
every call and fails rather than return a double-rounded value; tests/test_llm.py checks
the law against ``golden.gemm(..., scale_exp=...)``.
"""

import ml_dtypes
import numpy as np

from ..sim import golden
from ..sim.accuracy import fp32_sequential

__all__ = ["BACKENDS", "MODES", "make_backend", "quantize_rows", "apply_scales", "Linear",
           "E4M3_MAX"]

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
BF16 = np.dtype(ml_dtypes.bfloat16)
#: Largest finite E4M3 magnitude.
E4M3_MAX = 448.0
_FP32_MIN_NORMAL = 2.0 ** -126


def quantize_rows(x):
    """Quantise each row of a float32 matrix to E4M3 with a power-of-two scale.

    Row ``i`` gets the smallest exponent ``e_i`` with ``max|x_i| * 2**-e_i <= 448``, so
    its largest element lands in (224, 448] and no value overflows; ``x_i * 2**-e_i`` is
    exact in float32 and its cast to E4M3 is one round-to-nearest-even.

    Returns
    -------
    (numpy.ndarray of float8_e4m3fn, numpy.ndarray of int32)
        The fp8 matrix and the exponents (0 for an all-zero row).
    """
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1).astype(np.float64)
    mantissa, exponent = np.frexp(amax / E4M3_MAX)          # amax/448 = m * 2**E, m in [0.5, 1)
    e = np.where(mantissa == 0.5, exponent - 1, exponent)   # ceil(log2(amax / 448))
    e = np.where(amax > 0, e, 0).astype(np.int32)
    scaled = np.ldexp(x, -e[:, None]).astype(np.float32)
    return scaled.astype(E4M3), e


def apply_scales(c, row_exp, col_exp):
    """``c[i, j] * 2**(row_exp[i] + col_exp[j])`` in float32, exact.

    Raises
    ------
    ArithmeticError
        If a nonzero result would leave the normal float32 range (where the product would
        be a second rounding).
    """
    out = np.ldexp(c, (row_exp[:, None] + col_exp[None, :]).astype(np.int32))
    nonzero = out[c != 0]
    if nonzero.size and (np.abs(nonzero).min() < _FP32_MIN_NORMAL
                         or not np.isfinite(nonzero).all()):
        raise ArithmeticError("a power-of-two rescale left the normal fp32 range")
    return out.astype(np.float32, copy=False)


class Linear:
    """One linear layer in one numeric mode: ``y = x @ W.T`` for float32 ``x``.

    Attributes
    ----------
    name : str
        Which layer (``"blk.0.q"``, ``"lm_head"``), for the GEMM log.
    n, k : int
        Output and input features.
    """

    def __init__(self, name, weight, mode, log=None):
        self.name = name
        self.mode = mode
        self.n, self.k = weight.shape
        self._log = log
        if mode == "fp32":
            self._wt = np.ascontiguousarray(weight.T, dtype=np.float32)
        elif mode == "bf16":
            self._wt = np.ascontiguousarray(weight.astype(BF16).astype(np.float32).T)
        elif mode in ("systole", "fp8-fp32seq"):
            q, self.col_exp = quantize_rows(weight)
            self.b = np.ascontiguousarray(q.T)                     # K x N E4M3
            self._prepared = golden.prepare(self.b) if mode == "systole" else None
        else:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self.mode == "fp32":
            return x @ self._wt
        if self.mode == "bf16":
            return x.astype(BF16).astype(np.float32) @ self._wt
        a, row_exp = quantize_rows(x)
        if self.mode == "systole":
            c = golden.gemm(a, self._prepared, "fp32")
        else:
            c = fp32_sequential(a, self.b)
        if self._log is not None:
            self._log(self, a, c)
        return apply_scales(c, row_exp, self.col_exp)


#: The numeric modes, with a one-line description each.
MODES = {
    "fp32": "fp32 reference (dequantised weights, float32 BLAS)",
    "systole": "Systole: E4M3 x E4M3, exact sum, one fp32 rounding (golden.gemm)",
    "fp8-fp32seq": "E4M3 x E4M3, sequential fp32 accumulation (fp32_sequential)",
    "bf16": "bf16 weights and activations, fp32 accumulation",
}
BACKENDS = tuple(MODES)


def make_backend(mode, log=None):
    """A factory ``(name, weight) -> Linear`` for ``mode``. ``log(linear, a, c)`` (fp8
    modes only) sees every GEMM's fp8 activation matrix ``a`` and unscaled result ``c``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return lambda name, weight: Linear(name, weight, mode, log)

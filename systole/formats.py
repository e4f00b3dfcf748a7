"""The floating-point formats Systole reads and writes, declared once.

Every other module (gateware, golden model, docs) takes its format facts from here:
field widths, bias, special-value encodings, and the fixed-point position of the
smallest subnormal that the exact accumulator is built around.
"""

from dataclasses import dataclass

__all__ = ["FloatFormat", "E4M3", "E5M2", "FP32", "BF16", "INPUT_FORMATS", "OUTPUT_FORMATS",
           "input_format", "output_format"]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format.

    Attributes
    ----------
    name : str
        Short name used everywhere ("e4m3", "e5m2", "fp32", "bf16").
    exp_bits, man_bits : int
        Widths of the exponent and (stored) mantissa fields.
    bias : int
        Exponent bias.
    ieee_specials : bool
        True when the all-ones exponent encodes Inf (mantissa 0) and NaN (otherwise), as in
        IEEE 754 and OCP E5M2. False for OCP E4M3, where only S.1111.111 is NaN and there
        is no Inf.
    canonical_nan : int
        The NaN encoding Systole writes (positive sign).
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    ieee_specials: bool
    canonical_nan: int

    @property
    def width(self):
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self):
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def lsb_exp(self):
        """Exponent of the smallest subnormal: every finite value is an integer times 2**lsb_exp."""
        return self.emin - self.man_bits

    @property
    def max_finite_code(self):
        """Encoding (sign clear) of the largest finite value."""
        if self.ieee_specials:
            return ((1 << self.exp_bits) - 2) << self.man_bits | ((1 << self.man_bits) - 1)
        return (1 << (self.exp_bits + self.man_bits)) - 2    # S.1111.110 for E4M3

    @property
    def inf_code(self):
        """Encoding (sign clear) of +Inf, or None when the format has no Inf."""
        return ((1 << self.exp_bits) - 1) << self.man_bits if self.ieee_specials else None

    @property
    def max_exp(self):
        """Exponent of the largest finite value."""
        return (self.max_finite_code >> self.man_bits) - self.bias

    @property
    def max_finite(self):
        """Largest finite value, as a float."""
        man = self.max_finite_code & ((1 << self.man_bits) - 1)
        return (1 + man / (1 << self.man_bits)) * 2.0 ** self.max_exp

    @property
    def magnitude_bits(self):
        """Bits of the largest finite magnitude as an integer multiple of 2**lsb_exp."""
        return self.max_exp + 1 - self.lsb_exp

    def __str__(self):
        return self.name


E4M3 = FloatFormat("e4m3", exp_bits=4, man_bits=3, bias=7, ieee_specials=False, canonical_nan=0x7F)
E5M2 = FloatFormat("e5m2", exp_bits=5, man_bits=2, bias=15, ieee_specials=True, canonical_nan=0x7E)
FP32 = FloatFormat("fp32", exp_bits=8, man_bits=23, bias=127, ieee_specials=True,
                   canonical_nan=0x7FC00000)
BF16 = FloatFormat("bf16", exp_bits=8, man_bits=7, bias=127, ieee_specials=True,
                   canonical_nan=0x7FC0)

INPUT_FORMATS = {f.name: f for f in (E4M3, E5M2)}
OUTPUT_FORMATS = {f.name: f for f in (FP32, BF16, E4M3, E5M2)}


def _lookup(table, kind, name):
    if isinstance(name, FloatFormat):
        name = name.name
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"Unknown {kind} format {name!r}; expected one of {sorted(table)}")
    return table[name]


def input_format(name):
    """Look up an fp8 operand format by name ("e4m3", "e5m2")."""
    return _lookup(INPUT_FORMATS, "input", name)


def output_format(name):
    """Look up an output format by name ("fp32", "bf16", "e4m3", "e5m2")."""
    return _lookup(OUTPUT_FORMATS, "output", name)

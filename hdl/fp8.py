"""fp8 operand formats and their decoder.

This is the only gateware that slices the fields of an fp8 value. Every operand is decoded
into one common fixed-point form, ``value = (-1)**sign * significand << shift`` in units of
``2**config.operand_lsb_exp``, so that a product of any two enabled formats is a plain
integer multiply and shift into the exact accumulator.
"""

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..formats import E4M3, E5M2, OUTPUT_FORMATS

__all__ = ["Fp8Format", "OutFormat", "DecodedOperand", "Fp8Decoder"]


class Fp8Format(enum.Enum, shape=1):
    """fp8 operand format of A or B, selectable per job."""
    E4M3 = 0
    E5M2 = 1

    @property
    def spec(self):
        return {Fp8Format.E4M3: E4M3, Fp8Format.E5M2: E5M2}[self]

    @classmethod
    def from_name(cls, name):
        return {"e4m3": cls.E4M3, "e5m2": cls.E5M2}[name]


class OutFormat(enum.Enum, shape=2):
    """Format of the C results, selectable per job."""
    FP32 = 0
    BF16 = 1
    E4M3 = 2
    E5M2 = 3

    @property
    def spec(self):
        return OUTPUT_FORMATS[self.name.lower()]

    @classmethod
    def from_name(cls, name):
        return cls[name.upper()]


def DecodedOperand(config):
    """Layout of a decoded fp8 operand for ``config``.

    Specials carry ``significand == 0`` so that they never disturb the exact sum; their
    effect travels in the flags.
    """
    return data.StructLayout({
        "sign": 1,
        "significand": unsigned(config.significand_bits),
        "shift": unsigned(config.operand_shift_max.bit_length()),
        "zero": 1,
        "inf": 1,
        "nan": 1,
    })


class Fp8Decoder(wiring.Component):
    """Combinational fp8 decoder.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    bits : In(8)
        The raw fp8 encoding.
    format : In(Fp8Format)
        How to read ``bits``. A format the configuration does not enable decodes as the
        last enabled one; the job checker rejects such jobs before they reach the array.
    operand : Out(DecodedOperand(config))
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "bits": In(8),
            "format": In(Fp8Format),
            "operand": Out(DecodedOperand(config)),
        })

    def _decode(self, m, spec):
        """Decode fields for one format; returns (sign, significand, shift, zero, inf, nan)."""
        man = self.bits[:spec.man_bits]
        exp = self.bits[spec.man_bits:spec.man_bits + spec.exp_bits]
        all_ones = exp == (1 << spec.exp_bits) - 1
        if spec.ieee_specials:
            nan = all_ones & (man != 0)
            inf = all_ones & (man == 0)
        else:
            nan = all_ones & (man == (1 << spec.man_bits) - 1)
            inf = 0
        zero = (exp == 0) & (man == 0)
        special = nan | inf
        significand = Mux(special, 0, Mux(exp == 0, man, (1 << spec.man_bits) | man))
        # Subnormals share the exponent of the smallest normal; shift is in common units.
        offset = spec.lsb_exp - self._config.operand_lsb_exp
        shift = Mux(exp == 0, 0, exp - 1) + offset
        return self.bits[7], significand, shift, zero, inf, nan

    def elaborate(self, platform):
        m = Module()
        enabled = [Fp8Format.from_name(name) for name in self._config.formats]
        op = self.operand
        with m.Switch(self.format):
            for i, fmt in enumerate(enabled):
                # The last case also catches formats the configuration does not enable.
                pattern = "-" if i == len(enabled) - 1 else fmt
                with m.Case(pattern):
                    sign, significand, shift, zero, inf, nan = self._decode(m, fmt.spec)
                    m.d.comb += [
                        op.sign.eq(sign),
                        op.significand.eq(significand),
                        op.shift.eq(shift),
                        op.zero.eq(zero),
                        op.inf.eq(inf),
                        op.nan.eq(nan),
                    ]
        return m

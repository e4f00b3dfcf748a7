"""The one configuration object every part of Systole is built from."""

from dataclasses import dataclass, asdict

from .formats import INPUT_FORMATS, input_format

__all__ = ["SystoleConfig"]


def _require_int(name, value, *, minimum=1, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


@dataclass(frozen=True)
class SystoleConfig:
    """Parameters of one Systole build, checked on construction.

    The same object drives the gateware, the golden and performance models and the
    generated documentation.

    Parameters
    ----------
    rows, cols : int
        Shape of the output-stationary PE array (rows of C by columns of C per tile).
    formats : tuple of str
        fp8 operand formats the hardware supports ("e4m3", "e5m2"); the accumulator is
        wide enough for every product of any two of them.
    max_k : int
        Largest reduction length K a job may have. Sets the accumulator's guard bits.
    counter_width : int
        Width of the hardware performance counters.
    bus_width : int
        Data width of the AXI4 memory master in bits (32, 64 or 128).
    addr_width : int
        Address width of the AXI4 memory master in bits (12 to 64): the memory a job may
        touch is the first ``2**addr_width`` bytes. Small boards set it to their memory
        size, which narrows every address and dimension register of the datapath.
    max_burst : int
        Longest AXI4 INCR burst the DMA issues, in beats (1 to 256).
    max_outstanding : int
        AXI4 read bursts the DMA may have in flight; covers the memory latency.
    sram_depth : int
        k-steps one operand buffer holds (the K chunk); a power of two, a multiple of the
        bus width in bytes.
    row_tiles : int
        Row tiles of A one A buffer holds, so one B tile serves that many output tiles.

    Attributes
    ----------
    acc_lsb_exp : int
        Exponent of the accumulator's least significant bit.
    product_span : int
        Bits spanned by every exact product of two enabled formats.
    acc_width : int
        Accumulator width: product span + ceil(log2(max_k)) guard bits + 1 sign bit.
    dim_width, k_width : int
        Bits that hold M or N, and K, of any job the checker accepts.

    Raises
    ------
    TypeError, ValueError
        With a message naming the offending parameter.
    """

    rows: int = 8
    cols: int = 8
    formats: tuple = ("e4m3", "e5m2")
    max_k: int = 65536
    counter_width: int = 64
    bus_width: int = 64
    addr_width: int = 32
    max_burst: int = 256
    max_outstanding: int = 64
    sram_depth: int = 1024
    row_tiles: int = 2

    def __post_init__(self):
        _require_int("Array rows", self.rows, maximum=64)
        _require_int("Array cols", self.cols, maximum=64)
        if isinstance(self.formats, str) or not isinstance(self.formats, (tuple, list)):
            raise TypeError(f"formats must be a tuple of format names, not {self.formats!r}")
        if not self.formats:
            raise ValueError("formats must name at least one fp8 format")
        for name in self.formats:
            if name not in INPUT_FORMATS:
                raise ValueError(f"Unknown fp8 format {name!r}; expected one of "
                                 f"{sorted(INPUT_FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats lists a format twice: {self.formats!r}")
        # Canonical order, so equal configurations compare (and hash) equal.
        object.__setattr__(self, "formats",
                           tuple(name for name in INPUT_FORMATS if name in self.formats))
        _require_int("max_k", self.max_k, maximum=1 << 31)
        _require_int("counter_width", self.counter_width, minimum=32, maximum=64)
        if self.bus_width not in (32, 64, 128):
            raise ValueError(f"bus_width must be 32, 64 or 128, not {self.bus_width!r}")
        # At least one 4 KiB page: the DMA splits bursts at page boundaries.
        _require_int("addr_width", self.addr_width, minimum=12, maximum=64)
        _require_int("max_burst", self.max_burst, maximum=256)
        _require_int("max_outstanding", self.max_outstanding, maximum=64)
        _require_int("sram_depth", self.sram_depth, maximum=1 << 16)
        if self.sram_depth & (self.sram_depth - 1) or self.sram_depth < self.bus_bytes:
            raise ValueError(f"sram_depth must be a power of two of at least the bus width "
                             f"in bytes ({self.bus_bytes}), not {self.sram_depth!r}")
        _require_int("row_tiles", self.row_tiles, maximum=16)

    # -- derived numerics ---------------------------------------------------------------

    @property
    def input_formats(self):
        return tuple(input_format(name) for name in self.formats)

    @property
    def operand_lsb_exp(self):
        """Exponent of the common fixed-point unit operands are decoded into."""
        return min(fmt.lsb_exp for fmt in self.input_formats)

    @property
    def acc_lsb_exp(self):
        return 2 * self.operand_lsb_exp

    @property
    def product_span(self):
        top = max(fmt.max_exp + 1 for fmt in self.input_formats)
        return 2 * top - self.acc_lsb_exp

    @property
    def guard_bits(self):
        return (self.max_k - 1).bit_length()

    @property
    def acc_width(self):
        return self.product_span + self.guard_bits + 1

    @property
    def significand_bits(self):
        """Width of a decoded operand significand (implicit bit included)."""
        return max(fmt.man_bits + 1 for fmt in self.input_formats)

    @property
    def operand_shift_max(self):
        """Largest left shift of a decoded operand significand in the common unit."""
        return max((1 << fmt.exp_bits) - 2 + fmt.lsb_exp - self.operand_lsb_exp
                   for fmt in self.input_formats)

    @property
    def dim_width(self):
        """Bits of M and N in the datapath. A job passes the address check only if every
        row of A, B and C lies below ``2**addr_width``, and rows are at least one byte
        apart, so M, N <= 2**addr_width (the descriptor registers are 32 bits)."""
        return min(32, self.addr_width + 1)

    @property
    def k_width(self):
        """Bits of K in the datapath (K <= max_k for every accepted job)."""
        return self.max_k.bit_length()

    @property
    def bus_bytes(self):
        return self.bus_width // 8

    @property
    def a_sram_bytes(self):
        """A operand SRAM: two buffers of row_tiles * rows rows by sram_depth bytes."""
        return 2 * self.row_tiles * self.rows * self.sram_depth

    @property
    def b_sram_bytes(self):
        """B operand SRAM: two buffers of sram_depth rows by cols bytes."""
        return 2 * self.sram_depth * self.cols

    def supports(self, fmt):
        """True when the hardware accepts operands in format ``fmt``."""
        return input_format(fmt).name in self.formats

    def to_dict(self):
        """Plain-data view, with the derived widths, for JSON reports."""
        d = asdict(self)
        d["formats"] = list(self.formats)
        d["acc_width"] = self.acc_width
        d["acc_lsb_exp"] = self.acc_lsb_exp
        return d

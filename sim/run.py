"""``run_gemm``: one GEMM on the full accelerator RTL, under cocotb."""

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import MEMORY_LATENCY, SystoleConfig
from . import golden, verilog

__all__ = ["GemmRun", "run_gemm", "run_jobs", "memory_for", "build_accelerator", "TOPLEVEL"]

TOPLEVEL = "systole"


@dataclass
class GemmRun:
    """Result of :func:`run_gemm`.

    Attributes
    ----------
    c : numpy.ndarray
        M x N, the dtype ``golden.gemm`` returns for the output format.
    counters : dict
        The hardware counters (DESIGN.md section 4 names).
    error : str
        "NONE", or the ErrorCode name when the hardware rejected or aborted the job.
    config : SystoleConfig
    """
    c: np.ndarray
    counters: dict
    error: str = "NONE"
    config: SystoleConfig = field(default_factory=SystoleConfig)


#: Memory of the gateware memory model (``memory="hdl"``): enough for the benchmark GEMMs.
HDL_MEMORY_BYTES = 1 << 20


def build_accelerator(config, simulator="verilator", *, waves=False, memory="cocotb",
                      latency=32, pause=0.0, seed=1, mem_size=HDL_MEMORY_BYTES,
                      coverage=False):
    """Build (or reuse from the cache) the simulator model of the accelerator.

    ``memory="cocotb"`` exports ``MonitoredAccelerator`` (external memory: cocotbext-axi);
    ``memory="hdl"`` exports ``SimulationTop``, the accelerator with the gateware memory
    model of the given latency and pause rate built in (``mem_size`` bytes). Both carry
    the AXI protocol monitor of hdl/monitor.py, which the testbench reads after each job.
    """
    if memory == "hdl":
        from ..hdl.simmem import SimulationTop
        return verilog.build(
            lambda: SimulationTop(config, mem_size=mem_size, latency=latency,
                                  pause=pause, seed=seed),
            TOPLEVEL, f"{config!r}|hdl-memory|{mem_size}|{latency}|{pause}|{seed}",
            simulator, waves=waves, coverage=coverage)
    from ..hdl.monitor import MonitoredAccelerator
    return verilog.build(lambda: MonitoredAccelerator(config), TOPLEVEL, repr(config),
                         simulator, waves=waves, coverage=coverage)


def _config_json(config):
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in config.__dict__.items()}


def memory_for(config, jobs, minimum=HDL_MEMORY_BYTES):
    """Bytes of simulated memory the job specs need: a power of two, at least ``minimum``."""
    from .tb_accel import spec_layout
    need = max([spec_layout(spec, config)[1] for spec in jobs] + [minimum])
    return 1 << (need - 1).bit_length()


def run_jobs(config, jobs, *, simulator="verilator", seed=0, latency=MEMORY_LATENCY, pause=0.0,
             inputs=None, log_file=None, waves=None, workdir=None, memory="cocotb",
             mem_size=None, coverage=False):
    """Run job specs (see ``sim.tb_accel``) in one simulation; return the results list.

    ``waves`` names a .fst or .vcd file to write the waveform to. ``mem_size``: bytes of
    the gateware memory model (``memory="hdl"``); by default the jobs' own need
    (:func:`memory_for`), so a new size builds a new model. ``coverage``: a model that
    counts line and toggle coverage, written to ``coverage.dat`` in ``workdir``.

    ``latency`` defaults to :data:`systole.config.MEMORY_LATENCY`, as everywhere. The
    simulator's log goes to ``log_file``, or to a temporary file that is kept (in a
    ``systole-failed-*`` directory) only when the run fails. Each job has a watchdog: the
    testbench waits for its interrupt at most eight times the cycles the performance
    model predicts, stretched by the pauses, plus 20,000.

    Raises ValueError when ``pause`` is not in [0, 1) or ``mem_size`` is too small for the
    jobs, and AssertionError (with the testbench's own findings and the log's path) when
    any job failed its checks or hung.
    """
    if not 0 <= pause < 1:
        raise ValueError(f"pause must be a probability from 0 to less than 1 (1 would stop "
                         f"every beat), not {pause!r}")
    need = memory_for(config, jobs)
    if mem_size is None:
        mem_size = need
    elif memory == "hdl" and mem_size < need:
        raise ValueError(f"The jobs need {need} bytes of memory; mem_size is {mem_size}")
    kind = (Path(waves).suffix.lstrip(".") or "vcd") if waves else False
    build_dir = build_accelerator(config, simulator, waves=kind, memory=memory,
                                  latency=latency, pause=pause, mem_size=mem_size,
                                  coverage=coverage)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        params = {"config": _config_json(config), "seed": seed, "latency": latency,
                  "pause": pause, "jobs": jobs, "output": str(work / "results.json"),
                  "memory": memory, "mem_size": mem_size}
        if inputs is not None:
            np.savez(work / "inputs.npz", **inputs)
            params["inputs"] = str(work / "inputs.npz")
        log = Path(log_file) if log_file else work / "sim.log"
        try:
            verilog.run(build_dir, TOPLEVEL, "systole.sim.tb_accel", simulator=simulator,
                        test_dir=work, extra_env={"SYSTOLE_TB": json.dumps(params)},
                        results_xml=str(work / "results.xml"), log_file=log,
                        waves=waves)
        except AssertionError as error:
            raise AssertionError(f"{error} (log: {_kept(log, log_file)})") from None
        finally:
            out = work / "results.json"
            results = json.loads(out.read_text())["results"] if out.exists() else None
        return results


def _kept(log, log_file):
    """The simulator log of a failed run, where it stays: ``log_file`` itself, or a copy of
    the temporary one in a directory of its own."""
    if log_file or not log.exists():
        return log
    kept = Path(tempfile.mkdtemp(prefix="systole-failed-")) / log.name
    shutil.copyfile(log, kept)
    return kept


def run_gemm(a, b, out_format="fp32", *, saturate=True, scale_exp=0, config=None,
             simulator="verilator", seed=0, latency=MEMORY_LATENCY, pause=0.0, log_file=None,
             waves=None, memory="cocotb", mem_size=None):
    """Run C = A.B on the full accelerator RTL with a cocotbext-axi memory model.

    Arguments as in :func:`systole.sim.golden.gemm`; ``config`` defaults to
    ``SystoleConfig()``; ``latency`` is the memory read latency in cycles (default
    :data:`systole.config.MEMORY_LATENCY`) and ``pause`` the probability of a pause on each
    AXI channel each cycle; ``memory`` picks the external
    memory model: "cocotb" (cocotbext-axi) or "hdl" (the gateware model, much faster, with
    ``mem_size`` bytes: by default what the job needs). The testbench also checks the
    result against the golden model and the counter laws; a failed check raises
    AssertionError.

    Returns
    -------
    GemmRun
    """
    config = config or SystoleConfig()
    # The golden model checks the arguments (same messages, and it costs little next to an
    # RTL simulation); the hardware's own limits are checked here.
    golden.gemm(a, b, out_format, saturate=saturate, scale_exp=scale_exp)
    if a.shape[1] > config.max_k:
        raise ValueError(f"K = {a.shape[1]} exceeds max_k = {config.max_k} of this configuration")
    for name, x in (("a", a), ("b", b)):
        if not config.supports(golden.format_of(x.dtype).name):
            raise ValueError(f"{name} is {golden.format_of(x.dtype).name}, which this "
                             f"configuration does not enable (formats={config.formats})")
    spec = {"m": int(a.shape[0]), "n": int(b.shape[1]), "k": int(a.shape[1]),
            "a_format": golden.format_of(a.dtype).name, "b_format": golden.format_of(b.dtype).name,
            "out_format": out_format, "saturate": bool(saturate), "scale_exp": int(scale_exp),
            "return_c": True}
    inputs = {"a0": np.ascontiguousarray(a).view(np.uint8),
              "b0": np.ascontiguousarray(b).view(np.uint8)}
    results = run_jobs(config, [spec], simulator=simulator, seed=seed, latency=latency,
                       pause=pause, inputs=inputs, log_file=log_file, waves=waves,
                       memory=memory, mem_size=mem_size)
    result = results[0]
    # Raw little-endian bytes of C, as the accelerator wrote them.
    c = np.frombuffer(bytes.fromhex(result["c_bytes"]), dtype=golden.dtype_for(out_format))
    return GemmRun(c=c.reshape(spec["m"], spec["n"]).copy(), counters=result["counters"],
                   error=result["error"], config=config)

"""The host driver: registers and memory through an abstract port.

The same driver runs the cocotb simulation (:class:`CocotbPort`, cocotbext-axi models) and,
later, a board (a UART bridge port). A port provides four coroutines::

    await port.read32(address) -> int          # CSR read
    await port.write32(address, value)         # CSR write
    await port.write_memory(address, data)     # bytes into external memory
    await port.read_memory(address, length) -> bytes

and optionally ``await port.wait_interrupt()``, which returns once the done interrupt is
high; without it the driver polls STATUS.
"""

import functools
import inspect
from dataclasses import dataclass

from .. import plan as tiling
from ..formats import input_format, output_format
from ..hdl.counters import COUNTERS
from ..hdl.registers import ErrorCode, systole_register_map

__all__ = ["GemmJob", "JobOutcome", "SystoleDriver", "CocotbPort", "JobError", "job_plan"]


class JobError(RuntimeError):
    """The accelerator rejected or aborted a job; ``code`` is the ErrorCode name."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class GemmJob:
    """A job descriptor as the host writes it (addresses and strides in bytes).

    ``plan`` is the tiling plan to write (a :class:`systole.plan.TilingPlan`, written as
    given, even one the hardware rejects with BAD_PLAN), or None for the host's choice,
    :func:`job_plan`.
    """
    m: int
    n: int
    k: int
    a_addr: int
    b_addr: int
    c_addr: int
    a_stride: int
    b_stride: int
    c_stride: int
    a_format: str = "e4m3"
    b_format: str = "e4m3"
    out_format: str = "fp32"
    saturate: bool = True
    scale_exp: int = 0
    plan: tiling.TilingPlan = None

    def __post_init__(self):
        if self.plan is not None and not isinstance(self.plan, tiling.TilingPlan):
            raise TypeError(f"GemmJob plan must be a TilingPlan or None, not {self.plan!r}")


@dataclass
class JobOutcome:
    error: str                  # ErrorCode name; "NONE" for a completed job
    counters: dict
    plan: tiling.TilingPlan = None      # the plan the descriptor carried


@functools.lru_cache(maxsize=4096)
def _chosen_plan(config, m, n, k, out_bytes):
    if min(m, n, k) < 1 or k > config.max_k or max(m * k, k * n, m * n * out_bytes) \
            > 1 << config.addr_width:
        # The checker rejects this job by an earlier rule (a dimension, K, or an operand
        # larger than memory) whatever its plan, and choose() has no answer for it (or,
        # for huge M or N, takes long to find one): the smallest plan.
        return tiling.TilingPlan(1, 1, tiling.kc_log2_range(config)[0])
    return tiling.choose(config, m, n, k, out_bytes=out_bytes)


def job_plan(config, job):
    """The tiling plan the driver writes for ``job``: its own ``plan``, else the host's
    choice :func:`systole.plan.choose` for the job's output format (a job that the
    checker rejects whatever its plan gets the smallest plan instead).

    Raises
    ------
    systole.plan.PlanError
        When the configuration's buffers allow no plan at all.
    """
    if job.plan is not None:
        return job.plan
    return _chosen_plan(config, job.m, job.n, job.k,
                        output_format(job.out_format).width // 8)


_FORMAT_CODES = {"e4m3": 0, "e5m2": 1}
_OUT_CODES = {"fp32": 0, "bf16": 1, "e4m3": 2, "e5m2": 3}


class SystoleDriver:
    """Runs jobs on one Systole instance.

    Parameters
    ----------
    port : object
        See the module docstring.
    config : SystoleConfig
        The configuration the hardware was built with (for the register map).
    """

    def __init__(self, port, config):
        self.port = port
        self.config = config
        self.regmap = systole_register_map(config)

    def job_plan(self, job):
        """The :class:`~systole.plan.TilingPlan` :meth:`write_job` writes for ``job``
        (:func:`job_plan`)."""
        return job_plan(self.config, job)

    def _address(self, name):
        return self.regmap[name].address

    async def read_register(self, name):
        return self.regmap[name].decode(await self.port.read32(self._address(name)))

    async def write_register(self, name, **fields):
        await self.port.write32(self._address(name), self.regmap[name].encode(**fields))

    async def write_job(self, job):
        """Write the descriptor registers of ``job``, its tiling plan included; returns the
        plan written (:meth:`job_plan`)."""
        input_format(job.a_format), input_format(job.b_format), output_format(job.out_format)
        for name in ("m", "n", "k", "a_stride", "b_stride", "c_stride"):
            await self.write_register(name.upper(), value=getattr(job, name) & 0xFFFF_FFFF)
        for name in ("a_addr", "b_addr", "c_addr"):
            value = getattr(job, name)
            await self.write_register(f"{name.upper()}_LO", value=value & 0xFFFF_FFFF)
            await self.write_register(f"{name.upper()}_HI", value=(value >> 32) & 0xFFFF_FFFF)
        await self.write_register(
            "FORMAT", a_format=_FORMAT_CODES[job.a_format], b_format=_FORMAT_CODES[job.b_format],
            out_format=_OUT_CODES[job.out_format], saturate=int(job.saturate),
            scale_exp=job.scale_exp)
        plan = self.job_plan(job)
        await self.write_register("PLAN", mc_tiles=plan.mc_tiles, nc_tiles=plan.nc_tiles,
                                  kc_log2=plan.kc_log2, order=plan.order)
        return plan

    async def read_counters(self):
        values = {}
        for name in COUNTERS:
            counter = self.regmap.counter(name)
            lo = await self.port.read32(counter.lo.address)
            hi = await self.port.read32(counter.hi.address)
            values[name] = lo | hi << 32
        return values

    async def start(self):
        await self.write_register("CTRL", start=1)

    async def abort(self):
        """End the running job: it reports ABORTED once its bursts have drained."""
        await self.write_register("CTRL", abort=1)

    async def wait_done(self, *, max_polls=10_000_000):
        if hasattr(self.port, "wait_interrupt"):
            await self.port.wait_interrupt()
        for _ in range(max_polls):
            status = await self.read_register("STATUS")
            if status["done"] or status["error"]:
                return status
        raise TimeoutError("Systole did not finish the job")

    async def run(self, job, *, after_start=None):
        """Write the descriptor, START, wait, and return the outcome (error code, counters,
        the plan written).

        The done and error flags are cleared before the job and after it. ``after_start``,
        an async function, runs right after START (a testbench writes START again, or
        ABORT, at a chosen cycle).
        """
        await self.write_register("STATUS", done=1, error=1)
        await self.write_register("IRQ_ENABLE", done=1)
        plan = await self.write_job(job)
        await self.start()
        if after_start is not None:
            await after_start()
        await self.wait_done()
        # A rejected descriptor sets error without ever setting busy; a job sets done.
        code = ErrorCode((await self.read_register("ERROR_CODE"))["code"])
        counters = await self.read_counters()
        await self.write_register("STATUS", done=1, error=1)
        return JobOutcome(error=code.name, counters=counters, plan=plan)


class CocotbPort:
    """Port for cocotb: an AxiLiteMaster for CSRs and a memory model with ``read(address,
    length)`` / ``write(address, data)`` (cocotbext-axi's AxiRam, or a backdoor into the
    gateware memory model)."""

    def __init__(self, csr, ram, irq=None, clock=None):
        self.csr = csr
        self.ram = ram
        self.irq = irq
        self.clock = clock
        #: Clock cycles :meth:`wait_interrupt` waits before it raises TimeoutError (None:
        #: no limit); the testbench sets it for each job.
        self.watchdog_cycles = None

    async def read32(self, address):
        data = await self.csr.read(address, 4)
        return int.from_bytes(data.data, "little")

    async def write32(self, address, value):
        await self.csr.write(address, int(value).to_bytes(4, "little"))

    async def write_memory(self, address, data):
        done = self.ram.write(address, bytes(data))
        if inspect.isawaitable(done):       # the gateware memory's backdoor
            await done

    async def read_memory(self, address, length):
        data = self.ram.read(address, length)
        return (await data) if inspect.isawaitable(data) else data

    async def wait_interrupt(self):
        from cocotb.triggers import ClockCycles, First, RisingEdge
        if self.irq is None:
            return
        # One trigger, not a loop over clock edges: the simulator runs free meanwhile.
        if not int(self.irq.value):
            if self.watchdog_cycles is None:
                await RisingEdge(self.irq)
                return
            await First(RisingEdge(self.irq), ClockCycles(self.clock, self.watchdog_cycles))
            if not int(self.irq.value):
                raise TimeoutError(f"no interrupt within {self.watchdog_cycles} cycles")

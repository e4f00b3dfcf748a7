"""``systole report``: docs/performance.md and its plots, from the model (and the RTL).

Everything in the report is computed when the command runs: the GPT-2 suite on the
configuration (``systole bench``), a sweep of the operand SRAM size, and the what-if study
of a configuration too large to simulate.
"""

import datetime

from .bench import TARGETS, model_agreement, print_table, run_bench, summary, target_misses
from .config import MEMORY_LATENCY

__all__ = ["write_report", "what_if", "traffic_sweep", "sweep_configs", "WHAT_IF",
           "PSUM_PER_SRAM_DEPTH"]

#: The what-if configuration of issue 4: a 128 x 128 array on a 64-byte bus.
WHAT_IF = {"rows": 128, "cols": 128, "bus_width": 512, "row_tiles": 2}

#: SRAM sweeps scale the partial-sum SRAM with the operand buffers: psum_depth is this
#: many times sram_depth (the default configuration's 2048 / 1024).
PSUM_PER_SRAM_DEPTH = 2


def _model_config(**kw):
    from .sim.perfmodel import ModelConfig
    return ModelConfig(**kw)


def _predict(config, gemm, out_format=None):
    from .sim import perfmodel
    job = perfmodel.packed_job(gemm.m, gemm.n, gemm.k, out_format=out_format or gemm.out_format)
    return perfmodel.predict(config, job)


def sweep_configs(base, depths):
    """For each sram_depth, the "new" configuration (partial sums: psum_depth =
    PSUM_PER_SRAM_DEPTH * sram_depth) and the "old" one (the same without a partial-sum
    SRAM, psum_depth 0, so only single-tile blocks can take K in chunks)."""
    from dataclasses import replace
    return [(depth, replace(base, sram_depth=depth, psum_depth=PSUM_PER_SRAM_DEPTH * depth),
             replace(base, sram_depth=depth, psum_depth=0)) for depth in depths]


def traffic_sweep(gemms, base, depths):
    """DRAM bytes (model, with the host's plan) and the I/O lower bound of each GEMM on
    each configuration of :func:`sweep_configs`: ``{name: [(depth, new, old), ...]}`` with
    ``new`` and ``old`` each ``(onchip_sram_bytes, dram_bytes, lower_bound_bytes)``."""
    from .sim import bench, perfmodel
    out = {}
    configs = sweep_configs(base, depths)
    for gemm in gemms:
        job = perfmodel.packed_job(gemm.m, gemm.n, gemm.k, out_format=gemm.out_format)
        rows = []
        for depth, new, old in configs:
            points = []
            for config in (new, old):
                c = perfmodel.traffic(config, job)
                points.append((config.onchip_sram_bytes,
                               c["dram_read_bytes"] + c["dram_write_bytes"],
                               bench.lower_bound_bytes(config, gemm.m, gemm.n, gemm.k,
                                                       gemm.out_format)))
            rows.append((depth, *points))
        out[gemm.name] = rows
    return out


def what_if(out_formats=("fp32", "e4m3"), depths=tuple(1 << n for n in range(8, 21))):
    """For each GPT-2 prefill GEMM on the WHAT_IF configuration: the smallest on-chip
    SRAM (sram_depth swept, psum_depth = PSUM_PER_SRAM_DEPTH * sram_depth) at which the
    model says it is compute-bound (roofline-attainable utilization 100%), or None, and
    the share of the energy data movement then takes."""
    from .sim import bench
    rows = []
    gemms = [g for g in bench.gpt2_gemms() if g.prefill]
    for out_format in out_formats:
        for gemm in gemms:
            found = None
            for depth in depths:
                config = _model_config(sram_depth=depth,
                                       psum_depth=PSUM_PER_SRAM_DEPTH * depth, **WHAT_IF)
                c = _predict(config, gemm, out_format)
                if bench.attainable_utilization(config, c) >= 1.0:
                    e = bench.energy_per_mac(config, c, out_format)
                    found = (config.onchip_sram_bytes,
                             c["macs"] / (config.rows * config.cols * c["cycles"]),
                             (e["sram"] + e["dram"]) / sum(e.values()))
                    break
            # The ceiling: intensity with every operand read once and C written once.
            b_out = {"fp32": 4, "bf16": 2, "e4m3": 1, "e5m2": 1}[out_format]
            best = gemm.m * gemm.n * gemm.k / (gemm.m * gemm.k + gemm.k * gemm.n
                                                + gemm.m * gemm.n * b_out)
            rows.append({"name": gemm.name, "out_format": out_format, "found": found,
                         "max_intensity": best})
    return rows


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _gemm_axis(ax, names, xlabel):
    """One horizontal bar per GEMM, first at the top."""
    ax.set_yticks(list(range(len(names))), names, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right")


def _plots(config, results, sweep, gemm_shapes, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    peak = config.rows * config.cols
    files = {}
    # Roofline.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["counters"]["macs"] / (r["dram_bytes"]) for r in results]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [peak / config.bus_bytes]) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.loglog(grid, [min(peak, x * config.bus_bytes) for x in grid], "k-", label="roofline")
    for source, marker in (("model", "o"), ("rtl", "s")):
        pts = [(x, r["counters"]["macs"] / r["cycles"]) for x, r in zip(xs, results)
               if r["source"] == source]
        if pts:
            ax.loglog(*zip(*pts), marker, linestyle="none", label=source, alpha=0.7)
    ax.set_xlabel("arithmetic intensity (MAC per DRAM byte)")
    ax.set_ylabel("MAC per cycle")
    ax.set_title(f"Roofline, {config.rows}x{config.cols} array, {config.bus_bytes} B/cycle")
    ax.legend()
    files["roofline"] = _save(plt, fig, out_dir / "performance_roofline.png")

    # Utilization per GEMM.
    fig, ax = plt.subplots(figsize=(9, 6))
    names = [r["name"].replace("gpt2-", "") for r in results]
    ys = range(len(results))
    ax.barh(ys, [r["attainable_utilization"] for r in results], color="0.85",
            label="roofline-attainable")
    ax.barh(ys, [r["utilization"] for r in results], height=0.5, color="C0",
            label="measured / modelled")
    _gemm_axis(ax, names, "utilization")
    files["utilization"] = _save(plt, fig, out_dir / "performance_utilization.png")

    # DRAM traffic versus on-chip SRAM: the old schedule, the new one and the bound.
    from types import SimpleNamespace

    from . import plan as tiling
    names = list(sweep)
    columns = 2
    fig, axes = plt.subplots(-(-len(names) // columns), columns, figsize=(9, 6.5),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        rows = sweep[name]
        m, n, k = gemm_shapes[name]
        sizes = [point[0] for _, new, old in rows for point in (new, old)]
        grid = [min(sizes) * (max(sizes) / min(sizes)) ** (i / 100) for i in range(101)]
        bound = [tiling.io_lower_bound(SimpleNamespace(onchip_sram_bytes=size), m, n, k)
                 for size in grid]
        ax.loglog([g / 1024 for g in grid], [b / 1e6 for b in bound], "k-",
                  label="I/O lower bound")
        ax.loglog([g / 1024 for g in grid], [TARGETS["prefill_traffic_ratio"] * b / 1e6
                                             for b in bound], "k--", linewidth=0.8,
                  label=f"{TARGETS['prefill_traffic_ratio']}x bound")
        ax.loglog([old[0] / 1024 for _, _, old in rows], [old[1] / 1e6 for _, _, old in rows],
                  "s-", color="C3", label="old: no partial sums")
        ax.loglog([new[0] / 1024 for _, new, _ in rows], [new[1] / 1e6 for _, new, _ in rows],
                  "o-", color="C0", label="new: partial sums")
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(name.replace("gpt2-", ""), fontsize=9)
        ax.set_xlabel("on-chip SRAM (KiB)", fontsize=8)
        ax.set_ylabel("DRAM MB", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    files["traffic"] = _save(plt, fig, out_dir / "performance_traffic.png")

    # Energy breakdown.
    fig, ax = plt.subplots(figsize=(9, 6))
    left = [0.0] * len(results)
    for part, color in (("compute", "C2"), ("sram", "C1"), ("dram", "C3")):
        vals = [r["energy_pj_per_mac"][part] for r in results]
        ax.barh(ys, vals, left=left, color=color, label=part)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xscale("log")
    _gemm_axis(ax, names, "pJ per MAC (Horowitz 45 nm)")
    files["energy"] = _save(plt, fig, out_dir / "performance_energy.png")
    return files


#: The GEMMs of the traffic sweep: GPT-2 small prefill at T = 1024.
SWEEP_GEMMS = (("small",), (1024,))

#: sram_depth values of the traffic sweep (row_tiles as configured).
SWEEP_DEPTHS = tuple(1 << n for n in range(7, 15))


def _model_speed(config, latency, gemms):
    """Seconds per ``predict`` with the plan given, and per ``systole.plan.choose``, on
    each GEMM: ``{name: (predict, choose)}``."""
    import time

    from . import plan as tiling
    from .sim import perfmodel
    memory = perfmodel.MemoryModel(latency=latency)
    times = {}
    for gemm in gemms:
        job = perfmodel.packed_job(gemm.m, gemm.n, gemm.k, out_format=gemm.out_format)
        started = time.perf_counter()
        p = tiling.choose(config, gemm.m, gemm.n, gemm.k)
        chosen = time.perf_counter()
        perfmodel.predict(config, job, memory, plan=p)
        times[gemm.name] = (time.perf_counter() - chosen, chosen - started)
    return times


def write_report(config, out_dir, *, rtl=False, latency=MEMORY_LATENCY):
    import io

    from .sim import bench
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run_bench(config, rtl=rtl, latency=latency)
    sweep_gemms = bench.gpt2_gemms(*SWEEP_GEMMS)
    sweep = traffic_sweep(sweep_gemms, config, SWEEP_DEPTHS)
    shapes = {g.name: (g.m, g.n, g.k) for g in sweep_gemms}
    files = _plots(config, results, sweep, shapes, out_dir)
    table = io.StringIO()
    print_table(config, results, file=table)
    wi = what_if()
    speed = _model_speed(config, latency, bench.gpt2_gemms())
    slowest = max(speed, key=lambda name: speed[name][0])
    today = datetime.date.today().isoformat()
    rtl_rows = [r for r in results if r["source"] == "rtl"]
    lines = [
        "# Performance",
        "",
        f"Generated by `./run systole report{' --rtl' if rtl else ''}` on {today}. Do not edit:",
        "rerun the command. Configuration: "
        f"{config.rows}x{config.cols} array, {config.bus_width}-bit AXI4, sram_depth "
        f"{config.sram_depth}, row_tiles {config.row_tiles}, psum_depth {config.psum_depth} "
        f"(on-chip SRAM {config.onchip_sram_bytes / 1024:.1f} KiB: operands "
        f"{(config.a_sram_bytes + config.b_sram_bytes) // 1024} KiB, partial sums "
        f"{config.psum_sram_bytes / 1024:.1f} KiB, C {config.c_sram_bytes / 1024:.1f} KiB), "
        f"memory latency {latency} cycles, fp32 output, E4M3 operands; every GEMM runs "
        "with the tiling plan the host chooses (`systole.plan.choose`).",
        "",
        "Rows marked `rtl` ran on the Verilator model of the accelerator with the gateware",
        "memory; the others come from the performance model (`systole.sim.perfmodel`).",
        "Columns: utilization = macs / (rows * cols * cycles); roof = roofline-attainable",
        "utilization min(1, intensity * bus bytes / (rows * cols)); LB = I/O lower bound of",
        "DESIGN.md section 7 with S = all on-chip SRAM; xLB = DRAM bytes / LB; burst = bus",
        "beats per read burst (dram_read_bytes / bus bytes / dram_read_bursts); plan = row x",
        "column tiles of a C block, the K chunk, R(ows) or C(olumns) outer; pJ/MAC split into",
        "compute / SRAM / DRAM (Horowitz, ISSCC 2014, 45 nm; DRAM at 1.95 nJ per 64-bit",
        "access, the middle of his 1.3-2.6 nJ; each SRAM at the energy of its size; compute =",
        f"int8 multiply + an int8 add scaled to the {config.acc_width}-bit accumulator).",
        "",
        "```",
        table.getvalue().rstrip(),
        "```",
        "",
        _accuracy_text(speed, slowest),
        "",
    ]
    if rtl_rows:
        lines += [f"Model against RTL on these {len(rtl_rows)} GEMMs: "
                  f"{model_agreement(rtl_rows)}.", ""]
    else:
        lines += ["This report was generated without `--rtl`: every row is the model's.", ""]
    lines += [
        f"![roofline]({files['roofline']})",
        f"![utilization]({files['utilization']})",
        "",
        _utilization_text(config, results),
        "",
        "## DRAM traffic against the I/O lower bound",
        "",
        f"![traffic]({files['traffic']})",
        "",
        "DRAM bytes / lower bound for the GPT-2 small prefill (T = 1024) GEMMs as the on-chip",
        "SRAM grows: sram_depth " + ", ".join(str(d) for d, *_ in next(iter(sweep.values())))
        + f" with row_tiles {config.row_tiles}, and psum_depth = {PSUM_PER_SRAM_DEPTH} x "
        "sram_depth for the new schedule. **Old schedule**: the same configuration with "
        "psum_depth = 0, no partial-sum SRAM, so only C blocks of a single tile can take K "
        "in chunks (the sums stay in the PEs) and a block of several tiles must take K in "
        "one chunk. **New**: the partial-sum SRAM lets C blocks of many tiles walk K in "
        "chunks. Each ratio is against the bound for that configuration's own on-chip SRAM "
        "(the old one has none for partial sums, so its bound is higher); both take the "
        "host's plan (`systole.plan.choose`) and the model's exact traffic.",
        "",
        "| GEMM | schedule | " + " | ".join(str(d) for d in SWEEP_DEPTHS) + " |",
        "|---|---|" + "---|" * len(SWEEP_DEPTHS),
    ]
    first = next(iter(sweep.values()))
    lines.append("| on-chip SRAM | new | " + " | ".join(_size(new[0]) for _, new, _ in first)
                 + " |")
    lines.append("| on-chip SRAM | old | " + " | ".join(_size(old[0]) for _, _, old in first)
                 + " |")
    for name, rows in sweep.items():
        for label, index in (("new", 1), ("old", 2)):
            lines.append(f"| {name} | {label} | " + " | ".join(
                f"{row[index][1] / row[index][2]:.2f}" for row in rows) + " |")
    lines += ["", _gap_text(config, results), "",
              "## Energy", "", f"![energy]({files['energy']})", "",
              "## What if: a 128 x 128 array on a 64-byte bus", "",
              "The same model for a configuration far too large to simulate: 128 x 128 PEs, "
              "a 512-bit bus, row_tiles 2, sram_depth swept from 256 upwards with psum_depth "
              f"= {PSUM_PER_SRAM_DEPTH} x sram_depth (on-chip SRAM from "
              f"{_size(_model_config(sram_depth=256, psum_depth=PSUM_PER_SRAM_DEPTH * 256, **WHAT_IF).onchip_sram_bytes)}). "
              "For each GPT-2 prefill GEMM: the smallest on-chip SRAM at which it is "
              "compute-bound (roofline-attainable utilization 100%), the modelled utilization "
              "there, and the share of the energy that data movement (SRAM + DRAM) then takes. "
              "`never` means the GEMM stays memory-bound at any SRAM size: its intensity with "
              "every operand read once and C written once is below rows * cols / bus bytes "
              f"= {128 * 128 // 64} MAC/B.", "",
              "| GEMM | C format | best intensity (MAC/B) | SRAM needed | utilization | "
              "data-movement energy |", "|---|---|---|---|---|---|"]
    for r in wi:
        if r["found"]:
            size, util, share = r["found"]
            lines.append(f"| {r['name']} | {r['out_format']} | {r['max_intensity']:.0f} | "
                         f"{_size(size)} | {util:.1%} | {share:.0%} |")
        else:
            lines.append(f"| {r['name']} | {r['out_format']} | {r['max_intensity']:.0f} | "
                         "never | - | - |")
    lines.append("")
    (out_dir / "performance.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'performance.md'} and {len(files)} plots")
    missed = {m for r in results for m in target_misses(r)}
    print("targets missed: " + (", ".join(sorted(missed)) if missed else "none"))
    return 0


def _size(n):
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n // 1024} KiB"


def _accuracy_text(speed, slowest):
    """How far to trust the model, with the figures measured as the report ran."""
    mean = sum(model for model, _ in speed.values()) / len(speed)
    choose = max(choose for _, choose in speed.values())
    return f"""\
**How far to trust the model.** The model (`systole.sim.perfmodel`) evaluates the job's
tiling plan through `systole.plan.steps`, the declaration the tiler walks. Byte, burst,
SRAM, partial-sum and MAC counters follow the plan's command stream (one read command per
A block row, one per B k row, each split into bursts as the DMA splits it; a partial-sum
row per tile leaving the array between K chunks; one write command per kept C row) and
are exact: tests/test_perfmodel.py checks them against that stream command by command
and against the RTL, and the system tests compare them with the RTL on every job
(`counter_law_violations`). Cycles come from an event model at the level of blocks,
commands and tiles: blocks load in step order through the one read DMA, each into the
other of its operand's two buffers once the feeder has released the block before it;
data arrives a beat per cycle after the memory latency, within the DMA's
outstanding-burst window; the feeder waits for whole blocks and streams a step's tiles
with one begin cycle per tile; leaving tiles keep rows + cols cycles between their last
beats; final tiles pass the partial-sum stages, the normalisers, the two-tile C buffer
and the writer, whose back-pressure stops the array. Its pipeline constants, named at the
top of sim/perfmodel.py, are calibrated against the RTL with a deterministic memory
(gateware model, no pauses). `./run pytest tests/test_perfmodel.py -k "rtl or 1x1"`
compares them on the system-test configurations: on 4x4-bus64 (its fixed shapes with
partial sums, long K and writer-bound tiny K, and 30 random jobs with random plans, at
latency 32) 42 of the 43 jobs are exact and the other is 4 cycles off 479 (9 x 33 x 8,
where the writer holds the feeder back); on a 1x1 array with many tiny tiles (latency
8) 11 of 12 are exact, and 1 x 7 x 1 takes the RTL 77 cycles, two more than the model's
75 (seven one-k-step tiles in a row through the partial-sum stages; without a
partial-sum SRAM it is exact); `SYSTOLE_MODEL_JOBS=100 SYSTOLE_SEED=61` widens
4x4-bus64 to 113 jobs. The GPT-2 small GEMMs that `--rtl` runs on the RTL (below) are
exact, MLP-down included. Byte counters agree on every
job. test_extrapolation_is_exact shows that the model's shortcut
for steps and tiles that repeat at a steady period changes no counter. Under random bus
pauses the model is not meant to predict cycles. Given the plan, the model answers in
{mean * 1000:.0f} ms per GPT-2 GEMM on average on this configuration, at most
{speed[slowest][0]:.2f} s ({slowest}); the host's choice of the plan
(`systole.plan.choose`) takes at most {choose:.2f} s more."""


def _utilization_text(config, results):
    """What limits utilization, from the suite's own figures."""
    prefill = [r for r in results if r["prefill"]]
    decode = [r for r in results if not r["prefill"]]
    lines = []
    if prefill:
        worst = min(prefill, key=lambda r: r["utilization"])
        kc = 1 << worst["plan"]["kc_log2"]
        lines.append(
            f"**Utilization.** Every prefill GEMM is compute-bound: a step's loads take fewer "
            f"bus beats than its tiles take cycles, so they hide under the previous step. "
            f"What remains is the feeder's begin cycle per tile, kc / (kc + 1) of the array's "
            f"time with the chosen K chunk (kc = {kc}: {kc / (kc + 1):.1%}); the lowest "
            f"prefill utilization is {worst['utilization']:.1%} ({worst['name']}).")
    spaced = [r for r in decode if (1 << r["plan"]["kc_log2"]) < config.rows + config.cols
              and r["counters"]["sram_psum_write_bytes"]]
    if spaced:
        example = spaced[0]
        lines.append(
            f"Decode GEMMs (M = 1) are memory-bound: a DRAM byte per MAC. On {len(spaced)} of "
            f"the {len(decode)} the host's plan, chosen for the fewest DRAM bytes, takes K "
            f"in chunks of {1 << example['plan']['kc_log2']} with C blocks of many tiles "
            f"({example['name']}: {example['plan']['mc_tiles']} x "
            f"{example['plan']['nc_tiles']} tiles), so every tile leaves the array into the "
            f"partial-sum SRAM after fewer k-steps than the rows + cols = "
            f"{config.rows + config.cols} cycles leaving tiles must keep between them: the "
            f"array then runs at {example['utilization']:.1%} where the bus would allow "
            f"{example['attainable_utilization']:.1%}.")
    return "\n".join(lines)


def _gap_text(config, results):
    """Why the prefill traffic sits where it does against the bound."""
    prefill = [r for r in results if r["prefill"]]
    if not prefill:
        return ""
    worst = max(prefill, key=lambda r: r["traffic_ratio"])
    p = worst["plan"]
    mc, nc = p["mc_tiles"] * config.rows, p["nc_tiles"] * config.cols
    s = config.onchip_sram_bytes
    per_output = config.psum_row_bytes / config.cols
    return f"""\
**Where the prefill traffic sits, and why.** A plan with C blocks of Mc x Nc outputs and K
in several chunks reads A once per column block and B once per row block: DRAM bytes ~
M*K*ceil(N/Nc) + K*N*ceil(M/Mc) + M*N*b_out, i.e. about M*N*K*(1/Nc + 1/Mc) for the
operands. The bound's leading term is 2*M*N*K/sqrt(S) with S = all {s / 1024:.1f} KiB of
on-chip SRAM, reached by a square block of sqrt(S) outputs a side that costs one byte
per output. Here a block's partial sums take {per_output:.1f} bytes per output (the exact
{config.psum_state_bits}-bit states) in a partial-sum SRAM of {config.psum_tiles} tiles,
which caps the block at {config.psum_tiles} tiles: the host chooses {p['mc_tiles']} x
{p['nc_tiles']} tiles ({mc} x {nc} outputs) with K chunks of {1 << p['kc_log2']}, so the
operand traffic is about 2*M*N*K/{mc} against the bound's 2*M*N*K/{s ** 0.5:.0f}, the
ratio of {s ** 0.5 / mc:.2f} that the largest GEMMs approach (the worst,
{worst['name']}, is at {worst['traffic_ratio']:.2f}x; M*N*b_out of output, equal in both,
brings smaller GEMMs closer). Without the partial-sum SRAM (the old schedule of the
table above) only single-tile blocks could take K in chunks, and a GEMM whose K does not
fit one chunk re-read both operands once per tile."""

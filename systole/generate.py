"""``systole generate``: SmolLM2-135M generates text with every linear layer on Systole.

    systole generate --prompt TEXT --tokens N [--config default|whatif128|BOARD]
                     [--rtl] [--accuracy] [--sweep] [--plot FILE] [--json FILE]

The model runs on the host in numpy (:mod:`systole.llm`); every linear layer (q, k, v,
o, gate, up, down of the 30 blocks, and the LM head) is an E4M3 x E4M3 GEMM computed by
``golden.gemm``, bit-identical to the RTL. Prefill runs the prompt's layers with M = the
prompt length (the LM head only on the last position), each decode step with M = 1. The
per-phase figures come from the performance model (:func:`systole.sim.perfmodel.predict`,
exact against the RTL in bytes and cycles) for the GEMMs the forward pass ran; the host's
own work (embedding, norms, RoPE, attention against the KV cache) is not counted.

``--rtl`` runs a sample of the GEMMs (every linear of block 0 in the first decode step,
and block 0's q projection in the prefill) on the Verilator model of the accelerator with
their real operands and checks each result bit-identical to golden.gemm and every counter
equal to the model's. ``--accuracy`` compares the numeric modes of
:mod:`systole.llm.backends` with the fp32 reference on a fixed text (teacher forcing).
``--sweep`` prints utilization and DRAM bytes per token for prefill and for decode at
growing batch sizes on the default, ulx3s-85f and 128 x 128 what-if configurations.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .args import at_least, check_output

__all__ = ["add_parser", "phase_gemms", "phase_figures", "hardware", "ACCURACY_TEXT",
           "CONFIG_CLOCKS_MHZ", "SWEEP_CONFIGS", "SWEEP_BATCHES"]

#: Clocks of the configurations that have no board of their own: the default 8x8 runs at
#: the 100 MHz of the ECP5 boards that carry it (ulx3s-85f, orangecrab-85f); the 128 x 128
#: what-if at an assumed 1 GHz, an ASIC's clock. A board runs at its ``target_mhz``.
CONFIG_CLOCKS_MHZ = {"default": 100.0, "whatif128": 1000.0}
SWEEP_CONFIGS = ("default", "ulx3s-85f", "whatif128")
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)

#: The fixed text of ``--accuracy`` (teacher forcing): plain English prose, written for
#: this purpose, well over 256 tokens.
ACCURACY_TEXT = (
    "The history of computing is a story of machines that became smaller, faster and "
    "cheaper while the problems they were asked to solve grew larger. In the nineteen "
    "forties a computer filled a room, drew as much power as a small factory and failed "
    "whenever one of its thousands of vacuum tubes burned out. The transistor replaced the "
    "tube, and the integrated circuit placed many transistors on a single piece of silicon. "
    "For several decades the number of transistors on a chip doubled roughly every two "
    "years, and each new generation of processors ran the same programs faster without "
    "any change to the software. That era has ended. Transistors still shrink, but they no "
    "longer become much faster or much more efficient as they do, and the cost of moving "
    "data has come to dominate the cost of computing on it. Reading a number from main "
    "memory takes hundreds of times more energy than multiplying two numbers together, and "
    "a modern processor spends most of its time waiting for data rather than working on "
    "it. Engineers call this problem the memory wall. The response has been to build "
    "specialised hardware that keeps data close to the arithmetic units and reuses every "
    "value as many times as possible once it has been fetched. Graphics processors, tensor "
    "processors and systolic arrays all follow this idea. A systolic array is a grid of "
    "simple processing elements, each of which multiplies two numbers, adds the product to "
    "a running sum and passes its inputs on to its neighbours, so that data flows through "
    "the grid in a regular rhythm, like blood pumped by a heart. Such an array is very "
    "efficient when the same weights are applied to many inputs at once, as in the "
    "training of a neural network or in the processing of a long prompt. When a language "
    "model generates text one word at a time, however, every weight is used only once for "
    "each new word, and the array spends most of its time waiting for the weights to "
    "arrive from memory. Understanding where the time and the energy go is the first step "
    "towards building machines that do better.")


# -- configurations ----------------------------------------------------------------------

def hardware(name):
    """(configuration, clock in MHz, description) of ``--config NAME``: "default" (the
    8x8 SystoleConfig), "whatif128" (docs/performance.md's 128 x 128 ModelConfig) or a
    board (its build configuration and clock).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    from .config import SystoleConfig
    if name == "default":
        return SystoleConfig(), CONFIG_CLOCKS_MHZ["default"], "default 8x8"
    if name == "whatif128":
        from .report import WHAT_IF
        from .sim.perfmodel import ModelConfig
        return (ModelConfig(**WHAT_IF), CONFIG_CLOCKS_MHZ["whatif128"],
                "128x128 what-if (docs/performance.md)")
    from .boards.build import BOARDS, get_board
    if name not in BOARDS:
        raise ValueError(f"must be default, whatif128 or a board ({', '.join(sorted(BOARDS))}),"
                         f" not {name!r}")
    board = get_board(name)
    return board.make_config(), board.target_mhz, f"board {name}"


def _config_name(text):
    try:
        hardware(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _prompt_text(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must be some text, not an empty prompt")
    return text


# -- performance figures -----------------------------------------------------------------

def phase_gemms(llama_config, m, *, head_m=None):
    """The GEMMs of one forward pass over ``m`` tokens: ``[(role, M, N, K, count)]``.

    Every block's seven projections at M = ``m``; the LM head at ``head_m`` (default
    ``m``; generation computes logits of the last position only: ``head_m=1``)."""
    c = llama_config
    kv = c.n_kv_heads * c.head_dim
    layer = [("q", c.d_model, c.d_model), ("k", kv, c.d_model), ("v", kv, c.d_model),
             ("o", c.d_model, c.d_model), ("gate", c.d_ff, c.d_model),
             ("up", c.d_ff, c.d_model), ("down", c.d_model, c.d_ff)]
    out = [(role, m, n, k, c.n_layers) for role, n, k in layer]
    out.append(("lm_head", head_m or m, c.vocab_size, c.d_model, 1))
    return out


def _predict(hw, m, n, k, cache):
    from .sim import perfmodel
    key = (m, n, k)
    if key not in cache:
        cache[key] = perfmodel.predict(hw, perfmodel.packed_job(m, n, k))
    return cache[key]


def phase_figures(hw, clock_mhz, gemms, tokens, cache=None):
    """Totals of a phase's GEMMs on ``hw``, and per token (``tokens`` tokens).

    Returns a dict: cycles, macs, utilization, dram_bytes (read + write), energy in pJ
    split into compute / sram / dram (Horowitz, as ``systole bench`` counts it), the same
    per token, seconds and tokens per second at ``clock_mhz``, and one row per GEMM."""
    from .sim.bench import energy_per_mac
    cache = {} if cache is None else cache
    total = {"cycles": 0, "macs": 0, "dram_read_bytes": 0, "dram_write_bytes": 0}
    energy = {"compute": 0.0, "sram": 0.0, "dram": 0.0}
    rows = []
    for role, m, n, k, count in gemms:
        p = _predict(hw, m, n, k, cache)
        e = energy_per_mac(hw, p)
        for name in total:
            total[name] += count * p[name]
        for part in energy:
            energy[part] += count * e[part] * p["macs"]
        rows.append({"gemm": role, "M": m, "N": n, "K": k, "count": count,
                     "cycles": p["cycles"], "utilization":
                     p["macs"] / (hw.rows * hw.cols * p["cycles"]),
                     "dram_bytes": p["dram_read_bytes"] + p["dram_write_bytes"]})
    seconds = total["cycles"] / (clock_mhz * 1e6)
    dram = total["dram_read_bytes"] + total["dram_write_bytes"]
    return {"tokens": tokens, "cycles": total["cycles"], "macs": total["macs"],
            "utilization": total["macs"] / (hw.rows * hw.cols * total["cycles"]),
            "dram_bytes": dram, "dram_bytes_per_token": dram / tokens,
            "energy_pj": energy,
            "energy_uj_per_token": {k: v / tokens / 1e6 for k, v in energy.items()},
            "seconds": seconds, "tokens_per_second": tokens / seconds, "gemms": rows}


def _print_phases(phases, file=sys.stdout):
    head = (f"{'phase':8} {'tokens':>6} {'cycles':>13} {'util':>6} {'DRAM B/token':>13} "
            f"{'uJ/token compute':>16} {'SRAM':>8} {'DRAM':>9} {'tokens/s':>10}")
    print(head, file=file)
    for name, f in phases.items():
        e = f["energy_uj_per_token"]
        print(f"{name:8} {f['tokens']:6} {f['cycles']:13,} {f['utilization']:6.1%} "
              f"{f['dram_bytes_per_token']:13,.0f} {e['compute']:16.1f} {e['sram']:8.1f} "
              f"{e['dram']:9.1f} {f['tokens_per_second']:10.2f}", file=file)


# -- the sweep ----------------------------------------------------------------------------

def sweep(llama_config, prompt_lengths=(32, 256), batches=SWEEP_BATCHES,
          configs=SWEEP_CONFIGS):
    """Prefill (M = prompt length; the LM head on the last position only, as generation
    runs it) and decode (M = batch: every block and the LM head) figures per token on
    each configuration."""
    out = {}
    for name in configs:
        hw, clock, label = hardware(name)
        cache = {}
        rows = []
        for t in prompt_lengths:
            f = phase_figures(hw, clock, phase_gemms(llama_config, t, head_m=1), t, cache)
            rows.append({"phase": f"prefill {t}", "M": t, **_sweep_row(f)})
        for b in batches:
            f = phase_figures(hw, clock, phase_gemms(llama_config, b), b, cache)
            rows.append({"phase": f"decode batch {b}", "M": b, **_sweep_row(f)})
        out[name] = {"label": label, "clock_mhz": clock, "peak_macs_per_cycle":
                     hw.rows * hw.cols, "bus_bytes": hw.bus_bytes, "rows": rows}
    return out


def _sweep_row(f):
    return {"utilization": f["utilization"], "dram_bytes_per_token": f["dram_bytes_per_token"],
            "macs_per_dram_byte": f["macs"] / f["dram_bytes"],
            "tokens_per_second": f["tokens_per_second"],
            "energy_uj_per_token": sum(f["energy_uj_per_token"].values()),
            "dram_energy_share": f["energy_pj"]["dram"] / sum(f["energy_pj"].values())}


def print_sweep(result, file=sys.stdout):
    for name, s in result.items():
        print(f"{s['label']} ({s['peak_macs_per_cycle']} MAC/cycle peak, "
              f"{s['bus_bytes']}-byte bus, {s['clock_mhz']:g} MHz):", file=file)
        print(f"| phase | M | utilization | DRAM bytes/token | MAC/DRAM byte | tokens/s | "
              f"uJ/token | DRAM share of energy |", file=file)
        print("|---|---:|---:|---:|---:|---:|---:|---:|", file=file)
        for r in s["rows"]:
            print(f"| {r['phase']} | {r['M']} | {r['utilization']:.1%} | "
                  f"{r['dram_bytes_per_token']:,.0f} | {r['macs_per_dram_byte']:.1f} | "
                  f"{r['tokens_per_second']:,.1f} | {r['energy_uj_per_token']:,.1f} | "
                  f"{r['dram_energy_share']:.0%} |", file=file)
        print(file=file)


def plot_sweep(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, s in result.items():
        dec = [r for r in s["rows"] if r["phase"].startswith("decode")]
        pre = [r for r in s["rows"] if r["phase"].startswith("prefill")]
        line, = ax1.plot([r["M"] for r in dec], [100 * r["utilization"] for r in dec],
                         "o-", label=f"{s['label']}: decode, batch M")
        ax1.plot([r["M"] for r in pre], [100 * r["utilization"] for r in pre], "s",
                 ms=9, mfc="none", color=line.get_color(), label=f"{s['label']}: prefill")
        ax2.plot([r["M"] for r in dec], [r["dram_bytes_per_token"] for r in dec], "o-",
                 color=line.get_color(), label=f"{s['label']}: decode")
        ax2.plot([r["M"] for r in pre], [r["dram_bytes_per_token"] for r in pre], "s", ms=9,
                 mfc="none", color=line.get_color(), label=f"{s['label']}: prefill")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (decode: batch size; prefill: prompt tokens)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("utilization (%)")
    ax1.set_title("SmolLM2-135M, all linear layers")
    ax2.set_yscale("log")
    ax2.set_ylabel("DRAM bytes per token")
    ax2.set_title("DRAM traffic per token")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- RTL check ----------------------------------------------------------------------------

def rtl_check(hw, samples, *, file=sys.stdout):
    """Run ``samples`` ([(label, a, b, c)] with fp8 ``a``, ``b`` and golden's ``c``) in
    one simulation of the accelerator (gateware memory, the benchmark's latency); return
    ``[{"gemm", "M", "N", "K", "bit_exact", "counters_equal", ...}]``."""
    from .bench import RTL_MEMORY_BYTES
    from .config import MEMORY_LATENCY
    from .sim import golden, perfmodel
    from .sim.run import run_jobs
    from .sim.tb_accel import spec_layout
    specs, inputs = [], {}
    for i, (label, a, b, c) in enumerate(samples):
        specs.append({"m": a.shape[0], "n": b.shape[1], "k": a.shape[1], "a_format": "e4m3",
                      "b_format": "e4m3", "out_format": "fp32", "saturate": True,
                      "scale_exp": 0, "return_c": True})
        inputs[f"a{i}"] = np.ascontiguousarray(a).view(np.uint8)
        inputs[f"b{i}"] = np.ascontiguousarray(b).view(np.uint8)
    print(f"--rtl: {len(specs)} GEMMs on the Verilator model ({hw.rows}x{hw.cols}); building "
          "it the first time takes minutes ...", file=file, flush=True)
    results = run_jobs(hw, specs, inputs=inputs, memory="hdl", latency=MEMORY_LATENCY,
                       seed=1, mem_size=RTL_MEMORY_BYTES)
    memory = perfmodel.MemoryModel(latency=MEMORY_LATENCY)
    checks = []
    for (label, a, b, c), spec, result in zip(samples, specs, results):
        got = np.frombuffer(bytes.fromhex(result["c_bytes"]), dtype=np.float32)
        got = got.reshape(spec["m"], spec["n"])
        exact = bool(np.array_equal(golden.to_bits(got), golden.to_bits(c)))
        model = perfmodel.predict(hw, spec_layout(spec, hw)[0], memory)
        differ = {name: (result["counters"][name], model[name]) for name in model
                  if result["counters"][name] != model[name]}
        checks.append({"gemm": label, "M": spec["m"], "N": spec["n"], "K": spec["k"],
                       "bit_exact": exact, "counters_equal": not differ,
                       "counter_differences": differ, "cycles": result["counters"]["cycles"],
                       "error": result["error"]})
    return checks


def _print_rtl(checks, file=sys.stdout):
    for c in checks:
        verdict = "bit-identical to golden" if c["bit_exact"] else "MISMATCH against golden"
        counters = ("every counter equals the model's" if c["counters_equal"]
                    else f"counters DIFFER: {c['counter_differences']}")
        print(f"  {c['gemm']:22} {c['M']:4}x{c['N']:5}x{c['K']:5} {c['cycles']:9,} cycles: "
              f"{verdict}; {counters}", file=file)


# -- accuracy -----------------------------------------------------------------------------

def _log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def accuracy(gguf, tokenizer, prompt_ids, n_generate, *, progress=True):
    """Teacher-forced comparison of every mode with fp32 on :data:`ACCURACY_TEXT`, and
    the first divergence of greedy generations from ``prompt_ids``."""
    from tqdm import tqdm

    from .llm.backends import MODES
    from .llm.model import Llama
    ids = tokenizer.encode(ACCURACY_TEXT)
    weights = {}
    results = {}
    reference = None
    for mode in tqdm(MODES, desc="accuracy", unit="mode", disable=not progress,
                     file=sys.stderr):
        llama = Llama(gguf, mode, weights=weights)
        start = time.perf_counter()
        logits = llama.forward(ids[:-1], llama.new_cache(len(ids)), logits="all")
        logp = _log_softmax(logits)
        generated = llama.generate(prompt_ids, n_generate)
        seconds = time.perf_counter() - start
        nll = -logp[np.arange(len(ids) - 1), ids[1:]]
        row = {"label": MODES[mode], "perplexity": float(np.exp(nll.mean())),
               "generated": generated, "seconds": seconds}
        if reference is None:
            reference = {"logp": logp, "top1": logp.argmax(axis=1), "generated": generated}
        p = np.exp(reference["logp"])
        row["top1_agreement"] = float(np.mean(logp.argmax(axis=1) == reference["top1"]))
        row["mean_kl"] = float(np.mean(np.sum(p * (reference["logp"] - logp), axis=1)))
        diverge = next((i for i, (x, y) in enumerate(zip(generated, reference["generated"]))
                        if x != y), None)
        row["first_divergence"] = diverge
        results[mode] = row
        del llama
    return {"text_tokens": len(ids), "predicted_tokens": len(ids) - 1,
            "generated_tokens": n_generate, "modes": results}


def print_accuracy(acc, file=sys.stdout):
    print(f"accuracy against fp32: {acc['predicted_tokens']} next-token predictions of a fixed "
          f"text ({acc['text_tokens']} tokens, teacher forcing); greedy generations of "
          f"{acc['generated_tokens']} tokens", file=file)
    print("| mode | top-1 agreement | mean KL (nats) | perplexity | first greedy divergence |",
          file=file)
    print("|---|---:|---:|---:|---:|", file=file)
    for mode, r in acc["modes"].items():
        div = "none" if r["first_divergence"] is None else f"token {r['first_divergence']}"
        print(f"| {r['label']} | {r['top1_agreement']:.1%} | {r['mean_kl']:.4f} | "
              f"{r['perplexity']:.2f} | {div} |", file=file)


# -- the command --------------------------------------------------------------------------

def _fail(message):
    print(f"systole generate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_model(path=None):
    """(GgufModel, TextTokenizer) from ``path`` or the cache (fetched on first use); a
    problem stops the command with one line and exit status 2."""
    from .llm.fetch import ModelUnavailable, model_path
    from .llm.gguf_model import BadModelFile, load_gguf
    from .llm.tokenizer import build_tokenizer
    try:
        gguf = load_gguf(path if path is not None else model_path())
        return gguf, build_tokenizer(gguf.tokenizer)
    except (ModelUnavailable, BadModelFile, ValueError) as error:
        _fail(str(error))


def _cmd_generate(args):
    from tqdm import tqdm

    from .llm.model import Llama
    check_output("generate", "--json", args.json)
    check_output("generate", "--plot", args.plot)
    if args.rtl and args.config == "whatif128":
        _fail("--rtl needs a configuration the gateware can build; whatif128 is model-only")
    hw, clock, label = hardware(args.config)
    gguf, tokenizer = load_model(args.model)
    config = gguf.config
    prompt = tokenizer.encode(args.prompt)
    context = config.context_length
    if len(prompt) + args.tokens > context:
        _fail(f"the prompt ({len(prompt)} tokens) and --tokens {args.tokens} need "
              f"{len(prompt) + args.tokens} positions; the model's context is {context}")
    report = {"prompt": args.prompt, "prompt_tokens": prompt, "config": args.config,
              "hardware": hw.to_dict(), "clock_mhz": clock}

    samples = []
    decode_step = [0]

    def log(linear, a, c):
        first_decode = decode_step[0] == 1 and linear.name.startswith("blk.0.")
        prefill_q = decode_step[0] == 0 and linear.name == "blk.0.q"
        if args.rtl and (first_decode or prefill_q):
            phase = "decode" if first_decode else "prefill"
            samples.append((f"{phase} {linear.name}", a.copy(), linear.b, c.copy()))

    start = time.perf_counter()
    llama = Llama(gguf, "systole", log=log)
    setup = time.perf_counter() - start
    print(f"systole generate: SmolLM2-135M ({config.n_layers} blocks, d={config.d_model}), "
          f"every linear layer an E4M3 GEMM by golden.gemm; prompt {len(prompt)} tokens",
          flush=True)
    bar = tqdm(total=args.tokens, desc="generate", unit="token", file=sys.stderr,
               disable=args.quiet)

    def step():
        decode_step[0] += 1
        bar.update()
    start = time.perf_counter()
    new = llama.generate(prompt, args.tokens, progress=step)
    seconds = time.perf_counter() - start
    bar.close()
    text = tokenizer.decode(new)
    print(f"\n{args.prompt}{text}\n")
    print(f"host: {len(new)} tokens in {seconds:.1f} s (model set-up {setup:.1f} s)")
    report.update({"generated_tokens": new, "text": text, "host_seconds": seconds})

    phases = {"prefill": phase_figures(hw, clock, phase_gemms(config, len(prompt), head_m=1),
                                       len(prompt)),
              "decode": phase_figures(hw, clock, phase_gemms(config, 1), 1)}
    print(f"performance model, {label} ({hw.rows}x{hw.cols}, {hw.bus_width}-bit bus, "
          f"{clock:g} MHz); decode figures are per step (M = 1); energy Horowitz 45 nm:")
    _print_phases(phases)
    decode_steps = len(new) - 1
    total_s = phases["prefill"]["seconds"] + decode_steps * phases["decode"]["seconds"]
    print(f"whole run ({len(prompt)}-token prefill + {decode_steps} decode steps) on the "
          f"accelerator: {total_s * 1e3:.1f} ms of GEMMs")
    report["phases"] = phases
    report["decode_steps"] = decode_steps
    status = 0
    if args.rtl:
        try:
            checks = rtl_check(hw, samples)
        except AssertionError as error:      # the testbench's own findings, and the log
            print(f"systole generate: --rtl FAILED: {error}", file=sys.stderr)
            return 1
        _print_rtl(checks)
        ok = all(c["bit_exact"] and c["counters_equal"] for c in checks)
        print(f"--rtl: {sum(c['bit_exact'] for c in checks)}/{len(checks)} bit-identical, "
              f"{sum(c['counters_equal'] for c in checks)}/{len(checks)} with the model's "
              f"counters: {'PASSED' if ok else 'FAILED'}")
        report["rtl"] = checks
        status = 0 if ok else 1
    if args.accuracy:
        acc = accuracy(gguf, tokenizer, prompt, args.tokens, progress=not args.quiet)
        print_accuracy(acc)
        report["accuracy"] = acc
    if args.sweep or args.plot:
        result = sweep(config)
        print_sweep(result)
        report["sweep"] = result
        if args.plot:
            plot_sweep(result, args.plot)
            print(f"wrote {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return status


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def add_parser(sub):
    p = sub.add_parser("generate", help="SmolLM2-135M generates text with every linear layer "
                                        "an fp8 GEMM on Systole's numerics, with per-phase "
                                        "performance figures")
    p.add_argument("--prompt", type=_prompt_text, default="The memory wall is",
                   help="the prompt (default %(default)r)")
    p.add_argument("--tokens", type=at_least(1), default=16,
                   help="tokens to generate (default %(default)s)")
    p.add_argument("--config", type=_config_name, default="default",
                   help="default (8x8), whatif128 (128 x 128, model only) or a board name")
    p.add_argument("--model", help="a GGUF file instead of the cached SmolLM2-135M-Instruct")
    p.add_argument("--rtl", action="store_true",
                   help="run block 0's GEMMs of the first decode step and one prefill GEMM "
                        "on the RTL, checked against golden and the model")
    p.add_argument("--accuracy", action="store_true",
                   help="compare the numeric modes with fp32 on a fixed text")
    p.add_argument("--sweep", action="store_true",
                   help="prefill vs decode and batch-size table on three configurations")
    p.add_argument("--plot", help="write the sweep's plot to this PNG (implies --sweep)")
    p.add_argument("--json", help="write everything as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)

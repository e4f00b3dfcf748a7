"""SmolLM2-135M on Systole's numerics (systole.llm, ``systole generate``).

Tests that need the model fetch it on first use (``systole.llm.fetch``); where it cannot
be fetched they skip with the reason, except under ``SYSTOLE_REQUIRE_MODEL=1`` (CI),
where that is a failure.
"""

import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from systole import SystoleConfig
from systole.cli import main
from systole.llm.backends import apply_scales, quantize_rows
from systole.sim import golden

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)


@pytest.fixture(scope="module")
def gguf():
    from systole.llm.fetch import ModelUnavailable, model_path
    from systole.llm.gguf_model import load_gguf
    try:
        path = model_path()
    except ModelUnavailable as error:
        if os.environ.get("SYSTOLE_REQUIRE_MODEL"):
            pytest.fail(f"SYSTOLE_REQUIRE_MODEL is set but {error}")
        pytest.skip(str(error))
    return load_gguf(path)


@pytest.fixture(scope="module")
def tokenizer(gguf):
    from systole.llm.tokenizer import build_tokenizer
    return build_tokenizer(gguf.tokenizer)


# -- numerics without the model -------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_of_two_scales_on_the_host_are_exact(seed):
    """The law of systole.llm.backends: golden's fp32 result times 2**(e_i + f_j) on the
    host is bit-identical to the exact sum scaled by 2**(e_i + f_j) and rounded once
    (golden.gemm's own scale_exp, as the hardware applies it)."""
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 4, 96, 5
    # Rows and columns spread over many binades, as activations and weights are.
    x = (rng.standard_normal((m, k)) * 2.0 ** rng.integers(-12, 12, (m, 1))).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 2.0 ** rng.integers(-12, 4, (n, 1))).astype(np.float32)
    qa, e = quantize_rows(x)
    qw, f = quantize_rows(w)
    amax = np.abs(qa.astype(np.float32)).max(axis=1)
    assert np.all((amax > 224) & (amax <= 448)), f"seed {seed}: rows not scaled into (224, 448]"
    b = np.ascontiguousarray(qw.T)
    host = apply_scales(golden.gemm(qa, b), e, f)
    for i in range(m):
        for j in range(n):
            once = golden.gemm(qa[i:i + 1], b[:, j:j + 1], scale_exp=int(e[i] + f[j]))
            np.testing.assert_array_equal(golden.to_bits(host[i:i + 1, j:j + 1]),
                                          golden.to_bits(once), err_msg=f"seed {seed}")


def test_quantize_rows_is_one_rounding():
    """Each row is x * 2**-e (exact) rounded once to E4M3: the result equals the float32
    -> E4M3 cast of the exactly scaled row, and scaling back gives the fp8 grid value."""
    x = np.array([[448.0, -1.0, 3.3], [0.0, 0.0, 0.0], [1e-3, -2e-3, 7e-4]], np.float32)
    q, e = quantize_rows(x)
    assert e[1] == 0 and not q[1].astype(np.float32).any()
    for i in range(3):
        expected = (x[i] * np.float32(2.0 ** -int(e[i]))).astype(E4M3)
        np.testing.assert_array_equal(q[i].view(np.uint8), expected.view(np.uint8))


def test_host_side_is_amaranth_free():
    code = ("import sys, systole.llm.backends, systole.llm.model, systole.llm.fetch, "
            "systole.llm.tokenizer, systole.llm.gguf_model; "
            "print('amaranth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_perf_figures_obey_the_counter_laws():
    """Per phase: MACs are the sum of M*N*K over the GEMMs, every weight byte is read at
    least once per pass, and utilization never beats the roofline of the bus."""
    from systole.generate import phase_figures, phase_gemms, hardware
    from systole.llm.gguf_model import LlamaConfig
    c = LlamaConfig(n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_ff=1536,
                    vocab_size=49152, context_length=8192, rope_base=1e5, rope_dim=64,
                    rms_eps=1e-5)
    hw, clock, _ = hardware("default")
    gemms = phase_gemms(c, 1)
    f = phase_figures(hw, clock, gemms, 1)
    assert f["macs"] == sum(m * n * k * count for _, m, n, k, count in gemms)
    weight_bytes = sum(n * k * count for _, _, n, k, count in gemms)
    assert f["dram_bytes"] >= weight_bytes
    assert f["utilization"] <= f["macs"] / f["dram_bytes"] * hw.bus_bytes / (hw.rows * hw.cols)


# -- the model --------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["The memory wall is", "Größe 12345 naïve — 日本語 🙂",
                                  "<|im_start|>user\nHi!<|im_end|>", "  two  spaces\ttab"])
def test_tokenizer_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    if "<|im_start|>" in text:
        assert ids[0] == tokenizer.bos and ids[-1] == tokenizer.eos   # control tokens
    if "12345" in text:      # the "smollm" pre-tokenizer splits every digit off
        digits = [tokenizer.decode([i]) for i in ids if tokenizer.decode([i]).isdigit()]
        assert digits == list("12345")


def _q4_1_reference(blocks):
    """Independent decoding of GGML Q4_1 blocks (ggml-common.h ``block_q4_1``): 32 weights
    per 20-byte block: fp16 d, fp16 m, then 16 bytes whose low nibbles are weights 0-15 and
    high nibbles weights 16-31; weight = d * q + m."""
    blocks = blocks.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return d * q + m


def test_q4_1_dequantisation_matches_the_block_layout(gguf):
    name = "blk.0.attn_q.weight"
    assert gguf.tensor_type(name) == "Q4_1"
    kind, raw = gguf.tensors[name]
    weight = gguf.weight(name)                       # gguf.quants.dequantize
    ours = _q4_1_reference(raw).reshape(weight.shape)
    assert weight.shape == (576, 576)
    np.testing.assert_array_equal(weight.view(np.uint32), ours.view(np.uint32))


def test_two_layers_against_fp32(gguf, tokenizer):
    """The first two blocks (and the LM head) in each mode, against fp32.

    Tolerance: E4M3 rounds to 4 significant bits, unit roundoff u = 2**-4. Quantising both
    operands gives each product a relative error of about u * sqrt(2/3) rms (two uniform
    rounding errors), independent across the K terms, so one projection's output has a
    normwise error of about 5%. The residual stream adds each block's attention and MLP
    outputs to the embedding, so the logits of two blocks carry at most about two such
    errors in series: they must agree with fp32 to 10% (normwise). bf16 has u = 2**-8,
    16 times finer: 10% / 16, rounded up to 1%. (Measured: 2.8% and 0.18%.) The argmax
    of a two-block model is not asserted: it may flip on near ties.
    """
    from systole.llm.model import Llama
    ids = tokenizer.encode("The memory wall is the gap between")
    weights = {}
    logits = {}
    for mode in ("fp32", "systole", "fp8-fp32seq", "bf16"):
        model = Llama(gguf, mode, n_layers=2, weights=weights)
        logits[mode] = model.forward(ids, model.new_cache(len(ids)), logits="all")
    ref = logits["fp32"]
    error = {mode: np.linalg.norm(v - ref) / np.linalg.norm(ref) for mode, v in logits.items()}
    print(error)
    assert error["systole"] < 0.10
    assert error["fp8-fp32seq"] < 0.10
    assert error["bf16"] < 0.01
    # Exact accumulation and fp32-sequential accumulation of the same fp8 products differ
    # only by the sequential sum's roundings (relative 2**-24 per add): far below fp8's.
    assert np.linalg.norm(logits["systole"] - logits["fp8-fp32seq"]) < 0.01 * np.linalg.norm(ref)


def test_real_weight_gemm_on_the_rtl(gguf, tokenizer):
    """Block 0's k projection of two real tokens, on the accelerator RTL: bit-exact."""
    from helpers import SYSTEM_CONFIGS, require_simulator
    from systole.llm.model import rms_norm
    from systole.sim.run import run_gemm
    require_simulator("verilator")
    ids = tokenizer.encode("Memory wall")[:2]
    x = rms_norm(gguf.weight("token_embd.weight")[ids], gguf.weight("blk.0.attn_norm.weight"),
                 gguf.config.rms_eps)
    a, _ = quantize_rows(x)
    q, _ = quantize_rows(gguf.weight("blk.0.attn_k.weight"))
    b = np.ascontiguousarray(q.T)                               # 576 x 192
    config = SYSTEM_CONFIGS["4x4-bus64"]
    run = run_gemm(a, b, config=config)
    np.testing.assert_array_equal(golden.to_bits(run.c), golden.to_bits(golden.gemm(a, b)))
    assert run.counters["macs"] == a.shape[0] * b.shape[0] * b.shape[1]


# -- bad input ----------------------------------------------------------------------------

def _error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--quiet", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err[-1]


def test_empty_prompt(capsys):
    code, line = _error(capsys, ["--prompt", "  "])
    assert code == 2
    assert line.endswith("argument --prompt: must be some text, not an empty prompt")


def test_zero_tokens(capsys):
    code, line = _error(capsys, ["--tokens", "0"])
    assert code == 2
    assert line.endswith("argument --tokens: must be an integer >= 1, not '0'")


def test_missing_model_file(capsys, tmp_path):
    path = tmp_path / "none.gguf"
    code, line = _error(capsys, ["--model", str(path)])
    assert code == 2
    assert line == f"systole generate: error: model file {path} does not exist"


def test_corrupt_model_file(capsys, tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    code, line = _error(capsys, ["--model", str(path)])
    assert code == 2
    assert line.startswith(f"systole generate: error: {path} is not a readable GGUF file")


def test_damaged_cached_model_is_named(tmp_path, monkeypatch):
    """A cached file of the wrong size or hash is never used: without fetching, the
    message says what is wrong and what to do."""
    from systole.llm import fetch
    monkeypatch.setenv("SYSTOLE_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / fetch.MODEL_FILE).write_bytes(b"x" * 100)
    with pytest.raises(fetch.ModelUnavailable, match=r"has 100 bytes, not 98362432; run "):
        fetch.model_path(fetch=False)


def test_prompt_longer_than_the_context(capsys, gguf):
    words = gguf.config.context_length          # one token per " word"
    code, line = _error(capsys, ["--prompt", "word" + " word" * words, "--tokens", "1"])
    assert code == 2
    assert line.startswith("systole generate: error: the prompt (")
    assert line.endswith(f"the model's context is {gguf.config.context_length}")


def test_docs_llm_sweep_table_is_current():
    """docs/llm.md carries the default configuration's table as ``systole generate
    --sweep`` prints it (the performance model: deterministic)."""
    import io
    from pathlib import Path
    from systole.generate import print_sweep, sweep
    from systole.llm.gguf_model import LlamaConfig
    c = LlamaConfig(n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_ff=1536,
                    vocab_size=49152, context_length=8192, rope_base=1e5, rope_dim=64,
                    rms_eps=1e-5)
    out = io.StringIO()
    print_sweep(sweep(c, configs=("default",)), out)
    table = out.getvalue().strip().split("\n", 1)[1]
    doc = (Path(__file__).parent.parent / "docs" / "llm.md").read_text()
    assert table in doc, "docs/llm.md is stale: rerun systole generate --sweep (see docs/llm.md)"


def test_perf_figures_count_the_gemms_the_forward_pass_runs(gguf):
    """phase_gemms (what the performance figures sum) lists exactly the GEMMs that a
    prefill and a decode step of the model run, with their M, N and K."""
    import collections
    import dataclasses
    from systole.generate import phase_gemms
    from systole.llm.model import Llama
    ran = []
    model = Llama(gguf, "systole", n_layers=2,
                  log=lambda lin, a, c: ran.append((lin.name.split(".")[-1], a.shape[0],
                                                    c.shape[1], a.shape[1])))
    config = dataclasses.replace(gguf.config, n_layers=2)
    for tokens, head_m, m in (([1, 2, 3, 4, 5], 1, 5), ([6], None, 1)):
        ran.clear()
        cache = model.new_cache(8) if m == 5 else cache
        model.forward(tokens, cache)
        expected = collections.Counter()
        for role, gm, n, k, count in phase_gemms(config, m, head_m=head_m):
            expected[(role, gm, n, k)] += count
        assert collections.Counter(ran) == expected

"""A Llama decoder in numpy, with a KV cache; every linear layer is a backend GEMM.

The host computes what an accelerator's host does: the embedding lookup, RMSNorm, RoPE,
the attention scores, softmax and the value products against the KV cache, SwiGLU and
the residual adds, all in float32. The q, k, v, o, gate, up and down projections of every
block and the LM head go through :mod:`systole.llm.backends` (``x @ W.T``, M = tokens).

RoPE layout: llama.cpp's GGUF conversion permutes the rows of the Q and K weights so that
RoPE rotates adjacent pairs (2i, 2i+1) of each head (GGML's "normal" rope mode for the
llama architecture), with angle ``pos * base**(-2i / rope_dim)``. The Hugging Face
rotate-half layout on these weights gives text that looks half plausible but a
perplexity several times higher.
"""

from dataclasses import dataclass

import numpy as np

from .backends import make_backend
from .gguf_model import LINEAR_NAMES

__all__ = ["Llama", "KVCache", "rms_norm", "rope", "softmax"]


def rms_norm(x, weight, eps):
    x = x.astype(np.float32)
    scale = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))
    return (x * scale.astype(np.float32)) * weight


def rope_tables(positions, dim, base):
    """cos and sin of ``positions[:, None] * base**(-2i/dim)``, i < dim/2 (float32)."""
    inv = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rope(x, cos, sin):
    """Rotate adjacent pairs (2i, 2i+1) of the last axis. ``x``: (heads, T, dim);
    ``cos``/``sin``: (T, dim/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


class KVCache:
    """Keys and values of every block for up to ``capacity`` positions."""

    def __init__(self, config, capacity):
        shape = (config.n_layers, config.n_kv_heads, capacity, config.head_dim)
        self.k = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.length = 0
        self.capacity = capacity


@dataclass
class _Block:
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    linears: dict


class Llama:
    """The model of a :class:`systole.llm.gguf_model.GgufModel` in one numeric mode.

    Parameters
    ----------
    gguf : GgufModel
    mode : str
        A key of :data:`systole.llm.backends.MODES`.
    log : callable, optional
        ``log(linear, a, c)`` for every fp8 GEMM (see :func:`make_backend`).
    n_layers : int, optional
        Run only the first blocks (tests).
    weights : dict, optional
        Dequantised weights by GGUF tensor name, shared between models of several modes.
    """

    def __init__(self, gguf, mode="fp32", *, log=None, n_layers=None, weights=None):
        self.config = gguf.config
        self.mode = mode
        self.n_layers = n_layers or self.config.n_layers
        weights = weights if weights is not None else {}
        get = lambda name: weights[name] if name in weights else weights.setdefault(
            name, gguf.weight(name))
        linear = make_backend(mode, log)
        self.embedding = get("token_embd.weight")                   # vocab x d
        self.output_norm = get("output_norm.weight")
        self.blocks = []
        for i in range(self.n_layers):
            self.blocks.append(_Block(
                get(f"blk.{i}.attn_norm.weight"), get(f"blk.{i}.ffn_norm.weight"),
                {role: linear(f"blk.{i}.{role}", get(f"blk.{i}.{tensor}.weight"))
                 for role, tensor in LINEAR_NAMES.items()}))
        # No output.weight in the GGUF: the LM head is tied to the embedding.
        head = get("output.weight") if "output.weight" in gguf.tensors else self.embedding
        self.lm_head = linear("lm_head", head)
        self.weights = weights

    def new_cache(self, capacity):
        return KVCache(self.config, capacity)

    def forward(self, tokens, cache, *, logits="last"):
        """Run ``tokens`` (a 1-D sequence) at positions ``cache.length ...``; returns the
        logits of the last position (``logits="last"``, shape (vocab,)) or of every
        position (``"all"``, shape (T, vocab)), and advances the cache."""
        c = self.config
        tokens = np.asarray(tokens, dtype=np.int64)
        t = tokens.size
        start = cache.length
        if start + t > cache.capacity:
            raise ValueError(f"{start + t} positions exceed the cache's {cache.capacity}")
        positions = np.arange(start, start + t)
        cos, sin = rope_tables(positions, c.rope_dim, c.rope_base)
        hd, nh, nkv = c.head_dim, c.n_heads, c.n_kv_heads
        group = nh // nkv
        mask = np.triu(np.full((t, start + t), -np.inf, np.float32), k=start + 1)
        x = self.embedding[tokens]
        for i, block in enumerate(self.blocks):
            lin = block.linears
            h = rms_norm(x, block.attn_norm, c.rms_eps)
            q = lin["q"](h).reshape(t, nh, hd).transpose(1, 0, 2)
            k = lin["k"](h).reshape(t, nkv, hd).transpose(1, 0, 2)
            v = lin["v"](h).reshape(t, nkv, hd).transpose(1, 0, 2)
            q = rope(q, cos, sin)
            cache.k[i, :, start:start + t] = rope(k, cos, sin)
            cache.v[i, :, start:start + t] = v
            keys = cache.k[i, :, :start + t]                 # nkv x L x hd
            values = cache.v[i, :, :start + t]
            qg = q.reshape(nkv, group * t, hd)               # GQA: heads share KV groups
            scores = (qg @ keys.transpose(0, 2, 1)).reshape(nkv, group, t, start + t)
            scores = scores * np.float32(1.0 / np.sqrt(hd)) + mask
            probs = softmax(scores).reshape(nkv, group * t, start + t)
            attn = (probs @ values).reshape(nh, t, hd).transpose(1, 0, 2).reshape(t, nh * hd)
            x = x + lin["o"](attn)
            h = rms_norm(x, block.ffn_norm, c.rms_eps)
            gate = lin["gate"](h)
            up = lin["up"](h)
            x = x + lin["down"]((gate / (1.0 + np.exp(-gate))) * up)   # SwiGLU
        cache.length = start + t
        if logits == "last":
            x = x[-1:]
        out = self.lm_head(rms_norm(x, self.output_norm, c.rms_eps))
        return out[0] if logits == "last" else out

    def generate(self, prompt, n_tokens, *, stop=None, progress=None, cache=None):
        """Greedy decoding: prefill ``prompt`` (M = its length), then ``n_tokens`` decode
        steps (M = 1). ``progress()`` is called after each new token; generation ends
        early at ``stop``. Returns the new token ids."""
        cache = cache or self.new_cache(len(prompt) + n_tokens)
        logits = self.forward(prompt, cache)
        out = []
        for step in range(n_tokens):
            token = int(np.argmax(logits))
            out.append(token)
            if progress:
                progress()
            if token == stop or step == n_tokens - 1:
                break
            logits = self.forward([token], cache)
        return out

"""Reading the SmolLM2 GGUF: hyperparameters, tokenizer vocabulary and weights.

Read with ``gguf.GGUFReader`` and dequantised with ``gguf.quants.dequantize`` (the Q4_1
blocks of the projections, Q8_0 of the embedding). Parsing the GGUF takes several seconds
(mostly the vocabulary arrays), so the parts this package uses (the metadata, and each
tensor's raw quantised blocks) are kept in a ``.npz`` beside it, keyed by the GGUF's size
and modification time; the blocks are dequantised by ``gguf.quants.dequantize`` on every
load.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["LlamaConfig", "GgufModel", "load_gguf", "BadModelFile", "LINEAR_NAMES"]

#: The linear layers of a block, by their role, and the GGUF tensor each one reads.
LINEAR_NAMES = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
                "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}
_NORMS = ("attn_norm", "ffn_norm")
_CACHE_VERSION = 1


class BadModelFile(ValueError):
    """The file is not a Llama GGUF this package can run (one-line message)."""


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters of a Llama-architecture decoder, from the GGUF metadata."""
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    context_length: int
    rope_base: float
    rope_dim: int
    rms_eps: float

    @property
    def head_dim(self):
        return self.d_model // self.n_heads


@dataclass
class GgufModel:
    """What the forward pass and the tokenizer need from a GGUF.

    Attributes
    ----------
    config : LlamaConfig
    tokenizer : dict
        ``tokens`` (list of str), ``token_types`` (list of int), ``merges`` (list of str),
        ``bos``, ``eos`` (int), ``pre`` (str) and ``add_bos`` (bool).
    tensors : dict
        Tensor name -> (gguf type name, raw data array): the quantised blocks.
    tensor_types : dict
        Tensor name -> ``gguf.GGMLQuantizationType`` name.
    """
    config: LlamaConfig
    tokenizer: dict
    tensors: dict
    path: Path

    def weight(self, name):
        """The dequantised float32 tensor ``name`` (``gguf.quants.dequantize``), in the
        GGUF's row-major layout: a linear layer's weight is (out_features, in_features)."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
        kind, data = self.tensors[name]
        return np.asarray(dequantize(data, GGMLQuantizationType[kind]), dtype=np.float32)

    def tensor_type(self, name):
        return self.tensors[name][0]


def _field(reader, key):
    field = reader.fields.get(key)
    if field is None:
        raise BadModelFile(f"{reader.path} has no {key} metadata: not a Llama GGUF")
    return field.contents()


def _read(path):
    """Parse the GGUF with gguf.GGUFReader (slow): config, tokenizer, raw tensors."""
    import gguf
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:   # the reader raises ValueError, struct.error, IndexError ...
        raise BadModelFile(f"{path} is not a readable GGUF file ({type(error).__name__}: "
                           f"{str(error)[:100]})") from None
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise BadModelFile(f"{path} is a {arch!r} model, not llama")
    p = lambda key: _field(reader, f"llama.{key}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    config = LlamaConfig(
        n_layers=int(p("block_count")), d_model=int(p("embedding_length")),
        n_heads=int(p("attention.head_count")), n_kv_heads=int(p("attention.head_count_kv")),
        d_ff=int(p("feed_forward_length")),
        vocab_size=int(reader.fields["llama.vocab_size"].contents())
        if "llama.vocab_size" in reader.fields else len(tokens),
        context_length=int(p("context_length")), rope_base=float(p("rope.freq_base")),
        rope_dim=int(p("rope.dimension_count")),
        rms_eps=float(p("attention.layer_norm_rms_epsilon")))
    tokenizer = {
        "model": _field(reader, "tokenizer.ggml.model"),
        "pre": _field(reader, "tokenizer.ggml.pre"),
        "tokens": list(tokens),
        "token_types": [int(t) for t in _field(reader, "tokenizer.ggml.token_type")],
        "merges": list(_field(reader, "tokenizer.ggml.merges")),
        "bos": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "add_bos": bool(_field(reader, "tokenizer.ggml.add_bos_token")),
    }
    tensors = {t.name: (t.tensor_type.name, np.array(t.data)) for t in reader.tensors}
    needed = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{name}.weight" for i in range(config.n_layers)
        for name in list(LINEAR_NAMES.values()) + list(_NORMS)]
    missing = [name for name in needed if name not in tensors]
    if missing:
        raise BadModelFile(f"{path} lacks {len(missing)} tensors of a {config.n_layers}-layer "
                           f"llama (first: {missing[0]})")
    return config, tokenizer, tensors


def _cache_path(path):
    return path.with_name(path.name + ".systole.npz")


def _source_key(path):
    st = path.stat()
    return f"{_CACHE_VERSION} {st.st_size} {st.st_mtime_ns}"


def load_gguf(path):
    """Load a Llama GGUF (from its ``.systole.npz`` cache when that is current).

    Raises
    ------
    BadModelFile
        When the file is missing, unreadable, or not a complete Llama GGUF.
    """
    path = Path(path)
    if not path.is_file():
        raise BadModelFile(f"model file {path} does not exist")
    cache = _cache_path(path)
    key = _source_key(path)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta["key"] == key:
                    tensors = {name: (kind, z[f"t/{name}"]) for name, kind in
                               meta["tensor_types"].items()}
                    return GgufModel(LlamaConfig(**meta["config"]), meta["tokenizer"],
                                     tensors, path)
        except (OSError, ValueError, KeyError):
            pass                    # a damaged cache: parse the GGUF again
    config, tokenizer, tensors = _read(path)
    meta = {"key": key, "config": asdict(config), "tokenizer": tokenizer,
            "tensor_types": {name: kind for name, (kind, _) in tensors.items()}}
    arrays = {f"t/{name}": data for name, (_, data) in tensors.items()}
    try:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(cache)
    except OSError:
        pass                        # a read-only directory: parse again next time
    return GgufModel(config, tokenizer, tensors, path)

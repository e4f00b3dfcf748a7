"""The model's tokenizer, built with the ``tokenizers`` library from the GGUF metadata.

``tokenizer.ggml.model`` is gpt2 (byte-level BPE) with pre-tokenizer "smollm": every
digit is split off on its own, then the GPT-2 regex and byte-level mapping
(``pre_tokenizers.Digits(individual_digits=True)`` then ``ByteLevel``). The vocabulary and
merges come from ``tokenizer.ggml.tokens`` / ``tokenizer.ggml.merges``; control tokens
(type 3) are special tokens; plain text gets no BOS (``add_bos_token`` false).
"""

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

__all__ = ["build_tokenizer", "TextTokenizer"]

_CONTROL = 3


class TextTokenizer:
    """Encode text to token ids and back (a thin wrapper of a ``tokenizers.Tokenizer``).

    Attributes
    ----------
    tokenizer : tokenizers.Tokenizer
    bos, eos : int
    """

    def __init__(self, tokenizer, bos, eos, add_bos):
        self.tokenizer = tokenizer
        self.bos = bos
        self.eos = eos
        self.add_bos = add_bos

    def encode(self, text):
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos] if self.add_bos else []) + ids

    def decode(self, ids):
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def build_tokenizer(meta):
    """A :class:`TextTokenizer` from the ``tokenizer`` dict of :class:`GgufModel`.

    Raises
    ------
    ValueError
        For a tokenizer model other than gpt2, or a pre-tokenizer this does not know.
    """
    if meta["model"] != "gpt2":
        raise ValueError(f"tokenizer.ggml.model is {meta['model']!r}; only gpt2 (byte-level "
                         "BPE) is supported")
    if meta["pre"] not in ("smollm", "gpt2", "default"):
        raise ValueError(f"tokenizer.ggml.pre {meta['pre']!r} is not supported")
    vocab = {token: i for i, token in enumerate(meta["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in meta["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if meta["pre"] == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(meta["tokens"][i], special=True, normalized=False)
               for i, kind in enumerate(meta["token_types"]) if kind == _CONTROL]
    tok.add_special_tokens(special)
    return TextTokenizer(tok, meta["bos"], meta["eos"], meta["add_bos"])

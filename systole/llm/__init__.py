"""SmolLM2-135M on Systole's numerics, host side (no Amaranth): the model's fetch
(:mod:`.fetch`), GGUF reading (:mod:`.gguf_model`), tokenizer (:mod:`.tokenizer`), the
numpy Llama forward pass (:mod:`.model`) and the GEMM backends of its linear layers
(:mod:`.backends`). ``systole generate`` (systole/generate.py) is the command on top."""

__all__ = ["backends", "fetch", "gguf_model", "model", "tokenizer"]

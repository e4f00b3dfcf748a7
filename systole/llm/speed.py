"""How long the host takes to generate with every linear layer on golden.gemm (a figure,
not a test).

    ./run python -m systole.llm.speed [--prompt-tokens 32] [--tokens 32] [--mode systole]

Times the greedy generation of ``--tokens`` tokens after a prompt of exactly
``--prompt-tokens`` tokens (a fixed text, cut to length), without the RTL, and prints the
model's set-up time (dequantising, quantising and decoding the weights), the prefill and
the time per decode step.
"""

import argparse
import sys
import time

from .backends import MODES

__all__ = ["main"]

_TEXT = ("The memory wall is the growing gap between how fast a processor can compute and "
         "how fast it can fetch the data it computes on. Every generation of chips widens it, "
         "because arithmetic gets cheaper faster than moving bytes does, and so the design "
         "of an accelerator is mostly the design of its memory system.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m systole.llm.speed", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--mode", choices=list(MODES), default="systole")
    args = parser.parse_args(argv)
    from .fetch import model_path
    from .gguf_model import load_gguf
    from .model import Llama
    from .tokenizer import build_tokenizer
    start = time.perf_counter()
    gguf = load_gguf(model_path())
    tokenizer = build_tokenizer(gguf.tokenizer)
    load = time.perf_counter() - start
    prompt = tokenizer.encode(_TEXT)[:args.prompt_tokens]
    if len(prompt) < args.prompt_tokens:
        parser.error(f"--prompt-tokens must be at most {len(prompt)}")
    start = time.perf_counter()
    llama = Llama(gguf, args.mode)
    setup = time.perf_counter() - start
    stamps = []
    start = time.perf_counter()
    new = llama.generate(prompt, args.tokens, progress=lambda: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    prefill = stamps[0] - start
    decode = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    print(f"mode {args.mode}: {len(prompt)}-token prompt + {len(new)} tokens in {total:.2f} s "
          f"(prefill {prefill:.2f} s, {decode * 1e3:.0f} ms per decode step); model load "
          f"{load:.1f} s, set-up {setup:.1f} s; total {load + setup + total:.1f} s")
    print(repr(tokenizer.decode(new)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

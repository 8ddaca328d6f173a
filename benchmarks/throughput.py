"""Decoding throughput of TARo against plain generate, the two-forward limit and transformers' CFG processor.

Every method runs in the same process, interleaved round by round, and the median of the rounds is reported, so
the ratios hold on a shared, noisy machine. The two-forward limit is 1 / (1/base tok/s + 1/reward tok/s), each
measured alone with plain `generate`: what any guidance that runs both models once per token can reach.

    python benchmarks/throughput.py                      # the embedded SmolLM2-135M as base and reward model
    python benchmarks/throughput.py --base-model ID --reward-model ID --batch-sizes 1 8 --new-tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LogitsProcessorList, UnbatchedClassifierFreeGuidanceLogitsProcessor

from transformers_taro import TARoProcessor, TARoRouter, TARoRouterConfig
from transformers_taro.models import load_causal_lm, load_tokenizer

PROMPT = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default=None, help="Hub id or folder (default: the embedded SmolLM2-135M)")
    ap.add_argument("--reward-model", default=None, help="Hub id or folder (default: same as the base)")
    ap.add_argument("--router", default=None, help="router folder (default: a freshly initialised router)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    tok = load_tokenizer(args.base_model)
    base = load_causal_lm(args.base_model)
    rm = load_causal_lm(args.reward_model or args.base_model)
    vocab = min(base.config.vocab_size, rm.config.vocab_size)
    router = TARoRouter.from_pretrained(args.router) if args.router else TARoRouter(TARoRouterConfig(vocab_size=vocab))
    n = args.new_tokens
    gen = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)

    def timed(model, enc, processors):
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, logits_processor=LogitsProcessorList(processors), **gen)
        elapsed = time.perf_counter() - start
        assert out.shape[1] - enc["input_ids"].shape[1] == n
        return enc["input_ids"].shape[0] * n / elapsed

    methods = {
        "base alone": lambda enc: timed(base, enc, []),
        "reward model alone": lambda enc: timed(rm, enc, []),
        "TARo fixed alpha": lambda enc: timed(base, enc, [TARoProcessor(rm, alpha=1.0, attention_mask=enc["attention_mask"])]),
        "TARo router": lambda enc: timed(base, enc, [TARoProcessor(rm, router=router, attention_mask=enc["attention_mask"])]),
        # The guide reads the whole prompt, as a reward model must: same work as TARo's prefill.
        "CFG processor (transformers)": lambda enc: timed(
            base, enc, [UnbatchedClassifierFreeGuidanceLogitsProcessor(
                1.5, rm, unconditional_ids=enc["input_ids"], unconditional_attention_mask=enc["attention_mask"])]
        ),
    }
    results: dict[tuple[str, int], float] = {}
    for bs in args.batch_sizes:
        enc = tok([PROMPT] * bs, return_tensors="pt", padding=True)
        for fn in methods.values():  # warm-up
            fn(enc)
        samples: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                samples[name].append(fn(enc))
        for name, values in samples.items():
            results[(name, bs)] = statistics.median(values)

    print(f"\ntorch threads: {torch.get_num_threads()}, new tokens: {n}, rounds: {args.rounds} (median)")
    print(f"{'method':32s}" + "".join(f"{'batch ' + str(b) + ' tok/s':>16s}" for b in args.batch_sizes))
    for name in methods:
        print(f"{name:32s}" + "".join(f"{results[(name, b)]:16.1f}" for b in args.batch_sizes))
    print()
    for bs in args.batch_sizes:
        limit = 1 / (1 / results[("base alone", bs)] + 1 / results[("reward model alone", bs)])
        cfg = results[("CFG processor (transformers)", bs)]
        for m in ("TARo fixed alpha", "TARo router"):
            t = results[(m, bs)]
            print(f"batch {bs}: {m:18s} / two-forward limit = {t / limit:.2f}   / CFG processor = {t / cfg:.2f}")
    if len(args.batch_sizes) > 1:
        lo, hi = min(args.batch_sizes), max(args.batch_sizes)
        for m in ("TARo fixed alpha", "TARo router"):
            print(f"{m}: batch {hi} / batch {lo} tokens/s = {results[(m, hi)] / results[(m, lo)]:.2f}")


if __name__ == "__main__":
    main()

"""Where the time of a fused decoding step goes, by operator, with the shipped guide (torch.profiler).

Plain `generate` and the fused path decode the same prompts (greedy, `--new-tokens` tokens, after a warm-up), each
under the profiler; the table gives each operator's self CPU time per decoded token on both, largest on the fused
path first, and the difference: what guidance adds (the second block's rows in every layer, the LoRA deltas'
`addmm_`, the router's features over the vocabulary such as `topk`, the mixture, the processor's bookkeeping).

    python benchmarks/profile_fused.py                    # batch 1 and 8, 16 new tokens
    python benchmarks/profile_fused.py --batch-sizes 8 --new-tokens 32 --top 25
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from transformers_taro import DEFAULT_GUIDE, TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer

QUESTION = "A book costs $12. How much do 4 books cost?"


def self_times(run, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per operator name, per decoded step, of one profiled call of `run`."""
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        run()
    return {e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    tok, base = load_tokenizer(None), load_causal_lm(None)
    guide = TARoGuide.from_pretrained(DEFAULT_GUIDE)
    n = args.new_tokens
    gen = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    print(f"SmolLM2-135M-Instruct + the shipped guide, {n} new tokens, CPU, {torch.get_num_threads()} threads")
    for batch in args.batch_sizes:
        enc = tok([guide.format_prompt(QUESTION, tok)] * batch, return_tensors="pt", padding=True)
        runs = {
            "plain generate": lambda enc=enc: base.generate(**enc, **gen),
            "fused path": lambda enc=enc: guide.generate(base, fused=True, **enc, **gen),
        }
        for run in runs.values():  # warm-up: the fused path's weight check and first-call costs
            with torch.inference_mode():
                run()
        times = {name: self_times(run, n) for name, run in runs.items()}
        total = {name: sum(t.values()) for name, t in times.items()}
        print(f"\nbatch {batch}: ms of operator self time per decoded token")
        print(f"  plain generate {total['plain generate']:.1f}, fused path {total['fused path']:.1f}")
        names = sorted(times["fused path"], key=lambda k: -times["fused path"][k])[: args.top]
        print(f"  {'operator':40s} {'plain':>8s} {'fused':>8s} {'extra':>8s}")
        for name in names:
            plain, fused = times["plain generate"].get(name, 0.0), times["fused path"][name]
            print(f"  {name[:40]:40s} {plain:8.2f} {fused:8.2f} {fused - plain:8.2f}")


if __name__ == "__main__":
    main()

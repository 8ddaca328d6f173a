"""Step pairs from a slice of GSM8K train, written once so that every reward-model variant trains on the same ones.

Incorrect steps are sampled from the base and labelled automatically on the first `--sample-problems` problems
of the slice (the costly part); every other step gets its gold step with the result corrupted. The output is the
JSONL that `taro train-rm --data` reads as is (prompt, chosen, rejected, final), plus `<output>.json` with the
label counts. An existing output is kept, so a re-run resumes after the last finished file.

    python examples/smollm2/step_pairs.py --offset 0 --limit 6000 --sample-problems 300 --output runs/pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers_taro.data import SYSTEM_PROMPT, gsm8k_solutions, load_rows, step_pairs_from_solutions
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training.sampling import sample_incorrect_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/gsm8k/train.jsonl", help="GSM8K-format JSONL")
    p.add_argument("--offset", type=int, default=0, help="first problem of the slice")
    p.add_argument("--limit", type=int, required=True, help="problems in the slice")
    p.add_argument("--sample-problems", type=int, default=0, help="problems (from the slice's start) to sample on")
    p.add_argument("--samples-per-step", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default=None, help="the model to sample from (None: the embedded SmolLM2)")
    p.add_argument("--device-map", default=None, help="'auto' puts the model on the GPU(s) (accelerate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--system-prompt",
        default=SYSTEM_PROMPT,
        help="the prompt format's system prompt ('' for none): the one the guide will decode with",
    )
    p.add_argument("--output", required=True)
    a = p.parse_args()
    out = Path(a.output)
    if out.is_file():
        print(f"{out} exists; kept")
        return
    tokenizer = load_tokenizer(a.model, padding_side="left")
    solutions, _ = gsm8k_solutions(load_rows(a.data)[a.offset : a.offset + a.limit])
    rejected, counts = {}, {}
    if a.sample_problems:
        rejected, counts = sample_incorrect_steps(
            load_causal_lm(a.model, device_map=a.device_map),
            tokenizer,
            solutions[: a.sample_problems],
            samples_per_step=a.samples_per_step,
            batch_size=a.batch_size,
            seed=a.seed,
            system=a.system_prompt,
        )
    pairs = step_pairs_from_solutions(
        solutions, tokenizer, seed=a.seed, rejected_steps=rejected, system=a.system_prompt
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in pairs), encoding="utf-8")
    summary = {
        "problems": len(solutions),
        "pairs": len(pairs),
        "sampled_label_counts": counts,
        "steps_with_sampled_rejected": len(rejected),
        **{k: v for k, v in vars(a).items() if k not in ("output", "device_map")},
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    tmp.rename(out)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

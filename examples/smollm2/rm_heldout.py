"""Pairwise accuracy and GenARM loss of reward models on held-out step pairs (none of them trained on).

Each reward model's result is written to `--output` (a JSON object keyed by folder), so the variants of
`train_default.sh` are compared on the same pairs (overall, and separately on pairs whose incorrect step was sampled
from the base or made by corrupting a gold step), and a finished one is not scored again.

    python examples/smollm2/rm_heldout.py --pairs runs/pairs-heldout.jsonl --output runs/rm-heldout.json DIR...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers_taro.data import load_rows
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training import evaluate_reward_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, help="held-out step pairs (JSONL from step_pairs.py)")
    p.add_argument("--output", required=True, help="JSON file of results, one entry per reward model")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--device-map", default=None, help="'auto' puts each model on the GPU(s) (accelerate)")
    p.add_argument("reward_models", nargs="+", help="reward-model folders (LoRA adapters or full models)")
    a = p.parse_args()
    out = Path(a.output)
    results = json.loads(out.read_text()) if out.is_file() else {}
    pairs = load_rows(a.pairs)
    for folder in a.reward_models:
        if folder in results:
            continue
        model = load_causal_lm(folder, device_map=a.device_map)
        tokenizer = load_tokenizer(folder, padding_side="right")
        # Sampled incorrect steps are the base's own mistakes; corrupted gold steps are easier to rank.
        parts = {
            kind: evaluate_reward_model(model, tokenizer, rows, a.beta)
            for kind, rows in (
                ("sampled", [r for r in pairs if r.get("sampled")]),
                ("corrupted", [r for r in pairs if not r.get("sampled")]),
            )
            if rows
        }
        n = sum(part["n"] for part in parts.values())
        results[folder] = {
            "n": n,
            **{key: sum(part[key] * part["n"] for part in parts.values()) / n for key in ("accuracy", "loss")},
            **parts,
        }
        out.write_text(json.dumps(results, indent=2))
        print(folder, results[folder])


if __name__ == "__main__":
    main()

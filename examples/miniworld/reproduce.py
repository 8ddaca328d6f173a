"""Reproduce the paper's claims in a world small enough to train here (2 CPU cores, ~20 minutes).

    python examples/miniworld/reproduce.py                         # train everything, then evaluate
    python examples/miniworld/reproduce.py --eval-only             # evaluate the shipped checkpoints
    python examples/miniworld/reproduce.py --eval-only --test-seed 7   # on a fresh held-out set

Writes results/miniworld.json, results/miniworld.md and results/miniworld.png.
"""

import argparse
import logging

from transformers_taro.miniworld import reproduce

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-only", action="store_true", help="skip training; use the shipped checkpoints")
    ap.add_argument("--test-seed", type=int, default=None, help="draw a fresh held-out test set with this seed")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--checkpoints", default="examples/miniworld/checkpoints")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    results = reproduce(a.results_dir, a.checkpoints, a.eval_only, a.test_seed)
    for section in ("methods", "transfer", "ood"):
        print(f"-- {section}")
        for name, r in results[section].items():
            print(f"{name:20s} {r['accuracy']:.3f}  CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}  "
                  f"equations right {r['step_accuracy']:.3f}  {r['tokens_per_s']:.0f} tok/s")

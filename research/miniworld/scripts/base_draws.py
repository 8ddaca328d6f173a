"""Draws of the mini-world's small base under one training recipe: how often does a draw land in range?

Each draw is the small base trained from its own initialisation (draw i of pipeline seed K is initialised with
seed 1000K + i: `draw_base`, as `choose_base` calls it) on the seed's A + B training problems, then graded
greedily on A's and B's validation problems. Every draw is trained to the end (no early check), so that the
recipe's final accuracies are seen. Nothing else is trained, and no test problem is read. This is
how the transfers world's small-base recipe was chosen (results/miniworld-v2-transfers/README.md, "How the world was
made to answer"): a recipe is only as good as the share of its draws in range.

    python research/miniworld/scripts/base_draws.py --seeds 2 3 --draws 2 --out results/miniworld-base-draws.json
    python research/miniworld/scripts/base_draws.py --seeds 2 --steps 4000 --domain-b b-copied --one-token-names \
        --label L
    python research/miniworld/scripts/base_draws.py --seeds 3 --draws 3 --heads 8 --label heads8   # another shape
    python research/miniworld/scripts/base_draws.py --domain-b b-copied --seeds 2 4 --draws 1 --check-only --label check

With `--check-only` (the transfers world, `--domain-b b-copied` or another transfer format), each draw is trained
only to `--check-step` and its B lookups by name are measured there (`lookup_accuracy`, the measure `choose_base`
gives a transfers draw up on): how a draw fares at that world's check.

Resumable: a draw whose folder holds both reports is read, not trained again. Results are appended to `--out`
(one row per draw and recipe), so several recipes accumulate in one file.
"""

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from taro_miniworld import MiniworldConfig
from taro_miniworld.pipeline import BaseSpec, draw_base, lookup_accuracy, splits, train_base, warmup_rows, world_config
from taro_miniworld.problems import DOMAINS, make_tokenizer

if __name__ == "__main__":
    default = MiniworldConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[default.seed], help="pipeline seeds (their problems)")
    ap.add_argument("--draws", type=int, default=2, help="initialisations per seed")
    ap.add_argument("--first-draw", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=default.small.hidden)
    ap.add_argument("--layers", type=int, default=default.small.layers)
    ap.add_argument("--steps", type=int, default=default.small.steps)
    ap.add_argument("--lr", type=float, default=default.small.lr)
    ap.add_argument("--batch-size", type=int, default=default.small.batch_size)
    ap.add_argument("--heads", type=int, default=default.small.heads, help="attention heads per layer")
    ap.add_argument("--rope-theta", type=float, default=default.small.rope_theta, help="the rotary base")
    ap.add_argument(
        "--warmup",
        type=int,
        default=default.small.warmup,
        help="first steps on each domain's shortest problems only (BaseSpec.warmup)",
    )
    ap.add_argument("--domain-b", default=default.domain_b, choices=[d for d in DOMAINS if d != "a"])
    ap.add_argument(
        "--n-train-b",
        type=int,
        default=None,
        help="B problems in the bases' training mix (default: the world's, pipeline.world_config)",
    )
    ap.add_argument(
        "--one-token-names",
        action=argparse.BooleanOptionalAction,
        default=default.one_token_names,
        help="the tokenizer's scheme for names (make_tokenizer)",
    )
    ap.add_argument(
        "--check-step",
        type=int,
        default=None,
        help="the step of the early check (with --check-only; default: the world's, the transfers world's "
        f"{world_config('b-copied').small.check_step})",
    )
    ap.add_argument(
        "--check-only", action="store_true", help="train each draw only to --check-step and record its B lookups there"
    )
    ap.add_argument("--label", default="default", help="names the recipe in --out and its work folders")
    ap.add_argument("--work", default="runs/base-draws")
    ap.add_argument("--out", default="results/miniworld-base-draws.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    world = world_config(a.domain_b)
    n_train_b = a.n_train_b or world.n_train_b
    check_step = a.check_step or (world.small.check_step if a.check_only else None)
    if a.check_only and not check_step:
        raise SystemExit(f"--check-only needs --check-step: the {a.domain_b} world has no early check.")
    spec = BaseSpec(
        a.hidden, a.layers, a.steps, a.lr, a.batch_size, a.heads, a.rope_theta, a.warmup, check_step=check_step
    )
    tok = make_tokenizer(a.one_token_names)
    out = Path(a.out)
    rows = json.loads(out.read_text())["draws"] if out.is_file() else []
    for seed in a.seeds:
        cfg = dataclasses.replace(world, seed=seed, one_token_names=a.one_token_names, n_train_b=n_train_b, small=spec)
        data = splits(cfg)
        for i in range(a.first_draw, a.first_draw + a.draws):
            folder = Path(a.work) / a.label / f"seed{seed}-draw{i}"
            start = time.perf_counter()
            if a.check_only:
                lookup: list[float] = []

                def measure(model, lookup: list[float] = lookup, val_b: list[dict] = data["val_b"]) -> bool:
                    lookup.append(lookup_accuracy(model, tok, val_b))
                    return False  # stop there: the check is all that is asked

                train_base(
                    tok,
                    data["train_a"] + data["train_b"],
                    spec,
                    cfg,
                    folder,
                    seed=seed * 1000 + i,
                    keep=measure,
                    warmup=warmup_rows(data["train_a"], data["train_b"]) if a.warmup else None,
                )
                result = {"check_step": check_step, "lookup": lookup[0]}
            else:
                acc = draw_base(tok, cfg, data, "small", folder, seed=seed * 1000 + i, check=False)
                result = {"val_a": acc["a"], "val_b": acc["b"]}
            row = {
                "label": a.label,
                "recipe": dataclasses.asdict(spec),
                "domain_b": a.domain_b,
                "n_train_b": n_train_b,
                "one_token_names": a.one_token_names,
                "seed": seed,
                "draw": i,
                **result,
                "seconds": round(time.perf_counter() - start),
            }
            rows = [r for r in rows if (r["label"], r["seed"], r["draw"]) != (a.label, seed, i)] + [row]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"what": __doc__.splitlines()[0], "draws": rows}, indent=2))
            print(
                f"{a.label} seed {seed} draw {i}: "
                + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
                + f"  ({row['seconds']} s)",
                flush=True,
            )

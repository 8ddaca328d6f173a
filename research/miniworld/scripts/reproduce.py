"""Reproduce the paper's claims in a world small enough to train here (2 CPU cores), in-domain and out.

    python research/miniworld/scripts/reproduce.py                            # train seed 3 (the shipped one), evaluate
    python research/miniworld/scripts/reproduce.py --seed 0                    # the whole pipeline again, another seed
    python research/miniworld/scripts/reproduce.py --eval-only                 # evaluate the shipped checkpoints
    python research/miniworld/scripts/reproduce.py --eval-only --test-seed 7   # on freshly drawn test problems
    python research/miniworld/scripts/reproduce.py --ship                      # train seed 3, ship its checkpoints
    python research/miniworld/scripts/reproduce.py --mixed-only                # v3 beside seed 3's shipped world
    python research/miniworld/scripts/reproduce.py --summarize-only            # the across-seeds summaries again

Every run also trains and evaluates the mixed-traffic world (v3, `taro_miniworld.mixed`): reward model B, a
router over both reward models (`taro_multi`), the headroom on validation and the `mixed` / `transfer_mixed`
blocks. `--mixed-only` does only that, beside a world whose v2 is trained already (for the shipped seed, copies of
the shipped checkpoints: its bases and reward model A are reused), and adds its keys to the seed's results file.

Seed K trains into runs/miniworld-seedK/checkpoints (never into the installed package: --ship copies them there
after training). The shipped seed (3) writes results/miniworld.{json,md,png}, seed K
results/miniworld-pipeline-seedK.*, --test-seed N results/miniworld-seedN.*. Every run refreshes the across-seeds
summary in results/miniworld.json. A seed drawn again for v3 whose world differs from the one its committed v2 file
describes is kept beside it as results/miniworld-v3-seedK.* (run with --results-dir runs/..., then copy it there
under that name); --summarize-only folds it into the summaries.
"""

import argparse
import dataclasses
import json
import logging

from taro_miniworld import MiniworldConfig, reproduce
from taro_miniworld.mixed import MIXED_BLOCKS, reproduce_mixed
from taro_miniworld.pipeline import BLOCKS, SHIPPED_SEED, refresh_summaries, ship_checkpoints, world_config
from taro_miniworld.problems import DOMAINS

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-only", action="store_true", help="skip training; evaluate existing checkpoints")
    ap.add_argument(
        "--seed", type=int, default=SHIPPED_SEED, help="pipeline seed: problems, initialisations, training order"
    )
    ap.add_argument("--test-seed", type=int, default=None, help="draw fresh held-out test sets with this seed")
    ap.add_argument("--resume", action="store_true", help="skip training stages a killed run completed")
    default = MiniworldConfig()
    ap.add_argument(
        "--domain-b",
        default=default.domain_b,
        choices=[d for d in DOMAINS if d != "a"],
        help="domain B: comparisons (the default), or transfers in one of their solution formats "
        "(problems.B_VARIANTS, with the transfers world's settings, pipeline.TRANSFERS); another than "
        "the default is another world, with its own checkpoints, work folder and result files",
    )
    ap.add_argument(
        "--one-token-names",
        action=argparse.BooleanOptionalAction,
        default=default.one_token_names,
        help="tokenize each name as one token wherever it is written (make_tokenizer); "
        "--no-one-token-names is another world",
    )
    ap.add_argument(
        "--n-train-b", type=int, default=None, help="B problems in the bases' training mix (default: the world's)"
    )
    ap.add_argument(
        "--small-steps",
        type=int,
        default=None,
        help="training steps of each small-base draw (default: the world's; see base_draws.py)",
    )
    ap.add_argument(
        "--small-check-step",
        type=int,
        default=None,
        help="step at which a small-base draw that has not learned B's lookups by name is given up "
        "(transfers only; 0: never; below --small-steps; default: the world's)",
    )
    ap.add_argument(
        "--small-snapshots",
        type=int,
        nargs="*",
        default=None,
        help="steps at which a small-base draw's weights are also kept, to be taken there if it ends "
        "above its range (between --small-check-step and --small-steps; none given: no "
        "snapshots; default: the world's)",
    )
    ap.add_argument(
        "--processes",
        type=int,
        default=2,
        help="worker processes sharing the CPU: with 2 or more, the small base's training track and the "
        "larger base's run at once, and evaluations this many at a time (1: all in this one)",
    )
    ap.add_argument(
        "--mixed-only",
        action="store_true",
        help="only the mixed-traffic world (v3) beside a trained v2 world; with --eval-only, evaluate it only",
    )
    ap.add_argument(
        "--reuse-shipped",
        action="store_true",
        help="with --mixed-only on the shipped seed: copy its reward model B and NLL router over both too, and "
        "train only the other candidate routers (mixed.ROUTER_CANDIDATES)",
    )
    ap.add_argument(
        "--summarize-only",
        action="store_true",
        help="only recompute the across-seeds summaries in RESULTS_DIR/miniworld.{json,md} from the seed files there",
    )
    ap.add_argument("--results-dir", default="results")
    ap.add_argument(
        "--checkpoints",
        default=None,
        help="where training writes (default: runs/miniworld-seedK/checkpoints) and --eval-only reads "
        "(default: the package's shipped ones for the shipped seed)",
    )
    ap.add_argument(
        "--ship",
        action="store_true",
        help="after training, copy the checkpoints into the installed taro_miniworld package",
    )
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    world = world_config(a.domain_b, seed=a.seed, one_token_names=a.one_token_names)
    small = {}  # only the flags given change the world's small-base recipe
    if a.small_steps is not None:
        small["steps"] = a.small_steps
    if a.small_snapshots is not None:
        small["snapshots"] = tuple(a.small_snapshots)
    if a.small_check_step is not None:
        small["check_step"] = a.small_check_step or None  # 0: no check
    cfg = dataclasses.replace(
        world, n_train_b=a.n_train_b or world.n_train_b, small=dataclasses.replace(world.small, **small)
    )
    if a.ship and a.eval_only:
        ap.error("--ship copies what training wrote: leave out --eval-only")
    if a.summarize_only:
        summary = refresh_summaries(a.results_dir)["mixed_seeds"]
        print(json.dumps({k: v for k, v in summary.items() if k != "per_seed"}, indent=2))
        raise SystemExit(0)
    if a.mixed_only:
        results = reproduce_mixed(
            a.results_dir, cfg, a.test_seed, a.resume, a.processes, train=not a.eval_only, reuse=a.reuse_shipped
        )
    else:
        results = reproduce(
            a.results_dir, a.checkpoints, a.eval_only, a.test_seed, cfg, resume=a.resume, processes=a.processes
        )
    if a.ship:
        print(f"Shipped into {ship_checkpoints(a.checkpoints or f'runs/miniworld-seed{a.seed}/checkpoints')}")
    for block in MIXED_BLOCKS:
        if block in results:
            print(f"-- {block} (headroom on validation {results['headroom_on_validation']:+.3f})")
            for name, r in results[block].items():
                p = results["paired"].get(f"{block}: taro_multi vs {name}")
                print(
                    f"{name:12s} {r['accuracy']:.3f}  CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}  "
                    f"A {r['by_domain']['a']:.3f}  B {r['by_domain']['b']:.3f}"
                    + ("" if p is None else f"  McNemar p (taro_multi vs it) {p:.3g}")
                )
    for block in BLOCKS:
        if block not in results:
            continue
        print(f"-- {block}")
        for name, r in results[block].items():
            p = results["paired"].get(f"{block}: taro vs {name}")
            print(
                f"{name:20s} {r['accuracy']:.3f}  CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}  "
                f"equations right {r['step_accuracy']:.3f}  {r['tokens_per_s']:.0f} tok/s"
                + ("" if p is None else f"  McNemar p (taro vs it) {p:.3g}")
            )

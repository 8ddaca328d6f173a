"""How often does a base recipe's draw learn domain B's lookups by name, and land in range? (experiment, not shipped)

Each job trains one draw of one recipe from scratch, as `pipeline.train_base` does (same data, batches, optimiser and
schedule), on the training problems of its own pipeline seed, and records `lookup_accuracy` on the validation
problems at several steps and the greedy validation accuracy on A and B at the end. No test problem is read.
Jobs run in worker processes (one thread each), interleaved so that every recipe gets its draws evenly if the run
is cut short; each finished draw is appended to `OUT/sweep.jsonl`.

    python results/miniworld-recipe-sweep.py --out DIR --workers 14 --device cuda --draws 10

Run on lent H200s (rows in `miniworld-recipe-sweep.jsonl`; those of 2026-11-27 carry `sweep`): 2026-11-26, every
recipe up to S64x2h4-3e-3-B90, 3-4 draws each; 2026-11-27 #1, `--workers 16 --draws 8 --recipes S64x2h4-3e-3
S64x2h4-3e-3-wd0.1 S64x2h4-3e-3-b95 S64x2h2-3e-3 L64x8h4-2e-3 L64x8h4-2e-3-b95` (48 draws, 8.7 min); 2026-11-27 #2,
`--workers 16 --draws 16 --first-draw 8 --eval-steps 2000 2500 --recipes S64x2h4-3e-3` (the pipeline's small
recipe on 16 further seeds, graded at steps 2000 and 2500 too; 3.0 min). A draw repeated on the GPU is not always
the same to the bit (CUDA's backward kernels are not deterministic): of six repeated draws, four were identical.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import torch

from transformers_taro.data import gsm8k_solutions, traces_from_solutions
from taro_miniworld.pipeline import (BASE_RANGE, BaseSpec, MiniworldConfig, _base_model,
                                                  base_optimiser,
                                                  _distance_from_range, lookup_accuracy, splits, training_step,
                                                  validation_accuracy)
from taro_miniworld.problems import make_tokenizer
from transformers_taro.training import TraceCollator

LARGE_PROBES = (200, 400, 600, 800, 1000, 1200)
SMALL_PROBES = (250, 500, 750, 1000, 1500, 2000, 2500)
# name: (which base, spec, share of B in the batches or None for the pipeline's mix, probe steps[, AdamW settings
# replacing `base_optimiser`'s])
RECIPES = {
    "L128x2h4-2e-3": ("large", BaseSpec(128, 2, 1500, 2e-3), None, LARGE_PROBES),
    "L128x2h8-2e-3": ("large", BaseSpec(128, 2, 1500, 2e-3, heads=8), None, LARGE_PROBES),
    "L128x2h4-1e-3": ("large", BaseSpec(128, 2, 1500, 1e-3), None, LARGE_PROBES),
    "L128x2h4-3e-3": ("large", BaseSpec(128, 2, 1500, 3e-3), None, LARGE_PROBES),
    "L88x4h4-2e-3": ("large", BaseSpec(88, 4, 1500, 2e-3), None, LARGE_PROBES),
    "L104x3h4-2e-3": ("large", BaseSpec(104, 3, 1500, 2e-3), None, LARGE_PROBES),
    "L64x8h4-2e-3": ("large", BaseSpec(64, 8, 1500, 2e-3), None, LARGE_PROBES),
    "L128x2h4-2e-3-B90": ("large", BaseSpec(128, 2, 1500, 2e-3), 0.9, LARGE_PROBES),
    "S64x2h4-3e-3": ("small", BaseSpec(64, 2, 3000, 3e-3), None, SMALL_PROBES),
    "S64x2h8-3e-3": ("small", BaseSpec(64, 2, 3000, 3e-3, heads=8), None, SMALL_PROBES),
    "S64x2h4-5e-3": ("small", BaseSpec(64, 2, 3000, 5e-3), None, SMALL_PROBES),
    "S48x4h4-3e-3": ("small", BaseSpec(48, 4, 3000, 3e-3), None, SMALL_PROBES),
    "S56x3h4-3e-3": ("small", BaseSpec(56, 3, 3000, 3e-3), None, SMALL_PROBES),
    "S64x2h4-3e-3-B90": ("small", BaseSpec(64, 2, 3000, 3e-3), 0.9, SMALL_PROBES),
    # the second sweep (2026-11-27): the optimiser and the head width, on the pipeline's own shapes
    "S64x2h4-3e-3-wd0.1": ("small", BaseSpec(64, 2, 3000, 3e-3), None, SMALL_PROBES, {"weight_decay": 0.1}),
    "S64x2h4-3e-3-b95": ("small", BaseSpec(64, 2, 3000, 3e-3), None, SMALL_PROBES, {"betas": (0.9, 0.95)}),
    "S64x2h2-3e-3": ("small", BaseSpec(64, 2, 3000, 3e-3, heads=2), None, SMALL_PROBES),
    "L64x8h4-2e-3-b95": ("large", BaseSpec(64, 8, 1500, 2e-3), None, LARGE_PROBES, {"betas": (0.9, 0.95)}),
}


@functools.lru_cache(maxsize=4)
def _data(seed: int) -> dict:
    return splits(MiniworldConfig(seed=seed, n_test=1))


def _validate(model, tok, data: dict) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return validation_accuracy(model, tok, MiniworldConfig(), data, Path(tmp))


def run_draw(recipe: str, seed: int, draw: int, device: str, steps: int | None = None,
             eval_steps: tuple[int, ...] = ()) -> dict:
    which, spec, b_share, probes, *adamw = RECIPES[recipe]
    if steps:  # a smoke test
        spec, probes = replace(spec, steps=steps), tuple(x for x in probes if x < steps)
    torch.set_num_threads(1)
    tok = make_tokenizer()
    data = _data(seed)
    init = seed * 1000 + 700 + draw
    model = _base_model(tok, spec, init).to(device)
    collate = TraceCollator(tok, max_length=1024)
    pools = [traces_from_solutions(gsm8k_solutions(data[k])[0], tok) for k in ("train_a", "train_b")]
    opt, sched = base_optimiser(model, spec)
    for group in opt.param_groups:
        group.update(*adamw)
    gen = torch.Generator().manual_seed(init)
    traces = pools[0] + pools[1]
    lookups, val_at, start = {}, {}, time.perf_counter()
    model.train()
    for step in range(spec.steps):
        if step in probes or step in eval_steps:
            model.eval()
            if step in probes:
                lookups[step] = round(lookup_accuracy(model, tok, data["val_b"]), 4)
            if step in eval_steps:  # greedy validation accuracy of an intermediate checkpoint
                val_at[step] = _validate(model, tok, data)
            model.train()
        if b_share is None:
            idx = torch.randint(len(traces), (spec.batch_size,), generator=gen).tolist()
            chosen = [traces[i] for i in idx]
        else:
            is_b = (torch.rand(spec.batch_size, generator=gen) < b_share).tolist()
            chosen = [pools[b][torch.randint(len(pools[b]), (1,), generator=gen).item()] for b in is_b]
        loss = training_step(model, collate(chosen), opt, sched)
    model.eval()
    lookups[spec.steps] = round(lookup_accuracy(model, tok, data["val_b"]), 4)
    train_s = time.perf_counter() - start
    acc = _validate(model, tok, data)
    return {"recipe": recipe, "which": which, "seed": seed, "draw": draw, "init": init, "lookups": lookups,
            "val": acc, "in_range": _distance_from_range(acc, BASE_RANGE[which]) == 0, "loss": round(loss.item(), 4),
            "train_s": round(train_s, 1), "device": device,
            **({"val_at": val_at} if val_at else {}),
            **({"adamw": adamw[0]} if adamw else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--draws", type=int, default=10, help="draws per recipe, each on pipeline seed 10 + i")
    p.add_argument("--first-draw", type=int, default=0, help="start at pipeline seed 10 + this")
    p.add_argument("--recipes", nargs="*", default=list(RECIPES))
    p.add_argument("--steps", type=int, help="override every recipe's steps (a smoke test)")
    p.add_argument("--eval-steps", type=int, nargs="*", default=[],
                   help="also grade the validation problems greedily at these steps (intermediate checkpoints)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done = set()
    log = args.out / "sweep.jsonl"
    if log.is_file():
        done = {(r["recipe"], r["seed"], r["draw"]) for r in map(json.loads, log.read_text().splitlines())
                if "error" not in r}
    jobs = [(r, 10 + i, 0) for i in range(args.first_draw, args.first_draw + args.draws) for r in args.recipes
            if (r, 10 + i, 0) not in done]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool, log.open("a") as f:
        futures = {pool.submit(run_draw, *job, args.device, args.steps, tuple(args.eval_steps)): job for job in jobs}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as e:  # one failed draw must not lose the others
                traceback.print_exc()
                row = {**dict(zip(("recipe", "seed", "draw"), futures[fut])), "error": repr(e)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

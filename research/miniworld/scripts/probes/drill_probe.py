"""Probe: do lookup drills in the bases' training mix make a small draw learn B's lookups by name?"""
import argparse, dataclasses, json, logging, random, time, sys
from pathlib import Path
from taro_miniworld import MiniworldConfig
from taro_miniworld.pipeline import world_config, BaseSpec, lookup_accuracy, splits, train_base
from taro_miniworld.problems import NAMES, ITEMS, make_tokenizer


def drill(rng, steps):
    first, second = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    held = {first: rng.randint(10, 99), second: rng.randint(10, 99)}
    start = dict(held)
    clauses, lines = [], [f"(0) {first} {held[first]}, {second} {held[second]}"]
    for k in range(1, steps + 1):
        if k > 1 and rng.random() < 0.3:
            held = {first: held[second], second: held[first]}
            clauses.append(f"({k}) they swap")
            lines.append(f"({k}) they swap: {first} {held[first]}, {second} {held[second]}")
            continue
        who = rng.choice([first, second]); other = second if who == first else first
        held[who] = rng.randint(10, 99)
        clauses.append(f"({k}) {who} has {held[who]}")
        lines.append(f"({k}) {who} has {held[who]}: {who} {held[who]}, {other} {held[other]}")
    asked = rng.choice([first, second])
    lines.append(f"now: {asked} {held[asked]}")
    q = (f"{first} has {start[first]} {item} and {second} has {start[second]}, then " + ", ".join(clauses)
         + f". How many {item} does {asked} have now?")
    return {"question": q, "answer": "\n".join(lines) + f"\n#### {held[asked]}", "steps": steps}


ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int); ap.add_argument("--draws", type=int, nargs="+")
ap.add_argument("--n-drill", type=int, default=4000); ap.add_argument("--min-steps", type=int, default=2)
ap.add_argument("--max-steps", type=int, default=6); ap.add_argument("--check-step", type=int, default=1000)
ap.add_argument("--label", default="drill"); ap.add_argument("--out", default="results/miniworld-probes-2026-11-27/drill.jsonl")
a = ap.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
cfg = world_config("b-copied", seed=a.seed)  # the transfers world, as MiniworldConfig() was then
tok = make_tokenizer()
data = splits(cfg)
rng = random.Random(a.seed + 70_000)
drills = [drill(rng, rng.randint(a.min_steps, a.max_steps)) for _ in range(a.n_drill)]
print(drills[0]["question"]); print(drills[0]["answer"])
spec = dataclasses.replace(cfg.small, check_step=a.check_step, snapshots=())
for i in a.draws:
    lookups = []
    def measure(model):
        for s in (0,):
            lookups.append(lookup_accuracy(model, tok, data["val_b"]))
        return False
    t = time.time()
    train_base(tok, data["train_a"] + data["train_b"] + drills, spec, cfg, Path(f"runs/probes/{a.label}-s{a.seed}-d{i}"),
               seed=a.seed * 1000 + i, keep=measure)
    row = {"label": a.label, "seed": a.seed, "draw": i, "n_drill": a.n_drill, "check_step": a.check_step,
           "lookup": lookups[0], "seconds": round(time.time() - t)}
    print(row, flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")

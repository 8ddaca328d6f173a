"""Probe: does an ALiBi base (Bloom: a built-in recency bias) learn B's lookups by name more reliably?"""
import argparse, dataclasses, json, logging, time
from pathlib import Path
import torch
from taro_miniworld import MiniworldConfig
from taro_miniworld import pipeline
from taro_miniworld.pipeline import world_config, lookup_accuracy, splits, train_base
from taro_miniworld.problems import make_tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int); ap.add_argument("--draws", type=int, nargs="+")
ap.add_argument("--arch", default="bloom"); ap.add_argument("--hidden", type=int, default=64)
ap.add_argument("--layers", type=int, default=2); ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--check-steps", type=int, nargs="+", default=[500, 1000])
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--label", default="alibi"); ap.add_argument("--out", default="results/miniworld-probes-2026-11-27/alibi.jsonl")
a = ap.parse_args()


def bloom(tokenizer, spec, seed):
    from transformers import BloomConfig, BloomForCausalLM
    torch.manual_seed(seed)
    return BloomForCausalLM(BloomConfig(vocab_size=len(tokenizer), hidden_size=spec.hidden, n_layer=spec.layers,
                                        n_head=spec.heads, pad_token_id=tokenizer.pad_token_id,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))

if a.arch == "bloom":
    pipeline._base_model = bloom
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
cfg = world_config("b-copied", seed=a.seed)  # the transfers world, as MiniworldConfig() was then
tok = make_tokenizer()
data = splits(cfg)
# check at several steps: train_base calls keep only at check_step, so call it from a wrapper over training_step
for i in a.draws:
    lookups = {}
    orig = pipeline.training_step
    count = [0]
    def step(model, batch, opt, sched):
        if count[0] in a.check_steps:
            model.eval(); lookups[count[0]] = round(lookup_accuracy(model, tok, data["val_b"]), 4); model.train()
            print(i, lookups, flush=True)
        count[0] += 1
        return orig(model, batch, opt, sched)
    pipeline.training_step = step
    spec = dataclasses.replace(cfg.small, hidden=a.hidden, layers=a.layers, lr=a.lr, check_step=max(a.check_steps) + 1,
                               snapshots=(), steps=a.steps)
    t = time.time()
    train_base(tok, data["train_a"] + data["train_b"], spec, cfg, Path(f"runs/probes/{a.label}-s{a.seed}-d{i}"),
               seed=a.seed * 1000 + i, keep=lambda m: False)
    pipeline.training_step = orig
    row = {"label": a.label, "arch": a.arch, "seed": a.seed, "draw": i, "lookups": lookups, "seconds": round(time.time() - t)}
    print(row, flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")

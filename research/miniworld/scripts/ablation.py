"""Router objectives in the mini-world: objective x mixture, chosen on validation, measured on test.

    python research/miniworld/scripts/ablation.py   # after reproduce.py (the shipped seed): its checkpoints and runs

Each variant trains a router next to the shipped small base and reward model, on the same A traces as `taro` (variants
with a margin also read step pairs made from those problems, incorrect steps by corrupting gold ones), (variants with an
outcome term roll out and grade those problems' answers: the router as a policy over its weight, REINFORCE; see
`transformers_taro.training.outcome`), then is evaluated on A's and B's validation problems (where the choice is made)
and on every test block, paired with the base and the fixed alpha chosen on A's validation. Also records the headroom:
on each test block where every fixed alpha was run, the share of problems that at least one of them solves (what
choosing the best fixed alpha per problem, by an oracle, would reach). Writes results/miniworld-ablation.json."""

import argparse
import json
import logging
import time
from pathlib import Path

from taro_miniworld.pipeline import (
    BLOCKS,
    CHECKPOINTS,
    SHIPPED_SEED,
    MiniworldConfig,
    MiniworldEvaluator,
    splits,
    train_miniworld_router,
)
from transformers_taro.evaluation.runner import best_alpha, paired_comparison
from transformers_taro.guide import TARoGuide

VARIANTS = {
    "product, nll": {},  # the shipped `taro` router, already trained and evaluated
    "geometric, nll": {"mixture": "geometric"},
    "product, nll + margin": {"margin_weight": 1.0, "margin_beta": 1.0},
    "geometric, nll + margin": {"mixture": "geometric", "margin_weight": 1.0, "margin_beta": 1.0},
    # Starts where GenARM is best on A's validation and moves the weight per token only where graded rollouts
    # say it helps.
    "product, outcome": {"nll_weight": 0.0, "outcome_weight": 1.0, "alpha_init": "fixed alpha chosen on A val"},
    "product, nll + outcome": {"outcome_weight": 1.0},
    "product, outcome, sigma 1": {
        "nll_weight": 0.0,
        "outcome_weight": 1.0,
        "outcome_sigma": 1.0,
        "alpha_init": "fixed alpha chosen on A val",
    },
}
OUTCOME = {"outcome_problems": 16, "outcome_rollouts": 4, "outcome_sigma": 0.5}


def headroom(folder: Path, alphas: tuple[float, ...]) -> dict | None:
    """Best fixed alpha and the per-problem oracle over all fixed alphas, on the runs under `folder`."""
    runs = [folder.parent / f"{folder.name}-genarm-{a:g}" / "generations.jsonl" for a in alphas]
    if not all(f.is_file() for f in runs):
        return None
    correct = [[json.loads(line)["correct"] for line in f.open()] for f in runs]
    n = len(correct[0])
    return {
        "best_fixed": max(sum(c) / n for c in correct),
        "oracle_over_fixed_alphas": sum(any(c[i] for c in correct) for i in range(n)) / n,
        "n": n,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="which variants to run")
    ap.add_argument("--checkpoints", default=str(CHECKPOINTS))
    ap.add_argument("--work-dir", default=f"runs/miniworld-seed{SHIPPED_SEED}")
    ap.add_argument("--results", default="results/miniworld-ablation.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    cfg, ckpt, work = MiniworldConfig(), Path(a.checkpoints), Path(a.work_dir)
    data = splits(cfg)
    out = Path(a.results)
    results = json.loads(out.read_text()) if out.is_file() else {}
    ev = MiniworldEvaluator(cfg, ckpt, data, work / "eval")
    # The fixed alpha chosen on A's validation, from the pipeline's own validation runs.
    val = {
        a: json.loads((ev.folder("small", "genarm", "val_a", a) / "report.json").read_text())["accuracy"]
        for a in cfg.alphas
    }
    best_value = best_alpha(val)
    best = f"genarm alpha={best_value:g}"
    results["headroom"] = {
        block: headroom(work / f"eval-test{cfg.test_seed}" / f"{base}-test_{domain}", cfg.alphas)
        for block, (base, domain) in BLOCKS.items()
    }
    for name in a.variants:
        method = "taro" if name == "product, nll" else "ablation-" + name.replace(", ", "-").replace(" + ", "+")
        objective = {
            key: best_value if value == "fixed alpha chosen on A val" else value
            for key, value in VARIANTS[name].items()
        }
        if objective.get("outcome_weight"):
            objective = {**OUTCOME, "outcome_max_new_tokens": cfg.max_new_tokens, **objective}
        if objective.get("margin_weight"):  # step pairs from the same A problems the traces come from
            objective["pairs_data"] = str(work / "taro.jsonl")
        start = time.time()
        if method != "taro":
            folder = work / "ablation" / method
            if not (folder / "guide_config.json").is_file():
                train_miniworld_router(cfg, ckpt, data["router_a"], work, method, target=folder, **objective)
            ev.guides[method] = TARoGuide.from_pretrained(folder)
        trained = time.time() - start
        logs = sorted((work / method).glob("checkpoint-*/trainer_state.json"))
        history = json.loads(logs[-1].read_text())["log_history"] if logs else []
        last = [h for h in history if "alpha_std" in h][-1:] or [{}]
        rollout = [h["rollout_accuracy"] for h in history if "rollout_accuracy" in h]
        row = {
            "objective": objective,
            "training_seconds": round(trained),
            "train_alpha_mean": last[0].get("alpha_mean"),
            "train_alpha_std": last[0].get("alpha_std"),
            **({"rollout_accuracy_first_last": [rollout[0], rollout[-1]]} if rollout else {}),
        }
        ev.out = work / "eval"
        for d in "ab":
            row[f"val_{d}"] = ev.run("small", method, f"val_{d}")[0]["accuracy"]
        ev.out = work / f"eval-test{cfg.test_seed}"
        for block, (base, domain) in BLOCKS.items():
            summary, folder = ev.run(base, method, f"test_{domain}")
            row[block] = {k: summary[k] for k in ("accuracy", "ci95", "mean_alpha")}
            for other, method_alpha in (("base", ("base", None)), (best, ("genarm", best_value))):
                other_folder = ev.folder(base, method_alpha[0], f"test_{domain}", method_alpha[1])
                while not (other_folder / "report.json").is_file():  # written by reproduce.py, maybe still running
                    time.sleep(30)
                row[block][f"p vs {other}"] = paired_comparison(folder, str(other_folder))["mcnemar_p"]
        results[name] = row
        out.write_text(json.dumps(results, indent=2))
        print(name, json.dumps(row))

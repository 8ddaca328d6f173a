"""Mini-world v3: mixed traffic of two domains, a specialist reward model for each, and a router over both.

On traffic that mixes A (arithmetic chains) and B (comparisons), any fixed pair of weights `(alpha_A, alpha_B)`
must compromise between the domains. A router over both reward models (`taro_multi`) picks the two weights per
token with no domain label. The world is v2's as shipped (problems, tokenizer, bases, recipe, reward model A);
what is new:

1. Reward model B (`train_reward_model_b`): the small base fine-tuned on a pool of B problems (`rm_b`, disjoint
   from every other pool), then GenARM's loss on B step pairs: reward model A's recipe on B. Saved as the GenARM
   guide `guide-b/`.
2. Headroom on validation only (`headroom`, 400 A + 400 B problems): each reward model alone at each alpha on each
   domain; the best fixed pair over `PAIR_GRID`² on the mixed set; the per-domain weights (each problem decoded
   with its own domain's best single-model alpha: a perfect domain classifier in front of two GenARM guides).
3. `taro_multi` (`train_router_multi`): one router over both reward models, next to the small base, on correct
   traces of 2000 A + 2000 B router problems, no domain labels. Saved with both reward models as `guide-multi/`.
4. Mixed test traffic (`evaluate_mixed`), small base (`mixed`) and the larger one (`transfer_mixed`, never trained
   beside): base, `genarm_a`, `genarm_b`, `fixed_pair`, `per_domain`, `taro`, `taro_ab`, `taro_multi`, with
   bootstrap intervals, McNemar's exact test of `taro_multi` against each, the breakdown by domain, and the router's
   mean weight per reward model, per domain and per token type.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from transformers_taro.evaluation.runner import best_alpha, bootstrap_ci, load_records, mcnemar, run_eval
from transformers_taro.evaluation.session import Session
from transformers_taro.files import write_json
from transformers_taro.generation import Generation
from transformers_taro.guide import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training.oracle import ORACLE_FILE, OracleUninformative
from transformers_taro.visualize import AlphaScale, alpha_html, alpha_png, model_sections, token_strings

from .pipeline import (
    TARO_METHODS,
    MiniworldConfig,
    Stages,
    _worker_threads,
    miniworld_task,
    train_miniworld_reward_model,
    train_miniworld_router,
)
from .problems import NAMES

logger = logging.getLogger(__name__)

GUIDE_B, GUIDE_MULTI = "guide-b", "guide-multi"
ORACLE_GRID = [0.0, 0.5, 1.0, 2.0, 4.0]
"""Each reward model's weights in the oracle objective's grid (`RouterTrainingConfig.oracle_grid`): 25 pairs."""
ORACLE = dict(nll_weight=0.0, oracle_weight=1.0, oracle_grid=ORACLE_GRID, oracle_problems=800)
OUTCOME = dict(nll_weight=0.0, outcome_weight=1.0, outcome_problems=16, outcome_rollouts=4)
GRID_TEMPERATURES = (1.0, 0.3, 0.1)
"""The decoding temperatures (`TARoRouterConfig.grid_temperature`) each oracle router is scored at on validation."""
ROUTER_CANDIDATES: dict[str, dict[str, Any]] = {
    "taro_multi_nll": {},
    "taro_multi_oracle": ORACLE,
    "taro_multi_oracle_dists": {**ORACLE, "use_reward_hidden_states": False},
    # From the fixed pair chosen on seed 3's validation: the policy starts at GenARM's weights.
    "taro_multi_outcome": {**OUTCOME, "alpha_init": 0.25},
    # From the NLL candidate's router: the policy starts where NLL left it.
    "taro_multi_outcome_from_nll": {**OUTCOME, "init_router": "taro_multi_nll"},
}
"""The routers over both reward models that validation chooses among (objective x features), each a
`RouterTrainingConfig` change to `train_miniworld_router`'s settings: guided NLL on correct traces (the router
shipped until the oracle objective), the oracle objective with the reward models' hidden states among the features,
the oracle objective on the distributions' features alone, and the outcome objective (REINFORCE on graded rollouts
of the router's pools, 16 problems x 4 rollouts a step), from the validated fixed weight or from the NLL router. The
one best on mixed validation is `taro_multi`."""
PAIR_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
"""The fixed pairs `(alpha_A, alpha_B)` searched on mixed validation traffic."""
MIXED_BLOCKS = {"mixed": "small", "transfer_mixed": "large"}
"""Each mixed-traffic block: which base decodes (the larger one was never trained beside the guides)."""
MIXED_METHODS = (
    "base",
    "genarm_a",
    "genarm_b",
    "fixed_pair",
    "per_domain",
    "taro",
    "taro_ab",
    "taro_multi_nll",
    "taro_multi",
)
"""Decoded on mixed test traffic: `taro_multi` is the candidate router chosen on validation; `taro_multi_nll` the
NLL-trained one (the same decodes when NLL is chosen)."""

Spec = tuple
"""What decodes: `("base",)`, `("a", alpha)` / `("b", alpha)` (one reward model, GenARM), `("pair", alpha_A,
alpha_B)` (both, fixed weights), or `(method,)` for a router guide (`taro`, `taro_ab`, `taro_multi`)."""
Job = tuple[str, Spec, str]
"""One evaluation: base ("small" or "large"), spec, split."""


def spec_name(spec: Spec) -> str:
    return "-".join(str(part) if isinstance(part, str) else f"{part:g}" for part in spec)


def job_folder(out: Path, job: Job) -> Path:
    """Where a job's records are: `out/<base>-<split>-<spec>`."""
    base, spec, split = job
    return out / f"{base}-{split}-{spec_name(spec)}"


# -- training ------------------------------------------------------------------------------------------------------


def train_reward_model_b(
    cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, resume: bool
) -> None:
    """Reward model B: reward model A's recipe (`train_miniworld_reward_model`) on the `rm_b` pool, next to the small
    base; saved as the GenARM guide `ckpt/guide-b` (its alpha is chosen on validation by `headroom`)."""
    folder = work / "rm-b"
    train_miniworld_reward_model(cfg, ckpt, data["rm_b"], folder, resume)
    rm = load_causal_lm(str(folder / "reward_model"))
    TARoGuide(rm, alpha=1.0, tokenizer=load_tokenizer(str(ckpt / "small"))).save_pretrained(ckpt / GUIDE_B)


def candidate_folder(method: str) -> str:
    """A candidate router's guide folder in the checkpoints: `guide-multi-nll`, `guide-multi-oracle`, ..."""
    return "guide-multi-" + method.removeprefix("taro_multi_").replace("_", "-")


def train_router_multi(
    cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, method: str = "taro_multi_nll"
) -> None:
    """A candidate router over reward models A and B (`ROUTER_CANDIDATES[method]`), next to the small base, on the
    router pools of both domains (no domain labels), saved with both reward models as `ckpt/<candidate_folder>`.
    The NLL one trains as `taro_ab` does (correct traces of all 2000 A + 2000 B problems); the oracle ones decode
    the first `oracle_problems` of those problems, A and B alternating, at every grid point (shared between oracle
    candidates: the grid file is copied, not decoded again)."""
    reward_models = {"a": str(ckpt / "guide-a" / "reward_model"), "b": str(ckpt / GUIDE_B / "reward_model")}
    objective = ROUTER_CANDIDATES[method]
    if objective.get("outcome_weight"):  # half the NLL router's steps: each decodes 64 rollouts (300 at full size)
        steps = max(1, cfg.router_steps // 2)
        objective = {**objective, "outcome_max_new_tokens": cfg.max_new_tokens, "max_steps": steps}
    if objective.get("init_router"):
        objective = {**objective, "init_router": str(ckpt / candidate_folder(objective["init_router"]) / "router")}
    if objective.get("oracle_weight"):
        rows = [row for pair in zip(data["router_a"], data["router_b"]) for row in pair]
        objective = {**objective, "oracle_max_new_tokens": cfg.max_new_tokens, "oracle_batch_size": cfg.eval_batch_size}
        grid_file = work / method / ORACLE_FILE
        decoded = [work / m / ORACLE_FILE for m in ROUTER_CANDIDATES if m != method]
        if not grid_file.is_file() and any(f.is_file() for f in decoded):
            grid_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(next(f for f in decoded if f.is_file()), grid_file)
    else:
        rows = data["router_a"] + data["router_b"]
    try:
        target = ckpt / candidate_folder(method)
        train_miniworld_router(cfg, ckpt, rows, work, method, target, reward_models, **objective)
    except OracleUninformative as err:  # a world whose problems every weight solves alike: not a candidate there
        logger.warning("%s is not a candidate: %s", method, err)


def train_mixed(
    cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, resume: bool, reuse: bool = False
) -> None:
    """The v3 stages, after v2's (`train_all`): reward model B, then the candidate routers over both. Journalled in
    `work/stages-mixed.json`, so `resume` skips what a killed run completed. With `reuse`, reward model B and any
    candidate router already in `ckpt` (copied from the shipped world) are kept, not trained again."""
    (work / "mixed").mkdir(parents=True, exist_ok=True)
    stages = Stages(work / "mixed", cfg, resume)
    if not (reuse and (ckpt / GUIDE_B).is_dir()):
        stages.run("reward model b", train_reward_model_b, cfg, ckpt, data, work, resume)
    for method in ROUTER_CANDIDATES:
        if not (reuse and (ckpt / candidate_folder(method)).is_dir()):
            stages.run(f"router {method}", train_router_multi, cfg, ckpt, data, work, method)


# -- decoding ------------------------------------------------------------------------------------------------------


class Decoder:
    """The bases and guides of a trained world, loaded once; decodes a `Job` into its own folder (`run_eval`: what a
    folder already holds is reused)."""

    def __init__(self, cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], out: Path):
        self.cfg, self.data, self.out = cfg, data, out
        self.tok = load_tokenizer(str(ckpt / "small"))
        self.bases = {name: load_causal_lm(str(ckpt / name)) for name in ("small", "large")}
        self.single = {"a": TARoGuide.from_pretrained(ckpt / "guide-a"), "b": TARoGuide.from_pretrained(ckpt / GUIDE_B)}
        folders = {**TARO_METHODS, **{m: candidate_folder(m) for m in ROUTER_CANDIDATES}}
        self.routers = {m: TARoGuide.from_pretrained(ckpt / f) for m, f in folders.items() if (ckpt / f).is_dir()}
        models = {d: guide.reward_model for d, guide in self.single.items()}
        self.pair = TARoGuide(models, alpha={"a": 1.0, "b": 1.0})

    def guide(self, spec: Spec) -> TARoGuide | None:
        kind = spec[0]
        if kind == "base":
            return None
        if kind in self.single:
            return self.single[kind].fixed(spec[1])
        if kind == "pair":
            return self.pair.fixed({"a": spec[1], "b": spec[2]})
        if len(spec) == 2:  # a grid router at another decoding temperature
            return at_temperature(self.routers[kind], spec[1])
        return self.routers[kind]

    def run(self, job: Job) -> Path:
        base, spec, split = job
        folder = job_folder(self.out, job)
        run_eval(
            Session(self.bases[base], self.tok, self.guide(spec)),
            miniworld_task(split, self.data[split]),
            str(folder),
            batch_size=self.cfg.eval_batch_size,
            max_new_tokens=self.cfg.max_new_tokens,
            progress=False,
        )
        return folder


def at_temperature(guide: TARoGuide, temperature: float) -> TARoGuide:
    """The guide with a copy of its grid router that decodes at `temperature` (`TARoRouterConfig.grid_temperature`)."""
    import copy

    router = copy.deepcopy(guide.router)
    router.config.grid_temperature = temperature
    return guide._replace(router=router)


_DECODER: Decoder | None = None  # a worker process's own (`decode_all`)


def _start_decoder(threads: int, *args: Any) -> None:
    global _DECODER
    _worker_threads(threads)
    _DECODER = Decoder(*args)


def _decode(job: Job) -> None:
    assert _DECODER is not None
    _DECODER.run(job)


def decode_all(
    cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], out: Path, jobs: list[Job], processes: int
) -> dict[Job, list[dict]]:
    """Every job's records (`load_records`), decoding those not done yet, `processes` at a time."""
    jobs = list(dict.fromkeys(jobs))
    if processes <= 1:
        decoder = Decoder(cfg, ckpt, data, out)
        return {job: load_records(decoder.run(job)) for job in jobs}
    # The slowest first (larger base, two reward models), so that no worker is left alone with a long one at the end.
    slowest = sorted(
        jobs, key=lambda job: (job[0] == "large", job[1][0].startswith(("pair", "taro_multi"))), reverse=True
    )
    with ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_decoder,
        initargs=(max(1, torch.get_num_threads() // processes), cfg, ckpt, data, out),
    ) as pool:
        list(pool.map(_decode, slowest))
    return {job: load_records(job_folder(out, job)) for job in jobs}


def _accuracy(records: list[dict]) -> float:
    return sum(r["correct"] for r in records) / len(records)


# -- the reward models, on held-out pairs ----------------------------------------------------------------------------


def reward_model_accuracy(ckpt: Path, data: dict[str, list[dict]]) -> dict[str, Any]:
    """Held-out pairwise accuracy (the gold step scored above the gold step with its result corrupted) and GenARM
    loss of each reward model on each domain's validation problems, which neither trained on."""
    from transformers_taro.data import gsm8k_solutions, step_pairs_from_solutions
    from transformers_taro.training import evaluate_reward_model

    tok = load_tokenizer(str(ckpt / "small"))
    pairs = {d: step_pairs_from_solutions(gsm8k_solutions(data[f"val_{d}"])[0], tok, seed=0) for d in "ab"}
    out = {}
    for rm, folder in (("a", ckpt / "guide-a"), ("b", ckpt / GUIDE_B)):
        model = load_causal_lm(str(folder / "reward_model"))
        with torch.no_grad():
            out[f"rm_{rm}"] = {d: evaluate_reward_model(model, tok, pairs[d], beta=0.5) for d in "ab"}
    return out


# -- headroom, on validation -----------------------------------------------------------------------------------------


def headroom(cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, processes: int = 1) -> dict:
    """What fixed weights reach on validation, before any router over both is trained: each reward model alone at
    each alpha on each domain, the best fixed pair on the mixed set (`PAIR_GRID`², ties to the least total weight),
    and per-domain weights (each domain at its own reward model's best alpha). `headroom_on_validation` is
    per-domain minus the best pair: the room a router without domain labels has."""
    single = [("small", (rm, a), f"val_{d}") for rm in "ab" for a in cfg.alphas for d in "ab"]
    pairs = [("small", ("pair", x, y), f"val_{d}") for x in PAIR_GRID for y in PAIR_GRID for d in "ab"]
    runs = decode_all(cfg, ckpt, data, work / "eval-mixed-val", [*single, *pairs], processes)
    acc = {job: _accuracy(records) for job, records in runs.items()}
    n = {d: len(data[f"val_{d}"]) for d in "ab"}

    def mixed(x: float, y: float) -> float:
        return sum(acc["small", ("pair", x, y), f"val_{d}"] * n[d] for d in "ab") / sum(n.values())

    by_alpha = {rm: {d: {a: acc["small", (rm, a), f"val_{d}"] for a in cfg.alphas} for d in "ab"} for rm in "ab"}
    best = {rm: best_alpha(by_alpha[rm][rm]) for rm in "ab"}  # each reward model on its own domain's validation
    grid = {(x, y): mixed(x, y) for x in PAIR_GRID for y in PAIR_GRID}
    pair = max(sorted(grid, key=lambda p: (p[0] + p[1], p)), key=lambda p: grid[p])
    per_domain = sum(by_alpha[d][d][best[d]] * n[d] for d in "ab") / sum(n.values())
    return {
        "validation_single": {
            f"rm_{rm}": {d: {f"{a:g}": v for a, v in by_alpha[rm][d].items()} for d in "ab"} for rm in "ab"
        },
        "best_single_alpha_on_validation": best,
        "validation_pairs": {f"{x:g},{y:g}": v for (x, y), v in grid.items()},
        "best_pair_on_validation": {"a": pair[0], "b": pair[1], "accuracy": grid[pair]},
        "per_domain_on_validation": per_domain,
        "base_on_validation": grid[0.0, 0.0],
        "headroom_on_validation": per_domain - grid[pair],
    }


def choose_router(
    cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, processes: int = 1
) -> dict[str, Any]:
    """Every trained candidate router (`ROUTER_CANDIDATES`) on mixed validation (small base), and the best: ties go
    to the earlier candidate. The chosen one is copied to `ckpt/guide-multi`, the guide `taro demo` and the shipped
    checkpoints use."""
    from transformers_taro.files import copy_folder

    trained = [m for m in ROUTER_CANDIDATES if (ckpt / candidate_folder(m)).is_dir()]
    specs = [(m, t) if ROUTER_CANDIDATES[m].get("oracle_weight") else (m,) for m in trained for t in GRID_TEMPERATURES]
    specs = list(dict.fromkeys(specs))  # an NLL router has no temperature: listed once
    jobs = [("small", spec, f"val_{d}") for spec in specs for d in "ab"]
    runs = decode_all(cfg, ckpt, data, work / "eval-mixed-val", jobs, processes)
    scores = {}
    for spec in specs:
        rows = {d: runs["small", spec, f"val_{d}"] for d in "ab"}
        correct = [r["correct"] for d in "ab" for r in rows[d]]
        means = {d: [r["mean_alpha"] for r in rows[d] if r["mean_alpha"]] for d in "ab"}
        scores[spec_name(spec)] = {
            "accuracy": sum(correct) / len(correct),
            "by_domain": {d: _accuracy(rows[d]) for d in "ab"},
            "mean_weight": {d: {f"rm_{k}": statistics.mean(w[k] for w in means[d]) for k in "ab"} for d in "ab"},
        }
    chosen = max(specs, key=lambda spec: (scores[spec_name(spec)]["accuracy"], -specs.index(spec)))
    copy_folder(ckpt / candidate_folder(chosen[0]), ckpt / GUIDE_MULTI)
    if len(chosen) == 2:  # the chosen decoding temperature travels with the shipped router
        config_file = ckpt / GUIDE_MULTI / "router" / "config.json"
        write_json(config_file, {**json.loads(config_file.read_text()), "grid_temperature": chosen[1]})
    return {"router_candidates_on_validation": scores, "router": list(chosen)}


# -- mixed test traffic ----------------------------------------------------------------------------------------------


def method_jobs(base: str, method: str, choice: dict) -> dict[str, Job]:
    """The job decoding each domain's test problems for `method` (`per_domain`: each domain's own reward model)."""
    best, pair = choice["best_single_alpha_on_validation"], choice["best_pair_on_validation"]
    spec = {
        "base": {d: ("base",) for d in "ab"},
        "genarm_a": {d: ("a", best["a"]) for d in "ab"},
        "genarm_b": {d: ("b", best["b"]) for d in "ab"},
        "fixed_pair": {d: ("pair", pair["a"], pair["b"]) for d in "ab"},
        "per_domain": {d: (d, best[d]) for d in "ab"},
        "taro_multi": {d: tuple(choice["router"]) for d in "ab"},
    }.get(method, {d: (method,) for d in "ab"})
    return {d: (base, spec[d], f"test_{d}") for d in "ab"}


def token_type(text: str) -> str:
    """What a generated token is, for the router's weights by token type."""
    stripped = text.strip()
    if "\n" in text:
        return "line end"
    if stripped.isdigit():
        return "digit"
    if stripped and all(c in "+-*/=<>" for c in stripped):
        return "operator"
    if stripped in NAMES:
        return "name"
    return "other"


def weights_by_type(records: dict[str, list[dict]], tok: Any) -> dict[str, Any]:
    """Mean weight of each reward model, per domain and per token type, over the generated tokens of a router run."""
    out: dict[str, Any] = {}
    for d, rows in records.items():
        sums: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for r in rows:
            for text, weights in zip(tok.convert_ids_to_tokens(r["token_ids"]), r["alphas"]):
                kind = token_type(tok.convert_tokens_to_string([text]))
                for key in (kind, "all"):
                    sums.setdefault(key, [0.0] * len(weights))
                    sums[key] = [s + w for s, w in zip(sums[key], weights)]
                    counts[key] = counts.get(key, 0) + 1
        out[d] = {
            kind: {"tokens": counts[kind], **{f"rm_{m}": s / counts[kind] for m, s in zip("ab", sums[kind])}}
            for kind in sums
        }
    return out


def evaluate_mixed(
    cfg: MiniworldConfig,
    ckpt: Path,
    data: dict[str, list[dict]],
    work: Path,
    test_seed: int,
    choice: dict,
    processes: int = 1,
) -> dict[str, Any]:
    """The mixed blocks: for each base and method, accuracy on the test problems of both domains together (and by
    domain), a bootstrap interval, and McNemar's exact test of `taro_multi` against every other method on the same
    problems."""
    methods = list(MIXED_METHODS)
    planned = {block: {m: method_jobs(base, m, choice) for m in methods} for block, base in MIXED_BLOCKS.items()}
    jobs = [job for block in planned.values() for per in block.values() for job in per.values()]
    runs = decode_all(cfg, ckpt, data, work / f"eval-mixed-test{test_seed}", jobs, processes)
    tok = load_tokenizer(str(ckpt / "small"))
    results: dict[str, Any] = {"paired": {}, "paired_detail": {}, "weights_by_token_type": {}}
    for block, per_method in planned.items():
        correct = {m: [r["correct"] for d in "ab" for r in runs[per_method[m][d]]] for m in methods}
        results[block] = {}
        for m in methods:
            ci = bootstrap_ci(correct[m])
            results[block][m] = {
                "accuracy": sum(correct[m]) / len(correct[m]),
                "n": len(correct[m]),
                "ci95": list(ci),
                "by_domain": {d: _accuracy(runs[per_method[m][d]]) for d in "ab"},
            }
            if m.startswith("taro_multi"):
                means = {d: [r["mean_alpha"] for r in runs[per_method[m][d]] if r["mean_alpha"]] for d in "ab"}
                results[block][m]["mean_weight"] = {
                    d: {f"rm_{k}": statistics.mean(w[k] for w in means[d]) for k in "ab"} for d in "ab"
                }
        for other in methods:
            if other != "taro_multi":
                test = mcnemar(correct["taro_multi"], correct[other])
                key = f"{block}: taro_multi vs {other}"
                results["paired"][key] = test["mcnemar_p"]
                results["paired_detail"][key] = test
        for m in ("taro_multi", "taro_multi_nll"):
            multi = {d: runs[per_method[m][d]] for d in "ab"}
            key = block if m == "taro_multi" else f"{block}: {m}"
            results["weights_by_token_type"][key] = weights_by_type(multi, tok)
    return results


def token_pictures(
    ckpt: Path, data: dict[str, list[dict]], work: Path, test_seed: int, out_stem: Path, router: Spec
) -> list[Path]:
    """One A and one B test problem decoded by `taro_multi` (the chosen candidate, `router`) on the small base, both
    weights per token: HTML and PNG (the PNG needs matplotlib; without it, the HTML alone)."""
    tok = load_tokenizer(str(ckpt / "small"))
    sections = []
    for d, title in (("a", "A (arithmetic)"), ("b", "B (comparisons)")):
        job = ("small", router, f"test_{d}")
        record = load_records(job_folder(work / f"eval-mixed-test{test_seed}", job))[0]
        gen = Generation(record["output"], record["token_ids"], record["alphas"], ["a", "b"])
        heading = f"{title}: {data[f'test_{d}'][record['index']]['question']}"
        sections += model_sections(heading, token_strings(tok, record["token_ids"]), gen)
    scale = AlphaScale.fit([s[2] for s in sections])
    title = "taro_multi: the weight of reward model a and of reward model b at each token"
    written = [out_stem.with_suffix(".html")]
    written[0].write_text(alpha_html(sections, scale, title=title), encoding="utf-8")
    try:
        alpha_png(sections, str(out_stem.with_suffix(".png")), scale)
        written.append(out_stem.with_suffix(".png"))
    except ImportError as err:
        logger.warning("No PNG of the weights (%s); the HTML is %s.", err, written[0])
    return written


def run_mixed(
    cfg: MiniworldConfig,
    ckpt: Path,
    data: dict[str, list[dict]],
    work: Path,
    test_seed: int,
    processes: int = 1,
    pictures: Path | None = None,
) -> dict[str, Any]:
    """Headroom on validation (recorded in `work/mixed-choice.json`, and as `guide-multi`'s fixed weights), then the
    mixed test blocks; the keys the results file gains."""
    start = time.time()
    choice = headroom(cfg, ckpt, data, work, processes)
    choice.update(choose_router(cfg, ckpt, data, work, processes))
    write_json(work / "mixed-choice.json", choice)
    pair, best_b = choice["best_pair_on_validation"], choice["best_single_alpha_on_validation"]["b"]
    recorded = {
        GUIDE_B: (best_b, "B", f"{len(data['val_b'])} B problems", list(cfg.alphas), "rm_b", "b"),
        GUIDE_MULTI: (
            {"a": pair["a"], "b": pair["b"]},
            "mixed",
            f"{len(data['val_a'])} A + {len(data['val_b'])} B problems",
            f"{list(PAIR_GRID)} for each reward model",
            None,
            None,
        ),
    }
    for folder, (alpha, what, problems, grid, rm, domain) in recorded.items():
        config_file = ckpt / folder / "guide_config.json"
        if not config_file.is_file():
            continue
        config = json.loads(config_file.read_text())
        config["alpha"] = alpha
        config["alpha_selection"] = {
            "split": f"validation ({what}): {problems}",
            "grid": grid,
            "accuracy": pair["accuracy"] if rm is None else choice["validation_single"][rm][domain][f"{alpha:g}"],
            "rule": f"highest {what} validation accuracy; ties go to the least guidance",
        }
        write_json(config_file, config)
    results = {k: choice[k] for k in choice}
    results["reward_models_on_heldout_pairs"] = reward_model_accuracy(ckpt, data)
    results.update(evaluate_mixed(cfg, ckpt, data, work, test_seed, choice, processes))
    if pictures is not None:
        token_pictures(ckpt, data, work, test_seed, pictures, tuple(choice["router"]))
    results["mixed_seconds"] = round(time.time() - start)
    return results


def add_mixed(results: dict[str, Any], mixed: dict[str, Any]) -> dict[str, Any]:
    """`results` (a seed's results file) with the mixed-traffic keys added: its paired tests gain the mixed ones,
    and nothing of v2's is replaced."""
    for key in ("paired", "paired_detail"):
        results.setdefault(key, {}).update(mixed.get(key, {}))
    results.update({k: v for k, v in mixed.items() if k not in ("paired", "paired_detail")})
    return results


def mixed_seeds(results_files: list[Path]) -> dict[str, Any]:
    """Across seeds: `taro_multi` minus `fixed_pair` and minus `per_domain`, per block, mean and sd."""
    per_seed: dict[str, Any] = {}
    for f in results_files:
        r = json.loads(f.read_text())
        if "mixed" not in r:
            continue
        per_seed[str(r["config"]["seed"])] = {
            block: {
                f"taro_multi - {m}": r[block]["taro_multi"]["accuracy"] - r[block][m]["accuracy"]
                for m in ("fixed_pair", "per_domain")
            }
            | {"p vs fixed_pair": r["paired"][f"{block}: taro_multi vs fixed_pair"]}
            for block in MIXED_BLOCKS
        }
    summary: dict[str, Any] = {"per_seed": per_seed}
    for block in MIXED_BLOCKS:
        for m in ("fixed_pair", "per_domain"):
            d = [s[block][f"taro_multi - {m}"] for s in per_seed.values()]
            if d:
                summary[f"{block}: taro_multi - {m}"] = {
                    "mean": statistics.mean(d),
                    "sd": statistics.stdev(d) if len(d) > 1 else None,
                    "per_seed": d,
                }
    return summary


MIXED_TITLES = {
    "mixed": "Mixed traffic (A and B test problems), small base",
    "transfer_mixed": "Mixed traffic, larger base (~4x; never trained beside the guides)",
}


def mixed_markdown(results: dict[str, Any]) -> str:
    """The mixed-traffic tables, the headroom on validation, and the seeds summary if there is one."""
    pair = results["best_pair_on_validation"]
    best = results["best_single_alpha_on_validation"]
    lines = []
    heldout = results.get("reward_models_on_heldout_pairs")
    if heldout:
        lines.append(
            "Reward models' pairwise accuracy on held-out step pairs (validation problems; gold step against it "
            "with its result corrupted): "
            + "; ".join(
                f"{rm.replace('rm_', 'RM ').upper()}: A {v['a']['accuracy']:.3f}, B {v['b']['accuracy']:.3f}"
                for rm, v in heldout.items()
            )
            + ".\n"
        )
    lines += [
        f"Chosen on validation (400 A + 400 B): genarm_a alpha {best['a']:g}, genarm_b alpha {best['b']:g}, "
        f"fixed_pair (alpha_A, alpha_B) = ({pair['a']:g}, {pair['b']:g}). Headroom (per_domain minus fixed_pair, on "
        f"validation): {results['headroom_on_validation']:+.3f}.\n"
    ]
    for block, title in MIXED_TITLES.items():
        if block not in results:
            continue
        lines += [
            f"### {title}",
            "",
            "| method | accuracy | 95% CI | A | B | McNemar p, taro_multi vs it |",
            "|---|---|---|---|---|---|",
        ]
        for m, r in results[block].items():
            p = results["paired"].get(f"{block}: taro_multi vs {m}")
            lines.append(
                f"| {m} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | {r['by_domain']['a']:.3f} | "
                f"{r['by_domain']['b']:.3f} | {'' if p is None else f'{p:.3g}'} |"
            )
        weights = results[block]["taro_multi"].get("mean_weight")
        if weights:
            lines.append(
                "\ntaro_multi's mean weights: "
                + "; ".join(f"on {d.upper()}: a {w['rm_a']:.2f}, b {w['rm_b']:.2f}" for d, w in weights.items())
            )
        lines.append("")
    seeds = results.get("mixed_seeds")
    if seeds:
        rows = []
        for key, v in seeds.items():
            if key == "per_seed":
                continue
            sd = "" if v["sd"] is None else f"{v['sd']:.3f}"
            rows.append(f"| {key} | {v['mean']:+.3f} | {sd} | " + ", ".join(f"{x:+.3f}" for x in v["per_seed"]) + " |")
        lines += [
            f"### Across seeds ({', '.join(seeds['per_seed'])})",
            "",
            "| block: difference | mean | sd | per seed |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    return "\n".join(lines)


def reproduce_mixed(
    results_dir: str = "results",
    cfg: MiniworldConfig | None = None,
    test_seed: int | None = None,
    resume: bool = False,
    processes: int = 2,
    train: bool = True,
    reuse: bool = False,
) -> dict[str, Any]:
    """v3 on a world whose v2 is trained and evaluated already: train reward model B and the candidate routers
    beside its checkpoints (for the shipped seed, copies of the shipped ones: its bases and reward model A are
    reused, never retrained), evaluate the mixed blocks and add them to the seed's results file, whose v2 keys stay
    as they are. Without `train`, the checkpoints must hold `guide-b/` and the candidates already. With `reuse`
    (shipped seed), the shipped reward model B and router over both (as the NLL candidate) are copied too, and
    only the other candidates train."""
    from transformers_taro.files import copy_folder

    from .pipeline import CHECKPOINTS, SHIPPED_SEED, markdown, splits

    cfg = cfg or MiniworldConfig()
    shipped = cfg.seed == SHIPPED_SEED
    work = Path(f"runs/miniworld-seed{cfg.seed}")
    ckpt = work / "checkpoints"
    if shipped:
        sources = ("small", "large", *TARO_METHODS.values()) + (() if train and not reuse else (GUIDE_B,))
        for name in sources:
            copy_folder(CHECKPOINTS / name, ckpt / name)
        if reuse or not train:
            copy_folder(CHECKPOINTS / GUIDE_MULTI, ckpt / candidate_folder("taro_multi_nll"))
    test = cfg.test_seed if test_seed is None else test_seed
    data = splits(cfg, test)
    res = Path(results_dir)
    if train:
        start = time.time()
        train_mixed(cfg, ckpt, data, work, resume, reuse)
        logger.warning("mixed-traffic training took %d s", time.time() - start)
    stem = ("miniworld" if shipped else f"miniworld-pipeline-seed{cfg.seed}") + (
        "" if test_seed is None else f"-seed{test_seed}"
    )
    file = res / f"{stem}.json"
    results = json.loads(file.read_text()) if file.is_file() else {"config": {"seed": cfg.seed, "test_seed": test}}
    pictures = res / "miniworld-v3-tokens" if shipped and test_seed is None else None
    add_mixed(results, run_mixed(cfg, ckpt, data, work, test, processes, pictures))
    results["config"]["n_rm_b"] = cfg.n_rm_b
    write_json(file, results)
    if test_seed is None:
        from .pipeline import _seed_files, refresh_summaries

        results["mixed_seeds"] = mixed_seeds([file, *_seed_files(res, stem)])
        write_json(file, results)
        if not shipped and (res / "miniworld.json").is_file():  # the main file carries every seed's summary
            refresh_summaries(res)
    (res / f"{stem}.md").write_text(markdown(results))
    return results

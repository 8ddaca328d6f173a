"""The mini-world reproduction: train everything from nothing, then evaluate the paper's claims.

1. Problems in two domains (`problems.py`): A, arithmetic chains, and B, comparisons between people. Disjoint
   pools for the bases (A and B), the reward model (A only), the router (A, plus B for the `taro_ab` variant),
   validation and test (`splits`).
2. Two Llama bases trained from scratch on A and B: a small one and one with ~4x its parameters.
3. A reward model from domain A only: the small base fine-tuned on the reward model's A problems, then
   `train_reward_model` on A step pairs whose incorrect steps it samples and labels automatically. Two routers
   (`train_router`, small base only): `taro` on A traces (the paper's setting) and `taro_ab` on A and B traces
   (correct traces only, no reward labels: a user who trains the router on the traffic they will serve).
4. Evaluation on held-out problems, per block: small base on A (`methods`) and B (`domain_b`), larger base on A
   (`transfer`) and B (`transfer_b`). The fixed alpha compared everywhere is the one best on A's validation
   problems (what a GenARM user would pick); B's own best on B's validation is reported for information. Every
   comparison with TARo is McNemar's exact test on the same problems (`paired`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from transformers_taro.data import arithmetic_is_correct, equations_in, gsm8k_solutions, traces_from_solutions
from transformers_taro.evaluation.runner import best_alpha, paired_comparison, record_alpha_choice, run_eval
from transformers_taro.evaluation.session import Session
from transformers_taro.extras import require
from transformers_taro.files import copy_final_files, copy_folder, write_json
from transformers_taro.graders import extract_number, grade_number
from transformers_taro.guide import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.tasks import Task, numeric_gold
from transformers_taro.training import (
    RewardModelConfig,
    RouterTrainingConfig,
    TraceCollator,
    train_reward_model,
    train_router,
)

from .problems import B_VARIANTS, COMPARE, NAMES, make_problems, make_tokenizer

logger = logging.getLogger(__name__)

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""The shipped mini-world: `small/`, `large/` (bases), `guide-a/` and `guide-ab/` (TARoGuide folders)."""
SHIPPED_SEED = 3
"""The pipeline seed whose checkpoints ship: of the seeds run from nothing with this configuration (README,
"Mini-world v2"), the one whose bases lie inside their validation ranges by the widest margin (`range_margins`:
the smallest margin first, ties broken by the next; a test checks it against the committed results)."""
BLOCKS = {
    "methods": ("small", "a"),
    "domain_b": ("small", "b"),
    "transfer": ("large", "a"),
    "transfer_b": ("large", "b"),
}
"""Each result block: which base, which domain's test problems."""
TARO_METHODS = {"taro": "guide-a", "taro_ab": "guide-ab"}


@dataclass(frozen=True)
class BaseSpec:
    """A base model trained from scratch: its shape, its training budget, and when a draw of it is given up.

    With `check_step` (the transfers world's draws, `TRANSFERS`), a draw is stopped after that many steps unless its
    teacher-forced accuracy on domain B's lookups by name (`lookup_accuracy`, validation problems) has reached
    `min_lookup`: in the draws probed, one that had not learned them by then had not learned them at the end either
    (results/miniworld-v2-transfers/README.md, "Drawing the bases"), so the remaining steps are saved.

    `snapshots`: steps (after the check) at which the weights are also saved, in `step-<N>/` of the draw's folder.
    A draw that ends too strong (above its range on a domain, below it on none) is taken at the latest snapshot
    whose validation accuracy lies in range (`draw_base`): an earlier point of the same run is the same model, less
    trained.
    """

    hidden: int
    layers: int
    steps: int
    lr: float
    batch_size: int = 32
    heads: int = 4  # attention heads per layer (key/value heads too)
    rope_theta: float = 10000.0  # LlamaConfig's rotary base
    warmup: int = 0  # steps at the start whose batches hold only each domain's shortest problems (`warmup_rows`)
    check_step: int | None = None
    min_lookup: float = 0.83
    snapshots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"heads={self.heads} must be a positive divisor of hidden={self.hidden}.")
        if self.check_step is not None and not 0 < self.check_step < self.steps:
            raise ValueError(
                f"check_step={self.check_step} must lie between 0 and steps={self.steps} (exclusive), "
                "or be None for no early check."
            )
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup={self.warmup} must lie between 0 and steps={self.steps} (exclusive).")
        if any(not (self.check_step or 0) < step < self.steps for step in self.snapshots):
            raise ValueError(
                f"snapshots={self.snapshots} must lie after check_step={self.check_step} and before "
                f"steps={self.steps}: a snapshot is a point a finished draw may be taken at."
            )

    @property
    def name(self) -> str:
        return f"{self.hidden}x{self.layers}"


@dataclass
class MiniworldConfig:
    """Everything `reproduce` does, in one place; the defaults are what the README's figures were measured with."""

    seed: int = SHIPPED_SEED
    test_seed: int = 1
    n_train: int = 4000  # A problems the bases are trained on
    n_train_b: int = 4000  # B problems the bases are trained on
    n_rm: int = 4000  # further A problems whose step pairs train the reward model
    n_router: int = 2000  # further A problems whose solutions train the router; `taro_ab` adds as many of B
    n_rm_b: int = 4000  # further B problems: reward model B's (mixed traffic, `mixed.py`), A's recipe on B
    # Domain B: comparisons between people (`problems.make_comparison_problem`). The transfers between two people
    # (`B_VARIANTS`, e.g. "b-copied") are another world, with their own files and settings (`TRANSFERS`)
    domain_b: str = COMPARE
    one_token_names: bool = True  # the tokenizer's scheme for names (`make_tokenizer`); False is another world
    n_val: int = 400  # per domain
    n_test: int = 3000  # per domain
    # The larger base has 4x the small one's non-embedding parameters (12 * hidden^2 * layers). Each is drawn until
    # its validation accuracy lies in `BASE_RANGE` (`choose_base`), so guidance has room to act both ways; a draw
    # that ends above its range is taken at its latest snapshot in range. Snapshots every 250 steps: grading one
    # costs a few seconds, and a draw's accuracy moves by 0.1-0.15 between two 500 steps apart.
    small: BaseSpec = BaseSpec(64, 2, 3000, 3e-3, snapshots=(1500, 1750, 2000, 2250, 2500, 2750))
    small_candidates: int = 6  # at most this many initialisations of the small base (`large_candidates`: the larger)
    # Twice the width, not four times the depth: the transfers world's 64x8 larger base (`TRANSFERS`), which learned
    # its lookups by name more often, learns arithmetic far slower here (seed 5's first draw ended at a training
    # loss of 0.16 and A 0.25 / B 0.31 on validation; the small base was at 0.057 after 1000 steps)
    large: BaseSpec = BaseSpec(128, 2, 1500, 2e-3, snapshots=(750, 1000, 1250))
    large_candidates: int = 4
    rm_sft_steps: int = 1000
    rm_sft_lr: float = 1e-3
    rm_steps: int = 600
    rm_lr: float = 5e-4
    rm_beta: float = 0.5
    rm_nll: float = 1.0  # RewardModelConfig.cpo_alpha
    router_steps: int = 600
    router_lr: float = 3e-3
    router_alpha_reg: float = 0.0
    router_reward_hidden_states: bool = True
    alpha_max: float = 4.0
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    max_new_tokens: int = 160
    eval_batch_size: int = 250


TRANSFERS: dict[str, Any] = {
    "domain_b": "b-copied",
    # 3 B problems for every A problem, or the small base learns A before it learns to look a person's total up by
    # name, which transfers need (results/miniworld-v2-transfers/README.md)
    "n_train_b": 12000,
    # A draw that has not learned B's lookups by name at its check step is given up there: it had not learned them
    # at the end either, in every draw probed
    "small": replace(MiniworldConfig.small, check_step=1000, min_lookup=0.83),
    "small_candidates": 16,
    "large": BaseSpec(64, 8, 1500, 2e-3, check_step=1200, min_lookup=0.85),
    "large_candidates": 6,
}
"""The transfers world's settings, the shipped world until 2026-11-27 (`world_config("b-copied")`): domain B as
transfers between two people, whose lookups by name the small base learns in about one draw of 7-10."""


def world_config(domain_b: str = COMPARE, **changes: Any) -> MiniworldConfig:
    """The configuration of the world whose domain B is `domain_b`: the defaults for comparisons, `TRANSFERS` for a
    transfer variant (`problems.B_VARIANTS`); `changes` on top."""
    base = {**TRANSFERS, "domain_b": domain_b} if domain_b in B_VARIANTS else {"domain_b": domain_b}
    return MiniworldConfig(**{**base, **changes})


def _base_model(tokenizer: PreTrainedTokenizerBase, spec: BaseSpec, seed: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    hidden = spec.hidden
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=1024,
        rope_theta=spec.rope_theta,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(cfg)


def warmup_rows(*domains: list[dict]) -> list[dict]:
    """The problems with the fewest steps in each domain's list (A: 2, B: 1): what a base's first `warmup` steps
    are trained on."""
    fewest = [min(r["steps"] for r in rows) for rows in domains]
    return [r for rows, least in zip(domains, fewest) for r in rows if r["steps"] == least]


def train_base(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict],
    spec: BaseSpec,
    cfg: MiniworldConfig,
    out: Path,
    init: Path | None = None,
    seed: int | None = None,
    keep: Callable[[Any], bool] | None = None,
    warmup: list[dict] | None = None,
) -> bool:
    """Supervised training on the gold solutions (loss on the solution tokens), from scratch or from `init`.

    `seed` (default `cfg.seed`) draws the initial weights and the batches. With `keep`, training stops after
    `spec.check_step` steps unless `keep(model)` holds: then nothing is saved and False is returned. The weights
    after each of `spec.snapshots` steps are saved in `out / "step-<N>"`. The first `spec.warmup` steps draw their
    batches from `warmup` (`warmup_rows`) instead of `rows`."""
    seed = cfg.seed if seed is None else seed
    if spec.warmup and not warmup:
        raise ValueError(f"spec.warmup={spec.warmup} steps need the problems to warm up on (warmup=warmup_rows(...)).")
    model = load_causal_lm(str(init)) if init else _base_model(tokenizer, spec, seed)
    traces, warm = (traces_from_solutions(gsm8k_solutions(r)[0], tokenizer) if r else [] for r in (rows, warmup))
    collate = TraceCollator(tokenizer, max_length=1024)
    opt, sched = base_optimiser(model, spec)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(spec.steps):
        if keep is not None and step == spec.check_step:
            model.eval()
            if not keep(model):
                return False
            model.train()
        if step in spec.snapshots:
            model.save_pretrained(out / f"step-{step}")
            tokenizer.save_pretrained(out / f"step-{step}")
        # Random batches, not batches of like length: those save the 30% of padding, but are nearly all A or all B
        # (B's solutions are longer), and the small base then learned neither (the transfers
        # world: results/miniworld-v2-transfers/README.md, "How long a seed takes").
        pool = warm if step < spec.warmup else traces
        idx = torch.randint(len(pool), (spec.batch_size,), generator=gen).tolist()
        loss = training_step(model, collate([pool[i] for i in idx]), opt, sched)
        if step % 100 == 0 or step == spec.steps - 1:
            logger.warning("base %s step %d loss %.4f", spec.name, step, loss.item())
            _claim_idle_threads()
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return True


def base_optimiser(model: Any, spec: BaseSpec) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser and schedule a base trains with (`train_base`): AdamW, one cycle over `spec.steps`."""
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=spec.steps, pct_start=0.05)


def training_step(
    model: Any, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler
) -> torch.Tensor:
    """One optimiser step of a base on a collated batch of solutions (loss on the solution tokens); the loss."""
    batch = {k: v.to(model.device) for k, v in batch.items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss


@torch.no_grad()
def lookup_accuracy(model: Any, tokenizer: PreTrainedTokenizerBase, rows: list[dict], batch_size: int = 200) -> float:
    """Teacher-forced share of the totals looked up by name in domain-B transfer solutions (`B_VARIANTS`) whose
    first digit is the model's top prediction: the transfers world's early check of a draw.

    A lookup is a number written right after a name that opens a clause of the solution (after ":" or ","): each
    person's total before a step, the swapped totals, the second starting total; each must be found by name in the
    question or in the line that last changed it. A model that has not learned to find a total by name takes one of
    the two people's at random on the harder ones and plateaus near 0.8. One forward pass over the gold solutions
    (a second or two for 400 problems), so that a draw can be judged early in its training.
    """
    solutions, _ = gsm8k_solutions(rows)
    collate = TraceCollator(tokenizer, max_length=1024)
    names = torch.tensor(tokenizer.convert_tokens_to_ids([f" {n} " for n in NAMES]))
    digits = torch.tensor(tokenizer.convert_tokens_to_ids(list("0123456789")))
    openers = torch.tensor(tokenizer.convert_tokens_to_ids([":", ","]))
    traces = traces_from_solutions(solutions, tokenizer)
    right = total = 0
    for i in range(0, len(traces), batch_size):
        batch = collate(traces[i : i + batch_size])
        ids, labels = batch["input_ids"], batch["labels"]
        predicted = (
            model(input_ids=ids.to(model.device), attention_mask=batch["attention_mask"].to(model.device))
            .logits.argmax(-1)
            .cpu()
        )
        after_opener = torch.zeros_like(ids, dtype=torch.bool)
        after_opener[:, 1:] = torch.isin(ids[:, :-1], openers)
        lookups = torch.isin(ids, names) & after_opener & torch.isin(labels, digits)
        right += (predicted == labels)[lookups].sum().item()
        total += lookups.sum().item()
    if not total:
        raise ValueError("lookup_accuracy needs domain-B problems (totals looked up by name); none were given.")
    return right / total


def step_accuracy(outputs: list[str]) -> float:
    """Share of the written equations whose arithmetic is right: informative even where few answers are."""
    equations = [line for text in outputs for line in text.splitlines() if equations_in(line)]
    return sum(arithmetic_is_correct(line) for line in equations) / max(1, len(equations))


def miniworld_task(name: str, rows: list[dict]) -> Task:
    """Mini-world problems as a task: graded on the last number of the answer, as GSM8K."""
    return Task(name, rows, lambda r: r["question"], numeric_gold("answer"), extract_number, grade_number)


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def splits(cfg: MiniworldConfig, test_seed: int | None = None) -> dict[str, list[dict]]:
    """Disjoint problem sets: the bases' (`train_a`, `train_b`), the reward models' (`rm`, A; `rm_b`, B), the
    routers' (`router_a`, `router_b`), validation (`val_a`, `val_b`) and test (`test_a`, `test_b`, drawn with the
    test seed). No question is in two sets. (`rm_b` came last of the training pools; no test problem of seeds 2, 3
    or 5 at test seeds 1-3 was in it, so the earlier sets are what they were.)"""
    seen: set[str] = set()
    data: dict[str, list[dict]] = {}

    def draw(name: str, n: int, seed: int, domain: str) -> None:
        data[name] = make_problems(n, seed, exclude=seen, domain=cfg.domain_b if domain == "b" else domain)
        seen.update(p["question"] for p in data[name])

    s = cfg.seed
    draw("train_a", cfg.n_train, s, "a")
    draw("train_b", cfg.n_train_b, s + 1, "b")
    draw("val_a", cfg.n_val, s + 10_000, "a")
    draw("val_b", cfg.n_val, s + 10_001, "b")
    draw("rm", cfg.n_rm, s + 40_000, "a")
    draw("router_a", cfg.n_router, s + 50_000, "a")
    draw("router_b", cfg.n_router, s + 50_001, "b")
    draw("rm_b", cfg.n_rm_b, s + 40_001, "b")
    t = cfg.test_seed if test_seed is None else test_seed
    draw("test_a", cfg.n_test, 20_000 + t, "a")
    draw("test_b", cfg.n_test, 25_000 + t, "b")
    return data


BASE_RANGE = {"small": {"a": (0.3, 0.7), "b": (0.3, 0.8)}, "large": {"a": (0.3, 0.9), "b": (0.3, 0.8)}}
"""Where each base's validation accuracy must lie, per domain: the small base where guidance has room to act both
ways, the larger one at least as far from the floor (it may be stronger on A, its ~4x the parameters)."""


def _distance_from_range(accuracy: dict[str, float], ranges: dict[str, tuple[float, float]]) -> float:
    return sum(max(lo - accuracy[d], 0.0, accuracy[d] - hi) for d, (lo, hi) in ranges.items())


def draw_base(
    tokenizer: PreTrainedTokenizerBase,
    cfg: MiniworldConfig,
    data: dict[str, list[dict]],
    which: str,
    folder: Path,
    seed: int,
    check: bool = True,
) -> dict[str, Any]:
    """One draw of a base (`which`: "small" or "large", its `BaseSpec` in `cfg`; initialised with `seed`) trained
    into `folder`: its greedy accuracy on each domain's validation problems (`a`, `b`) and, where it was checked,
    its B lookups at the spec's `check_step` (`lookup`); or, if it was given up there (only with `check`),
    `{"abandoned_at": step, "lookup": accuracy}`. A draw that ends above its range (`BASE_RANGE`) on a domain and
    below it on none is taken at the latest of the spec's `snapshots` that is in range, if one is: then `step`
    names it, `a` and `b` are its accuracies and `final` the end's; every snapshot graded is in `snapshots`. What
    `folder` already holds (weights, reports, the check) is reused."""
    spec: BaseSpec = getattr(cfg, which)
    checked = folder / "check.json"
    record = json.loads(checked.read_text()) if checked.is_file() else {}
    if "abandoned_at" in record:
        return record
    if not _graded(folder) and not (folder / "model.safetensors").is_file():

        def keep(model: Any) -> bool:
            record["lookup"] = lookup_accuracy(model, tokenizer, data["val_b"])
            logger.warning(
                "%s base, seed %d: B lookups %.3f at step %d (at least %g to go on)",
                which,
                seed,
                record["lookup"],
                spec.check_step,
                spec.min_lookup,
            )
            return record["lookup"] >= spec.min_lookup

        finished = train_base(
            tokenizer,
            data["train_a"] + data["train_b"],
            spec,
            cfg,
            folder,
            seed=seed,
            keep=keep if check and spec.check_step else None,
            warmup=warmup_rows(data["train_a"], data["train_b"]) if spec.warmup else None,
        )
        if record:
            record["abandoned_at" if not finished else "checked_at"] = spec.check_step
            folder.mkdir(parents=True, exist_ok=True)
            checked.write_text(json.dumps(record))
        if not finished:
            return record
    final = _validate(tokenizer, cfg, data, folder)
    ranges = BASE_RANGE[which]
    graded: dict[str, dict[str, float]] = {}
    if any(final[d] > hi for d, (_, hi) in ranges.items()) and all(final[d] >= lo for d, (lo, _) in ranges.items()):
        for step in sorted(spec.snapshots, reverse=True):
            graded[str(step)] = _validate(tokenizer, cfg, data, folder / f"step-{step}")
            if _distance_from_range(graded[str(step)], ranges) == 0:
                return {**graded[str(step)], **record, "step": step, "final": final, "snapshots": graded}
    return {**final, **record, **({"snapshots": graded} if graded else {})}


def _graded(folder: Path) -> bool:
    return all((folder / f"val_{d}" / "report.json").is_file() for d in "ab")


def validation_accuracy(
    model: Any, tokenizer: PreTrainedTokenizerBase, cfg: MiniworldConfig, data: dict[str, list[dict]], out: Path
) -> dict[str, float]:
    """Greedy accuracy of `model` on each domain's validation problems (`a`, `b`), its reports written to
    `out / "val_<d>"`: how a base draw is graded, in the pipeline and in the recipe sweeps alike."""
    return {
        d: run_eval(
            Session(model, tokenizer, None),
            miniworld_task(f"val_{d}", data[f"val_{d}"]),
            str(out / f"val_{d}"),
            batch_size=cfg.eval_batch_size,
            max_new_tokens=cfg.max_new_tokens,
        )["accuracy"]
        for d in "ab"
    }


def _validate(
    tokenizer: PreTrainedTokenizerBase, cfg: MiniworldConfig, data: dict[str, list[dict]], folder: Path
) -> dict[str, float]:
    """`validation_accuracy` of the model in `folder`, its reports kept there and read again rather than
    regenerated."""
    if not _graded(folder):
        validation_accuracy(load_causal_lm(str(folder)), tokenizer, cfg, data, folder)
    return {d: json.loads((folder / f"val_{d}" / "report.json").read_text())["accuracy"] for d in "ab"}


def draw_seed(cfg: MiniworldConfig, which: str, i: int) -> int:
    """The initialisation seed of draw `i` of a base. The larger base's first draw is the pipeline seed itself,
    as it was before the larger base was drawn."""
    return cfg.seed * 1000 + i if which == "small" else cfg.seed if i == 0 else cfg.seed * 1000 + 500 + i


def choose_base(
    tokenizer: PreTrainedTokenizerBase,
    cfg: MiniworldConfig,
    data: dict[str, list[dict]],
    which: str,
    out: Path,
    work: Path,
) -> None:
    """Initialisations of a base (`which`), trained alike, one after another until one's accuracy on the validation
    problems lies in range on both domains (`BASE_RANGE`); at most `cfg.<which>_candidates` draws; if none does,
    the one nearest the ranges. In the transfers world, a draw that has not learned B's lookups by name at its spec's
    `check_step` is given up there (`BaseSpec`), except the last, so that there is always a base; one that ends
    too strong may be taken at an earlier snapshot (`draw_base`). The draws and the choice are recorded in
    `work/<which>_base_choice.json`.

    A model this small either does or does not pick up multi-digit carries, or lookups by name, in its budget,
    depending on its draw (`research/miniworld/scripts/base_draws.py` measures how often). Choosing the draw on
    validation puts the base where guidance has room to act both ways, which is what the world is for. A candidate
    finished (or given up) by an earlier, killed run is reused (`--resume`).
    """
    n, ranges = getattr(cfg, f"{which}_candidates"), BASE_RANGE[which]
    draws: dict[int, dict[str, Any]] = {}
    for i in range(n):
        draws[i] = draw_base(
            tokenizer, cfg, data, which, work / f"{which}-candidate{i}", draw_seed(cfg, which, i), check=i < n - 1
        )
        logger.warning("%s base candidate %d: %s", which, i, draws[i])
        if "abandoned_at" not in draws[i] and _distance_from_range(draws[i], ranges) == 0:
            break
    finished = {i: acc for i, acc in draws.items() if "abandoned_at" not in acc}
    chosen = min(finished, key=lambda i: _distance_from_range(finished[i], ranges))
    (work / f"{which}_base_choice.json").write_text(
        json.dumps(
            {
                "validation_accuracy": draws,
                "chosen": chosen,
                "seeds": {i: draw_seed(cfg, which, i) for i in draws},
                "range": ranges,
                "rule": "the first draw in range on both domains' validation problems, else the one "
                "nearest the ranges (the sum of the distances); a draw below the spec's "
                "min_lookup at its check_step is given up there; a draw that ends above a "
                "range (and below none) is taken at its latest snapshot in range, if any",
            },
            indent=2,
        )
    )
    step = finished[chosen].get("step")
    copy_final_files(work / f"{which}-candidate{chosen}" / (f"step-{step}" if step is not None else ""), out)


class Stages:
    """The training stages already completed in `work`, for `--resume` (`stages.json`, written after each one).

    Without `resume` every stage runs again. With it, completed stages are skipped, and a run made with another
    configuration is refused rather than mixed in.
    """

    def __init__(self, work: Path, cfg: MiniworldConfig, resume: bool):
        self.file = work / "stages.json"
        self.config = json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k != "test_seed"}))
        previous = json.loads(self.file.read_text()) if resume and self.file.is_file() else {}
        if previous and previous.get("config") != self.config:
            raise ValueError(
                f"{work} holds a run with another configuration: run without --resume to start over, "
                "or pass another work folder."
            )
        self.done: list[str] = previous.get("done", [])
        self.seconds: dict[str, float] = previous.get("seconds", {})  # wall time of each completed stage
        self.resume = resume
        self._write()

    def _write(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": self.config, "done": self.done, "seconds": self.seconds}, indent=2))
        tmp.replace(self.file)

    def run(self, name: str, stage: Any, *args: Any, **kwargs: Any) -> None:
        if name in self.done:
            logger.warning("stage %s: done in an earlier run, skipped (--resume)", name)
            return
        _claim_idle_threads()
        start = time.perf_counter()
        stage(*args, **kwargs)
        seconds = round(time.perf_counter() - start, 2)
        # Two training tracks may each finish a stage at once (`train_all`): what the other recorded is kept.
        with FileLock(self.file.with_suffix(".lock")):
            on_disk = json.loads(self.file.read_text())
            self.done = [*on_disk["done"], name]
            self.seconds = {**on_disk["seconds"], name: seconds}
            self._write()


def train_all(
    cfg: MiniworldConfig,
    ckpt: Path,
    data: dict[str, list[dict]],
    work: Path,
    stages: Stages | None = None,
    processes: int = 1,
) -> None:
    """Every training stage, in two tracks that share nothing: the small base and what is trained next to it (the
    reward model, the routers), and the larger base (`_train_track`).

    With `processes` >= 2 the two tracks run at once, in two worker processes with half the CPU threads each, and
    the one left running takes the other's threads when it finishes. Every stage is seeded, and a base trains to
    the same bits on one thread as on two, so the draws, the choices, the bases and the reward model are those of
    one process; the routers' weights can differ in their last digits (seed 2's by at most 6e-7), which changed no
    answer of seed 2's evaluation. On 2 cores a one-thread step of either base costs 1.4-1.6x a two-thread one,
    and two tracks at once do about 1.37x the work of one (measured in the transfers world:
    results/miniworld-v2-transfers/README.md, "How long a seed takes").
    """
    work.mkdir(parents=True, exist_ok=True)
    stages = stages or Stages(work, cfg, resume=False)
    if processes <= 1:
        for track in TRACKS:
            _train_track(track, cfg, ckpt, data, work, stages)
        return
    context = multiprocessing.get_context("spawn")  # torch's thread pool does not survive a fork
    finished = context.Event()
    threads = torch.get_num_threads()
    with context.Pool(len(TRACKS), _start_track_worker, (max(1, threads // len(TRACKS)), threads, finished)) as pool:
        jobs = [pool.apply_async(_train_track, (track, cfg, ckpt, data, work, stages)) for track in TRACKS]
        while not all(job.ready() for job in jobs):
            for job in jobs:
                if job.ready() and not job.successful():
                    # Raised with the worker's traceback; leaving the pool stops the other track at once (its
                    # completed stages are journalled, and `--resume` picks them up).
                    job.get()
            time.sleep(1)
        for job in jobs:
            job.get()


TRACKS = ("small", "large")
"""`train_all`'s two independent tracks, named for the base each starts from."""


def _train_track(
    track: str, cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path, stages: Stages
) -> None:
    """One of `train_all`'s tracks: the base named `track` and, for the small one, the reward model and the routers,
    which start from it."""
    stages.run(f"{track} base", choose_base, make_tokenizer(cfg.one_token_names), cfg, data, track, ckpt / track, work)
    if track == "small":
        # Each model learns from problems the others never saw: the reward model's step labels are what it knows
        # beyond the base, and the router must learn where the reward model helps on problems neither was fit to.
        stages.run("reward model", train_miniworld_reward_model, cfg, ckpt, data["rm"], work, stages.resume)
        for method, domains in (("taro", ("router_a",)), ("taro_ab", ("router_a", "router_b"))):
            stages.run(
                f"router {method}",
                train_miniworld_router,
                cfg,
                ckpt,
                [p for d in domains for p in data[d]],
                work,
                method,
            )
    if _TRACK_FINISHED is not None:
        _TRACK_FINISHED.set()


_TRACK_FINISHED: Any = None  # in a track's worker process (`train_all`): set when either track has finished
_ALL_THREADS = 0


def _start_track_worker(threads: int, all_threads: int, finished: Any) -> None:
    global _TRACK_FINISHED, _ALL_THREADS
    _worker_threads(threads)
    _TRACK_FINISHED, _ALL_THREADS = finished, all_threads


def _claim_idle_threads() -> None:
    """In a track's worker, take all the CPU threads once the other track has finished (`train_all`); called
    between stages and every 100 training steps of a base. A base trains to the same bits either way."""
    if _TRACK_FINISHED is not None and _TRACK_FINISHED.is_set() and torch.get_num_threads() < _ALL_THREADS:
        torch.set_num_threads(_ALL_THREADS)
        logger.warning("the other training track has finished: this one now uses %d threads", _ALL_THREADS)


def _worker_threads(threads: int) -> None:
    """A worker process's set-up: its share of the CPU threads, and the pipeline's log format."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")


def train_miniworld_reward_model(
    cfg: MiniworldConfig, ckpt: Path, rows: list[dict], work: Path, resume: bool = False
) -> None:
    """The reward model, from domain A problems only, next to the small base in `ckpt / "small"`. With `resume`,
    a fine-tuned start and a complete training checkpoint left by a killed run are reused."""
    work.mkdir(parents=True, exist_ok=True)
    rm_file = work / "rm.jsonl"
    _write(rm_file, rows)
    # Like an RLHF reward model, it starts from the small base fine-tuned on its own problems (the solved problems
    # of its pool), then learns from step pairs: the guide must know something the bases do not.
    small = cfg.small
    if not (resume and (work / "rm_start" / "config.json").is_file()):
        sft = replace(small, steps=cfg.rm_sft_steps, lr=cfg.rm_sft_lr, check_step=None, snapshots=())
        train_base(load_tokenizer(str(ckpt / "small")), rows, sft, cfg, work / "rm_start", init=ckpt / "small")
    rm_cfg = RewardModelConfig(
        output_dir=str(work / "rm"),
        max_steps=cfg.rm_steps,
        per_device_train_batch_size=16,
        learning_rate=cfg.rm_lr,
        beta=cfg.rm_beta,
        cpo_alpha=cfg.rm_nll,
        logging_steps=50,
        save_steps=cfg.rm_steps,
        max_length=1024,
        use_cpu=True,
        disable_tqdm=True,
        seed=cfg.seed,
    )
    checkpoint = resume and any((work / "rm").glob("checkpoint-*/trainer_state.json"))
    train_reward_model(
        str(work / "rm_start"),
        str(rm_file),
        str(work / "rm"),
        rm_cfg,
        sample_rejected=True,
        samples_per_step=1,
        sampling_batch_size=cfg.eval_batch_size,
        resume=checkpoint,
    )
    copy_final_files(work / "rm", work / "reward_model")


def train_miniworld_router(
    cfg: MiniworldConfig,
    ckpt: Path,
    rows: list[dict],
    work: Path,
    method: str,
    target: Path | None = None,
    reward_model: str | dict[str, str] | None = None,
    **objective: Any,
) -> None:
    """A router, with the small base and the reward model (`work/reward_model`, or `reward_model`: a path, or
    `{name: path}` for a router over several), on `rows`; saved as a guide folder (by default the shipped one of
    `method`). `objective`: [`RouterTrainingConfig`] settings (mixture, margin_weight, ...)."""
    router_file = work / f"{method}.jsonl"
    _write(router_file, rows)
    settings = dict(
        max_steps=cfg.router_steps,
        per_device_train_batch_size=16,
        learning_rate=cfg.router_lr,
        alpha_max=cfg.alpha_max,
        alpha_init=1.0,
        alpha_reg=cfg.router_alpha_reg,
        use_reward_hidden_states=cfg.router_reward_hidden_states,
        logging_steps=50,
        save_steps=cfg.router_steps,
        max_length=1024,
        use_cpu=True,
        disable_tqdm=True,
        seed=cfg.seed,
        # ~5 epochs over 2000-4000 traces at a 353-token vocabulary: the frozen outputs fit in < 1 GB
        cache_frozen_outputs=True,
    )
    router_cfg = RouterTrainingConfig(output_dir=str(work / method), **{**settings, **objective})
    reward_model = reward_model or str(work / "reward_model")
    train_router(str(ckpt / "small"), reward_model, str(router_file), str(work / method), router_cfg)
    guide = TARoGuide.from_pretrained(work / method / "guide")
    guide.save_pretrained(target or ckpt / TARO_METHODS[method])


def ship_checkpoints(checkpoints: str | Path, target: str | Path = CHECKPOINTS) -> Path:
    """Copy a trained world's `small/`, `large/`, `guide-a/` and `guide-ab/` (and, once trained, the mixed-traffic
    `guide-b/` and `guide-multi/`) into `target` (default: this package's shipped checkpoints), each replacing the
    folder of the same name. The one step that writes there."""
    source, target = Path(checkpoints), Path(target)
    names = ("small", "large", *TARO_METHODS.values())
    missing = [name for name in names if not (source / name).is_dir()]
    names += tuple(name for name in ("guide-b", "guide-multi") if (source / name).is_dir())  # mixed traffic
    if missing:
        raise FileNotFoundError(f"{source} lacks {missing}: train the world first (reproduce.py without --eval-only).")
    for name in names:
        copy_folder(source / name, target / name)
    return target


Job = tuple[str, str, str, "float | None"]
"""One evaluation: which base ("small", "large"), method ("base", "genarm" or a `TARO_METHODS` key), split, alpha."""


class MiniworldEvaluator:
    """Runs (base, method, split) evaluations once each, in folders named for them, and compares them paired."""

    def __init__(self, cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], out: Path):
        self.cfg, self.ckpt, self.data, self.out = cfg, ckpt, data, out
        self.tok = load_tokenizer(str(ckpt / "small"))
        self.bases = {name: load_causal_lm(str(ckpt / name)) for name in ("small", "large")}
        self.guides = {m: TARoGuide.from_pretrained(ckpt / folder) for m, folder in TARO_METHODS.items()}

    def folder(self, base: str, method: str, split: str, alpha: float | None = None) -> Path:
        return self.out / (f"{base}-{split}-{method}" + (f"-{alpha:g}" if alpha is not None else ""))

    def evaluate(self, base: str, method: str, split: str, alpha: float | None = None) -> Path:
        """Generate and grade (what a folder already holds is kept); the folder."""
        guide = (
            None
            if method == "base"
            else self.guides["taro"].fixed(alpha)
            if method == "genarm"
            else self.guides[method]
        )
        folder = self.folder(base, method, split, alpha)
        run_eval(
            Session(self.bases[base], self.tok, guide),
            miniworld_task(split, self.data[split]),
            str(folder),
            batch_size=self.cfg.eval_batch_size,
            max_new_tokens=self.cfg.max_new_tokens,
        )
        return folder

    def run(self, base: str, method: str, split: str, alpha: float | None = None) -> tuple[dict[str, Any], str]:
        """`evaluate`, then its summary and folder."""
        folder = self.evaluate(base, method, split, alpha)
        return _summary(folder), str(folder)

    def run_many(self, jobs: list[Job], processes: int = 1) -> list[tuple[dict[str, Any], str]]:
        """`run` for each job. With `processes` > 1 they run that many at a time, in worker processes that share
        out the CPU threads: a tiny model decodes at the pace of per-token overhead, which threads do not share."""
        if processes <= 1:
            return [self.run(*job) for job in jobs]
        # The slowest first, so that no worker is left alone with a long one at the end.
        slowest_first = sorted(jobs, key=lambda job: (job[0] == "large", job[1] != "base"), reverse=True)
        # Spawned, not forked: torch's thread pool does not survive a fork.
        with ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_evaluator,
            initargs=(max(1, torch.get_num_threads() // processes), self.cfg, self.ckpt, self.data, self.out),
        ) as pool:
            list(pool.map(_evaluate, slowest_first))
        return [(_summary(self.folder(*job)), str(self.folder(*job))) for job in jobs]


def _summary(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    outputs = [json.loads(line)["output"] for line in (folder / "generations.jsonl").open()]
    return {
        **{k: report[k] for k in ("accuracy", "ci95", "tokens_per_s", "n", "mean_alpha")},
        "step_accuracy": step_accuracy(outputs),
    }


_EVALUATOR: MiniworldEvaluator | None = None  # a worker process's own (`run_many`)


def _start_evaluator(threads: int, *args: Any) -> None:
    global _EVALUATOR
    _worker_threads(threads)
    _EVALUATOR = MiniworldEvaluator(*args)


def _evaluate(job: Job) -> None:
    assert _EVALUATOR is not None
    _EVALUATOR.evaluate(*job)


def evaluate_all(
    cfg: MiniworldConfig,
    ckpt: Path,
    data: dict[str, list[dict]],
    work: Path,
    test_seed: int,
    record_alpha: bool = False,
    processes: int = 1,
) -> dict[str, Any]:
    ev = MiniworldEvaluator(cfg, ckpt, data, work / "eval")
    # The fixed alpha compared everywhere is chosen on A's validation problems only; B's is for information.
    val_jobs: list[Job] = [("small", "genarm", f"val_{d}", a) for d in "ab" for a in cfg.alphas]
    val_runs = dict(zip(val_jobs, ev.run_many(val_jobs, processes)))
    val = {d: {a: val_runs["small", "genarm", f"val_{d}", a] for a in cfg.alphas} for d in "ab"}
    val_acc = {d: {a: r[0]["accuracy"] for a, r in runs.items()} for d, runs in val.items()}
    best, best_b = best_alpha(val_acc["a"]), best_alpha(val_acc["b"])
    if record_alpha:
        for folder in TARO_METHODS.values():
            record_alpha_choice([r[1] for r in val["a"].values()], str(ckpt / folder))
    results: dict[str, Any] = {
        "best_alpha_on_validation": best,
        "best_alpha_on_validation_b": best_b,
        "validation_accuracy_by_alpha": {f"{a:g}": v for a, v in val_acc["a"].items()},
        "validation_accuracy_by_alpha_b": {f"{a:g}": v for a, v in val_acc["b"].items()},
        "paired": {},
        "paired_detail": {},
    }
    ev.out = work / f"eval-test{test_seed}"
    block_runs: dict[str, dict[str, Job]] = {}
    for block, (base, domain) in BLOCKS.items():
        split = f"test_{domain}"
        alphas = cfg.alphas if block == "methods" else sorted({best, best_b} if domain == "b" else {best})
        block_runs[block] = {
            "base": (base, "base", split, None),
            **{f"genarm alpha={a:g}": (base, "genarm", split, a) for a in alphas},
            **{m: (base, m, split, None) for m in TARO_METHODS},
        }
    jobs = list(dict.fromkeys(job for runs in block_runs.values() for job in runs.values()))
    done = dict(zip(jobs, ev.run_many(jobs, processes)))
    for block, named in block_runs.items():
        runs = {name: done[job] for name, job in named.items()}
        results[block] = {name: summary for name, (summary, _) in runs.items()}
        for taro in TARO_METHODS:
            for other, (_, folder) in runs.items():
                if other != taro and not (taro == "taro_ab" and other == "taro"):
                    detail = paired_comparison(runs[taro][1], folder)
                    key = f"{block}: {taro} vs {other}"
                    results["paired"][key] = detail["mcnemar_p"]
                    results["paired_detail"][key] = {k: detail[k] for k in ("n", "only_a", "only_b", "mcnemar_p")}
    return results


def _world(cfg: MiniworldConfig) -> str:
    """ "" for the shipped world; for another (another domain B, or the other scheme for names), what names its
    files: "-<domain B>", then "-split-names" for names split by the word before them (`make_tokenizer`)."""
    shipped = MiniworldConfig()
    return ("" if cfg.domain_b == shipped.domain_b else f"-{cfg.domain_b}") + (
        "" if cfg.one_token_names == shipped.one_token_names else "-split-names"
    )


def range_margins(results: dict[str, Any]) -> tuple[float, ...]:
    """How far inside their validation ranges a run's chosen bases lie: each chosen base's (either base, either
    domain) distance from the nearer edge of its range, smallest first, rounded to 1e-9 so that float noise never
    orders two runs; negative where one lies outside. Read from the results' `small_base_choice` and
    `large_base_choice`. Runs compare by the smallest, then the next (`SHIPPED_SEED`)."""
    margins = []
    for which in ("small", "large"):
        choice = results[f"{which}_base_choice"]
        chosen = choice["validation_accuracy"][str(choice["chosen"])]
        margins += [round(min(chosen[d] - lo, hi - chosen[d]), 9) for d, (lo, hi) in choice["range"].items()]
    return tuple(sorted(margins))


def range_margin(results: dict[str, Any]) -> float:
    """The smallest of `range_margins`: how far inside its validation range a run's least central base lies."""
    return range_margins(results)[0]


def _seed_files(results_dir: Path, stem: str) -> list[Path]:
    """The shipped seed's and further pipeline seeds' result files (the shipped world's), but `stem`'s own: the
    seeds the mixed-traffic summary reads. `miniworld-v3-seedK.json` holds a seed whose world, drawn again from
    nothing for v3, differs from the one its committed v2 file `miniworld-pipeline-seedK.json` describes."""
    pipeline_seed = re.compile(r"miniworld(-pipeline-seed\d+|-v3-seed\d+)?\.json")
    return sorted(f for f in results_dir.glob("miniworld*.json") if pipeline_seed.fullmatch(f.name) and f.stem != stem)


def summarize_seeds(results_dir: Path, world: str = "") -> dict[str, Any]:
    """Per-seed accuracies and TARo minus the best fixed alpha (A's validation choice), mean and sd per block.

    Reads `miniworld.json` (the shipped seed) and `miniworld-pipeline-seedK.json` (further seeds, whole pipeline
    from nothing each; not their `-seedN` draws of other test problems); for another world (`_world`), its own
    `miniworld<world>-pipeline-seedK.json` only."""
    pipeline_seed = re.compile(rf"miniworld{re.escape(world)}-pipeline-seed\d+\.json")
    files = ([] if world else [results_dir / "miniworld.json"]) + sorted(
        f for f in results_dir.glob(f"miniworld{world}-pipeline-seed*.json") if pipeline_seed.fullmatch(f.name)
    )
    per_seed: dict[str, Any] = {}
    for f in files:
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        best = f"genarm alpha={r['best_alpha_on_validation']:g}"
        per_seed[str(r["config"]["seed"])] = {
            "best_alpha_on_validation": r["best_alpha_on_validation"],
            **({"range_margin": range_margin(r)} if "small_base_choice" in r and "large_base_choice" in r else {}),
            **{block: {m: v["accuracy"] for m, v in r[block].items()} for block in BLOCKS if block in r},
            "taro_minus_best_fixed": {
                block: {m: r[block][m]["accuracy"] - r[block][best]["accuracy"] for m in TARO_METHODS}
                for block in BLOCKS
                if block in r
            },
        }
    diffs: dict[str, Any] = {}
    for block in BLOCKS:
        for m in TARO_METHODS:
            d = [s["taro_minus_best_fixed"][block][m] for s in per_seed.values() if block in s["taro_minus_best_fixed"]]
            if d:
                diffs[f"{block}: {m}"] = {
                    "mean": statistics.mean(d),
                    "sd": statistics.stdev(d) if len(d) > 1 else None,
                    "per_seed": d,
                }
    return {"per_seed": per_seed, "taro_minus_best_fixed": diffs}


def _table(title: str, rows: dict[str, dict], paired: dict[str, float], block: str) -> str:
    header = (
        "| method | accuracy | 95% CI | equations right | tokens/s | mean alpha "
        "| McNemar p, taro vs it | McNemar p, taro_ab vs it |"
    )
    lines = [f"### {title}", "", header, "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        alpha = "" if r.get("mean_alpha") is None else f"{r['mean_alpha']:.2f}"
        ps = [paired.get(f"{block}: {t} vs {name}") for t in TARO_METHODS]
        cells = " | ".join("" if p is None else f"{p:.3g}" for p in ps)
        lines.append(
            f"| {name} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | "
            f"{r['step_accuracy']:.3f} | {r['tokens_per_s']:.0f} | {alpha} | {cells} |"
        )
    return "\n".join(lines) + "\n"


TITLES = {
    "methods": "Small base, domain A (arithmetic chains, the reward model's domain)",
    "domain_b": "Small base, domain B (comparisons; the reward model never saw it)",
    "transfer": "Larger base (~4x), domain A: the small base's reward model and routers",
    "transfer_b": "Larger base (~4x), domain B",
}


def refresh_summaries(results_dir: str | Path) -> dict[str, Any]:
    """Recompute the across-seeds summaries (`seeds`, `mixed_seeds`) of the shipped world's main results file
    from the per-seed files beside it, and rewrite `miniworld.json` and `.md`; nothing is trained or evaluated."""
    from .mixed import mixed_seeds

    res = Path(results_dir)
    main = json.loads((res / "miniworld.json").read_text())
    main["seeds"] = summarize_seeds(res)
    main["mixed_seeds"] = mixed_seeds([res / "miniworld.json", *_seed_files(res, "miniworld")])
    write_json(res / "miniworld.json", main)
    (res / "miniworld.md").write_text(markdown(main))
    return main


def markdown(results: dict[str, Any]) -> str:
    from .mixed import mixed_markdown

    parts = [mixed_markdown(results)] if "mixed" in results else []
    parts += [_table(TITLES[b], results[b], results["paired"], b) for b in BLOCKS]
    parts.append(
        f"Fixed alpha chosen on A's validation problems: {results['best_alpha_on_validation']:g} "
        f"(B's own best on B's validation: {results['best_alpha_on_validation_b']:g}).\n"
    )
    seeds = results.get("seeds", {}).get("taro_minus_best_fixed")
    if seeds:
        order = ", ".join(results["seeds"]["per_seed"])
        rows = []
        for key, v in seeds.items():
            sd = "" if v["sd"] is None else f"{v['sd']:.3f}"
            rows.append(f"| {key} | {v['mean']:+.3f} | {sd} | {', '.join(f'{d:+.3f}' for d in v['per_seed'])} |\n")
        parts.append(
            "### TARo minus the best fixed alpha, across seeds (whole pipeline from nothing per seed)\n\n"
            f"| block: router | mean | sd | per seed ({order}) |\n|---|---|---|---|\n" + "".join(rows)
        )
    return "\n".join(parts)


def accuracy_bars(
    ax: Any,
    groups: list[str],
    series: dict[str, list[dict[str, Any] | None]],
    capsize: float = 3,
    fontsize: float | None = None,
) -> None:
    """Grouped bars: for each named series, its `accuracy` in each group with its `ci95` as error bars (a
    missing result is an empty slot)."""
    width = 0.8 / len(series)
    for i, (name, results) in enumerate(series.items()):
        acc = [r["accuracy"] if r else float("nan") for r in results]
        err = [
            [a - r["ci95"][0] if r else 0 for a, r in zip(acc, results)],
            [r["ci95"][1] - a if r else 0 for a, r in zip(acc, results)],
        ]
        ax.bar(
            [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))],
            acc,
            width,
            yerr=err,
            capsize=capsize,
            label=name,
        )
    ax.set_xticks(range(len(groups)), groups, fontsize=fontsize)


def plot(results: dict[str, Any], path: Path, alphas: tuple[float, ...] | None = None) -> None:
    """Left: accuracy against fixed alpha on A, with TARo; right: each block's base, best fixed alpha and TARo."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = results["methods"]
    alphas = alphas or tuple(sorted(float(k.split("=")[1]) for k in m if k.startswith("genarm alpha=")))
    best = f"genarm alpha={results['best_alpha_on_validation']:g}"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(alphas, [m[f"genarm alpha={a:g}"]["accuracy"] for a in alphas], "o-", label="GenARM, fixed alpha")
    left.axhline(m["base"]["accuracy"], color="gray", linestyle="--", label="base (alpha = 0)")
    for method, colour in (("taro", "tab:red"), ("taro_ab", "tab:purple")):
        if method in m:
            left.axhline(
                m[method]["accuracy"], color=colour, label=f"{method} (mean alpha {m[method]['mean_alpha']:.2f})"
            )
            left.axhspan(*m[method]["ci95"], color=colour, alpha=0.1)
    left.set_xscale("log", base=2)
    left.set_xticks(alphas, [f"{a:g}" for a in alphas])
    left.set_xlabel("alpha")
    left.set_ylabel("accuracy (held-out test problems)")
    left.set_title("Small base, domain A")
    left.legend(loc="lower right", fontsize=8)
    blocks = [b for b in BLOCKS if b in results]
    accuracy_bars(
        right,
        [
            TITLES[b].split(",")[0].replace("Larger base (~4x)", "large") + ("\nA" if BLOCKS[b][1] == "a" else "\nB")
            for b in blocks
        ],
        {name: [results[b].get(name) for b in blocks] for name in ["base", best, *TARO_METHODS]},
        capsize=2,
        fontsize=8,
    )
    right.set_ylabel("accuracy (95% CI)")
    right.set_title("Every block, fixed alpha chosen on A's validation")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce(
    results_dir: str = "results",
    checkpoints: str | None = None,
    eval_only: bool = False,
    test_seed: int | None = None,
    cfg: MiniworldConfig | None = None,
    work_dir: str | None = None,
    resume: bool = False,
    processes: int = 2,
) -> dict[str, Any]:
    """Train (unless `eval_only`) and evaluate; write the results as JSON, Markdown and a plot.

    `processes`: worker processes that share out the CPU threads. With 2 or more, training runs its two tracks at
    once (`train_all`) and evaluations run that many at a time (`MiniworldEvaluator.run_many`); 1 runs everything
    in this process. The results are the same either way (to the routers' last digits: `train_all`).

    With `resume`, training stages completed by an earlier run with the same configuration are skipped and
    evaluations continue where they stopped; a killed run loses at most the stage in flight.

    The shipped seed (`SHIPPED_SEED`) writes `miniworld.json` (`miniworld-seedN.json` with `test_seed=N`); another
    pipeline seed writes `miniworld-pipeline-seedK.json`. Whatever seeds' results are in `results_dir` are summarized in
    the `seeds` block. A world with another domain B (`cfg.domain_b`, e.g. "b-ordered") is another world: it never
    uses or writes the shipped checkpoints, and its files are named for it (`miniworld-b-ordered-pipeline-seedK`,
    summarized among themselves).
    """
    if processes < 1:
        raise ValueError(f"--processes must be at least 1, got {processes}.")
    cfg = cfg or MiniworldConfig()
    world = _world(cfg)
    shipped = cfg.seed == SHIPPED_SEED and not world
    # Training writes to a work folder, never into the installed package: shipping is `ship_checkpoints`.
    ckpt = (
        Path(checkpoints)
        if checkpoints
        else CHECKPOINTS
        if shipped and eval_only
        else Path(f"runs/miniworld{world}-seed{cfg.seed}/checkpoints")
    )
    work = Path(work_dir or f"runs/miniworld{world}-seed{cfg.seed}")
    res = Path(results_dir)
    work.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    test = cfg.test_seed if test_seed is None else test_seed
    data = splits(cfg, test)
    start = time.time()
    if not eval_only:
        if not resume:
            # Evaluations and base candidates resume from their folders: those of earlier runs must not count.
            for folder in [*work.glob("eval*"), *work.glob("*-candidate*")]:
                shutil.rmtree(folder)
        stages = Stages(work, cfg, resume)
        train_all(cfg, ckpt, data, work, stages, processes)
        if not world:
            from .mixed import train_mixed

            train_mixed(cfg, ckpt, data, work, resume)
    elif not all((ckpt / name).is_dir() for name in ("small", "large", *TARO_METHODS.values())):
        raise FileNotFoundError(
            f"--eval-only needs the checkpoints in {ckpt} (small/, large/, guide-a/, guide-ab/); "
            "run without it to train them."
        )
    trained = time.time()
    results = evaluate_all(cfg, ckpt, data, work, test, record_alpha=not eval_only, processes=processes)
    if not world:
        from .mixed import GUIDE_B, GUIDE_MULTI, ROUTER_CANDIDATES, add_mixed, candidate_folder, run_mixed

        if (ckpt / GUIDE_B).is_dir() and any((ckpt / candidate_folder(m)).is_dir() for m in ROUTER_CANDIDATES):
            add_mixed(results, run_mixed(cfg, ckpt, data, work, test, processes))
        else:
            logger.warning(
                "No mixed-traffic blocks: %s has no %s/ and %s/ (train them first).", ckpt, GUIDE_B, GUIDE_MULTI
            )
    results["config"] = {**asdict(cfg), "test_seed": test}
    for which in ("small", "large"):
        if (work / f"{which}_base_choice.json").is_file():
            results[f"{which}_base_choice"] = json.loads((work / f"{which}_base_choice.json").read_text())
    results["seconds"] = {"training": round(trained - start), "evaluation": round(time.time() - trained)}
    stem = ("miniworld" if shipped else f"miniworld{world}-pipeline-seed{cfg.seed}") + (
        "" if test_seed is None else f"-seed{test_seed}"
    )
    (res / f"{stem}.json").write_text(json.dumps(results, indent=2))
    if test_seed is None:
        summary = summarize_seeds(res, world)
        results["seeds"] = summary
        if not world:
            from .mixed import mixed_seeds

            results["mixed_seeds"] = mixed_seeds([res / f"{stem}.json", *_seed_files(res, stem)])
        (res / f"{stem}.json").write_text(json.dumps(results, indent=2))
        if not shipped and not world and (res / "miniworld.json").is_file():  # it carries every seed's summary
            refresh_summaries(res)
    (res / f"{stem}.md").write_text(markdown(results))
    try:
        plot(results, res / f"{stem}.png", cfg.alphas)
    except ImportError as err:  # the figures are in the JSON and Markdown already; the picture is optional
        logger.warning("No plot written (%s); the results are in %s.json and %s.md.", err, stem, stem)
    return results

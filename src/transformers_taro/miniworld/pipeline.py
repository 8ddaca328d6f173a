"""The mini-world reproduction: train everything from nothing, then evaluate the paper's claims.

1. Problems: disjoint pools for the bases, the reward model and the router, plus validation, test and
   out-of-distribution problems with longer chains (`splits`).
2. Two Llama bases trained from scratch on the bases' pool: a small one and one with ~4x its parameters.
3. A reward model: the small base fine-tuned on the reward model's pool, then `train_reward_model` on step pairs
   whose incorrect steps it samples and labels automatically; a router (`train_router`) with the small base only.
4. Evaluation on held-out problems: base, GenARM at fixed alphas, TARo; then the same reward model and router on
   the larger base (transfer) and on longer chains (OOD). The fixed alpha compared there is the one that was best
   on the validation split, never the test split.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..data import arithmetic_is_correct, equations_in, gsm8k_solutions, traces_from_solutions
from ..evaluation.graders import extract_number, grade_number
from ..evaluation.runner import best_alpha, run_eval
from ..evaluation.session import Session
from ..evaluation.tasks import Task, numeric_gold
from ..extras import require
from ..guide import TARoGuide
from ..models import load_causal_lm, load_tokenizer
from ..router import TARoRouter
from ..training import RewardModelConfig, RouterTrainingConfig, TraceCollator, train_reward_model, train_router
from .problems import make_problems, make_tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseSpec:
    """A base model trained from scratch: its shape and its training budget."""

    hidden: int
    layers: int
    steps: int
    lr: float

    @property
    def name(self) -> str:
        return f"{self.hidden}x{self.layers}"


@dataclass
class MiniworldConfig:
    """Everything `reproduce` does, in one place; the defaults are what the README's figures were measured with."""

    seed: int = 0
    test_seed: int = 1
    n_train: int = 4000  # problems the bases are trained on
    n_rm: int = 4000  # further problems whose step pairs train the reward model
    n_router: int = 2000  # further problems whose solutions train the router
    n_val: int = 400
    n_test: int = 800
    n_ood: int = 300
    ood_steps: tuple[int, int] = (7, 8)
    # The larger base has 4x the small one's non-embedding parameters (12 * hidden^2 * layers). Both are meant to
    # stop short of what they could learn, so guidance has slips to fix. The larger one's rate is lower because at
    # the small one's it learned more slowly than the small one (0.14 against 0.635 on validation in a calibration).
    small: BaseSpec = BaseSpec(64, 2, 1500, 3e-3)
    large: BaseSpec = BaseSpec(128, 2, 1500, 1e-3)
    batch_size: int = 32
    rm_sft_steps: int = 1000
    rm_sft_lr: float = 1e-3
    rm_steps: int = 600
    rm_lr: float = 5e-4
    rm_beta: float = 0.5
    rm_nll: float = 1.0  # RewardModelConfig.cpo_alpha
    # Chosen on validation problems among four router settings (README): the reward model's hidden state as a
    # feature, no pull towards alpha_init, 600 steps.
    router_steps: int = 600
    router_lr: float = 3e-3
    router_alpha_reg: float = 0.0
    router_reward_hidden_states: bool = True
    alpha_max: float = 4.0
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    max_new_tokens: int = 160


def _base_model(tokenizer: PreTrainedTokenizerBase, hidden: int, layers: int, seed: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg)


def train_base(tokenizer: PreTrainedTokenizerBase, rows: list[dict], spec: BaseSpec, cfg: MiniworldConfig, out: Path,
               init: Path | None = None) -> None:
    """Supervised training on the gold solutions (loss on the solution tokens), from scratch or from `init`."""
    model = load_causal_lm(str(init)) if init else _base_model(tokenizer, spec.hidden, spec.layers, cfg.seed)
    solutions, _ = gsm8k_solutions(rows)
    traces = traces_from_solutions(solutions, tokenizer)
    collate = TraceCollator(tokenizer, max_length=1024)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=spec.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(spec.steps):
        idx = torch.randint(len(traces), (cfg.batch_size,), generator=gen).tolist()
        batch = collate([traces[i] for i in idx])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == spec.steps - 1:
            logger.warning("base %s step %d loss %.4f", spec.name, step, loss.item())
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)


def step_accuracy(outputs: list[str]) -> float:
    """Share of the written equations whose arithmetic is right: informative even where few answers are."""
    equations = [line for text in outputs for line in text.splitlines() if equations_in(line)]
    return sum(arithmetic_is_correct(line) for line in equations) / max(1, len(equations))


def _task(name: str, rows: list[dict]) -> Task:
    return Task(name, rows, lambda r: r["question"], numeric_gold("answer"), extract_number, grade_number)


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def splits(cfg: MiniworldConfig, test_seed: int | None = None) -> dict[str, list[dict]]:
    """Disjoint problem sets: the bases', the reward model's and the router's training problems, validation,
    test and OOD. Test and OOD never share a question with any of the others."""
    train = make_problems(cfg.n_train, cfg.seed)
    val = make_problems(cfg.n_val, cfg.seed + 10_000, exclude={p["question"] for p in train})
    rm = make_problems(cfg.n_rm, cfg.seed + 40_000, exclude={p["question"] for p in train + val})
    router = make_problems(cfg.n_router, cfg.seed + 50_000, exclude={p["question"] for p in train + val + rm})
    seen = {p["question"] for p in train + val + rm + router}
    seed = cfg.test_seed if test_seed is None else test_seed
    test = make_problems(cfg.n_test, 20_000 + seed, exclude=seen)
    ood = make_problems(cfg.n_ood, 30_000 + seed, *cfg.ood_steps, exclude=seen)
    return {"train": train, "rm": rm, "router": router, "val": val, "test": test, "ood": ood}


def train_all(cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path) -> None:
    tokenizer = make_tokenizer()
    for name, spec in (("small", cfg.small), ("large", cfg.large)):
        train_base(tokenizer, data["train"], spec, cfg, ckpt / name)
        logger.warning("trained the %s base", name)
    train_guide(cfg, ckpt, data, work)


def train_guide(cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path) -> None:
    """The reward model and the router, both from the small base in `ckpt / "small"` only."""
    work.mkdir(parents=True, exist_ok=True)
    # Each model learns from problems the others never saw: the reward model's step labels are what it knows
    # beyond the base, and the router must learn where the reward model helps on problems neither was fit to.
    rm_file = work / "rm.jsonl"
    _write(rm_file, data["rm"])
    # Like an RLHF reward model, it starts from the small base fine-tuned on its own problems (the solved problems
    # of its pool), then learns from step pairs: the guide must know something the bases do not.
    small = cfg.small
    train_base(load_tokenizer(str(ckpt / "small")), data["rm"],
               BaseSpec(small.hidden, small.layers, cfg.rm_sft_steps, cfg.rm_sft_lr), cfg, work / "rm_start",
               init=ckpt / "small")
    rm_cfg = RewardModelConfig(output_dir=str(work / "rm"), max_steps=cfg.rm_steps, per_device_train_batch_size=16,
                               learning_rate=cfg.rm_lr, beta=cfg.rm_beta, cpo_alpha=cfg.rm_nll, logging_steps=50,
                               save_steps=cfg.rm_steps, max_length=1024, use_cpu=True, disable_tqdm=True)
    train_reward_model(str(work / "rm_start"), str(rm_file), str(work / "rm"), rm_cfg, sample_rejected=True,
                       samples_per_step=1)
    _ship(work / "rm", ckpt / "reward_model")
    train_miniworld_router(cfg, ckpt, data, work)


def train_miniworld_router(cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path) -> None:
    """The router, with the small base and the shipped reward model, on the router's own problems."""
    router_file = work / "router.jsonl"
    _write(router_file, data["router"])
    router_cfg = RouterTrainingConfig(output_dir=str(work / "router"), max_steps=cfg.router_steps,
                                      per_device_train_batch_size=16, learning_rate=cfg.router_lr,
                                      alpha_max=cfg.alpha_max, alpha_init=1.0, alpha_reg=cfg.router_alpha_reg,
                                      use_reward_hidden_states=cfg.router_reward_hidden_states, logging_steps=50,
                                      save_steps=cfg.router_steps, max_length=1024, use_cpu=True, disable_tqdm=True)
    # Trained against the shipped copy, so the router records the reward model it will be used with.
    train_router(str(ckpt / "small"), str(ckpt / "reward_model"), str(router_file), str(work / "router"), router_cfg)
    _ship(work / "router", ckpt / "router")


def _ship(folder: Path, target: Path) -> None:
    """Copy a trained folder's final files (no intermediate checkpoints, no pickled training args)."""
    target.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and f.suffix != ".bin":
            (target / f.name).write_bytes(f.read_bytes())


def evaluate_all(cfg: MiniworldConfig, ckpt: Path, data: dict[str, list[dict]], work: Path) -> dict[str, Any]:
    tok = load_tokenizer(str(ckpt / "small"))
    small, large = load_causal_lm(str(ckpt / "small")), load_causal_lm(str(ckpt / "large"))
    taro = TARoGuide(load_causal_lm(str(ckpt / "reward_model")), router=TARoRouter.from_pretrained(ckpt / "router"))

    def run(base: Any, method: str, split: str, alpha: float | None = None) -> dict[str, Any]:
        guide = {"base": None, "genarm": taro.fixed(alpha) if alpha is not None else None, "taro": taro}[method]
        session = Session(base, tok, guide)
        name = f"{'large' if base is large else 'small'}-{split}-{method}"
        name += f"-{alpha:g}" if alpha is not None else ""
        report = run_eval(session, _task(split, data[split]), str(work / "eval" / name), batch_size=50,
                          max_new_tokens=cfg.max_new_tokens + (40 if split == "ood" else 0))
        outputs = [json.loads(line)["output"] for line in (work / "eval" / name / "generations.jsonl").open()]
        return {**{k: report[k] for k in ("accuracy", "ci95", "tokens_per_s", "n", "mean_alpha")},
                "step_accuracy": step_accuracy(outputs)}

    # The fixed alpha to compare against elsewhere is chosen on validation problems only.
    val = {a: run(small, "genarm", "val", a)["accuracy"] for a in cfg.alphas}
    best = best_alpha(val)
    methods = {"base": run(small, "base", "test")}
    for a in cfg.alphas:
        methods[f"genarm alpha={a:g}"] = run(small, "genarm", "test", a)
    methods["taro"] = run(small, "taro", "test")
    transfer = {"base": run(large, "base", "test"), f"genarm alpha={best:g}": run(large, "genarm", "test", best),
                "taro": run(large, "taro", "test")}
    ood = {"base": run(small, "base", "ood"), f"genarm alpha={best:g}": run(small, "genarm", "ood", best),
           "taro": run(small, "taro", "ood")}
    return {"methods": methods, "transfer": transfer, "ood": ood,
            "best_alpha_on_validation": best, "validation_accuracy_by_alpha": {f"{a:g}": v for a, v in val.items()}}


def _table(title: str, rows: dict[str, dict]) -> str:
    lines = [f"### {title}", "", "| method | accuracy | 95% CI | equations right | tokens/s | mean alpha |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        alpha = "" if r.get("mean_alpha") is None else f"{r['mean_alpha']:.2f}"
        lines.append(f"| {name} | {r['accuracy']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | "
                     f"{r['step_accuracy']:.3f} | {r['tokens_per_s']:.0f} | {alpha} |")
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], path: Path, alphas: tuple[float, ...]) -> None:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = results["methods"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(alphas, [m[f"genarm alpha={a:g}"]["accuracy"] for a in alphas], "o-", label="GenARM, fixed alpha")
    ax.axhline(m["base"]["accuracy"], color="gray", linestyle="--", label="base (alpha = 0)")
    ax.axhline(m["taro"]["accuracy"], color="tab:red", label=f"TARo (mean alpha {m['taro']['mean_alpha']:.2f})")
    lo, hi = m["taro"]["ci95"]
    ax.axhspan(lo, hi, color="tab:red", alpha=0.12, label="TARo 95% CI")
    ax.set_xscale("log", base=2)
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.margins(x=0.08)
    ax.set_xlabel("alpha")
    ax.set_ylabel("accuracy (held-out test problems)")
    ax.set_title("Mini-world: small base, held-out test")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce(results_dir: str = "results", checkpoints: str = "examples/miniworld/checkpoints",
              eval_only: bool = False, test_seed: int | None = None, cfg: MiniworldConfig | None = None,
              work_dir: str = "runs/miniworld") -> dict[str, Any]:
    """Train (unless `eval_only`) and evaluate; write `miniworld.json`, `miniworld.md`, `miniworld.png`."""
    cfg = cfg or MiniworldConfig()
    ckpt, work, res = Path(checkpoints), Path(work_dir), Path(results_dir)
    work.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    data = splits(cfg, test_seed)
    start = time.time()
    if not eval_only:
        train_all(cfg, ckpt, data, work)
    elif not (ckpt / "router").is_dir():
        raise FileNotFoundError(f"--eval-only needs the checkpoints in {ckpt}; run without it to train them.")
    trained = time.time()
    results = evaluate_all(cfg, ckpt, data, work)
    results["config"] = {**asdict(cfg), "test_seed": cfg.test_seed if test_seed is None else test_seed}
    results["seconds"] = {"training": round(trained - start), "evaluation": round(time.time() - trained)}
    suffix = "" if test_seed is None else f"-seed{test_seed}"
    (res / f"miniworld{suffix}.json").write_text(json.dumps(results, indent=2))
    md = (_table("Small base (held-out test)", results["methods"]) + "\n"
          + _table("Transfer: the same reward model and router on the ~4x larger base", results["transfer"]) + "\n"
          + _table(f"Out of distribution: chains of {cfg.ood_steps[0]}-{cfg.ood_steps[1]} steps", results["ood"]))
    (res / f"miniworld{suffix}.md").write_text(md)
    try:
        _plot(results, res / f"miniworld{suffix}.png", cfg.alphas)
    except ImportError as err:  # the figures are in the JSON and Markdown already; the picture is optional
        logger.warning("No plot written: %s", err)
    return results

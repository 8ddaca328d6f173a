"""The evidence `taro demo` opens with: the shipped mini-world on freshly drawn test problems.

The shipped checkpoints (small base, reward model trained on domain A) on a few hundred new test problems of each
domain: base vs GenARM (alpha chosen on A's validation) vs TARo with a router trained on A traces and with one
trained on A and B traces, paired with McNemar's exact test. Registered under the entry-point group
`transformers_taro.demo`, which `taro demo` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from transformers_taro.evaluation.runner import load_records, mcnemar, run_eval
from transformers_taro.evaluation.session import Session
from transformers_taro.extras import require
from transformers_taro.guide import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer

from .pipeline import CHECKPOINTS, MiniworldConfig, accuracy_bars, miniworld_task, splits

DEMO_TEST_SEED = 101
"""The seed of the demo's test draw (disjoint from every training and validation problem)."""
TITLE = "Measured: does TARo beat the base and the best fixed alpha? (mini-world)"


def miniworld_evidence(
    problems: int = 300, output_dir: str = "taro-demo", console: Console | None = None, batch_size: int = 100
) -> dict[str, Any]:
    """`problems` fresh test problems per domain: a table per domain, a plot, and the numbers.

    Returns `{domain: {method: {"accuracy", "ci95", "n"}}}` plus `"paired"`: McNemar p of each guided method
    against the base and against GenARM. Each evaluation is `run_eval`'s, in `output_dir/miniworld/`.
    """
    console = console or Console()
    console.print(f"[bold]{TITLE}[/bold]")
    console.print(
        "Trained from scratch here: a reward model on domain A only, routers next to the small base. "
        "Held-out problems, greedy decoding; the docs have the 3000-problem figures and the seeds."
    )
    cfg = MiniworldConfig(n_test=problems)
    data = splits(cfg, DEMO_TEST_SEED)
    tok = load_tokenizer(str(CHECKPOINTS / "small"))
    base = load_causal_lm(str(CHECKPOINTS / "small"))
    taro = TARoGuide.from_pretrained(CHECKPOINTS / "guide-a")
    genarm = f"GenARM alpha={taro.alpha:g}"
    methods = {
        "base": None,
        genarm: taro.fixed(),
        "TARo (router: A traces)": taro,
        "TARo (router: A+B traces)": TARoGuide.from_pretrained(CHECKPOINTS / "guide-ab"),
    }
    out = Path(output_dir)
    results: dict[str, Any] = {"paired": {}}
    for domain, title in (("a", "A (arithmetic, the reward model's domain)"), ("b", "B (comparisons, never seen)")):
        task = miniworld_task(f"test_{domain}", data[f"test_{domain}"])
        correct: dict[str, list[bool]] = {}
        results[domain] = {}
        for i, (name, guide) in enumerate(methods.items()):
            with console.status(f"Mini-world, domain {title}: {name} on {len(task.rows)} problems"):
                folder = out / "miniworld" / f"{domain}-{i}"
                report = run_eval(
                    Session(base, tok, guide),
                    task,
                    str(folder),
                    batch_size=batch_size,
                    max_new_tokens=cfg.max_new_tokens,
                    progress=False,
                )
            correct[name] = [r["correct"] for r in load_records(folder)]
            results[domain][name] = {key: report[key] for key in ("accuracy", "ci95", "n")}
        for name in methods:
            for other in ("base", genarm):
                if name not in ("base", other):
                    results["paired"][f"{domain}: {name} vs {other}"] = mcnemar(correct[name], correct[other])[
                        "mcnemar_p"
                    ]
        console.print(
            _table(f"Mini-world, domain {title}: {len(task.rows)} held-out test problems", domain, results, genarm)
        )
    out.mkdir(parents=True, exist_ok=True)
    try:
        _plot(results, list(methods), out / "miniworld.png")
        console.print(f"Plot: {out / 'miniworld.png'}")
    except ImportError as err:
        console.print(f"No plot: {err}", markup=False)
    return results


def _table(title: str, domain: str, results: dict[str, Any], genarm: str) -> Table:
    table = Table(title=title)
    for column in ("method", "accuracy", "95% CI", "McNemar p vs base", f"McNemar p vs {genarm}"):
        table.add_column(column)
    for name, r in results[domain].items():
        ps = [results["paired"].get(f"{domain}: {name} vs {other}") for other in ("base", genarm)]
        table.add_row(
            name,
            f"{r['accuracy']:.3f}",
            f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}",
            *("" if p is None else f"{p:.3g}" for p in ps),
        )
    return table


def _plot(results: dict[str, Any], methods: list[str], path: Path) -> None:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    accuracy_bars(
        ax,
        ["domain A (reward model's)", "domain B (unseen)"],
        {name: [results[d][name] for d in "ab"] for name in methods},
    )
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title("Mini-world, shipped checkpoints, fresh test problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

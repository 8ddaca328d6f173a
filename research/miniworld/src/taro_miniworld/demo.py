"""The evidence `taro demo` opens with: the shipped mini-world on freshly drawn test problems.

Mixed traffic (`mixed_evidence`, the headline): a few hundred new test problems of each domain, decoded by the
small base alone, each reward model alone (GenARM at its alpha chosen on its domain's validation), the best fixed
pair of weights (chosen on mixed validation), the per-domain weights (a perfect domain classifier in front of two
GenARM guides) and the router over both reward models (`taro_multi`), paired with McNemar's exact test. Then one
line on the single-reward-model results. Without the mixed-traffic checkpoints, the single-model tables
(`single_model_evidence`): base vs GenARM vs TARo with a router trained on A traces and with one trained on A and B
traces. Registered under the entry-point group `transformers_taro.demo`, which `taro demo` reads.
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
    """The mixed-traffic table when its checkpoints are shipped (`mixed_evidence`), else the single-model tables."""
    from .mixed import GUIDE_B, GUIDE_MULTI

    if (CHECKPOINTS / GUIDE_B).is_dir() and (CHECKPOINTS / GUIDE_MULTI).is_dir():
        return mixed_evidence(problems, output_dir, console, batch_size)
    return single_model_evidence(problems, output_dir, console, batch_size)


MIXED_TITLE = "Measured: one router over two specialist reward models, on mixed traffic (mini-world)"
SINGLE_MODEL_LINE = (
    "With one reward model (docs, results/miniworld): in its own domain the router about ties the best fixed alpha "
    "(+0.7 ± 0.8 points over 3 seeds); on a domain it never saw, guidance trained on one domain hurts."
)


def mixed_evidence(
    problems: int = 300, output_dir: str = "taro-demo", console: Console | None = None, batch_size: int = 100
) -> dict[str, Any]:
    """`problems` fresh test problems per domain, as one mixed stream: a table of every method with McNemar's
    exact test of the router over both reward models against each, and the line on single-model results.

    Returns `{"mixed": {method: {"accuracy", "ci95", "n", "by_domain"}}, "paired": {...}}`."""
    from transformers_taro.evaluation.runner import bootstrap_ci

    from .mixed import GUIDE_B, GUIDE_MULTI

    console = console or Console()
    console.print(f"[bold]{MIXED_TITLE}[/bold]")
    console.print(
        "Trained from scratch here: reward model A on arithmetic, B on comparisons, a router over both beside the "
        "small base, with no domain labels. Fresh held-out problems of both domains, greedy decoding."
    )
    cfg = MiniworldConfig(n_test=problems)
    data = splits(cfg, DEMO_TEST_SEED)
    tok = load_tokenizer(str(CHECKPOINTS / "small"))
    base = load_causal_lm(str(CHECKPOINTS / "small"))
    single = {
        "a": TARoGuide.from_pretrained(CHECKPOINTS / "guide-a"),
        "b": TARoGuide.from_pretrained(CHECKPOINTS / GUIDE_B),
    }
    multi = TARoGuide.from_pretrained(CHECKPOINTS / GUIDE_MULTI)
    pair = multi.fixed()
    methods: dict[str, dict[str, TARoGuide | None]] = {
        "base": {"a": None, "b": None},
        f"GenARM, RM A (alpha {single['a'].alpha:g})": {d: single["a"].fixed() for d in "ab"},
        f"GenARM, RM B (alpha {single['b'].alpha:g})": {d: single["b"].fixed() for d in "ab"},
        f"fixed pair (A {pair.alpha['a']:g}, B {pair.alpha['b']:g})": {d: pair for d in "ab"},
        "per-domain weights (told the domain)": {d: single[d].fixed() for d in "ab"},
        "TARo, router over both (no label)": {d: multi for d in "ab"},
    }
    out = Path(output_dir) / "miniworld-mixed"
    correct: dict[str, list[bool]] = {}
    results: dict[str, Any] = {"mixed": {}, "paired": {}}
    for i, (name, guides) in enumerate(methods.items()):
        by_domain = {}
        correct[name] = []
        for d in "ab":
            with console.status(
                f"Mini-world, mixed traffic: {name} on {len(data[f'test_{d}'])} problems of {d.upper()}"
            ):
                folder = out / f"{i}-{d}"
                run_eval(
                    Session(base, tok, guides[d]),
                    miniworld_task(f"test_{d}", data[f"test_{d}"]),
                    str(folder),
                    batch_size=batch_size,
                    max_new_tokens=cfg.max_new_tokens,
                    progress=False,
                )
            rows = [r["correct"] for r in load_records(folder)]
            by_domain[d] = sum(rows) / len(rows)
            correct[name] += rows
        results["mixed"][name] = {
            "accuracy": sum(correct[name]) / len(correct[name]),
            "ci95": list(bootstrap_ci(correct[name])),
            "n": len(correct[name]),
            "by_domain": by_domain,
        }
    router = list(methods)[-1]
    for name in methods:
        if name != router:
            results["paired"][f"mixed: {router} vs {name}"] = mcnemar(correct[router], correct[name])["mcnemar_p"]
    table = Table(title=f"Mini-world, mixed traffic: {problems} A + {problems} B fresh test problems, small base")
    for column in ("method", "accuracy", "95% CI", "on A", "on B", "McNemar p, router vs it"):
        table.add_column(column)
    for name, r in results["mixed"].items():
        p = results["paired"].get(f"mixed: {router} vs {name}")
        table.add_row(
            name,
            f"{r['accuracy']:.3f}",
            f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}",
            f"{r['by_domain']['a']:.3f}",
            f"{r['by_domain']['b']:.3f}",
            "" if p is None else f"{p:.3g}",
        )
    console.print(table)
    acc = {name: r["accuracy"] for name, r in results["mixed"].items()}
    fixed, told = list(methods)[3], list(methods)[4]
    console.print(
        f"On this draw the router, given no domain label, is {100 * (acc[router] - acc[fixed]):+.1f} points from the "
        f"best fixed pair of weights (McNemar p = {results['paired'][f'mixed: {router} vs {fixed}']:.3g}) and "
        f"{100 * (acc[router] - acc[told]):+.1f} from weights told each problem's domain. The 3000 + 3000-problem "
        "figures, per seed, are in the docs (results/miniworld)."
    )
    console.print(SINGLE_MODEL_LINE)
    try:
        _plot_mixed(results, Path(output_dir) / "miniworld.png")
        console.print(f"Plot: {Path(output_dir) / 'miniworld.png'}")
    except ImportError as err:
        console.print(f"No plot: {err}", markup=False)
    return results


def _plot_mixed(results: dict[str, Any], path: Path) -> None:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    accuracy_bars(ax, ["mixed traffic (A and B)"], {name: [r] for name, r in results["mixed"].items()})
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title("Mini-world, shipped checkpoints, fresh test problems")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def single_model_evidence(
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

"""`taro demo`: the embedded default model on a few GSM8K test problems, base vs GenARM vs TARo."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..models import load_causal_lm, load_tokenizer
from ..router import TARoRouter
from ..visualize import alpha_html, alpha_png, alpha_text, token_strings
from .session import DEFAULT_REWARD_MODEL, DEFAULT_ROUTER, Session, _shipped, default_alpha
from .tasks import load_task


def run_demo(problems: int = 4, alpha: float | None = None, max_new_tokens: int = 160, data: str | None = None,
             output_dir: str = "taro-demo") -> dict[str, float]:
    console = Console()
    alpha = default_alpha() if alpha is None else alpha
    with console.status("Loading SmolLM2-135M-Instruct (offline; the first run converts the embedded GGUF, ~30 s)"):
        tokenizer = load_tokenizer(None)
        base = load_causal_lm(None)
    with console.status("Loading the shipped reward model (LoRA) and router"):
        rm = load_causal_lm(_shipped(DEFAULT_REWARD_MODEL, "reward model"))
        router = TARoRouter.from_pretrained(_shipped(DEFAULT_ROUTER, "router"))
    session = Session(base, tokenizer, "taro", rm, router, alpha)
    task = load_task("gsm8k", data)
    rows = task.rows[:problems]
    prompts = [session.prompt(task.question(r)) for r in rows]
    results = {}
    for method in ("base", "genarm", "taro"):
        label = {"base": "base model", "genarm": f"GenARM (alpha={alpha:g})", "taro": "TARo (router)"}[method]
        with console.status(f"Solving {len(rows)} GSM8K test problems with {label}"):
            results[method] = session.generate(prompts, method=method, max_new_tokens=max_new_tokens)
        console.print(f"[green]done[/green] {label}")

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
            console.print(f"\n[bold]{method}[/bold] -> {pred} {mark}")
            if method == "taro":
                tokens = token_strings(tokenizer, gens[i].token_ids)
                console.print(alpha_text(tokens, gens[i].alphas, router.config.alpha_max))
                sections.append((f"Problem {i + 1} (gold {gold:g}, TARo says {pred})", tokens, gens[i].alphas))
            else:
                console.print(gens[i].text.strip())
    table = Table(title=f"Accuracy on {len(rows)} GSM8K test problems (a demo, not a measurement)")
    table.add_column("method")
    table.add_column("accuracy")
    for method, acc in accuracy.items():
        table.add_row(method, f"{acc:.2f}")
    console.print(table)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alphas.html").write_text(alpha_html(sections, router.config.alpha_max))
    alpha_png(sections, str(out / "alphas.png"), router.config.alpha_max)
    console.print(f"Alpha-coloured TARo answers: {out / 'alphas.html'} and {out / 'alphas.png'}")
    return accuracy

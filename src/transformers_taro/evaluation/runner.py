"""`taro eval`: batched guided generation over a task, graded, with a bootstrap CI and throughput.

Under `accelerate launch`, each process takes a contiguous shard of the problems; the records are gathered to the
main process, which writes one `generations.jsonl` and one `report.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..extras import require
from .session import Session
from .tasks import Task


def bootstrap_ci(correct: list[bool], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the accuracy."""
    if not correct:
        return (0.0, 0.0)
    values = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_comparison(run_a: str, run_b: str) -> dict[str, Any]:
    """Two `taro eval` runs on the same problems, compared problem by problem (exact McNemar test).

    McNemar's exact test is the two-sided binomial test of the discordant pairs (right in one run only) against
    1/2 (`scipy.stats.binomtest`). Also: how many outputs are identical and how many extracted answers agree.
    """
    binomtest = require("scipy.stats").binomtest
    a, b = ({r["index"]: r for r in map(json.loads, (Path(d) / "generations.jsonl").read_text().splitlines())}
            for d in (run_a, run_b))
    if a.keys() != b.keys():
        raise ValueError(f"{run_a} and {run_b} are not on the same problems ({len(a)} vs {len(b)}, "
                         f"{len(a.keys() ^ b.keys())} differ): a paired test needs the same ones.")
    only_a = sum(a[i]["correct"] and not b[i]["correct"] for i in a)
    only_b = sum(b[i]["correct"] and not a[i]["correct"] for i in a)
    return {
        "n": len(a), "accuracy_a": sum(r["correct"] for r in a.values()) / len(a),
        "accuracy_b": sum(r["correct"] for r in b.values()) / len(b), "only_a": only_a, "only_b": only_b,
        "mcnemar_p": binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0,
        "identical_outputs": sum(a[i]["output"] == b[i]["output"] for i in a),
        "same_answer": sum(a[i]["extracted"] == b[i]["extracted"] for i in a),
    }


def best_alpha(accuracy_by_alpha: dict[float, float]) -> float:
    """The fixed alpha with the highest validation accuracy; ties go to the smallest (least guidance)."""
    if not accuracy_by_alpha:
        raise ValueError("No validation accuracies to choose an alpha from.")
    return max(sorted(accuracy_by_alpha), key=lambda a: accuracy_by_alpha[a])


def record_alpha_choice(report_dirs: list[str], guide_folder: str) -> float:
    """Choose GenARM's alpha from `taro eval --method genarm` reports on a validation split; record it in a guide.

    Writes `alpha` and `alpha_selection` into the guide folder's `guide_config.json` (atomically), so
    `guide.fixed()` and `taro eval --method genarm` use that alpha when none is given.
    """
    from ..guide import GUIDE_CONFIG_NAME, TARoGuideConfig

    reports = [json.loads((Path(d) / "report.json").read_text()) for d in report_dirs]
    if any(r["method"] != "genarm" for r in reports):
        raise ValueError("record_alpha_choice takes reports of --method genarm runs only.")
    accuracy = {float(r["alpha"]): r["accuracy"] for r in reports}
    best = best_alpha(accuracy)
    path = Path(guide_folder) / GUIDE_CONFIG_NAME
    config = dataclasses.replace(
        TARoGuideConfig.from_file(path), alpha=best,
        alpha_selection={"task": reports[0]["task"], "n": reports[0]["n"], "offset": reports[0]["offset"],
                         "accuracy_by_alpha": {f"{a:g}": accuracy[a] for a in sorted(accuracy)},
                         "rule": "highest validation accuracy; ties go to the smaller alpha"},
    )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    os.replace(tmp, path)
    return best


def summarize(records: list[dict[str, Any]], task: str, method: str, seconds: float, extra: dict | None = None) -> dict:
    correct = [bool(r["correct"]) for r in records]
    tokens = sum(r["new_tokens"] for r in records)
    alphas = [r["mean_alpha"] for r in records if r["mean_alpha"] is not None]
    return {
        "task": task, "method": method, "n": len(records),
        "accuracy": sum(correct) / len(correct) if correct else 0.0,
        "ci95": list(bootstrap_ci(correct)),
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "generation_seconds": seconds, "new_tokens": tokens,
        "mean_alpha": sum(alphas) / len(alphas) if alphas else None,
        **(extra or {}),
    }


def run_eval(session: Session, task: Task, output_dir: str, limit: int | None = None, offset: int = 0,
             batch_size: int = 8, max_new_tokens: int = 256) -> dict:
    """Evaluate `session` on `task`; write `generations.jsonl` and `report.json`; return the report.

    Under `accelerate launch` each process generates a contiguous shard; the records are gathered to the main
    process (accelerate's `gather_object`), which writes the files. Other processes return an empty dict.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    rows = task.rows[offset : offset + limit if limit else None]
    out = Path(output_dir)
    records: list[dict[str, Any]] = []
    seconds = 0.0
    with state.split_between_processes(list(range(len(rows)))) as mine:
        for start in tqdm(range(0, len(mine), batch_size), desc=f"{task.name} {session.method}",
                          disable=not state.is_local_main_process):
            batch = [rows[i] for i in mine[start : start + batch_size]]
            prompts = [session.prompt(task.question(r), task.system) for r in batch]
            t0 = time.perf_counter()
            gens = session.generate(prompts, max_new_tokens=max_new_tokens)
            seconds += time.perf_counter() - t0
            for i, row, prompt, gen in zip(mine[start:], batch, prompts, gens):
                gold = task.gold(row)
                pred = task.extract(gen.text)
                records.append({
                    "index": offset + i, "prompt": prompt, "output": gen.text, "extracted": pred, "gold": gold,
                    "correct": bool(task.grade(pred, gold)), "mean_alpha": gen.mean_alpha,
                    "new_tokens": len(gen.token_ids),
                })
    if state.num_processes > 1:
        records = gather_object(records)
        # Processes run in parallel: the wall time is the slowest shard's.
        seconds = max(gather_object([seconds]))
    if not state.is_main_process:
        return {}
    records.sort(key=lambda r: r["index"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    extra = {"offset": offset, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
             "processes": state.num_processes, "dtype": str(session.base.dtype).removeprefix("torch."),
             "decoding": None if session.guide is None else session.guide.last_path, **session.names}
    report = summarize(records, task.name, session.method, seconds, extra)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report

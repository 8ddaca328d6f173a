"""The SmolLM2 pipeline's scripts (`examples/smollm2/`) run end to end on a tiny model and a few GSM8K rows."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from conftest import gsm8k_rows

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "smollm2"


def run_script(name: str, *argv: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.slow
def test_step_pairs_then_held_out_scores(tiny_model_dir, tmp_path, monkeypatch):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(6)))
    pairs = tmp_path / "pairs.jsonl"
    args = [
        "--data",
        str(data),
        "--offset",
        "2",
        "--limit",
        "3",
        "--sample-problems",
        "2",
        "--model",
        tiny_model_dir,
        "--batch-size",
        "4",
        "--output",
        str(pairs),
    ]
    run_script("step_pairs.py", *args, monkeypatch=monkeypatch)
    rows = [json.loads(line) for line in pairs.open()]
    summary = json.loads(pairs.with_suffix(".json").read_text())
    assert summary["pairs"] == len(rows) > 0 and summary["problems"] == 3
    assert summary["steps_with_sampled_rejected"] == sum(r["sampled"] for r in rows)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    assert rows[0]["prompt"].count(gsm8k_rows(6)[2]["question"].strip()) == 1  # the slice starts at --offset

    scores = tmp_path / "scores.json"
    run_script("rm_heldout.py", "--pairs", str(pairs), "--output", str(scores), tiny_model_dir, monkeypatch=monkeypatch)
    result = json.loads(scores.read_text())[tiny_model_dir]
    assert result["n"] == len(rows) and 0 <= result["accuracy"] <= 1
    parts = [result[k]["n"] for k in ("sampled", "corrupted") if k in result]
    assert sum(parts) == len(rows)


def test_compare_counts_loops_and_pairs_the_runs(tmp_path, monkeypatch):
    from transformers_taro.evaluation.runner import mcnemar

    right = {"base": [1, 0, 0, 1], "genarm": [1, 1, 0, 1], "taro": [1, 1, 1, 0]}
    other = {"base": [0, 0], "genarm": [1, 0], "taro": [1, 1]}  # a second block, pooled with the first
    looping = "He runs 60 meters per week.\n" * 3
    for block, solved in (("gsm8k", right), ("svamp", other)):
        for method, correct in solved.items():
            run = tmp_path / f"{block}-{method}"
            run.mkdir()
            rows = [
                {
                    "index": i,
                    "output": looping if (block, method, i) == ("gsm8k", "taro", 0) else f"The answer is {c}.\n",
                    "extracted": c,
                    "correct": bool(c),
                    "new_tokens": 10,
                }
                for i, c in reversed(list(enumerate(correct)))  # pooling pairs problems by index, not line
            ]
            (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            n = len(correct)
            (run / "report.json").write_text(json.dumps({"accuracy": sum(correct) / n, "ci95": [0, 1], "n": n}))
    out = tmp_path / "comparison.json"
    run_script("compare.py", str(tmp_path), "--output", str(out), "--pool", "both=gsm8k,svamp", monkeypatch=monkeypatch)
    both = json.loads(out.read_text())["both"]
    assert both["taro"]["n"] == 6 and both["taro"]["accuracy"] == 5 / 6 and both["base"]["accuracy"] == 2 / 6
    assert (both["taro vs base"]["only_a"], both["taro vs base"]["only_b"]) == (4, 1)
    with pytest.raises(SystemExit, match="no finished runs"):
        run_script("compare.py", str(tmp_path), "--output", str(out), "--pool", "x=gsm8k,math", monkeypatch=monkeypatch)
    result = json.loads(out.read_text())["gsm8k"]
    assert result["taro"]["loops"] == 0.25 and result["base"]["loops"] == 0
    assert (
        result["taro vs base"]["mcnemar_p"]
        == mcnemar([bool(c) for c in right["taro"]], [bool(c) for c in right["base"]])["mcnemar_p"]
    )
    assert (result["taro vs genarm"]["only_a"], result["taro vs genarm"]["only_b"]) == (1, 1)


def test_arithmetic_problems_check_out_and_their_splits_are_disjoint(tmp_path, monkeypatch):
    import importlib.util
    import re

    from transformers_taro.data import gsm8k_solutions
    from transformers_taro.tasks import load_task

    spec = importlib.util.spec_from_file_location("arithmetic_problems", EXAMPLES / "arithmetic_problems.py")
    problems = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(problems)
    splits = problems.make_splits(per_family=60, seed=1)
    questions = {split: {r["question"] for r in rows} for split, rows in splits.items()}
    assert not (questions["train"] & questions["validation"] or questions["train"] & questions["test"])
    assert not questions["validation"] & questions["test"]
    assert sum(len(rows) for rows in splits.values()) == 60 * len(problems.FAMILIES)
    assert splits == problems.make_splits(per_family=60, seed=1)  # seeded
    all_rows = [r for rows in splits.values() for r in rows]
    # Every step's arithmetic is right and the last number is the answer: the GSM8K pipeline reads them as gold.
    solutions, report = gsm8k_solutions(all_rows)
    assert report.skipped == 0 and len(solutions) == len(all_rows)
    for row in all_rows:
        steps = re.findall(r"<<([\d+\-*]+)=(\d+)>>", row["answer"])
        assert steps and all(eval(expr) == int(value) for expr, value in steps)  # noqa: S307 - our own digits
        assert int(row["answer"].rsplit("####", 1)[1]) == int(steps[-1][1])
    run_script(
        "arithmetic_problems.py", "--out", str(tmp_path / "arith"), "--per-family", "20", monkeypatch=monkeypatch
    )
    task = load_task("gsm8k", str(tmp_path / "arith" / "test.jsonl"))
    assert all(task.gold(r) == float(r["answer"].rsplit("####", 1)[1]) for r in task.rows)


@pytest.mark.slow
def test_the_arithmetic_guide_pipeline_runs_end_to_end_and_resumes(tiny_model_dir, tmp_path):
    """`train_arithmetic.sh` at toy size: problems, pairs, reward model, alpha on validation, router, test, the
    comparison; run again, every stage is skipped."""
    import os
    import subprocess

    from transformers_taro import TARoGuide

    runs, results = tmp_path / "runs", tmp_path / "arithmetic.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL": tiny_model_dir,
        "RUNS": str(runs),
        "RESULTS": str(results),
        "SHIP": str(tmp_path / "shipped"),
        "DEMO": str(tmp_path / "demo.jsonl"),
        "DEMO_PER_FAMILY": "3",
        "IN_DOMAIN": "multiply",
        "OUT_OF_DOMAIN": "give_away",
        "PER_FAMILY": "300",
        "PAIR_PROBLEMS": "12",
        "SAMPLE_PROBLEMS": "4",
        "HELDOUT_PROBLEMS": "4",
        "ROUTER_PROBLEMS": "8",
        "RM_STEPS": "2",
        "ROUTER_STEPS": "2",
        "ALPHAS": "0.5 1",
        "N_VAL": "6",
        "N_TEST": "6",
        "N_OOD": "4",
        "N_GSM8K": "0",
        "N_SVAMP": "0",
        "TOKENS": "8",
        "BATCH": "4",
        "TRAIN_BATCH": "2",
    }
    script = str(EXAMPLES / "train_arithmetic.sh")
    subprocess.run(["bash", script], env=env, check=True, capture_output=True, text=True)
    stages = [json.loads(line)["stage"] for line in (runs / "stages.jsonl").open()]
    assert stages == ["problems", "pairs", "reward_model", "heldout", "validation", "router", "test"]
    result = json.loads(results.read_text())
    for family, n in (("multiply", 6), ("give_away", 4)):
        assert {result[family][m]["n"] for m in ("base", "genarm", "taro")} == {n}
        assert 0 <= result[family]["taro vs base"]["mcnemar_p"] <= 1
    assert [s["stage"] for s in result["stages"]] == stages
    assert result["in_domain"]["taro"]["n"] == 6 and result["out_of_domain"]["blocks"] == ["give_away"]
    assert 0 <= result["rm_heldout_multiply"][str(runs / "rm")]["accuracy"] <= 1
    guide = TARoGuide.from_pretrained(str(runs / "router" / "guide"))
    assert guide.config.system_prompt == "Answer with the number."
    assert guide.config.alpha in (0.5, 1.0) and set(guide.config.alpha_selection["accuracy_by_alpha"]) == {"0.5", "1"}
    shipped = TARoGuide.from_pretrained(str(tmp_path / "shipped"))
    assert "| multiply | 6 |" in shipped.config.evaluation and shipped.config.alpha == guide.config.alpha
    assert "| give_away | 4 |" in (tmp_path / "shipped" / "README.md").read_text()
    # The demo's problems: in-domain test problems after the measured ones, never one of those.
    demo = [json.loads(line)["question"] for line in (tmp_path / "demo.jsonl").open()]
    test = [json.loads(line)["question"] for line in (runs / "problems" / "test-multiply.jsonl").open()]
    assert demo == test[6:9]
    # The reward model's pairs come from in-domain train problems only.
    pairs = [json.loads(line) for line in (runs / "pairs" / "train.jsonl").open()]
    train = {json.loads(line)["question"] for line in (runs / "problems" / "train-multiply.jsonl").open()}
    assert pairs and all(any(q in p["prompt"] for q in train) for p in pairs[:5])
    again = subprocess.run(["bash", script], env=env, check=True, capture_output=True, text=True)
    assert "==" not in again.stdout  # every stage finished before: none runs again
    assert len((runs / "stages.jsonl").read_text().splitlines()) == len(stages)


def test_the_example_scripts_python_snippets_import_what_exists():
    """Each `python -c "..."` snippet in the example shell scripts imports names the library has."""
    import ast
    import importlib
    import re
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.sh"))
    snippets = [code for script in scripts for code in re.findall(r'python -c "(.*?)"', script.read_text(), re.S)]
    assert any("data_dir" in code for code in snippets)  # measure.sh's
    for code in snippets:
        for node in ast.walk(ast.parse(code.replace("\\\n", ""))):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                assert all(hasattr(module, alias.name) for alias in node.names), (node.module, code)

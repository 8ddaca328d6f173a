"""Graders on real answers, the eval runner and CLI on a tiny model, and the alpha visualisations."""

from __future__ import annotations

import json
import threading

import pytest

from transformers_taro import TARoRouter, TARoRouterConfig
from transformers_taro.cli import main
from transformers_taro.evaluation import extract_choice, extract_number, grade_math, load_task
from transformers_taro.evaluation.runner import bootstrap_ci
from transformers_taro.visualize import AlphaScale, alpha_html, alpha_legend, alpha_png, alpha_text


@pytest.mark.parametrize(
    "text,value",
    [
        ("3 + 4 = 7\nThe answer is 7.", 7.0),
        ("so it is 1,200 dollars", 1200.0),
        ("#### 72", 72.0),
        ("The answer is $-3.5.", -3.5),
        ("no number here", None),
    ],
)
def test_extract_number(text, value):
    assert extract_number(text) == value


def test_extract_choice():
    assert extract_choice("Thinking... The answer is (C).") == "C"
    assert extract_choice("I pick option B. Final: (E)") == "E"
    assert extract_choice("unsure") is None


def test_math500_grading_is_symbolic_and_works_off_the_main_thread():
    task = load_task("math500")
    gold = task.gold(task.rows[0])
    assert gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert grade_math("Thus \\boxed{\\left(3, \\pi/2\\right)}", gold)
    assert not grade_math("Thus \\boxed{(3, \\pi)}", gold)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("ok", grade_math("\\boxed{(3,\\frac{\\pi}{2})}", gold)))
    t.start()
    t.join()
    assert result["ok"] is True


def test_tasks_read_taro_data_dir():
    # conftest points TARO_DATA_DIR at tests/fixtures/data (20, 5, 5 and 5 rows).
    assert [len(load_task(n).rows) for n in ("gsm8k", "svamp", "math500", "medxpertqa")] == [20, 5, 5, 5]
    svamp = load_task("svamp")
    assert svamp.gold(svamp.rows[0]) == 145.0 and svamp.question(svamp.rows[0]).endswith("bananas?")
    med = load_task("medxpertqa")
    assert med.gold(med.rows[0]) in "ABCDEFGHIJ"


def test_a_task_reads_a_local_dataset_folder_through_datasets(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from conftest import GSM8K_TEST

    folder = tmp_path / "my-gsm8k"
    folder.mkdir()
    (folder / "test.jsonl").write_text(GSM8K_TEST.read_text().splitlines(keepends=True)[3] * 2)
    task = load_task("gsm8k", str(folder))
    assert len(task.rows) == 2 and task.source == str(folder)
    assert task.gold(task.rows[0]) == load_task("gsm8k").gold(load_task("gsm8k").rows[3])


def test_without_data_a_task_reads_its_hub_dataset(monkeypatch):
    import datasets

    monkeypatch.delenv("TARO_DATA_DIR")
    asked = []
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **kw: asked.append((a, kw)) or [{"question": "1+1?", "answer": "#### 2"}]
    )
    task = load_task("gsm8k")
    assert asked == [(("openai/gsm8k", "main"), {"split": "test"})] and task.gold(task.rows[0]) == 2.0
    with pytest.raises(FileNotFoundError, match="no default source"):
        load_task("medxpertqa")


def test_an_unreachable_dataset_says_what_to_pass_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read at import: the environment is too late
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="TARO_DATA_DIR"):
        load_task("gsm8k", "someone/not-cached-dataset")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_task("gsm8k", str(tmp_path / "missing.jsonl"))


def test_jsonl_task_names_missing_fields(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "a": 2}) + "\n")
    with pytest.raises(ValueError, match="question.field"):
        load_task("jsonl", str(path))
    task = load_task("jsonl", str(path), question_field="q", answer_field="a")
    assert task.gold(task.rows[0]) == 2.0


def test_bootstrap_ci_brackets_the_accuracy():
    lo, hi = bootstrap_ci([True] * 30 + [False] * 70)
    assert lo < 0.3 < hi and hi - lo < 0.25


@pytest.mark.parametrize("method", ["base", "genarm", "taro"])
def test_eval_cli_writes_generations_and_report(tiny_model_dir, tmp_path, method, capsys):
    router_dir = tmp_path / "router"
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    TARoRouter(TARoRouterConfig(vocab_size=vocab)).save_pretrained(router_dir)
    out = tmp_path / "eval"
    args = [
        "eval",
        "--task",
        "gsm8k",
        "--method",
        method,
        "--base-model",
        tiny_model_dir,
        "--limit",
        "3",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "6",
        "--output-dir",
        str(out),
    ]
    if method != "base":
        args += ["--reward-model", tiny_model_dir]
    if method == "genarm":
        args += ["--alpha", "0.5"]
    if method == "taro":
        args += ["--router", str(router_dir), "--no-repeat-ngram-size", "3"]
    main(args)
    report = json.loads((out / "report.json").read_text())
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert report["n"] == 3 and len(rows) == 3 and report["method"] == method
    assert set(rows[0]) >= {"prompt", "output", "extracted", "gold", "correct", "mean_alpha"}
    assert report["accuracy"] == sum(r["correct"] for r in rows) / 3
    assert report["tokens_per_s"] > 0 and len(report["ci95"]) == 2
    assert (rows[0]["mean_alpha"] is None) == (method == "base")
    assert report.get("no_repeat_ngram_size") == (3 if method == "taro" else None)  # the guard is recorded
    assert "accuracy" in capsys.readouterr().out


def test_eval_cli_refuses_missing_parts(tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="--reward_model"):  # the shipped guide does not fit another base
        main(
            [
                "eval",
                "--task",
                "gsm8k",
                "--method",
                "genarm",
                "--base-model",
                tiny_model_dir,
                "--alpha",
                "1",
                "--output-dir",
                str(tmp_path),
            ]
        )
    with pytest.raises(SystemExit, match="--router"):
        main(
            [
                "eval",
                "--task",
                "gsm8k",
                "--method",
                "taro",
                "--base-model",
                tiny_model_dir,
                "--reward-model",
                tiny_model_dir,
                "--alpha",
                "1",
                "--output-dir",
                str(tmp_path),
            ]
        )
    with pytest.raises(SystemExit, match="no_repeat_ngram_size must be at least 1"):
        main(
            [
                "eval",
                "--task",
                "gsm8k",
                "--method",
                "base",
                "--base-model",
                tiny_model_dir,
                "--no-repeat-ngram-size",
                "0",
                "--output-dir",
                str(tmp_path),
            ]
        )
    with pytest.raises(SystemExit, match="negative"):
        main(
            [
                "eval",
                "--task",
                "gsm8k",
                "--base-model",
                tiny_model_dir,
                "--reward-model",
                tiny_model_dir,
                "--alpha",
                "-3",
                "--output-dir",
                str(tmp_path),
            ]
        )


def test_alpha_visualisations(tmp_path):
    # A narrow range, as a real router gives: the scale must spread it over the whole palette.
    tokens, alphas = ["The", " answer", " is", " 7", ".\n", "Done"], [0.07, 0.12, 0.2, 0.28, 0.1, 0.07]
    scale = AlphaScale.fit([alphas])
    assert (scale.low, scale.high) == (0.07, 0.28)
    assert scale.level(0.07) == 0 and scale.level(0.28) == 4  # lowest and highest shade are both used
    text = alpha_text(tokens, alphas, scale)
    assert text.plain == "".join(tokens) and len(text.spans) == len(tokens)
    assert len({str(span.style) for span in text.spans}) >= 4
    # Terminal colours come from the 256-colour palette, so no truecolor terminal is needed to tell them apart.
    assert all("color(" in str(span.style) and "rgb" not in str(span.style) for span in text.spans)
    assert "0.07-" in alpha_legend(scale).plain and "-0.28" in alpha_legend(scale).plain
    page = alpha_html([("Problem 1", tokens, alphas)], scale)
    assert 'title="alpha=0.28"' in page and "rgb(135, 0, 0)" in page and "rgb(255, 255, 215)" in page
    assert "0.07" in page.split("<h3>")[0] and "0.28" in page.split("<h3>")[0]  # the legend, before the answers
    alpha_png([("Problem 1", tokens, alphas)], str(tmp_path / "a.png"), scale)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    # One fixed alpha: one colour and a legend that says so.
    fixed = AlphaScale.fit([[0.5, 0.5]])
    assert fixed.rgb(0.5) == fixed.rgb(0.5) and "0.50 on every token" in alpha_legend(fixed).plain


def test_generate_cli_streams_and_colours(tiny_model_dir, tmp_path, capsys):
    html = tmp_path / "a.html"
    main(
        [
            "generate",
            "--base-model",
            tiny_model_dir,
            "--reward-model",
            tiny_model_dir,
            "--alpha",
            "1.0",
            "--max-new-tokens",
            "5",
            "--html",
            str(html),
            "Tom has 3 apples.",
        ]
    )
    out = capsys.readouterr().out
    assert "guidance weight per token" in out
    assert html.read_text().count('title="alpha=1.00"') >= 1


def test_record_alpha_choice_picks_the_best_validation_alpha(tmp_path):
    from transformers_taro import TARoGuideConfig
    from transformers_taro.evaluation.runner import best_alpha, record_alpha_choice

    dirs = []
    for alpha, acc in [(0.1, 0.2), (0.25, 0.3), (0.5, 0.3), (1.0, 0.1)]:
        d = tmp_path / f"val-{alpha}"
        d.mkdir()
        (d / "report.json").write_text(
            json.dumps({"method": "genarm", "alpha": alpha, "accuracy": acc, "task": "gsm8k", "n": 10, "offset": 7000})
        )
        dirs.append(str(d))
    guide = tmp_path / "guide"
    guide.mkdir()
    (guide / "guide_config.json").write_text(json.dumps({"method": "taro", "vocab_size": 96}))
    assert record_alpha_choice(dirs, str(guide)) == 0.25  # tie with 0.5: the smaller alpha
    config = TARoGuideConfig.from_file(guide / "guide_config.json")
    assert config.alpha == 0.25 and config.alpha_selection["accuracy_by_alpha"]["1"] == 0.1
    assert config.method == "taro" and config.vocab_size == 96
    assert best_alpha({2.0: 0.5, 4.0: 0.6}) == 4.0
    with pytest.raises(ValueError, match="No validation"):
        best_alpha({})


@pytest.mark.parametrize(
    "module,extra,call",
    [
        (
            "math_verify",
            "eval",
            lambda: __import__("transformers_taro.graders", fromlist=["x"]).grade_math("\\boxed{2}", "2"),
        ),
        ("matplotlib", "eval", lambda: alpha_png([("p", ["a"], [1.0])], "/nonexistent/a.png", AlphaScale(0, 1))),
        ("datasets", "train", lambda: __import__("transformers_taro.data", fromlist=["x"]).load_rows("org/some-data")),
    ],
)
def test_a_missing_optional_dependency_names_its_extra(monkeypatch, module, extra, call):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # what an environment without it looks like to import
    with pytest.raises(ImportError, match=rf"pip install 'transformers-taro\[{extra}\]'"):
        call()


def test_paired_comparison_is_mcnemar_on_the_same_problems(tmp_path):
    from scipy.stats import binomtest

    from transformers_taro.evaluation.runner import paired_comparison

    def run(name, correct, outputs):
        d = tmp_path / name
        d.mkdir()
        (d / "generations.jsonl").write_text(
            "".join(
                json.dumps({"index": i, "correct": c, "output": o, "extracted": o}) + "\n"
                for i, (c, o) in enumerate(zip(correct, outputs))
            )
        )
        return str(d)

    a = run("a", [True] * 8 + [False] * 2 + [True], ["x"] * 11)
    b = run("b", [False] * 8 + [True] * 2 + [True], ["x"] * 10 + ["y"])
    result = paired_comparison(a, b)
    assert (result["only_a"], result["only_b"], result["n"]) == (8, 2, 11)
    assert result["mcnemar_p"] == pytest.approx(binomtest(8, 10, 0.5).pvalue)
    assert result["identical_outputs"] == 10
    with pytest.raises(ValueError, match="same problems"):
        paired_comparison(a, run("c", [True], ["x"]))


@pytest.mark.slow
def test_grading_off_the_main_thread_survives_an_answer_that_never_finishes():
    import threading

    from transformers_taro.graders import _GRADER, grade_math, grading_timeouts

    results = {}

    def grade_in_thread(key, prediction, gold, timeout):
        t = threading.Thread(target=lambda: results.__setitem__(key, grade_math(prediction, gold, timeout)))
        t.start()
        t.join(timeout=120)
        assert not t.is_alive(), "grading hung"

    grade_in_thread("warm", "\\boxed{2}", "2", 10.0)  # starts the grading process
    before = grading_timeouts()
    # A big-integer power holds the GIL: no thread-based timeout could stop it.
    grade_in_thread("huge", "\\boxed{9^{9^{9^{9}}}}", "3", 1.0)
    assert results["huge"] is False and grading_timeouts() == before + 1
    grade_in_thread("after", "\\boxed{\\frac{1}{2}}", "0.5", 10.0)  # not stuck behind it, nor graded False
    assert results == {"warm": True, "huge": False, "after": True}
    assert _GRADER._proc is not None and _GRADER._proc.is_alive()


def test_math_verifys_own_timeout_counts_as_a_grading_timeout(monkeypatch):
    """On the main thread math-verify's own timeout cuts grading short: the answer is wrong, and counted."""
    pytest.importorskip("math_verify")
    import math_verify
    from math_verify.errors import TimeoutException

    from transformers_taro.graders import grading_timeouts

    def too_slow(*args, **kwargs):
        raise TimeoutException("Timeout during comparison")  # what math-verify raises when its alarm fires

    before = grading_timeouts()
    assert grade_math("\\boxed{2}", "2") and grading_timeouts() == before
    monkeypatch.setattr(math_verify, "verify", too_slow)
    assert grade_math("\\boxed{9^{9^{9}}}", "3") is False
    assert grading_timeouts() == before + 1


def test_eval_cli_system_prompt_replaces_every_prompts_system_message(tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--task", "gsm8k", "--method", "base", "--base_model", tiny_model_dir, "--limit", "2"]
    main([*args, "--max_new_tokens", "3", "--system_prompt", "Answer with the number.", "--output_dir", str(out)])
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert all("Answer with the number." in r["prompt"] and "step by step" not in r["prompt"] for r in rows)
    assert json.loads((out / "report.json").read_text())["system_prompt"] == "Answer with the number."
    main([*args, "--max_new_tokens", "3", "--system_prompt", "", "--output_dir", str(tmp_path / "none")])
    rows = [json.loads(line) for line in (tmp_path / "none" / "generations.jsonl").read_text().splitlines()]
    assert all("step by step" not in r["prompt"] for r in rows)
    with pytest.raises(SystemExit, match="other settings|system_prompt"):  # a resumed run must ask the same way
        main([*args, "--max_new_tokens", "3", "--output_dir", str(out)])

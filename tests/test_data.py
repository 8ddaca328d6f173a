"""Step-wise pairs from real GSM8K rows and Math-Step-DPO rows; automatic step labels; malformed rows."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import gsm8k_rows

from transformers_taro.data import (
    MalformedRow,
    build_step_pairs,
    build_traces,
    gsm8k_solutions,
    label_step,
    math_step_dpo_pairs,
    step_pairs_from_solutions,
)
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training.sampling import sample_incorrect_steps


def test_gsm8k_steps_are_checked_and_pairs_differ_only_in_the_step():
    solutions, report = gsm8k_solutions(gsm8k_rows(20))
    assert report.skipped == 0 and len(solutions) == 20
    first = solutions[0]
    assert first.steps == [
        "Natalia sold 48/2 = 24 clips in May.\n",
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n",
    ]
    assert first.results == [24.0, 72.0] and first.answer == "72"
    pairs = step_pairs_from_solutions(solutions)
    assert len(pairs) > 40
    for p in pairs:
        assert p["chosen"] != p["rejected"] and p["chosen"].endswith("\n")
    # Context = question + the correct steps so far.
    second = [p for p in pairs if p["chosen"] == first.steps[1]][0]
    assert second["prompt"].endswith("Answer:\n" + first.steps[0])


def test_step_labels():
    sol = gsm8k_solutions(gsm8k_rows(1))[0][0]
    assert label_step("She sold 48/2 = 24 clips in May.", sol, 0) is True
    assert label_step("She sold 48/2 = 25 clips in May.", sol, 0) is False  # wrong arithmetic
    assert label_step("She sold 48*2 = 96 clips in May.", sol, 0) is False  # right arithmetic, wrong step
    assert label_step("She sold 48 clips in April.", sol, 0) is None  # a number from the problem: can't tell
    assert label_step("", sol, 0) is None


def test_malformed_gsm8k_rows_are_counted_and_reported(caplog):
    rows = gsm8k_rows(3) + [
        {"question": "x"},
        {"question": "y", "answer": "no final line"},
        {"question": "", "answer": "1\n#### 1"},
    ]
    with caplog.at_level(logging.WARNING):
        solutions, report = gsm8k_solutions(rows)
    assert len(solutions) == 3 and report.skipped == 3 and report.first[0] == 3
    assert "skipped 3 malformed rows of 6 (first: row 3" in caplog.text
    with pytest.raises(MalformedRow, match="row 3"):
        gsm8k_solutions(rows, strict=True)


def test_math_step_dpo_rows(tmp_path, caplog):
    rows = [
        {
            "prompt": "What is 2+3*4?",
            "initial_reason_steps": "Step 1: 3*4 = 12.\n",
            "chosen": "Step 2: 2+12 = 14.",
            "rejected": "Step 2: 2+12 = 13.",
        },
        {"prompt": "Q2", "initial_reason_steps": "", "chosen": "", "rejected": "x"},
        {"prompt": "Q3", "initial_reason_steps": "", "chosen": "same", "rejected": "same"},
    ]
    with caplog.at_level(logging.WARNING):
        pairs = math_step_dpo_pairs(rows)
    assert len(pairs) == 1 and "skipped 2 malformed rows" in caplog.text
    assert pairs[0]["prompt"].endswith("Step 1: 3*4 = 12.\n") and pairs[0]["chosen"] == "Step 2: 2+12 = 14."
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert build_step_pairs(str(path)) == pairs
    assert build_traces(str(path)) == [{"prompt": pairs[0]["prompt"], "completion": pairs[0]["chosen"]}]


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(ValueError, match="Unrecognised data"):
        build_step_pairs(str(path))
    with pytest.raises(FileNotFoundError):
        build_step_pairs(str(tmp_path / "missing.jsonl"))


def test_sampled_incorrect_steps_are_labelled(tiny_model_dir):
    model, tok = load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)
    solutions, _ = gsm8k_solutions(gsm8k_rows(3))
    found, counts = sample_incorrect_steps(
        model, tok, solutions, samples_per_step=2, max_step_tokens=12, progress=False
    )
    total_steps = sum(len(s.steps) for s in solutions)
    assert sum(counts.values()) == 2 * total_steps
    for (si, k), steps in found.items():
        assert all(label_step(s, solutions[si], k) is False for s in steps)
    # Batched by context length, every step is still sampled exactly samples_per_step times.
    _, counts = sample_incorrect_steps(
        model, tok, solutions, samples_per_step=1, max_step_tokens=12, batch_size=4, progress=False
    )
    assert sum(counts.values()) == total_steps
    with pytest.raises(ValueError, match="--sampling_batch_size"):
        sample_incorrect_steps(model, tok, solutions, batch_size=0, progress=False)


def test_written_step_pairs_are_read_back_as_they_are(tmp_path):
    """Pairs written once (with the costly sampled steps) train every later reward model unchanged."""
    solutions, _ = gsm8k_solutions(gsm8k_rows(4))
    sampled = {(0, 0): ["Natalia sold 48/2 = 25 clips in May.\n"]}
    pairs = step_pairs_from_solutions(solutions, rejected_steps=sampled)
    assert [p["sampled"] for p in pairs].count(True) == 1 and pairs[0]["rejected"] == sampled[(0, 0)][0]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert build_step_pairs(str(path)) == [{k: p[k] for k in ("prompt", "chosen", "rejected", "final")} for p in pairs]
    with pytest.raises(ValueError, match="already holds step pairs"):
        build_step_pairs(str(path), rejected_steps=sampled)
    with pytest.raises(ValueError, match="no whole solutions"):
        build_traces(str(path))
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs[:2] + [{**pairs[2], "rejected": ""}]))
    with pytest.raises(MalformedRow, match="row 2"):
        build_step_pairs(str(path))


@pytest.mark.parametrize("line", ['["a list"]', '"a string"', "42"])
def test_training_rows_that_are_not_objects_are_named(tmp_path, line):
    from transformers_taro.data import load_rows

    path = tmp_path / "rows.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n' + line + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:2 is not an object"):
        list(load_rows(str(path)))


def test_pairs_and_traces_take_the_prompt_format_asked_for(tmp_path):
    from transformers_taro.data import SYSTEM_PROMPT, build_step_pairs, build_traces

    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(3)))
    for system in (SYSTEM_PROMPT, "Answer with the number."):
        prompts = [p["prompt"] for p in build_step_pairs(str(path), system=system)]
        prompts += [t["prompt"] for t in build_traces(str(path), system=system)]
        assert prompts and all(p.startswith(system) for p in prompts)
    bare = build_traces(str(path), system=None)
    assert bare[0]["prompt"].startswith("Question:")  # no system prompt at all

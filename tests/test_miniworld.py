"""The mini-world's problems: seeded, checkable step by step, disjoint splits."""

from __future__ import annotations

import pytest

from transformers_taro.data import arithmetic_is_correct, gsm8k_solutions, label_step
from transformers_taro.miniworld.pipeline import MiniworldConfig, splits
from transformers_taro.miniworld.problems import make_problems, make_tokenizer


def test_problems_are_seeded_and_their_steps_check_out():
    a, b = make_problems(50, seed=3), make_problems(50, seed=3)
    assert a == b and make_problems(50, seed=4) != a
    solutions, report = gsm8k_solutions(a)
    assert report.skipped == 0
    for p, sol in zip(a, solutions):
        assert 2 <= p["steps"] <= 6 and len(sol.steps) == p["steps"]
        assert all(arithmetic_is_correct(s) for s in sol.steps)
        assert sol.results[-1] == float(sol.answer)
        assert label_step(sol.steps[0], sol, 0) is True


def test_problem_sets_are_disjoint_and_test_sets_never_overlap_training_problems():
    cfg = MiniworldConfig(n_train=500, n_rm=300, n_router=200, n_val=50, n_test=100, n_ood=50)
    for seed in (None, 7):
        data = splits(cfg, seed)
        sets = {name: {p["question"] for p in rows} for name, rows in data.items()}
        assert all(len(sets[n]) == getattr(cfg, f"n_{n}") for n in sets)
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not sets[a] & sets[b], (a, b)
        assert all(p["steps"] >= cfg.ood_steps[0] for p in data["ood"])
    assert splits(cfg, 7)["test"] != splits(cfg, None)["test"]


def test_tokenizer_round_trips_with_single_digit_tokens():
    tok = make_tokenizer()
    text = make_problems(1, seed=0)[0]["question"] + "\n12+30=42\nZed eats 7 kiwis!  ok\n"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and tok.unk_token_id not in ids
    pieces = tok.convert_ids_to_tokens(tok("Ann has 12 pens, buys 305.")["input_ids"])
    assert pieces == ["Ann ", "has ", "1", "2", " pens", ",", " buys ", "3", "0", "5", "."]
    assert len(ids) < 0.8 * len(text)  # the generator's words are one token each


def test_tokenizer_gives_the_short_prompt_after_a_save(tmp_path):
    from transformers import AutoTokenizer

    from transformers_taro.data import format_prompt

    make_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert format_prompt("Ann has 12 pens, buys 30. How many pens now?", tok) == (
        "Q: Ann has 12 pens, buys 30. How many pens now?\nA:\n"
    )
    assert tok.padding_side == "left"


def test_tokenizer_vocabulary_does_not_depend_on_the_process():
    import os
    import subprocess
    import sys

    code = ("from transformers_taro.miniworld.problems import make_tokenizer; "
            "print(sorted(make_tokenizer().get_vocab().items()))")
    # Everything of this environment (PATH, PYTHONPATH, ...) but the hash seed, which is what is varied.
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1


def test_step_accuracy_counts_written_equations():
    from transformers_taro.miniworld.pipeline import step_accuracy

    outputs = ["(1) gets 10: 5+10=15\n(2) uses 3: 15-3=11\nThe answer is 11.\n", "no equation here"]
    assert step_accuracy(outputs) == 0.5
    assert step_accuracy([]) == 0.0


@pytest.mark.slow
def test_reproduce_end_to_end_on_a_toy_world(tmp_path, monkeypatch):
    """Every stage runs and writes the promised files; then --eval-only and --test-seed reuse the checkpoints."""
    import json

    from transformers_taro.miniworld.pipeline import BaseSpec, reproduce

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = MiniworldConfig(n_train=24, n_rm=6, n_router=8, n_val=4, n_test=6, n_ood=3,
                          small=BaseSpec(16, 1, 3, 1e-3), large=BaseSpec(32, 1, 3, 1e-3), batch_size=4,
                          rm_sft_steps=2, rm_steps=2, router_steps=2, alphas=(0.5, 2.0), max_new_tokens=12)
    kw = dict(results_dir=str(tmp_path / "res"), checkpoints=str(tmp_path / "ckpt"), cfg=cfg,
              work_dir=str(tmp_path / "work"))
    results = reproduce(**kw)
    assert set(results["methods"]) == {"base", "genarm alpha=0.5", "genarm alpha=2", "taro"}
    best = f"genarm alpha={results['best_alpha_on_validation']:g}"
    assert set(results["transfer"]) == set(results["ood"]) == {"base", best, "taro"}
    for section in ("methods", "transfer", "ood"):
        for r in results[section].values():
            assert 0 <= r["accuracy"] <= 1 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] and r["tokens_per_s"] > 0
    assert results["methods"]["taro"]["mean_alpha"] is not None
    saved = json.loads((tmp_path / "res" / "miniworld.json").read_text())
    assert saved["methods"] == json.loads(json.dumps(results["methods"]))
    assert (tmp_path / "res" / "miniworld.png").stat().st_size > 0
    assert "| taro |" in (tmp_path / "res" / "miniworld.md").read_text()
    for name in ("small", "large", "reward_model", "router"):
        assert (tmp_path / "ckpt" / name / "config.json").is_file()
    again = reproduce(**kw, eval_only=True)  # greedy decoding from the same checkpoints: the same answers
    assert {k: v["accuracy"] for k, v in again["methods"].items()} == {
        k: v["accuracy"] for k, v in results["methods"].items()}
    other = reproduce(**kw, eval_only=True, test_seed=5)
    assert (tmp_path / "res" / "miniworld-seed5.json").is_file() and other["config"]["test_seed"] == 5
    with pytest.raises(FileNotFoundError, match="run without it"):
        reproduce(**{**kw, "checkpoints": str(tmp_path / "none")}, eval_only=True)

"""The mini-world's problems: seeded, checkable step by step, disjoint splits."""

from __future__ import annotations

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


def test_test_sets_never_overlap_training_problems():
    cfg = MiniworldConfig(n_train=500, n_val=50, n_test=100, n_ood=50)
    for seed in (None, 7):
        data = splits(cfg, seed)
        seen = {p["question"] for p in data["train"] + data["val"]}
        assert not seen & {p["question"] for p in data["test"] + data["ood"]}
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

"""The mini-world's problems: seeded, checkable step by step, disjoint splits."""

from __future__ import annotations

import re

import pytest

from taro_miniworld.pipeline import MiniworldConfig, splits, world_config
from taro_miniworld.problems import GIVE, NAMES, make_problems, make_tokenizer
from transformers_taro.data import arithmetic_is_correct, gsm8k_solutions, label_step


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """The mini-world builds its own problems and models: nothing reaches for the Hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def toy_world(**changes):
    """A mini-world small enough to train every stage in seconds."""
    from taro_miniworld.pipeline import BaseSpec

    settings = dict(
        n_train=24,
        n_train_b=24,
        n_rm=6,
        n_rm_b=6,
        n_router=8,
        n_val=4,
        n_test=2,
        small=BaseSpec(16, 1, 3, 1e-3, 4),
        large=BaseSpec(32, 1, 3, 1e-3, 4),
        rm_sft_steps=2,
        rm_steps=2,
        router_steps=2,
        max_new_tokens=8,
        small_candidates=1,
        large_candidates=1,
    )
    return MiniworldConfig(**{**settings, **changes})


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


def test_transfer_problems_check_out_and_answer_the_asked_person():
    problems = make_problems(200, seed=3, domain="b")
    assert problems == make_problems(200, seed=3, domain="b") and problems != make_problems(200, seed=3)
    solutions, report = gsm8k_solutions(problems)
    assert report.skipped == 0
    swaps = 0
    for p, sol in zip(problems, solutions):
        assert 1 <= p["steps"] <= 3 and len(sol.steps) == p["steps"]
        assert all(arithmetic_is_correct(s) for s in sol.steps)
        asked = p["question"].split(" does ")[1].split(" have")[0]
        first = p["question"].split(" has ")[0]
        last = sol.steps[-1].split(": ")[1].split(", ")
        held = dict(part.split(" ")[:2] for part in last)
        value = held[asked].split("=")[-1]
        assert float(value) == float(sol.answer), (asked, first, sol.steps[-1], sol.answer)
        swaps += "swap" in p["answer"]
    assert swaps > 10
    with pytest.raises(ValueError, match="domains"):
        make_problems(1, seed=0, domain="c")


def test_comparison_problems_check_out_and_answer_the_last_person():
    """Each line computes the next person's total from the one before, as its clause says (more, fewer, twice,
    half); the answer is the last person's, and every relation and step count is drawn."""
    problems = make_problems(300, seed=3, domain="compare")
    assert problems == make_problems(300, seed=3, domain="compare") and problems != make_problems(
        300, seed=4, domain="compare"
    )
    solutions, report = gsm8k_solutions(problems)
    assert report.skipped == 0
    relations, steps = set(), set()
    for p, sol in zip(problems, solutions):
        steps.add(p["steps"])
        assert len(sol.steps) == p["steps"] and all(arithmetic_is_correct(s) for s in sol.steps)
        total = int(re.match(r"\w+ has (\d+) ", p["question"]).group(1))
        people = [re.match(r"\w+", p["question"]).group(0)]
        for line in sol.steps:
            person, n, relation, before = re.match(
                r"\(\d\) (\w+) has (\d+ )?(more|fewer|twice|half)[a-z ]* (\w+):", line
            ).groups()
            assert before == people[-1] and person not in people
            people.append(person)
            amount = int(n) if n is not None else 0  # twice / half name no amount
            total = {"more": total + amount, "fewer": total - amount, "twice": total * 2, "half": total // 2}[relation]
            assert line.rstrip().endswith(f"={total}") and total > 0
            relations.add(relation)
        assert sol.answer == str(total) and p["question"].endswith(f"does {people[-1]} have?")
    assert relations == {"more", "fewer", "twice", "half"} and steps == {2, 3, 4}
    # Every word of the domain is one token.
    tok = make_tokenizer()
    words = [t.strip() for t in tok.convert_ids_to_tokens(tok(problems[0]["question"])["input_ids"])]
    assert {"more", "fewer", "than", "twice", "half", "as"} & set(words) and all(len(w) > 0 for w in words)


def test_the_shipped_world_compares_and_the_transfers_world_keeps_its_settings():
    from taro_miniworld.pipeline import TRANSFERS

    shipped, transfers = MiniworldConfig(), world_config("b-copied")
    assert shipped == world_config() and shipped.domain_b == "compare" and shipped.small.check_step is None
    assert (transfers.n_train_b, transfers.small, transfers.large) == (
        TRANSFERS["n_train_b"],
        TRANSFERS["small"],
        TRANSFERS["large"],
    )
    assert transfers.small.check_step == 1000 and transfers.large.check_step == 1200
    assert world_config("b-ordered").domain_b == "b-ordered" and world_config("b-ordered", seed=2).seed == 2


def test_ordered_transfers_are_the_same_problems_with_the_totals_in_the_question_order():
    plain, ordered = make_problems(200, seed=3, domain="b"), make_problems(200, seed=3, domain="b-ordered")
    assert [p["question"] for p in plain] == [p["question"] for p in ordered]
    solutions, report = gsm8k_solutions(ordered)
    assert report.skipped == 0
    reordered = 0
    for p, q, sol in zip(plain, ordered, solutions):
        assert p["answer"].split("####")[1] == q["answer"].split("####")[1]
        assert all(arithmetic_is_correct(s) for s in sol.steps)
        first = q["question"].split(" has ")[0]
        assert all(line.split(": ")[1].startswith(first + " ") for line in sol.steps)
        reordered += p["answer"] != q["answer"]
    assert reordered > 50  # where the second person gives, the plain world writes the giver first
    # "b-restated" ("b-ordered" restated) and "b-copied" ("b" restated): the same problems and lines, opened by the
    # starting totals and closed by the asked person's total, both copied.
    for inner, restated in ((ordered, "b-restated"), (plain, "b-copied")):
        for p, q in zip(inner, make_problems(200, seed=3, domain=restated)):
            lines = q["answer"].split("\n")
            first, n, second, m = re.match(r"(\w+) has (\d+) \w+ and (\w+) has (\d+),", q["question"]).groups()
            assert lines[0] == f"(0) {first} {n}, {second} {m}"
            assert lines[1:-2] == p["answer"].split("\n")[:-1]
            asked = q["question"].split(" does ")[1].split(" have")[0]
            assert lines[-2] == f"now: {asked} {lines[-1].removeprefix('#### ')}"
            assert lines[-1] == p["answer"].split("\n")[-1]
    # "b-tracked": "b-copied" with each transfer line's new totals restated at its end, giver first.
    for p, q in zip(make_problems(200, seed=3, domain="b-copied"), make_problems(200, seed=3, domain="b-tracked")):
        for line, tracked in zip(p["answer"].split("\n"), q["answer"].split("\n")):
            head, _, restated = tracked.partition(", now ")
            assert head == line
            if restated:
                results = re.findall(r"(\w+) <<[^>]*=(\d+)>>", line)
                assert restated == ", ".join(f"{name} {total}" for name, total in results)
    # "b-named": "b-tracked" with each clause's amount before the taker, so that a number after a name is always
    # that person's total.
    for p, q in zip(make_problems(200, seed=3, domain="b-tracked"), make_problems(200, seed=3, domain="b-named")):
        plain = re.sub(rf"(\w+) ({'|'.join(GIVE)}) (\w+) (\d+)", r"\1 \2 \4 to \3", p["question"] + p["answer"])
        assert plain == q["question"] + q["answer"]
        assert not re.search(rf"(?:{'|'.join(NAMES)}) \d+", q["question"])


def test_problem_sets_are_disjoint_and_test_sets_never_overlap_training_problems():
    cfg = MiniworldConfig(n_train=300, n_train_b=150, n_rm=200, n_router=100, n_val=50, n_test=100, n_rm_b=120)
    for seed in (None, 7):
        data = splits(cfg, seed)
        sets = {name: {p["question"] for p in rows} for name, rows in data.items()}
        sizes = {
            "train_a": 300,
            "train_b": cfg.n_train_b,
            "val_a": 50,
            "val_b": 50,
            "rm": 200,
            "router_a": 100,
            "router_b": 100,
            "rm_b": 120,
            "test_a": 100,
            "test_b": 100,
        }
        assert {n: len(s) for n, s in sets.items()} == sizes
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not sets[a] & sets[b], (a, b)
        domains = {n: {"Q" if " does " in p["question"] else "A" for p in rows} for n, rows in data.items()}
        assert all(domains[n] == ({"Q"} if n.endswith("_b") else {"A"}) for n in data)  # rm is A only, rm_b B only
    assert splits(cfg, 7)["test_a"] != splits(cfg, None)["test_a"]
    assert splits(cfg, 7)["test_b"] != splits(cfg, None)["test_b"]
    assert splits(cfg, 7)["val_a"] == splits(cfg, None)["val_a"]


def test_tokenizer_round_trips_with_single_digit_tokens():
    tok = make_tokenizer()
    text = make_problems(1, seed=0)[0]["question"] + "\n12+30=42\nZed eats 7 kiwis!  ok\n"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and tok.unk_token_id not in ids
    pieces = tok.convert_ids_to_tokens(tok("Ann has 12 pens, buys 305.")["input_ids"])
    assert pieces == ["Ann ", "has ", "1", "2", " pens", ",", " buys ", "3", "0", "5", "."]
    assert len(ids) < 0.8 * len(text)  # the generator's words are one token each


def test_a_name_is_one_token_wherever_it_is_written():
    from taro_miniworld.problems import NAMES

    tok, split = make_tokenizer(), make_tokenizer(one_token_names=False)
    for p in make_problems(50, seed=1, domain="b-copied"):
        text = "Q: " + p["question"] + "\nA:\n" + p["answer"]
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        names = [t for t in tok.convert_ids_to_tokens(ids) if t.strip() in NAMES]
        assert set(names) <= {f" {n} " for n in NAMES}, set(names)
        assert len(names) == sum(text.count(f" {n} ") for n in NAMES)  # no name is left as characters
        # The first world's scheme writes the name after "and" as another token; every other token is the same.
        assert split.decode(split(text)["input_ids"]) == text
        assert "and " in split.convert_ids_to_tokens(split(text)["input_ids"])
    question = make_problems(1, seed=0)[0]["question"]  # domain A has no name after a word: the same tokens
    assert tok(question)["input_ids"] == split(question)["input_ids"]


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

    code = "from taro_miniworld.problems import make_tokenizer; print(sorted(make_tokenizer().get_vocab().items()))"
    # Everything of this environment (PATH, PYTHONPATH, ...) but the hash seed, which is what is varied.
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1


def test_step_accuracy_counts_written_equations():
    from taro_miniworld.pipeline import step_accuracy

    outputs = ["(1) gets 10: 5+10=15\n(2) uses 3: 15-3=11\nThe answer is 11.\n", "no equation here"]
    assert step_accuracy(outputs) == 0.5
    assert step_accuracy([]) == 0.0


@pytest.mark.slow
def test_reproduce_end_to_end_on_a_toy_world(tmp_path, monkeypatch):
    """Every stage runs and writes the promised files; then --eval-only and --test-seed reuse the checkpoints."""
    import dataclasses
    import json

    from taro_miniworld.pipeline import SHIPPED_SEED, reproduce, summarize_seeds

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = toy_world(n_test=6, alphas=(0.5, 2.0), max_new_tokens=12, small_candidates=2, large_candidates=2)
    kw = dict(
        results_dir=str(tmp_path / "res"),
        checkpoints=str(tmp_path / "ckpt"),
        cfg=cfg,
        work_dir=str(tmp_path / "work"),
        processes=1,
    )
    results = reproduce(**{**kw, "processes": 2})  # evaluations two at a time, in worker processes
    assert set(results["methods"]) == {"base", "genarm alpha=0.5", "genarm alpha=2", "taro", "taro_ab"}
    best = f"genarm alpha={results['best_alpha_on_validation']:g}"
    best_b = f"genarm alpha={results['best_alpha_on_validation_b']:g}"
    assert set(results["transfer"]) == {"base", best, "taro", "taro_ab"}
    assert set(results["domain_b"]) == set(results["transfer_b"]) == {"base", best, best_b, "taro", "taro_ab"}
    for block in ("methods", "domain_b", "transfer", "transfer_b"):
        for r in results[block].values():
            assert 0 <= r["accuracy"] <= 1 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] and r["tokens_per_s"] > 0
            assert r["n"] == 6
        for other in results[block]:
            if other != "taro":
                assert 0 <= results["paired"][f"{block}: taro vs {other}"] <= 1
    assert results["methods"]["taro"]["mean_alpha"] is not None
    # The fixed alpha chosen on A's validation is recorded in both shipped guides, for guide.fixed().
    for folder in ("guide-a", "guide-ab"):
        recorded = json.loads((tmp_path / "ckpt" / folder / "guide_config.json").read_text())
        assert recorded["alpha"] == results["best_alpha_on_validation"] and recorded["method"] == "taro"
    saved = json.loads((tmp_path / "res" / "miniworld.json").read_text())
    assert saved["methods"] == json.loads(json.dumps(results["methods"]))
    assert list(saved["seeds"]["per_seed"]) == [str(SHIPPED_SEED)]
    assert (tmp_path / "res" / "miniworld.png").stat().st_size > 0
    assert "| taro |" in (tmp_path / "res" / "miniworld.md").read_text()
    for name in ("small", "large", "guide-a/router", "guide-ab/router", "guide-a/reward_model"):
        assert (tmp_path / "ckpt" / name / "config.json").is_file()
    # Evaluated anew in one process: greedy decoding from the same checkpoints gives the same answers.
    again = reproduce(**{**kw, "work_dir": str(tmp_path / "work-again")}, eval_only=True)
    for block in ("methods", "domain_b", "transfer", "transfer_b"):
        assert {k: v["accuracy"] for k, v in again[block].items()} == {
            k: v["accuracy"] for k, v in results[block].items()
        }
    # --resume after a complete run trains nothing again (each stage is journalled once it completes).
    from taro_miniworld import pipeline

    with monkeypatch.context() as m:
        m.setattr(pipeline, "train_base", lambda *a, **k: pytest.fail("a completed stage ran again"))
        resumed = reproduce(**kw, resume=True)
    assert resumed["methods"]["taro"]["accuracy"] == results["methods"]["taro"]["accuracy"]
    journal = json.loads((tmp_path / "work" / "stages.json").read_text())
    # Every completed stage has its wall time (a toy stage can take under 5 ms, which rounds to 0).
    assert set(journal["seconds"]) == set(journal["done"]) and all(t >= 0 for t in journal["seconds"].values())
    for which in ("small", "large"):
        choice = json.loads((tmp_path / "work" / f"{which}_base_choice.json").read_text())
        # Toy bases never land in range: both draws are trained to the end, and the one nearer the ranges is kept.
        assert set(choice["validation_accuracy"]) == {"0", "1"} and results[f"{which}_base_choice"] == choice
        assert all("a" in draw and "b" in draw for draw in choice["validation_accuracy"].values())
    with pytest.raises(ValueError, match="another configuration"):
        reproduce(**{**kw, "cfg": dataclasses.replace(cfg, router_steps=3)}, resume=True)
    # A fresh test draw without matplotlib: the results are written, the plot is skipped with a message.
    import sys

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets where it is not installed
        other = reproduce(**kw, eval_only=True, test_seed=5)
    assert (tmp_path / "res" / "miniworld-seed5.json").is_file() and other["config"]["test_seed"] == 5
    assert not (tmp_path / "res" / "miniworld-seed5.png").exists()
    assert other["methods"]["base"]["n"] == 6
    # The mixed-traffic keys too, on the fresh draw (the results file, under --eval-only --test-seed).
    assert {"mixed", "transfer_mixed", "best_pair_on_validation", "headroom_on_validation"} <= set(other)
    assert (
        "mixed: taro_multi vs fixed_pair" in other["paired"] and "transfer_mixed: taro_multi vs base" in other["paired"]
    )
    # Another pipeline seed adds itself to the summary in miniworld.json.
    reproduce(
        **{
            **kw,
            "cfg": dataclasses.replace(cfg, seed=1),
            "checkpoints": str(tmp_path / "ckpt1"),
            "work_dir": str(tmp_path / "work1"),
        }
    )
    summary = json.loads((tmp_path / "res" / "miniworld.json").read_text())["seeds"]
    assert list(summary["per_seed"]) == [str(SHIPPED_SEED), "1"]
    assert len(summary["taro_minus_best_fixed"]["domain_b: taro_ab"]["per_seed"]) == 2
    assert "across seeds" in (md := (tmp_path / "res" / "miniworld.md").read_text())
    assert f"per seed ({SHIPPED_SEED}, 1)" in md  # which seed each column of differences is
    # A further seed's draw of other test problems is not another seed.
    other_draw = json.loads((tmp_path / "res" / "miniworld-pipeline-seed1.json").read_text())
    other_draw["config"]["seed"] = 9
    (tmp_path / "res" / "miniworld-pipeline-seed1-seed5.json").write_text(json.dumps(other_draw))
    assert list(summarize_seeds(tmp_path / "res")["per_seed"]) == [str(SHIPPED_SEED), "1"]
    with pytest.raises(FileNotFoundError, match="run without it"):
        reproduce(**{**kw, "checkpoints": str(tmp_path / "none")}, eval_only=True)
    with pytest.raises(ValueError, match="--processes must be at least 1"):
        reproduce(**{**kw, "processes": 0})
    # Another world (domain B with its totals in a fixed order) keeps to its own files and its own summary.
    before = (tmp_path / "res" / "miniworld.json").read_text()
    ordered = reproduce(
        **{
            **kw,
            "cfg": dataclasses.replace(cfg, domain_b="b-ordered"),
            "checkpoints": str(tmp_path / "ckpt-o"),
            "work_dir": str(tmp_path / "work-o"),
        }
    )
    assert (tmp_path / "res" / f"miniworld-b-ordered-pipeline-seed{SHIPPED_SEED}.json").is_file()
    assert (tmp_path / "res" / "miniworld.json").read_text() == before
    assert list(ordered["seeds"]["per_seed"]) == [str(SHIPPED_SEED)] and ordered["config"]["domain_b"] == "b-ordered"


def test_b_errors_names_the_first_error_of_a_domain_b_answer():
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "b_errors.py"
    first_error = runpy.run_path(str(script))["first_error"]
    for domain in ("b", "b-copied", "b-tracked", "b-named"):
        for p in make_problems(40, seed=4, domain=domain):
            prompt = f"Q: {p['question']}\nA:\n"
            lines = re.sub(r"<<[^>]*>>", "", p["answer"]).split("\n")
            gold = lines[-1].removeprefix("#### ")
            right = "\n".join(lines[:-1] + [f"The answer is {gold}."])
            assert first_error(prompt, right) == "correct", right
            assert first_error(prompt, right.replace(f"is {gold}.", f"is {int(gold) + 1}.")) == "final answer"
            first, n, second, m = re.match(r"(\w+) has (\d+) \w+ and (\w+) has (\d+),", p["question"]).groups()
            step1 = next(line for line in lines if line.startswith("(1)"))
            if "swap" in step1 or n == m:
                continue
            # Step 1 reads the giver's and taker's totals from the question: the other's is a binding error.
            name, total = re.search(r": (\w+) (\d+)", step1).groups()
            other = m if total == n else n
            swapped = step1.replace(f": {name} {total}-", f": {name} {other}-")
            assert first_error(prompt, right.replace(step1, swapped)) == "binding (step 1)"
            wrong_sum = re.sub(r"=(\d+),", lambda x: f"={int(x.group(1)) + 1},", step1, count=1)
            assert first_error(prompt, right.replace(step1, wrong_sum)) == "arithmetic"
            if domain in ("b-tracked", "b-named"):
                wrong_now = re.sub(r"(\d+)$", lambda x: str(int(x.group(1)) + 1), step1)
                assert first_error(prompt, right.replace(step1, wrong_now)) == "restated totals"


@pytest.mark.slow
def test_base_draws_trains_grades_and_resumes(tmp_path, monkeypatch):
    import json
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "base_draws.py"
    out = tmp_path / "draws.json"
    argv = [
        "base_draws.py",
        "--seeds",
        "5",
        "--draws",
        "1",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--heads",
        "8",
        "--n-train-b",
        "30",
        "--domain-b",
        "b-copied",
        "--one-token-names",
        "--label",
        "toy",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    (row,) = json.loads(out.read_text())["draws"]
    assert row["label"] == "toy" and row["seed"] == 5 and row["n_train_b"] == 30 and row["one_token_names"]
    assert 0 <= row["val_a"] <= 1 and 0 <= row["val_b"] <= 1 and row["recipe"]["steps"] == 2
    folder = tmp_path / "work" / "toy" / "seed5-draw0"
    assert row["recipe"]["heads"] == 8 and json.loads((folder / "config.json").read_text())["num_attention_heads"] == 8
    assert (folder / "val_b" / "report.json").is_file()
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    runpy.run_path(str(script), run_name="__main__")  # resumable: read, not trained again
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights
    assert len(json.loads(out.read_text())["draws"]) == 1
    # --check-only: trained to the check step, its B lookups recorded, nothing saved.
    argv[argv.index("--steps") + 1] = "4"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            *argv[: argv.index("--label") + 1],
            "check",
            *argv[argv.index("--label") + 2 :],
            "--check-only",
            "--check-step",
            "2",
        ],
    )
    runpy.run_path(str(script), run_name="__main__")
    row = json.loads(out.read_text())["draws"][-1]
    assert row["label"] == "check" and row["check_step"] == 2 and 0 <= row["lookup"] <= 1 and "val_b" not in row
    assert not (tmp_path / "work" / "check").exists()


@pytest.mark.slow
def test_training_in_two_tracks_at_once_gives_the_same_models(tmp_path):
    """train_all(processes=2) trains the small base's track and the larger base's in two worker processes at once:
    every checkpoint matches one process's to float32 rounding (a worker's thread count changes the order of
    reductions, so the last digits may differ; a different seed, order or stage would not come this close), and the
    shared journal holds every stage."""
    import json

    import torch
    from safetensors.torch import load_file

    from taro_miniworld.pipeline import train_all

    cfg = toy_world(small_candidates=2, large_candidates=2)
    data = splits(cfg)
    for n in (1, 2):
        train_all(cfg, tmp_path / f"ckpt{n}", data, tmp_path / f"work{n}", processes=n)
    weights = sorted(f.relative_to(tmp_path / "ckpt1") for f in (tmp_path / "ckpt1").rglob("*.safetensors"))
    assert {str(f.parent) for f in weights} >= {"small", "large", "guide-a/router", "guide-ab/router"}
    for f in weights:
        one, two = load_file(tmp_path / "ckpt1" / f), load_file(tmp_path / "ckpt2" / f)
        assert one.keys() == two.keys(), f
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=f"{f}: {name}")
    journals = [json.loads((tmp_path / f"work{n}" / "stages.json").read_text()) for n in (1, 2)]
    assert sorted(journals[0]["done"]) == sorted(journals[1]["done"]) == sorted(journals[1]["seconds"])
    assert len(journals[1]["done"]) == 5


@pytest.mark.slow
def test_a_failing_training_track_stops_the_other(tmp_path):
    """The small track fails at once (no draw allowed); the larger base's track, which would train for minutes, is
    stopped rather than waited for, and the small track's error is what is raised."""
    import time

    from taro_miniworld.pipeline import BaseSpec, train_all

    cfg = MiniworldConfig(
        n_train=24,
        n_train_b=24,
        n_rm=6,
        n_router=8,
        n_val=4,
        n_test=2,
        small=BaseSpec(16, 1, 3, 1e-3, 4),
        large=BaseSpec(16, 1, 200_000, 1e-3, 4),
        small_candidates=0,
        large_candidates=1,
    )
    start = time.perf_counter()
    with pytest.raises(ValueError):  # min() of no finished draw, raised in the small track's worker
        train_all(cfg, tmp_path / "ckpt", splits(cfg), tmp_path / "work", processes=2)
    assert time.perf_counter() - start < 120  # the larger base's 200000 steps would take far longer
    assert not (tmp_path / "ckpt" / "large").exists()


def test_a_training_track_left_running_takes_the_other_tracks_threads(monkeypatch):
    import threading

    import torch

    from taro_miniworld import pipeline

    for name in ("_TRACK_FINISHED", "_ALL_THREADS"):  # restored after the test
        monkeypatch.setattr(pipeline, name, getattr(pipeline, name))
    before, finished = torch.get_num_threads(), threading.Event()
    try:
        pipeline._start_track_worker(1, 2, finished)
        pipeline._claim_idle_threads()
        assert torch.get_num_threads() == 1
        finished.set()
        pipeline._claim_idle_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_base_shape_whose_heads_do_not_divide_its_width_is_refused():
    from taro_miniworld.pipeline import BaseSpec

    with pytest.raises(ValueError, match="heads=3 must be a positive divisor of hidden=64"):
        BaseSpec(64, 2, 100, 1e-3, heads=3)


def test_a_base_specs_rotary_base_reaches_the_model():
    from taro_miniworld.pipeline import BaseSpec, _base_model

    tok = make_tokenizer()
    default, low = (
        _base_model(tok, BaseSpec(16, 1, 10, 1e-3, heads=2, rope_theta=theta), 0) for theta in (10000.0, 500.0)
    )
    # head width 8: frequencies theta^(-2i/8), so the second is theta^(-1/4)
    assert default.model.rotary_emb.inv_freq[1].item() == pytest.approx(10000.0**-0.25)
    assert low.model.rotary_emb.inv_freq[1].item() == pytest.approx(500.0**-0.25)


def test_the_larger_base_has_four_times_the_small_bases_non_embedding_parameters():
    from taro_miniworld.pipeline import _base_model

    cfg, tok = MiniworldConfig(), make_tokenizer()

    def inner(spec):
        model = _base_model(tok, spec, 0)
        embeddings = {
            id(p) for p in (*model.get_input_embeddings().parameters(), *model.get_output_embeddings().parameters())
        }
        return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)

    assert 3.8 < inner(cfg.large) / inner(cfg.small) < 4.2


@pytest.mark.parametrize("which", ["small", "large"])
def test_the_shipped_bases_have_the_shipped_configurations_shape(which):
    import json

    from taro_miniworld.pipeline import CHECKPOINTS

    spec, shipped = getattr(MiniworldConfig(), which), json.loads((CHECKPOINTS / which / "config.json").read_text())
    assert (shipped["hidden_size"], shipped["num_hidden_layers"], shipped["num_attention_heads"]) == (
        spec.hidden,
        spec.layers,
        spec.heads,
    )


def test_training_never_writes_into_the_package_and_shipping_is_explicit(tmp_path, monkeypatch):
    """The shipped seed trains into runs/ (not the installed checkpoints); `ship_checkpoints` is the one step that
    copies a trained world into a package folder, and it refuses an incomplete one."""
    from taro_miniworld import pipeline

    monkeypatch.chdir(tmp_path)
    before = sorted((p, p.stat().st_mtime_ns) for p in pipeline.CHECKPOINTS.rglob("*") if p.is_file())
    trained_into = []

    def stop_after_recording(cfg, ckpt, *args, **kwargs):
        trained_into.append(ckpt)
        raise KeyboardInterrupt  # training itself is not what this test is about

    monkeypatch.setattr(pipeline, "train_all", stop_after_recording)
    with pytest.raises(KeyboardInterrupt):
        pipeline.reproduce(str(tmp_path / "results"), cfg=MiniworldConfig())
    assert trained_into == [pipeline.Path(f"runs/miniworld-seed{pipeline.SHIPPED_SEED}/checkpoints")]
    assert sorted((p, p.stat().st_mtime_ns) for p in pipeline.CHECKPOINTS.rglob("*") if p.is_file()) == before

    with pytest.raises(FileNotFoundError, match="train the world first"):
        pipeline.ship_checkpoints(tmp_path / "nothing", tmp_path / "package")
    shipped = pipeline.ship_checkpoints(pipeline.CHECKPOINTS, tmp_path / "package")
    for name in ("small", "large", "guide-a", "guide-ab"):
        assert (shipped / name).is_dir()
    assert (shipped / "small" / "model.safetensors").read_bytes() == (
        pipeline.CHECKPOINTS / "small" / "model.safetensors"
    ).read_bytes()


def _fake_report(out, task, a: float, b: float, exist_ok: bool = True) -> dict:
    """What a stubbed `run_eval` writes and returns for a validation task: accuracy `a` on A, `b` on B (with
    `exist_ok=False`, grading a folder twice fails)."""
    import json
    from pathlib import Path

    report = {"accuracy": a if task.name == "val_a" else b}
    Path(out).mkdir(parents=True, exist_ok=exist_ok)
    (Path(out) / "report.json").write_text(json.dumps(report))
    return report


@pytest.mark.parametrize(
    "which, draws, chosen, n_trained",
    [
        # The first draw in range on both domains ends the search, even with draws left.
        ("small", [(0.45, 0.2), (0.5, 0.5), (0.6, 0.6)], 1, 2),
        # In range on A is not enough: B must be too.
        ("small", [(0.5, 0.1), (0.9, 0.5), (0.35, 0.79)], 2, 3),
        # None in range: the one nearest the ranges (the sum of its distances from them) is kept.
        ("small", [(0.1, 0.5), (0.75, 0.25), (0.5, 0.95), (0.2, 0.2)], 1, 4),
        # A draw given up at its check (None) is never chosen, however near it was.
        ("small", [None, (0.2, 0.2), None, (0.1, 0.1)], 1, 4),
        # The last draw is never given up, so there is always a base.
        ("small", [None, None, None, (0.1, 0.1)], 3, 4),
        # The larger base may be stronger on A (its range reaches 0.9).
        ("large", [(0.85, 0.2), (0.85, 0.5), (0.5, 0.5)], 1, 2),
    ],
)
def test_a_base_is_drawn_until_one_is_in_range_on_both_domains(tmp_path, monkeypatch, which, draws, chosen, n_trained):
    import json

    from taro_miniworld import pipeline

    trained: list[int] = []
    checked: list[bool] = []

    def fake_train(tok, rows, spec, cfg, out, seed=None, keep=None, warmup=None):
        trained.append(seed)
        checked.append(keep is not None)
        if draws[len(trained) - 1] is None and keep is not None and not keep(None):
            return False
        out.mkdir(parents=True)
        (out / "model.safetensors").write_text(str(seed))
        return True

    def fake_eval(session, task, out, **kw):
        return _fake_report(out, task, *(draws[len(trained) - 1] or (0.0, 0.0)), exist_ok=False)

    monkeypatch.setattr(pipeline, "train_base", fake_train)
    monkeypatch.setattr(pipeline, "run_eval", fake_eval)
    monkeypatch.setattr(pipeline, "load_causal_lm", lambda path: None)
    monkeypatch.setattr(pipeline, "lookup_accuracy", lambda model, tok, rows: 0.5)
    # The transfers world, whose draws are checked for B's lookups by name (the comparisons world has no check)
    cfg = world_config("b-copied", seed=3, **{f"{which}_candidates": len(draws)})
    data = {"train_a": [], "train_b": [], "val_a": [], "val_b": []}
    pipeline.choose_base(None, cfg, data, which, tmp_path / which, tmp_path)
    choice = json.loads((tmp_path / f"{which}_base_choice.json").read_text())
    assert choice["chosen"] == chosen and len(choice["validation_accuracy"]) == n_trained
    seeds = [pipeline.draw_seed(cfg, which, i) for i in range(n_trained)]
    assert trained == seeds and len(set(seeds)) == n_trained
    assert checked == [i < len(draws) - 1 for i in range(n_trained)]
    assert (tmp_path / which / "model.safetensors").read_text() == str(seeds[chosen])
    given_up = [i for i, d in enumerate(draws[:n_trained]) if d is None and i < len(draws) - 1]
    assert [int(i) for i, r in choice["validation_accuracy"].items() if "abandoned_at" in r] == given_up
    # A rerun (--resume) reads every draw, given up or finished, from its folder: nothing is trained again.
    trained.clear()
    pipeline.choose_base(None, cfg, data, which, tmp_path / which, tmp_path)
    assert trained == []


def test_the_shipped_seed_is_the_one_whose_bases_lie_deepest_in_their_ranges():
    """`SHIPPED_SEED` against the committed results of every seed run from nothing with this configuration."""
    import json
    from pathlib import Path

    from taro_miniworld.pipeline import SHIPPED_SEED, range_margin, range_margins

    results = Path(__file__).resolve().parents[3] / "results"
    runs = [
        json.loads(f.read_text())
        for f in [
            results / "miniworld.json",
            *results.glob("miniworld-pipeline-seed[0-9].json"),
            *results.glob("miniworld-pipeline-seed[0-9][0-9].json"),
        ]
    ]
    margins = {r["config"]["seed"]: range_margins(r) for r in runs}
    assert len(margins) >= 3 and max(margins, key=margins.get) == SHIPPED_SEED, margins
    assert json.loads((results / "miniworld.json").read_text())["config"]["seed"] == SHIPPED_SEED
    # The margin: the chosen bases' accuracy nearest an edge of its range, negative outside.
    choice = {
        "range": {"a": [0.3, 0.7], "b": [0.3, 0.8]},
        "chosen": 1,
        "validation_accuracy": {"0": {"abandoned_at": 1000}, "1": {"a": 0.5, "b": 0.75}},
    }
    assert range_margin({"small_base_choice": choice, "large_base_choice": choice}) == pytest.approx(0.05)
    choice["validation_accuracy"]["1"]["a"] = 0.25
    assert range_margin({"small_base_choice": choice, "large_base_choice": choice}) == pytest.approx(-0.05)
    # Two runs 0.02 from an edge (0.68 and 0.78 differ from 0.7 and 0.8 by float noise) tie on the smallest margin
    # and are ordered by the next one.
    near = {"range": {"a": [0.3, 0.7], "b": [0.3, 0.8]}, "chosen": 0}
    one = {**near, "validation_accuracy": {"0": {"a": 0.68, "b": 0.7625}}}
    other = {**near, "validation_accuracy": {"0": {"a": 0.46, "b": 0.78}}}
    first, second = (range_margins({"small_base_choice": c, "large_base_choice": c}) for c in (one, other))
    assert first[0] == second[0] == 0.02 and second > first


def test_a_draw_that_ends_too_strong_is_taken_at_its_latest_snapshot_in_range(tmp_path, monkeypatch):
    """Above a range and below none at the end: the snapshots are graded latest first and the first in range is
    shipped. Below a range, or with no snapshot in range, the end stands."""
    import json
    from dataclasses import replace
    from pathlib import Path

    from taro_miniworld import pipeline

    # Validation accuracy (A, B) of each draw: at the end and at its snapshots.
    draws = [
        {"": (0.6, 0.2), "step-2500": (0.6, 0.5), "step-2000": (0.5, 0.4)},  # below B: the end stands
        {"": (0.65, 0.9), "step-2500": (0.6, 0.85), "step-2000": (0.5, 0.7), "step-1500": (0.4, 0.5)},
        {"": (0.5, 0.5)},
    ]  # never reached
    # The second is too strong: graded at 2500, then 2000, where it is in range, and taken there.
    graded: list[tuple[int, str]] = []

    def fake_train(tok, rows, spec, cfg, out, seed=None, keep=None, warmup=None):
        for folder in ("", *(f"step-{s}" for s in spec.snapshots)):
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / "model.safetensors").write_text(f"{seed} {folder}")
        return True

    def fake_eval(session, task, out, **kw):
        draw, folder = int(Path(out).parts[-3 if "step-" in out else -2][-1]), Path(out).parts[-2]
        at = "" if folder.endswith(f"candidate{draw}") else folder
        graded.append((draw, at))
        return _fake_report(out, task, *draws[draw][at])

    monkeypatch.setattr(pipeline, "train_base", fake_train)
    monkeypatch.setattr(pipeline, "run_eval", fake_eval)
    monkeypatch.setattr(pipeline, "load_causal_lm", lambda path: None)
    cfg = replace(MiniworldConfig(seed=3), small_candidates=3)
    cfg = replace(cfg, small=replace(cfg.small, snapshots=(1500, 2000, 2500)))
    data = {"train_a": [], "train_b": [], "val_a": [], "val_b": []}
    pipeline.choose_base(None, cfg, data, "small", tmp_path / "small", tmp_path)
    assert sorted(set(graded)) == [(0, ""), (1, ""), (1, "step-2000"), (1, "step-2500")]
    choice = json.loads((tmp_path / "small_base_choice.json").read_text())
    assert choice["chosen"] == 1
    second = choice["validation_accuracy"]["1"]
    assert (second["a"], second["b"], second["step"]) == (0.5, 0.7, 2000)
    assert second["final"] == {"a": 0.65, "b": 0.9} and set(second["snapshots"]) == {"2500", "2000"}
    assert (tmp_path / "small" / "model.safetensors").read_text() == f"{pipeline.draw_seed(cfg, 'small', 1)} step-2000"
    # No snapshot in range: the end stands, with the snapshots graded on record.
    draws[1] = {"": (0.65, 0.9), "step-2500": (0.6, 0.85), "step-2000": (0.5, 0.82), "step-1500": (0.25, 0.6)}
    graded.clear()
    for f in tmp_path.glob("small-candidate1/**/report.json"):
        f.unlink()
    result = pipeline.draw_base(None, cfg, data, "small", tmp_path / "small-candidate1", 0)
    assert "step" not in result and (result["a"], result["b"]) == (0.65, 0.9) and len(result["snapshots"]) == 3


def test_a_draw_below_its_lookup_floor_is_given_up_at_its_check_step(tmp_path):
    """train_base stops at check_step when `keep` says no, saving nothing; with a yes it trains to the end."""
    from taro_miniworld.pipeline import BaseSpec, train_base

    tok = make_tokenizer()
    cfg = MiniworldConfig(n_train=4, n_train_b=4)
    rows = make_problems(4, 0) + make_problems(4, 0, domain="b-copied")
    spec = BaseSpec(16, 1, 6, 1e-3, 2, check_step=4, snapshots=(5,))
    seen: list[int] = []

    def keep(answer: bool):
        def judge(model) -> bool:
            seen.append(sum(p.numel() for p in model.parameters()))
            assert not model.training  # judged as it will be used
            return answer

        return judge

    assert train_base(tok, rows, spec, cfg, tmp_path / "no", seed=0, keep=keep(False)) is False
    assert not (tmp_path / "no").exists() and len(seen) == 1
    assert train_base(tok, rows, spec, cfg, tmp_path / "yes", seed=0, keep=keep(True)) is True
    assert (tmp_path / "yes" / "model.safetensors").is_file() and len(seen) == 2
    # The weights after step 5 are kept too, loadable with the tokenizer; they are not the end's.
    import torch

    from transformers_taro.models import load_causal_lm

    early, end = (load_causal_lm(str(tmp_path / "yes" / f)) for f in ("step-5", ""))
    assert (tmp_path / "yes" / "step-5" / "tokenizer.json").is_file()
    assert any(not torch.equal(p, q) for p, q in zip(early.parameters(), end.parameters()))


def test_a_check_step_outside_the_training_budget_is_refused():
    from taro_miniworld.pipeline import BaseSpec

    with pytest.raises(ValueError, match="check_step=100 must lie between 0 and steps=100"):
        BaseSpec(64, 2, 100, 1e-3, check_step=100)
    for snapshots in ((50,), (100,), (60, 0)):
        with pytest.raises(ValueError, match="must lie after check_step=50 and before steps=100"):
            BaseSpec(64, 2, 100, 1e-3, check_step=50, snapshots=snapshots)


def test_a_warmup_trains_its_first_steps_on_each_domains_shortest_problems_only(tmp_path, monkeypatch):
    """warmup_rows keeps A's 2-step and B's 1-step problems; train_base draws the first `warmup` batches from them,
    the rest from all rows, and refuses a warmup with nothing to warm up on."""
    import torch

    from taro_miniworld import pipeline

    a, b = make_problems(12, 0), make_problems(12, 0, domain="b-copied")
    short = pipeline.warmup_rows(a, b)
    assert {r["steps"] for r in short if r in a} == {2} and {r["steps"] for r in short if r in b} == {1}
    assert len(short) == sum(r["steps"] == 2 for r in a) + sum(r["steps"] == 1 for r in b)
    tok, questions = make_tokenizer(), {r["question"] for r in short}
    warm: list[bool] = []  # per step: whether every problem of its batch is a warmup problem

    def step(model, batch, opt, sched):
        texts = [tok.decode(ids[mask.bool()]) for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        warm.append(all(any(q in t for q in questions) for t in texts))
        return torch.zeros(())

    monkeypatch.setattr(pipeline, "training_step", step)
    spec = pipeline.BaseSpec(16, 1, 8, 1e-3, 4, warmup=3)
    cfg = MiniworldConfig(n_train=12, n_train_b=12)
    with pytest.raises(ValueError, match="warmup=3 steps need the problems to warm up on"):
        pipeline.train_base(tok, a + b, spec, cfg, tmp_path / "m", seed=0)
    pipeline.train_base(tok, a + b, spec, cfg, tmp_path / "m", seed=0, warmup=short)
    assert warm[:3] == [True] * 3 and not all(warm[3:])
    with pytest.raises(ValueError, match="warmup=8 must lie between 0 and steps=8"):
        pipeline.BaseSpec(16, 1, 8, 1e-3, warmup=8)


def test_lookup_accuracy_reads_the_totals_written_after_names():
    """Exact for a model that predicts the gold token everywhere, near zero for one that never does, and refused on
    problems without names."""
    import torch

    from taro_miniworld.pipeline import lookup_accuracy
    from transformers_taro.data import gsm8k_solutions, traces_from_solutions
    from transformers_taro.training import TraceCollator

    tok = make_tokenizer()
    rows = make_problems(5, 0, domain="b-copied")

    class Oracle(torch.nn.Module):
        """Predicts each gold next token (or, with `wrong`, the token after it in the vocabulary)."""

        device = torch.device("cpu")  # as a transformers model reports where its weights are

        def __init__(self, wrong: bool, problems: list[dict]):
            super().__init__()
            self.wrong = wrong
            traces = traces_from_solutions(gsm8k_solutions(problems)[0], tok)
            self.batch = TraceCollator(tok, max_length=1024)(traces)

        def forward(self, input_ids, attention_mask):
            assert torch.equal(input_ids, self.batch["input_ids"])
            target = self.batch["labels"].clamp(min=0) + int(self.wrong)
            return type("Out", (), {"logits": torch.nn.functional.one_hot(target, len(tok)).float()})

    assert lookup_accuracy(Oracle(False, rows), tok, rows) == 1.0
    assert lookup_accuracy(Oracle(True, rows), tok, rows) == 0.0
    arithmetic = make_problems(3, 0)
    with pytest.raises(ValueError, match="needs domain-B problems"):
        lookup_accuracy(Oracle(False, arithmetic), tok, arithmetic)


@pytest.mark.slow
def test_mixed_traffic_end_to_end_at_toy_size(tmp_path, monkeypatch):
    """v3 at toy size: reward model B and a router over both train beside a trained world, the headroom is measured
    on validation, and the mixed blocks hold every method, paired with taro_multi, with the keys the results file
    gains; the weights are pictured."""
    import json

    from taro_miniworld import mixed
    from taro_miniworld.pipeline import train_all
    from transformers_taro import TARoGuide

    cfg = toy_world(n_test=3, alphas=(0.5, 2.0))
    monkeypatch.setattr(mixed, "PAIR_GRID", (0.0, 1.0))
    data = splits(cfg)
    assert not {p["question"] for p in data["rm_b"]} & {p["question"] for k in data if k != "rm_b" for p in data[k]}
    ckpt, work = tmp_path / "ckpt", tmp_path / "work"
    train_all(cfg, ckpt, data, work)
    mixed.train_mixed(cfg, ckpt, data, work, resume=False)
    guide = TARoGuide.from_pretrained(ckpt / mixed.candidate_folder("taro_multi_nll"))
    assert guide.reward_model_names == ["a", "b"] and guide.router.config.num_reward_models == 2
    results = mixed.run_mixed(cfg, ckpt, data, work, test_seed=1, pictures=tmp_path / "tokens")
    # Every candidate that trained is scored on validation; the best is copied to guide-multi (the shipped name).
    scored = results["router_candidates_on_validation"]
    assert "taro_multi_nll" in scored and "taro_multi_outcome" in scored
    best = max(scored.values(), key=lambda v: v["accuracy"])["accuracy"]
    assert scored[mixed.spec_name(tuple(results["router"]))]["accuracy"] == best
    assert TARoGuide.from_pretrained(ckpt / "guide-multi").router.config.num_reward_models == 2
    for block in mixed.MIXED_BLOCKS:
        assert list(results[block]) == list(mixed.MIXED_METHODS)
        assert all(r["n"] == 2 * cfg.n_test for r in results[block].values())
        row = results[block]["per_domain"]["by_domain"]
        assert row == {
            "a": results[block]["genarm_a"]["by_domain"]["a"],
            "b": results[block]["genarm_b"]["by_domain"]["b"],
        }
        assert {f"{block}: taro_multi vs {m}" for m in mixed.MIXED_METHODS if m != "taro_multi"} <= set(
            results["paired"]
        )
        assert set(results["weights_by_token_type"][block]) == {"a", "b"}
    heldout = results["reward_models_on_heldout_pairs"]
    assert set(heldout) == {"rm_a", "rm_b"} and all(0 <= v[d]["accuracy"] <= 1 for v in heldout.values() for d in "ab")
    pair = results["best_pair_on_validation"]
    assert {pair["a"], pair["b"]} <= {0.0, 1.0} and len(results["validation_pairs"]) == 4
    assert results["headroom_on_validation"] == results["per_domain_on_validation"] - pair["accuracy"]
    recorded = json.loads((ckpt / "guide-multi" / "guide_config.json").read_text())["alpha"]
    assert recorded == {"a": pair["a"], "b": pair["b"]}
    assert (tmp_path / "tokens.html").read_text().count("<h3>") == 4  # two problems, both weights
    v2 = {"paired": {"methods: taro vs base": 0.5}, "methods": {"base": {}}}
    merged = mixed.add_mixed(v2, results)  # a seed's file gains the mixed keys, and keeps v2's paired tests
    assert merged["paired"]["methods: taro vs base"] == 0.5 and "mixed: taro_multi vs base" in merged["paired"]
    results["config"] = {"seed": cfg.seed}
    assert "Mixed traffic" in mixed.mixed_markdown(results)
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert "taro_multi - fixed_pair" in json.dumps(mixed.mixed_seeds([tmp_path / "r.json"]))


def test_the_mixed_seeds_summary_reads_every_seed_but_not_fresh_test_draws_or_other_worlds(tmp_path):
    from taro_miniworld.pipeline import _seed_files

    names = [
        "miniworld.json",
        "miniworld-pipeline-seed2.json",
        "miniworld-v3-seed5.json",
        "miniworld-seed7.json",
        "miniworld-pipeline-seed2-seed7.json",
        "miniworld-transfers-pipeline-seed1.json",
    ]
    for name in names:
        (tmp_path / name).write_text("{}")
    found = [f.name for f in _seed_files(tmp_path, "miniworld")]
    assert found == ["miniworld-pipeline-seed2.json", "miniworld-v3-seed5.json"]


@pytest.mark.slow
def test_the_demo_evidence_leads_with_mixed_traffic_and_keeps_the_single_model_tables(tmp_path):
    from taro_miniworld.demo import mixed_evidence, single_model_evidence

    mixed = mixed_evidence(problems=10, output_dir=str(tmp_path / "m"))
    router = "TARo, router over both (no label)"
    assert list(mixed["mixed"])[-1] == router and all(r["n"] == 20 for r in mixed["mixed"].values())
    assert set(mixed["paired"]) == {f"mixed: {router} vs {m}" for m in mixed["mixed"] if m != router}
    single = single_model_evidence(problems=10, output_dir=str(tmp_path / "s"))
    assert set(single["a"]) == set(single["b"]) and len(single["a"]) == 4

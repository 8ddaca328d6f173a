"""Arithmetic word problems of graded difficulty, in GSM8K's format, for a guide SmolLM2-135M can use.

Families (`FAMILIES`) differ in operation, digit count, steps and wording; each problem's gold solution writes one
step per line with a calculator annotation (`3+5=<<3+5=8>>8`) and ends `#### N`, so the GSM8K pipeline
(`transformers_taro.data.gsm8k_solutions`, `examples/smollm2/step_pairs.py`, `taro eval --task gsm8k`) reads the
files as they are, and the shipped guide's prompt format ("... end with 'The answer is N.'") applies unchanged.

Splits are disjoint by construction: every distinct question goes to one split, chosen by a hash of its text.

    python examples/smollm2/arithmetic_problems.py --out runs/arith --per-family 2000

writes `train.jsonl`, `validation.jsonl`, `test.jsonl` (every family, a `family` field on each row) and
`{split}-{family}.jsonl` (one family each).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

NAMES = ["Tom", "Ann", "Sam", "Mia", "Ben", "Lily", "Max", "Zoe", "Leo", "Emma", "Jack", "Ella", "Noah", "Ava"]
THINGS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "shells", "cards", "coins", "flowers"]
BOXES = ["boxes", "bags", "baskets", "jars", "packs"]
SPLITS = {"train": 8, "validation": 1, "test": 1}
"""Each question's share of the hash space: 80% train, 10% validation, 10% test."""

Problem = tuple[str, list[str], int]
"""A question, its solution's steps (each `text a op b=<<a op b=c>>c ...`), and the answer."""


def _step(text: str, expression: str, value: int) -> str:
    return f"{text} {expression}=<<{expression}={value}>>{value}."


def add_one_digit(rng: random.Random) -> Problem:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    wording = rng.choice(
        [
            f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?",
            f"{name} had {a} {thing}. A friend gave {name} {b} more. How many {thing} does {name} have?",
        ]
    )
    return wording, [_step(f"{name} has", f"{a}+{b}", a + b)], a + b


def add_two_digit(rng: random.Random) -> Problem:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    wording = rng.choice(
        [
            f"{name} has {a} {thing} and finds {b} more. How many {thing} does {name} have now?",
            f"There are {a} {thing} in one room and {b} in another. How many {thing} are there in all?",
        ]
    )
    return wording, [_step("In all there are", f"{a}+{b}", a + b)], a + b


def multiply(rng: random.Random) -> Problem:
    name, thing, box = rng.choice(NAMES), rng.choice(THINGS), rng.choice(BOXES)
    n, each = rng.randint(2, 9), rng.randint(2, 12)
    # The third wording (a buyer's name) is there for numbers: the other two hold 8,800 distinct questions, too
    # few for 1,000 test problems at a 10% share.
    wording = rng.choice(
        [
            f"There are {n} {box} with {each} {thing} in each. How many {thing} are there?",
            f"A shop packs {each} {thing} into each of {n} {box}. How many {thing} does it pack?",
            f"{name} buys {n} {box} of {thing} with {each} in each. How many {thing} does {name} buy?",
        ]
    )
    return wording, [_step("The total is", f"{n}*{each}", n * each)], n * each


def give_away(rng: random.Random) -> Problem:
    name, other, thing = *rng.sample(NAMES, 2), rng.choice(THINGS)
    a = rng.randint(10, 60)
    b = rng.randint(1, a - 1)
    wording = f"{name} has {a} {thing} and gives {b} of them to {other}. How many {thing} does {name} have left?"
    return wording, [_step(f"{name} has left", f"{a}-{b}", a - b)], a - b


def two_steps(rng: random.Random) -> Problem:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    wording = f"{name} has {a} {thing}, buys {b} more, then gives away {c}. How many {thing} does {name} have now?"
    steps = [
        _step(f"After buying, {name} has", f"{a}+{b}", a + b),
        _step(f"After giving away, {name} has", f"{a + b}-{c}", a + b - c),
    ]
    return wording, steps, a + b - c


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "add_one_digit": add_one_digit,
    "add_two_digit": add_two_digit,
    "multiply": multiply,
    "give_away": give_away,
    "two_steps": two_steps,
}


def split_of(question: str) -> str:
    """The split a question belongs to, by a hash of its text: the same question always lands in the same one."""
    bucket = int(hashlib.sha256(question.encode()).hexdigest(), 16) % sum(SPLITS.values())
    for split, share in SPLITS.items():
        if bucket < share:
            return split
        bucket -= share
    raise AssertionError("unreachable")


def make_splits(per_family: int, seed: int = 0, max_tries: int = 50) -> dict[str, list[dict]]:
    """Up to `per_family` distinct problems of each family, as GSM8K rows (`question`, `answer`, `family`), split
    into train / validation / test by `split_of`. A family with fewer distinct problems than asked gives all it has."""
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for family, make in FAMILIES.items():
        rng = random.Random(f"{seed}-{family}")
        seen: set[str] = set()
        misses = 0
        while len(seen) < per_family and misses < max_tries * per_family:
            question, steps, answer = make(rng)
            if question in seen:
                misses += 1
                continue
            seen.add(question)
            solution = "\n".join([*steps, f"#### {answer}"])
            rows[split_of(question)].append({"question": question, "answer": solution, "family": family})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the split files")
    p.add_argument("--per-family", type=int, default=2000, help="distinct problems per family (before splitting)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in make_splits(a.per_family, a.seed).items():
        write_jsonl(out / f"{split}.jsonl", rows)
        for family in FAMILIES:
            write_jsonl(out / f"{split}-{family}.jsonl", [r for r in rows if r["family"] == family])
        counts = Counter(r["family"] for r in rows)
        print(f"{split}: {len(rows)} problems ({', '.join(f'{f} {counts[f]}' for f in FAMILIES)})")


if __name__ == "__main__":
    main()

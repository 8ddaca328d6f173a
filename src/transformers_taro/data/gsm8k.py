"""GSM8K: step-wise gold solutions whose calculator annotations make every step checkable, step pairs and traces."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from .arithmetic import arithmetic_is_correct, close, format_number, numbers_in, parse_number, safe_eval
from .prompts import SYSTEM_PROMPT, answer_step, format_prompt
from .rows import MalformedRow, SkipReport

_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


@dataclass
class Solution:
    """A step-wise gold solution: steps (annotations removed), each step's checked result, the final answer."""

    question: str
    steps: list[str]
    results: list[float | None]
    answer: str

    @property
    def all_steps(self) -> list[str]:
        return self.steps + [answer_step(self.answer)]


def parse_gsm8k(row: dict[str, Any]) -> Solution:
    """Split a GSM8K row into checked steps. Raises `MalformedRow` saying what is wrong."""
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise MalformedRow("missing or empty 'question'")
    if not isinstance(answer, str) or "####" not in answer:
        raise MalformedRow("'answer' has no final '#### <number>' line")
    body, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if parse_number(final) is None:
        raise MalformedRow(f"unparseable final answer {final!r}")
    steps, results = [], []
    for line in body.strip().split("\n"):
        if not line.strip():
            continue
        result = None
        for expr, value in _ANNOTATION.findall(line):
            computed = safe_eval(expr)
            result = computed if computed is not None else parse_number(value)
        text = _ANNOTATION.sub("", line).strip()
        steps.append(text + "\n")
        results.append(result)
    if not steps:
        raise MalformedRow("no solution steps before '####'")
    return Solution(question.strip(), steps, results, final)


def gsm8k_solutions(rows: Iterable[dict[str, Any]], strict: bool = False) -> tuple[list[Solution], SkipReport]:
    """Parse GSM8K rows; malformed ones are skipped and counted (or, with `strict`, refused)."""
    report, out = SkipReport(), []
    for i, row in enumerate(rows):
        try:
            out.append(parse_gsm8k(row))
            report.kept += 1
        except MalformedRow as err:
            if strict:
                raise MalformedRow(f"row {i}: {err}: {str(row)[:200]}") from err
            report.skip(i, str(err), row)
    report.log("GSM8K")
    return out, report


def corrupt_step(step: str, result: float | None, rng: random.Random) -> str | None:
    """An incorrect version of a gold step: its result (the last occurrence of it) replaced by a wrong number.

    The kind of slip a small model makes: off by a little, by a factor of ten, or digits swapped. None when the
    step's result is not written in it.
    """
    if result is None:
        return None
    text = format_number(result)
    position = step.rfind(text)
    if position < 0:
        return None
    choice = rng.random()
    if choice < 0.5:
        wrong = result + rng.choice([-1, 1]) * rng.randint(1, max(2, int(abs(result) * 0.2) + 1))
    elif choice < 0.75:
        wrong = result * 10 if rng.random() < 0.5 else result / 10
    else:
        digits = list(text.lstrip("-"))
        if len(digits) < 2 or len(set(digits)) < 2:
            wrong = result + 1
        else:
            i = rng.randrange(len(digits) - 1)
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            wrong = float("".join(digits).replace(",", "")) * (-1 if result < 0 else 1)
    if close(wrong, result):
        wrong = result + 1
    return step[:position] + format_number(wrong) + step[position + len(text) :]


def label_step(step: str, solution: Solution, index: int) -> bool | None:
    """Process label of a sampled step at position `index` of `solution` (Math-Shepherd style, no annotator).

    False: it writes wrong arithmetic, or its last number is neither the gold step's result nor any value of the
    gold chain. True: correct arithmetic and it arrives at the gold step's result. None: can't tell (skip it).
    """
    if not step.strip():
        return None
    if not arithmetic_is_correct(step):
        return False
    numbers = numbers_in(step)
    if not numbers:
        return None
    last = numbers[-1]
    gold = solution.results[index] if index < len(solution.results) else parse_number(solution.answer)
    if gold is not None and close(last, gold):
        return True
    chain = [r for r in solution.results if r is not None] + [parse_number(solution.answer) or 0.0]
    if any(close(last, v) for v in chain) or any(close(last, v) for v in numbers_in(solution.question)):
        return None  # a number from the problem: possibly a different but valid order of steps
    return False


def step_pairs_from_solutions(
    solutions: list[Solution],
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    rejected_steps: dict[tuple[int, int], list[str]] | None = None,
    system: str | None = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Pairs for every step of every solution, each prompt in the format of `system` (the math prompt by default;
    None for none).

    The rejected step is a sampled incorrect step where `rejected_steps[(solution index, step index)]` has one,
    else the gold step with its result corrupted (`corrupt_step`); `sampled` says which. `final` marks a solution's
    last step (the only one the reward model's training sequence ends with EOS).
    """
    rng = random.Random(seed)
    pairs = []
    for si, sol in enumerate(solutions):
        prompt = format_prompt(sol.question, tokenizer, system)
        for k, chosen in enumerate(sol.all_steps):
            sampled = (rejected_steps or {}).get((si, k))
            if sampled:
                rejected = rng.choice(sampled)
            elif k < len(sol.steps):
                rejected = corrupt_step(chosen, sol.results[k], rng)
            else:
                rejected = corrupt_step(chosen, parse_number(sol.answer), rng)
            if rejected is None or rejected == chosen:
                continue
            pairs.append(
                {
                    "prompt": prompt + "".join(sol.all_steps[:k]),
                    "chosen": chosen,
                    "rejected": rejected,
                    "final": k == len(sol.all_steps) - 1,
                    "sampled": bool(sampled),
                }
            )
    return pairs


def traces_from_solutions(
    solutions: list[Solution], tokenizer: PreTrainedTokenizerBase | None = None, system: str | None = SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """Correct reasoning traces (`prompt`, `completion`) for router training, prompts in the format of `system`."""
    return [
        {"prompt": format_prompt(s.question, tokenizer, system), "completion": "".join(s.all_steps)} for s in solutions
    ]

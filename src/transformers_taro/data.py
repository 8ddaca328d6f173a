"""Step-wise reasoning data: preference pairs for the reward model, correct traces for the router.

A step pair is `prompt` (the formatted question plus the correct steps so far), `chosen` (a correct next step)
and `rejected` (an incorrect next step): the column names TRL's preference trainers read. A trace is `prompt` and
`completion` (a whole correct solution). Steps are lines; every step ends with a newline, and the last step of a
solution is `The answer is X.` so that answers can be read back from generations.
"""

from __future__ import annotations

import ast
import json
import logging
import operator
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "Solve the math problem step by step. Put each step on its own line and end with 'The answer is N.'"
_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


# -- prompts: one format for training and decoding -----------------------------------------------------------


def format_prompt(question: str, tokenizer: Any | None = None, system: str | None = SYSTEM_PROMPT) -> str:
    """The text a model sees before its solution, the same at training, decoding and evaluation time.

    With a chat tokenizer: its chat template with a generation prompt. Otherwise a plain `Question: …\\nAnswer:`.
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question.strip()}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    return f"{head}Question: {question.strip()}\nAnswer:\n"


def answer_step(answer: str) -> str:
    return f"The answer is {answer}.\n"


# -- numbers and arithmetic -----------------------------------------------------------------------------------


def parse_number(text: str) -> float | None:
    """A number written as in GSM8K (`1,200`, `-3`, `0.5`, `$12`), or None."""
    match = _NUMBER.search(text.replace("$", ""))
    if match is None:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def numbers_in(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text.replace("$", "")) if m.replace(",", "")]


_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}


def safe_eval(expression: str) -> float | None:
    """Evaluate + - * / ** % // on numbers (x and × read as *); None if it is anything else."""
    expr = expression.replace("x", "*").replace("×", "*").replace("÷", "/").replace(",", "").replace("$", "")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 20:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        raise ValueError("not arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


_EQUATION = re.compile(r"([\d$][\d\s.,+\-*/x×÷()$]*[\d)])\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)")


def equations_in(step: str) -> list[tuple[str, float]]:
    """`(left side, claimed value)` of every `a op b = c` written in a step."""
    found = []
    for left, right in _EQUATION.findall(step):
        if any(op in left for op in "+-*/x×÷"):
            found.append((left, float(right.replace(",", ""))))
    return found


def arithmetic_is_correct(step: str) -> bool:
    """Every equation the step writes evaluates to what it claims (steps with no equation pass)."""
    for left, claimed in equations_in(step):
        value = safe_eval(left)
        if value is None or not close(value, claimed):
            return False
    return True


# -- GSM8K ------------------------------------------------------------------------------------------------------


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


class MalformedRow(ValueError):
    pass


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


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no} is not valid JSON: {err}") from err


@dataclass
class SkipReport:
    """What was skipped while reading rows, and the first offending row, for a clear log line."""

    skipped: int = 0
    first: tuple[int, str, Any] | None = None
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, index: int, reason: str, row: Any) -> None:
        self.skipped += 1
        self.reasons[reason.split(" ")[0]] = self.reasons.get(reason.split(" ")[0], 0) + 1
        if self.first is None:
            self.first = (index, reason, row)

    def log(self, what: str) -> None:
        if self.skipped:
            index, reason, row = self.first  # type: ignore[misc]
            logger.warning(
                "%s: skipped %d malformed rows of %d (first: row %d, %s: %s)",
                what, self.skipped, self.skipped + self.kept, index, reason, str(row)[:200],
            )


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
    text = _fmt(result)
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
    return step[:position] + _fmt(wrong) + step[position + len(text):]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")


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
    tokenizer: Any | None = None,
    seed: int = 0,
    rejected_steps: dict[tuple[int, int], list[str]] | None = None,
) -> list[dict[str, str]]:
    """Pairs for every step of every solution.

    The rejected step is a sampled incorrect step where `rejected_steps[(solution index, step index)]` has one,
    else the gold step with its result corrupted (`corrupt_step`).
    """
    rng = random.Random(seed)
    pairs = []
    for si, sol in enumerate(solutions):
        prompt = format_prompt(sol.question, tokenizer)
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
            pairs.append({"prompt": prompt + "".join(sol.all_steps[:k]), "chosen": chosen, "rejected": rejected,
                          "final": k == len(sol.all_steps) - 1})
    return pairs


def traces_from_solutions(solutions: list[Solution], tokenizer: Any | None = None) -> list[dict[str, str]]:
    """Correct reasoning traces (`prompt`, `completion`) for router training."""
    return [{"prompt": format_prompt(s.question, tokenizer), "completion": "".join(s.all_steps)} for s in solutions]


# -- Math-Step-DPO-10K ------------------------------------------------------------------------------------------

MATH_STEP_DPO = "xinlai/Math-Step-DPO-10K"


def math_step_dpo_pairs(
    rows: Iterable[dict[str, Any]], tokenizer: Any | None = None, strict: bool = False
) -> list[dict[str, str]]:
    """Math-Step-DPO rows (`prompt`, `initial_reason_steps`, `chosen`, `rejected`) as step pairs."""
    report, pairs = SkipReport(), []
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(row.get(k), str) or not row[k].strip()]
        reason = f"missing or empty {missing}" if missing else None
        if not reason and row["chosen"].strip() == row["rejected"].strip():
            reason = "chosen equals rejected"
        if reason:
            if strict:
                raise MalformedRow(f"row {i}: {reason}: {str(row)[:200]}")
            report.skip(i, reason, row)
            continue
        steps = row.get("initial_reason_steps") or ""
        prefix = format_prompt(row["prompt"], tokenizer) + (steps if steps.endswith("\n") or not steps else steps + "\n")
        pairs.append({"prompt": prefix, "chosen": row["chosen"], "rejected": row["rejected"]})
        report.kept += 1
    report.log("Math-Step-DPO")
    return pairs


def load_rows(id_or_path: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local JSON/JSONL file, or of a Hub dataset (through `datasets`, so the HF cache works offline)."""
    path = Path(id_or_path)
    if path.is_file():
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else data.get("data", data.get("rows", []))
        return list(read_jsonl(path))
    if path.exists() or id_or_path.startswith((".", "/")):
        raise FileNotFoundError(f"{id_or_path}: not a JSON/JSONL file")
    import datasets

    return list(datasets.load_dataset(id_or_path, split=split))


def detect_format(rows: list[dict[str, Any]]) -> str:
    if not rows:
        raise ValueError("The data has no rows.")
    keys = set(rows[0])
    if {"prompt", "chosen", "rejected"} <= keys:
        return "step-dpo"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    raise ValueError(
        f"Unrecognised data with fields {sorted(keys)}: expected Math-Step-DPO (prompt, initial_reason_steps, "
        "chosen, rejected) or GSM8K (question, answer)."
    )


def build_step_pairs(
    id_or_path: str,
    tokenizer: Any | None = None,
    limit: int | None = None,
    seed: int = 0,
    rejected_steps: dict[tuple[int, int], list[str]] | None = None,
    strict: bool = False,
) -> list[dict[str, str]]:
    """Step pairs from a Math-Step-DPO or GSM8K source (a local file or a Hub id)."""
    rows = load_rows(id_or_path)[:limit] if limit else load_rows(id_or_path)
    if detect_format(rows) == "step-dpo":
        return math_step_dpo_pairs(rows, tokenizer, strict=strict)
    solutions, _ = gsm8k_solutions(rows, strict=strict)
    return step_pairs_from_solutions(solutions, tokenizer, seed=seed, rejected_steps=rejected_steps)


def build_traces(
    id_or_path: str, tokenizer: Any | None = None, limit: int | None = None, strict: bool = False
) -> list[dict[str, str]]:
    """Correct traces from GSM8K rows, or from Math-Step-DPO rows (prompt + steps + chosen)."""
    rows = load_rows(id_or_path)[:limit] if limit else load_rows(id_or_path)
    if detect_format(rows) == "step-dpo":
        return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in math_step_dpo_pairs(rows, tokenizer, strict)]
    solutions, _ = gsm8k_solutions(rows, strict=strict)
    return traces_from_solutions(solutions, tokenizer)


def sample_incorrect_steps(
    model: Any,
    tokenizer: Any,
    solutions: list[Solution],
    samples_per_step: int = 2,
    max_step_tokens: int = 48,
    batch_size: int = 16,
    temperature: float = 0.8,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[tuple[int, int], list[str]], dict[str, int]]:
    """Sample next steps from `model` on gold contexts and keep those `label_step` marks incorrect.

    Returns `{(solution index, step index): [incorrect steps]}` and counts of the labels given
    (`correct`, `incorrect`, `unknown`), the Math-Shepherd idea of process labels without annotators.
    """
    import torch
    from tqdm.auto import tqdm

    jobs = [(si, k) for si, sol in enumerate(solutions) for k in range(len(sol.steps))]
    contexts = [
        format_prompt(solutions[si].question, tokenizer) + "".join(solutions[si].all_steps[:k]) for si, k in jobs
    ]
    found: dict[tuple[int, int], list[str]] = {}
    counts = {"correct": 0, "incorrect": 0, "unknown": 0}
    torch.manual_seed(seed)
    for start in tqdm(range(0, len(jobs), batch_size), desc="sampling steps", disable=not progress):
        enc = tokenizer(contexts[start : start + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(
                **enc, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=max_step_tokens,
                num_return_sequences=samples_per_step, pad_token_id=tokenizer.pad_token_id,
                stop_strings=["\n"], tokenizer=tokenizer,
            )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for j, text in enumerate(texts):
            si, k = jobs[start + j // samples_per_step]
            step = text.split("\n", 1)[0].strip()
            label = label_step(step, solutions[si], k)
            counts["unknown" if label is None else ("correct" if label else "incorrect")] += 1
            if label is False:
                found.setdefault((si, k), []).append(step + "\n")
    return found, counts

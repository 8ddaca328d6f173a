"""Benchmark tasks: where their rows come from, how a question is asked, how an answer is graded."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import dataset_rows, numbered_jsonl, parse_number
from .graders import extract_choice, extract_number, grade_math, grade_number
from .models import could_be_repo_id

_DEFAULT_FILES = {
    "gsm8k": "gsm8k/test.jsonl",
    "math500": "math500/test.jsonl",
    "svamp": "svamp/test.jsonl",
    "medxpertqa": "medxpertqa/sampled_text.jsonl",
}
MC_SUFFIX = "\nThink step by step, then end with 'The answer is (X)' where X is the letter of the correct option."


HUB_DATASETS = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "svamp": ("ChilleD/SVAMP", None, "test"),
}
"""Where a task's rows come from when neither `--data` nor `$TARO_DATA_DIR` says: a Hub dataset (id, config,
split), read through `datasets` (cached by it; offline, from its cache)."""


def data_dir() -> Path | None:
    """`$TARO_DATA_DIR`: a folder laid out as `gsm8k/test.jsonl`, `svamp/test.jsonl`, ... (`_DEFAULT_FILES`)."""
    return Path(os.environ["TARO_DATA_DIR"]) if os.environ.get("TARO_DATA_DIR") else None


@dataclass
class Task:
    """Rows plus three functions: the question to ask, the gold answer, and whether a generation is correct."""

    name: str
    rows: list[dict[str, Any]]
    question: Callable[[dict[str, Any]], str]
    gold: Callable[[dict[str, Any]], Any]
    extract: Callable[[str], Any]
    grade: Callable[[Any, Any], bool]
    system: str | None = None
    source: str | None = None  # the file the rows came from
    fields: dict[str, str] | None = None  # the question and answer fields asked for (the `jsonl` task reads them)
    lines: list[int] | None = None  # each row's line in it

    def where(self, index: int) -> str:
        """`file:line` of row `index`, for error messages."""
        line = self.lines[index] if self.lines else index + 1
        return f"{self.source or self.name}:{line}"

    def check_rows(self, start: int, stop: int) -> None:
        """Every row in `[start, stop)` has a question and a gold answer, or an error names the first that has not.

        Run before generating: a bad row found after an hour of decoding would lose the hour.
        """
        for i in range(start, stop):
            try:
                question, _ = self.question(self.rows[i]), self.gold(self.rows[i])
            except (KeyError, ValueError, TypeError, IndexError, SyntaxError) as err:
                raise ValueError(
                    f"{self.where(i)}: row {i} of task {self.name!r} has no usable question and answer "
                    f"({type(err).__name__}: {err}). Fix or remove it."
                ) from err
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"{self.where(i)}: row {i} of task {self.name!r} has an empty question.")


def _svamp_question(row: dict[str, Any]) -> str:
    body = row["Body"].strip()
    return f"{body}{'' if body.endswith('.') else '.'} {row['Question'].strip()}"


def _medx_question(row: dict[str, Any]) -> str:
    return row["question"].strip() + MC_SUFFIX


def _medx_gold(row: dict[str, Any]) -> str:
    label = row["label"]
    if isinstance(label, str):
        label = ast.literal_eval(label) if label.startswith("[") else [label]
    return str(label[0]).strip().upper()


def _math_gold(row: dict[str, Any]) -> str:
    match = re.search(r"The answer is:\s*(.+)$", row["answer"].strip(), re.S)
    return match.group(1).strip() if match else row["answer"]


def numeric_gold(field: str) -> Callable[[dict[str, Any]], float]:
    """The gold answer of a row as a number: a number, or text (GSM8K's `... #### 42` too)."""

    def gold(row: dict[str, Any]) -> float:
        value = row[field]
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value)
        parsed = parse_number(text.rsplit("####", 1)[1] if "####" in text else text)
        if parsed is None:
            raise ValueError(f"Unparseable numeric answer {value!r} in field {field!r}.")
        return parsed

    return gold


def load_task(
    name: str, path: str | None = None, question_field: str = "question", answer_field: str = "answer"
) -> Task:
    """A task by name, its rows from `path` (a JSONL file, or a dataset folder or Hub dataset id read by
    `datasets`, split "test"), else from `$TARO_DATA_DIR`, else from the task's Hub dataset (`HUB_DATASETS`)."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}: choose one of {sorted(TASKS)}.")
    if path is None and name == "jsonl":
        raise ValueError("Task 'jsonl' needs --data PATH (a JSONL file with a question and a numeric answer).")
    if path is None and data_dir() is not None:
        path = str(data_dir() / _DEFAULT_FILES[name])
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file under TARO_DATA_DIR. Pass --data, or fix TARO_DATA_DIR.")
    if path is None and name not in HUB_DATASETS:
        raise FileNotFoundError(
            f"Task {name!r} has no default source: pass --data with its JSONL file, or set "
            f"TARO_DATA_DIR to a folder holding {_DEFAULT_FILES[name]}."
        )
    if path is None or not Path(path).is_file():
        source = HUB_DATASETS[name] if path is None else (path, None, "test")
        if path is not None and not Path(path).is_dir() and not could_be_repo_id(path, owner=True):
            raise FileNotFoundError(f"{path}: no such file or folder (nor a Hub dataset id of the form 'owner/name').")
        rows, lines, where = dataset_rows(*source), None, source[0]
    else:
        numbered = list(numbered_jsonl(path))
        rows, lines, where = [row for _, row in numbered], [line for line, _ in numbered], str(Path(path).resolve())
    if not rows:
        raise ValueError(f"{path or name} has no rows: nothing to evaluate.")
    if name == "jsonl":
        missing = [f for f in (question_field, answer_field) if f not in rows[0]]
        if missing:
            raise ValueError(
                f"{path}: rows have no field(s) {missing}; fields are {sorted(rows[0])}. "
                "Use --question_field / --answer_field."
            )
    task = TASKS[name](rows, question_field=question_field, answer_field=answer_field)
    task.source, task.lines = where, lines
    task.fields = {"question_field": question_field, "answer_field": answer_field}
    return task


def _jsonl(rows: list[dict[str, Any]], question_field: str = "question", answer_field: str = "answer") -> Task:
    def question(row: dict[str, Any]) -> str:
        value = row[question_field]
        if value is None:  # str(None) would ask the model "None"
            raise ValueError(f"the {question_field!r} field is null")
        return str(value)

    return Task("jsonl", rows, question, numeric_gold(answer_field), extract_number, grade_number)


# Each builder takes the rows and the field names (used by `jsonl` only).
TASKS: dict[str, Callable[..., Task]] = {
    "gsm8k": lambda rows, **_: Task(
        "gsm8k", rows, lambda r: r["question"], numeric_gold("answer"), extract_number, grade_number
    ),
    "svamp": lambda rows, **_: Task(
        "svamp", rows, _svamp_question, numeric_gold("Answer"), extract_number, grade_number
    ),
    "math500": lambda rows, **_: Task(
        "math500",
        rows,
        lambda r: r["question"],
        _math_gold,
        lambda text: text,
        grade_math,
        system="Solve the problem step by step and put the final answer in \\boxed{}.",
    ),
    "medxpertqa": lambda rows, **_: Task(
        "medxpertqa",
        rows,
        _medx_question,
        _medx_gold,
        extract_choice,
        lambda p, g: p == g,
        system="You are a careful medical expert.",
    ),
    "jsonl": _jsonl,
}

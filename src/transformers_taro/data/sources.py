"""Training data from a file or a Hub id: the format is detected, and step pairs or traces are built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from ..extras import require
from ..models import could_be_repo_id
from .gsm8k import gsm8k_solutions, step_pairs_from_solutions, traces_from_solutions
from .prompts import SYSTEM_PROMPT
from .rows import MalformedRow, read_jsonl
from .step_dpo import math_step_dpo_pairs


def load_rows(id_or_path: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local JSON/JSONL file, or of a Hub dataset (through `datasets`, so the HF cache works offline)."""
    path = Path(id_or_path)
    if path.is_file():
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else data.get("data", data.get("rows", []))
        return list(read_jsonl(path))
    if path.exists():
        raise FileNotFoundError(f"{id_or_path}: not a JSON/JSONL file")
    if not could_be_repo_id(id_or_path) or path.suffix in (".json", ".jsonl", ".csv", ".parquet"):
        raise FileNotFoundError(
            f"{id_or_path}: no such file (and not a Hub dataset id, which has the form 'owner/name')."
        )
    return dataset_rows(id_or_path, split=split)


def dataset_rows(name: str, config: str | None = None, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a dataset through `datasets.load_dataset` (a Hub id, read from the HF cache offline, or a local
    folder of data files), or a `FileNotFoundError` saying what to pass instead."""
    datasets = require("datasets")
    try:
        return [dict(row) for row in datasets.load_dataset(name, config, split=split)]
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        raise FileNotFoundError(
            f"{name}: the dataset could not be read ({type(err).__name__}: {err}). Offline, pass a local JSONL "
            "file (--data), or set TARO_DATA_DIR to a data folder."
        ) from err


def detect_format(rows: list[dict[str, Any]]) -> str:
    if not rows:
        raise ValueError("The data has no rows.")
    keys = set(rows[0])
    if {"prompt", "chosen", "rejected", "final"} <= keys:
        return "step-pairs"  # written by `step_pairs_from_solutions`: prompts already formatted
    if {"prompt", "chosen", "rejected"} <= keys:
        return "step-dpo"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    raise ValueError(
        f"Unrecognised data with fields {sorted(keys)}: expected Math-Step-DPO (prompt, initial_reason_steps, "
        "chosen, rejected), GSM8K (question, answer) or step pairs as `step_pairs_from_solutions` writes them "
        "(prompt, chosen, rejected, final)."
    )


def build_step_pairs(
    id_or_path: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    limit: int | None = None,
    seed: int = 0,
    rejected_steps: dict[tuple[int, int], list[str]] | None = None,
    strict: bool = False,
    system: str | None = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Step pairs from a Math-Step-DPO, GSM8K or step-pairs source (a local file or a Hub id), prompts in the
    format of `system` (step-pairs rows come formatted already).

    Step-pairs rows (`prompt`, `chosen`, `rejected`, `final`, as `step_pairs_from_solutions` writes them) are used
    as they are: that is how sampled incorrect steps, which are costly, are built once and reused.
    """
    rows = load_rows(id_or_path)[:limit] if limit else load_rows(id_or_path)
    fmt = detect_format(rows)
    if fmt == "step-pairs":
        if rejected_steps:
            raise ValueError(f"{id_or_path} already holds step pairs: sample incorrect steps on GSM8K rows instead.")
        keys = ("prompt", "chosen", "rejected", "final")
        for i, row in enumerate(rows):
            texts_ok = all(isinstance(row.get(k), str) and row[k] for k in keys[:3])
            if not texts_ok or not isinstance(row.get("final"), bool):
                raise MalformedRow(
                    f"{id_or_path}, row {i}: a step pair needs non-empty prompt, chosen and rejected "
                    f"texts and a boolean 'final': {str(row)[:200]}"
                )
        return [{k: row[k] for k in keys} for row in rows]
    if fmt == "step-dpo":
        return math_step_dpo_pairs(rows, tokenizer, strict=strict, system=system)
    solutions, _ = gsm8k_solutions(rows, strict=strict)
    return step_pairs_from_solutions(solutions, tokenizer, seed=seed, rejected_steps=rejected_steps, system=system)


def build_traces(
    id_or_path: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    limit: int | None = None,
    strict: bool = False,
    system: str | None = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Correct traces from GSM8K rows, or from Math-Step-DPO rows (prompt + steps + chosen), prompts in the format
    of `system`."""
    rows = load_rows(id_or_path)[:limit] if limit else load_rows(id_or_path)
    fmt = detect_format(rows)
    if fmt == "step-pairs":
        raise ValueError(
            f"{id_or_path} holds step pairs, which have no whole solutions: train the router on GSM8K "
            "or Math-Step-DPO rows."
        )
    if fmt == "step-dpo":
        pairs = math_step_dpo_pairs(rows, tokenizer, strict, system)
        return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    solutions, _ = gsm8k_solutions(rows, strict=strict)
    return traces_from_solutions(solutions, tokenizer, system)

"""Math-Step-DPO-10K rows (`prompt`, `initial_reason_steps`, `chosen`, `rejected`) as step pairs.

`--data xinlai/Math-Step-DPO-10K` reads it from the Hub through `datasets` (the HF cache works offline).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizerBase

from .prompts import SYSTEM_PROMPT, format_prompt
from .rows import MalformedRow, SkipReport


def math_step_dpo_pairs(
    rows: Iterable[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = False,
    system: str | None = SYSTEM_PROMPT,
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
        if steps and not steps.endswith("\n"):
            steps += "\n"
        prefix = format_prompt(row["prompt"], tokenizer, system) + steps
        pairs.append({"prompt": prefix, "chosen": row["chosen"], "rejected": row["rejected"]})
        report.kept += 1
    report.log("Math-Step-DPO")
    return pairs

"""Step-wise reasoning data: preference pairs for the reward model, correct traces for the router.

A step pair is `prompt` (the formatted question plus the correct steps so far), `chosen` (a correct next step)
and `rejected` (an incorrect next step): the column names TRL's preference trainers read. A trace is `prompt` and
`completion` (a whole correct solution). Steps are lines; every step ends with a newline, and the last step of a
solution is `The answer is X.` so that answers can be read back from generations.

Modules: `prompts` (the prompt format), `arithmetic` (numbers and equation checks), `rows` (reading files,
malformed-row reports), `gsm8k`, `step_dpo` (Math-Step-DPO-10K), `sources` (a file or Hub id to pairs or traces).
"""

from .arithmetic import arithmetic_is_correct, close, equations_in, format_number, numbers_in, parse_number, safe_eval
from .gsm8k import (
    Solution,
    corrupt_step,
    gsm8k_solutions,
    label_step,
    parse_gsm8k,
    step_pairs_from_solutions,
    traces_from_solutions,
)
from .prompts import SYSTEM_PROMPT, answer_step, format_prompt
from .rows import MalformedRow, SkipReport, numbered_jsonl, read_jsonl
from .sources import build_step_pairs, build_traces, dataset_rows, detect_format, load_rows
from .step_dpo import math_step_dpo_pairs

__all__ = [
    "SYSTEM_PROMPT",
    "MalformedRow",
    "SkipReport",
    "Solution",
    "answer_step",
    "arithmetic_is_correct",
    "build_step_pairs",
    "build_traces",
    "close",
    "corrupt_step",
    "dataset_rows",
    "detect_format",
    "equations_in",
    "format_number",
    "format_prompt",
    "gsm8k_solutions",
    "label_step",
    "load_rows",
    "math_step_dpo_pairs",
    "numbered_jsonl",
    "numbers_in",
    "parse_gsm8k",
    "parse_number",
    "read_jsonl",
    "safe_eval",
    "step_pairs_from_solutions",
    "traces_from_solutions",
]

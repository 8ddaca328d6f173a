"""Answer extraction and grading per task."""

from __future__ import annotations

import concurrent.futures
import re
import threading

from ..data import close, numbers_in
from ..extras import require

_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\\?(?:boxed\{)?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_CHOICE = re.compile(r"answer is[:\s]*\(?([A-J])\)?\b", re.IGNORECASE)


def extract_number(text: str) -> float | None:
    """The final numeric answer: `The answer is N`, else `#### N`, else the last number in the text."""
    match = _ANSWER_IS.search(text)
    if match:
        return float(match.group(1).replace(",", ""))
    if "####" in text:
        found = numbers_in(text.rsplit("####", 1)[1])
        if found:
            return found[0]
    found = numbers_in(text)
    return found[-1] if found else None


def grade_number(prediction: float | None, gold: float) -> bool:
    return prediction is not None and close(prediction, gold)


def extract_choice(text: str) -> str | None:
    """The chosen option letter (A-J): `The answer is (C)`, else the last standalone `(C)` or `C.`."""
    match = _CHOICE.search(text)
    if match:
        return match.group(1).upper()
    found = re.findall(r"\(([A-J])\)|\b([A-J])[.)]", text)
    if found:
        a, b = found[-1]
        return (a or b).upper()
    return None


def _math_verify(prediction: str, gold: str) -> bool:
    require("math_verify")
    from math_verify import parse, verify

    # Signal-based timeouts only work in the main thread; elsewhere they are off and the caller's timeout applies.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
    pred_parsed = parse(prediction, parsing_timeout=timeout)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)


def grade_math(prediction: str, gold: str, timeout: float = 10.0) -> bool:
    """MATH-500 grading with math-verify, symbolic, with a timeout that also works outside the main thread."""
    if threading.current_thread() is threading.main_thread():
        return _math_verify(prediction, gold)
    future = _POOL.submit(_math_verify, prediction, gold)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return False

"""Answer extraction and grading per task."""

from __future__ import annotations

import multiprocessing
import re
import threading
from typing import Any

from .data import close, numbers_in
from .extras import require

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

    # Signal-based timeouts only work in a main thread; elsewhere `_GradingProcess` grades in a child's main thread.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
    pred_parsed = parse(prediction, parsing_timeout=timeout)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


class _GradingProcess:
    """math-verify in a child process, for callers off the main thread.

    A thread cannot be stopped: a big-integer power (`\\boxed{9^{9^{9}}}`) holds the GIL, so a thread's timeout
    never fires and every later answer would wait behind it. A child process that runs past its time is killed and
    a fresh one started; the answer counts as wrong and the timeout is counted (`timeouts`). In the child, grading
    runs on its main thread, so math-verify's own timeouts work there too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None
        self.timeouts = 0

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()

    def grade(self, prediction: str, gold: str, timeout: float) -> bool:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
                timeout += _STARTUP_SECONDS  # a fresh child imports math-verify (and sympy) first
            self._conn.send((prediction, gold))
            if self._conn.poll(timeout):
                return bool(self._conn.recv())
            self._proc.kill()
            self._proc.join()
            self._proc = None
            self.timeouts += 1
            return False


_STARTUP_SECONDS = 60.0


def _serve(conn: Any) -> None:
    while True:
        prediction, gold = conn.recv()
        conn.send(_math_verify(prediction, gold))


_GRADER = _GradingProcess()


def grading_timeouts() -> int:
    """How many answers were graded wrong because grading ran past its time (off the main thread)."""
    return _GRADER.timeouts


def grade_math(prediction: str, gold: str, timeout: float = 10.0) -> bool:
    """MATH-500 grading with math-verify, symbolic, with a timeout that also holds outside the main thread."""
    if threading.current_thread() is threading.main_thread():
        return _math_verify(prediction, gold)
    return _GRADER.grade(prediction, gold, timeout)

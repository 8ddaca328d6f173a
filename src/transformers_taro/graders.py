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


def _math_verify(prediction: str, gold: str) -> tuple[bool, bool]:
    """`(correct, timed out)`: math-verify's verdict, and whether its own timeout cut it short (then wrong)."""
    require("math_verify")
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    # Signal-based timeouts only work in a main thread; elsewhere `_GradingProcess` grades in a child's main thread.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    try:
        gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout, raise_on_error=True)
        pred_parsed = parse(prediction, parsing_timeout=timeout, raise_on_error=True)
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout, raise_on_error=True)), False
    except TimeoutException:
        return False, True
    except Exception:  # noqa: BLE001 - an answer math-verify cannot read is a wrong answer, as it grades it itself
        return False, False


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
                correct, timed_out = self._conn.recv()
                self.timeouts += timed_out
                return correct
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
_MAIN_THREAD_TIMEOUTS = 0


def grading_timeouts() -> int:
    """How many answers were graded wrong because grading ran past its time: math-verify's own timeout, or (off the
    main thread) a grading process that had to be killed."""
    return _GRADER.timeouts + _MAIN_THREAD_TIMEOUTS


def grade_math(prediction: str, gold: str, timeout: float = 10.0) -> bool:
    """MATH-500 grading with math-verify, symbolic, with a timeout that also holds outside the main thread."""
    global _MAIN_THREAD_TIMEOUTS
    if threading.current_thread() is threading.main_thread():
        correct, timed_out = _math_verify(prediction, gold)
        _MAIN_THREAD_TIMEOUTS += timed_out
        return correct
    return _GRADER.grade(prediction, gold, timeout)

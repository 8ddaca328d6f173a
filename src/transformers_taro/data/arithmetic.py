"""Numbers and arithmetic as written in step-wise solutions: parsing, safe evaluation, checking equations."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


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
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
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


def format_number(x: float) -> str:
    """A number as a solution writes it: `12`, `0.5`, `2.33`."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")

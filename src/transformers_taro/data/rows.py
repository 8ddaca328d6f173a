"""Reading rows: JSONL with line numbers in errors, and a report of the malformed rows skipped."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class MalformedRow(ValueError):
    """A data row that cannot be used, with what is wrong with it."""


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, row)` of each non-blank line; a line that is not a UTF-8 JSON object is an error naming it."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{line_no} is not valid UTF-8 ({err.reason} at byte {err.start}).") from err
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no} is not valid JSON: {err}") from err
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}:{line_no} is not an object (a JSON {type(row).__name__}): each line is "
                        'one row with named fields, e.g. {"question": ..., "answer": ...}.'
                    )
                yield line_no, row


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file (blank lines skipped); errors name the file and line."""
    for _, row in numbered_jsonl(path):
        yield row


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
                what,
                self.skipped,
                self.skipped + self.kept,
                index,
                reason,
                str(row)[:200],
            )

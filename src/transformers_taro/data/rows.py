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

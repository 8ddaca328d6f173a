"""Pieces both trainers share: where to resume, and checks of their arguments."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def resume_point(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest *complete and readable* `checkpoint-N` in `output_dir` to resume from (None without `resume`).

    `Trainer` writes a checkpoint's `trainer_state.json` last, so a run killed while writing `checkpoint-N` leaves
    one without it (or with it cut short); `resume_from_checkpoint=True` would pick that one and fail. A checkpoint
    whose weights cannot be read (a disk that filled up, a copy cut short) is skipped too, saying so.
    """
    if not resume:
        return None
    steps = []
    for folder in Path(output_dir).glob("checkpoint-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text())
            steps.append((int(folder.name.split("-")[1]), folder))
        except (OSError, ValueError):
            continue  # incomplete: killed while being written
    for _, folder in sorted(steps, reverse=True):
        broken = _unreadable_weights(folder)
        if broken is None:
            return str(folder)
        logger.warning(
            "--resume: %s is skipped: %s cannot be read. Resuming from an earlier checkpoint.", folder, broken
        )
    raise FileNotFoundError(f"--resume: no complete, readable checkpoint-N folder in {output_dir} to resume from.")


def _unreadable_weights(folder: Path) -> str | None:
    """The first weights file of a checkpoint that cannot be opened (None: all can)."""
    from safetensors import SafetensorError, safe_open

    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), "pt") as f:
                for key in f.keys():  # noqa: SIM118 (not a dict)
                    f.get_slice(key)
        except (SafetensorError, OSError, ValueError):
            return weights.name
    return None


def check_max_steps(max_steps: int) -> None:
    """`max_steps` is a number of steps, or -1 for "by epochs"; 0 would still train one step and save it."""
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"--max_steps must be positive (or -1 to train for --num_train_epochs), got {max_steps}.")

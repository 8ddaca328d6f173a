"""Pieces both trainers share: where to resume, and checks of their arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path


def resume_point(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest *complete* `checkpoint-N` in `output_dir` to resume from (None without `resume`).

    `Trainer` writes a checkpoint's `trainer_state.json` last, so a run killed while writing `checkpoint-N` leaves
    one without it (or with it cut short); `resume_from_checkpoint=True` would pick that one and fail.
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
    if not steps:
        raise FileNotFoundError(f"--resume: no complete checkpoint-N folder in {output_dir} to resume from.")
    return str(max(steps)[1])


def check_max_steps(max_steps: int) -> None:
    """`max_steps` is a number of steps, or -1 for "by epochs"; 0 would still train one step and save it."""
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"--max_steps must be positive (or -1 to train for --num_train_epochs), got {max_steps}.")

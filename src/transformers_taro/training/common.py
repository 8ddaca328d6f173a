"""Pieces both trainers share: atomic artifact writing and resuming."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

# Written last, so a crash part-way through leaves no folder that looks complete (from_pretrained needs these).
_LOADABLE_LAST = ("config.json", "adapter_config.json")


def atomic_save(save: Callable[[str], None], output_dir: str | os.PathLike) -> None:
    """Run `save(folder)` into a scratch folder, then move its files into `output_dir`, config files last.

    A crash while saving never leaves a half-written model that loads: the weights are in place before the
    config that makes the folder loadable, and each move is an atomic rename on one filesystem.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out, prefix=".saving-"))
    try:
        save(str(scratch))
        names = sorted(os.listdir(scratch), key=lambda n: n in _LOADABLE_LAST)
        for name in names:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(scratch / name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def resume_checkpoint(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest `checkpoint-N` in `output_dir` when resuming, else None (and a clear error if there is none)."""
    if not resume:
        return None
    last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint-N folder in {output_dir} to resume from.")
    return last

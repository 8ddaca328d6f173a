"""Pieces both trainers share: atomic artifact writing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

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

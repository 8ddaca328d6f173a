"""Pieces both trainers share: atomic artifact writing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Written last, so a crash part-way through leaves no folder that looks complete (from_pretrained needs these).
_LOADABLE_LAST = ("config.json", "adapter_config.json")
_SCRATCH = ".saving-final"


def atomic_save(save: Callable[[str], None], output_dir: str | os.PathLike, accelerator: Any = None) -> None:
    """Run `save(folder)` into a scratch folder, then move its files into `output_dir`, config files last.

    A crash while saving never leaves a half-written model that loads: the weights are in place before the
    config that makes the folder loadable, and each move is an atomic rename on one filesystem.

    Under several processes (`accelerator` given), every process calls `save` on the same scratch folder, since
    saving can need all of them (DeepSpeed ZeRO-3 gathers the weights; `Trainer.save_model` writes on the main
    process only), and the main process alone moves the files.
    """
    out = Path(output_dir)
    scratch = out / _SCRATCH
    main = accelerator is None or accelerator.is_main_process
    if main:
        shutil.rmtree(scratch, ignore_errors=True)  # left by a run killed while saving
        scratch.mkdir(parents=True)
    _barrier(accelerator)
    try:
        save(str(scratch))
        _barrier(accelerator)
        if main:
            for name in sorted(os.listdir(scratch), key=lambda n: n in _LOADABLE_LAST):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(scratch / name, target)
    finally:
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
    _barrier(accelerator)


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()

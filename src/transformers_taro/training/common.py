"""Pieces both trainers share: atomic artifact writing."""

from __future__ import annotations

import json
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

    A crash while saving never leaves a half-written model that loads: an older model's config is removed first,
    the new weights are in place before the config that makes the folder loadable, and each move is an atomic
    rename on one filesystem.

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
            # An older model's config goes first: killed part-way, the folder then does not load at all (a clear
            # "no config.json") instead of loading the new weights under the old settings.
            for name in _LOADABLE_LAST:
                (out / name).unlink(missing_ok=True)
            for name in sorted(os.listdir(scratch), key=lambda n: n in _LOADABLE_LAST):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(scratch / name, target)
    finally:
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
    _barrier(accelerator)


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


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()

"""Pieces the trainers share: where to resume, checks of their arguments, and greedy decoding of training
problems (the router's outcome and oracle terms)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import LogitsProcessor, PreTrainedModel, PreTrainedTokenizerBase

from ..files import safetensors_shapes
from ..generation import stop_ids

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
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            safetensors_shapes(weights)
        except (OSError, ValueError):
            return weights.name
    return None


def check_max_steps(max_steps: int) -> None:
    """`max_steps` is a number of steps, or -1 for "by epochs"; 0 would still train one step and save it."""
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"--max_steps must be positive (or -1 to train for --num_train_epochs), got {max_steps}.")


def greedy_decode(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    processor_for: Callable[[torch.Tensor], LogitsProcessor],
    max_new_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`prompts` as one left-padded batch, decoded greedily with the processor `processor_for(attention_mask)`
    builds: the new tokens `[N, T]`, which of them are each answer's (up to and including its first end of
    sequence), and the answers' texts."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(base.device)
    with torch.no_grad():
        out = base.generate(
            **enc,
            logits_processor=[processor_for(enc["attention_mask"])],
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, enc["input_ids"].shape[1] :]
    is_stop = torch.isin(new, torch.tensor(sorted(stop_ids(base, tokenizer)), device=new.device)).long()
    answer = (is_stop.cumsum(1) - is_stop) == 0  # no end of sequence before the token
    texts = [tokenizer.decode(row[m], skip_special_tokens=True) for row, m in zip(new, answer)]
    return new, answer, texts

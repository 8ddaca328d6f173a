"""Batched generation for formatted prompts, plain or guided: what `taro generate`, `demo` and `eval` share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .guide import TARoGuide


@dataclass
class Generation:
    """One generated answer: its text, its token ids, and the alpha used at each of those tokens."""

    text: str
    token_ids: list[int]
    alphas: list[float]

    @property
    def mean_alpha(self) -> float | None:
        return sum(self.alphas) / len(self.alphas) if self.alphas else None


def guided_generate(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    guide: TARoGuide | None = None,
    max_new_tokens: int = 256,
    streamer: Any | None = None,
    **generate_kwargs: Any,
) -> list[Generation]:
    """Generate for already formatted prompts (one left-padded batch), greedy unless told otherwise.

    `guide=None` is the plain base model. Each answer ends at its first end-of-sequence token.
    """
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(base.device)
    kwargs = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id, "max_new_tokens": max_new_tokens,
              "streamer": streamer, **generate_kwargs}
    with torch.inference_mode():
        out = guide.generate(base, **enc, **kwargs) if guide is not None else base.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    stops = stop_ids(base, tokenizer)
    results = []
    for row, ids in enumerate(new):
        end = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
        ids = ids[:end]
        alphas = guide.alphas[row, : len(ids)].tolist() if guide is not None else []
        results.append(Generation(tokenizer.decode(ids, skip_special_tokens=True), ids, alphas))
    return results


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The token ids that end an answer: the model's generation config's end-of-sequence ids and the tokenizer's."""
    return (set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}) - {None}


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [int(x)]

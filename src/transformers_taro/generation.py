"""Batched generation with a chosen guidance method: what `taro generate`, `taro demo` and `taro eval` share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from .processor import TARoProcessor
from .router import TARoRouter

METHODS = ("base", "genarm", "taro")


@dataclass
class Generation:
    """One generated answer: its text, its token ids, and the alpha used at each of those tokens."""

    text: str
    token_ids: list[int]
    alphas: list[float]

    @property
    def mean_alpha(self) -> float | None:
        return sum(self.alphas) / len(self.alphas) if self.alphas else None


def check_method(method: str, reward_model: Any, router: Any, alpha: float | None) -> None:
    """Refuse a method without the parts it needs, naming the flag to add."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: choose one of {METHODS}.")
    if method == "genarm" and (reward_model is None or alpha is None):
        raise ValueError("method 'genarm' needs a reward model and --alpha.")
    if method == "taro" and (reward_model is None or router is None):
        raise ValueError("method 'taro' needs a reward model and a router (--router).")


def make_processor(method: str, reward_model: PreTrainedModel | None, router: TARoRouter | None,
                   alpha: float | None, attention_mask: torch.Tensor | None,
                   pad_token_id: int | None) -> TARoProcessor | None:
    """The `TARoProcessor` a method decodes with (None for `base`), for a batch with this attention mask."""
    if method == "base":
        return None
    return TARoProcessor(
        reward_model,
        router=router if method == "taro" else None,
        alpha=alpha if method == "genarm" else None,
        attention_mask=attention_mask,
        pad_token_id=pad_token_id,
    )


def guided_generate(
    base: PreTrainedModel,
    tokenizer: Any,
    prompts: list[str],
    method: str = "base",
    reward_model: PreTrainedModel | None = None,
    router: TARoRouter | None = None,
    alpha: float | None = None,
    max_new_tokens: int = 256,
    streamer: Any | None = None,
    **generate_kwargs: Any,
) -> list[Generation]:
    """Generate for already formatted prompts (left-padded batch), greedy unless told otherwise.

    `method` is `base` (plain generate), `genarm` (fixed `alpha`) or `taro` (`router`).
    """
    check_method(method, reward_model, router, alpha)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(base.device)
    proc = make_processor(method, reward_model, router, alpha, enc["attention_mask"], tokenizer.pad_token_id)
    kwargs = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id, **generate_kwargs}
    with torch.inference_mode():
        out = base.generate(
            **enc, max_new_tokens=max_new_tokens, streamer=streamer,
            logits_processor=LogitsProcessorList([proc] if proc else []), **kwargs,
        )
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    stops = set(_as_list(base.generation_config.eos_token_id)) | {tokenizer.eos_token_id}
    results = []
    for row, ids in enumerate(new):
        end = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
        ids = ids[:end]
        alphas = proc.alphas[row, : len(ids)].tolist() if proc is not None else []
        results.append(Generation(tokenizer.decode(ids, skip_special_tokens=True), ids, alphas))
    return results


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [int(x)]

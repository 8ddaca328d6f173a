"""What a generated answer is (`Generation`), and which tokens end one (`stop_ids`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generation:
    """One generated answer: its text, its token ids, and the alpha used at each of those tokens."""

    text: str
    token_ids: list[int]
    alphas: list[float]

    @property
    def mean_alpha(self) -> float | None:
        return sum(self.alphas) / len(self.alphas) if self.alphas else None


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The token ids that end an answer: the model's generation config's end-of-sequence ids and the tokenizer's."""
    return (set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}) - {None}


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [int(x)]

"""What a generated answer is (`Generation`), and which tokens end one (`stop_ids`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generation:
    """One generated answer: its text, its token ids, and the alpha used at each of those tokens (with several
    reward models, one list of weights per token, in the order of `names`)."""

    text: str
    token_ids: list[int]
    alphas: list[float] | list[list[float]]
    names: list[str] | None = None  # the reward models' names, for a guide of several

    @property
    def mean_alpha(self) -> float | dict[str, float] | None:
        """The mean weight over the answer's tokens; `{name: mean}` with several reward models."""
        if not self.alphas:
            return None
        if self.names is None:
            return sum(self.alphas) / len(self.alphas)
        return {name: sum(column) / len(column) for name, column in zip(self.names, zip(*self.alphas))}

    def alphas_of(self, name: str) -> list[float]:
        """The weight of reward model `name` at each token."""
        return [weights[self.names.index(name)] for weights in self.alphas]


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The token ids that end an answer: the model's generation config's end-of-sequence ids and the tokenizer's."""
    return (set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}) - {None}


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [int(x)]

"""Whether two models share one vocabulary: the one place that decides it.

Guided decoding adds the reward model's log-probability of token i to the base's for the same i, so both must mean
the same token by the same id. Embedding matrices are often larger than their tokenizer (rounded up to a multiple
of 64 or 128, Qwen2's by a few hundred rows): such padding rows are never generated and may differ.
"""

from __future__ import annotations

import weakref

from transformers import PreTrainedTokenizerBase

MAX_PADDING_ROWS = 1024
"""The most rows an embedding matrix is ever padded by: more is another vocabulary."""
PADDING_SHARE = 100
"""Without tokenizers, padding is at most 1/PADDING_SHARE of the matrix (or 64 rows, whichever is larger)."""


def padding_rows_allowed(rows: int) -> int:
    """How many rows beyond another model's a matrix of `rows` may hold as padding, tokenizers unknown."""
    return min(MAX_PADDING_ROWS, max(64, rows // PADDING_SHARE))


def check_vocabulary_sizes(
    base_rows: int,
    reward_rows: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
    reward_tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Refuse two output layers of different sizes unless the extra rows can only be padding.

    With tokenizers, the rows beyond the smaller matrix must lie beyond every tokenizer's real vocabulary; without,
    the difference must be small for the matrix's size (`padding_rows_allowed`).
    """
    if base_rows == reward_rows:
        return
    shared, larger = min(base_rows, reward_rows), max(base_rows, reward_rows)
    real = [len(t) for t in (tokenizer, reward_tokenizer) if t is not None]
    if real:
        if shared >= max(real):
            return
        why = f"the tokenizers have {max(real)} real tokens, more than the {shared} rows both models have"
    else:
        if larger - shared <= padding_rows_allowed(larger):
            return
        why = (
            f"{larger - shared} extra rows is more than embedding padding (at most "
            f"{padding_rows_allowed(larger)} for a matrix of {larger})"
        )
    raise ValueError(
        f"The base model scores {base_rows} tokens and the reward model {reward_rows}: {why}, so they do not share "
        "one vocabulary. Use a reward model with the base's tokenizer (pass tokenizer= to generate so the "
        "tokenizers themselves are compared)."
    )


_SAME: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, weakref.WeakSet] = weakref.WeakKeyDictionary()
"""Tokenizer pairs already found identical: comparing two 50k-token vocabularies on every `generate` call would
cost as much as a decoding step."""


def check_same_vocabulary(tokenizer: PreTrainedTokenizerBase, reward_tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise a `ValueError` naming the difference when two tokenizers do not share one vocabulary."""
    if reward_tokenizer in _SAME.get(tokenizer, ()):
        return
    a, b = tokenizer.get_vocab(), reward_tokenizer.get_vocab()
    if a == b:
        _SAME.setdefault(tokenizer, weakref.WeakSet()).add(reward_tokenizer)
        return
    only_a = sorted(set(a) - set(b))[:5]
    only_b = sorted(set(b) - set(a))[:5]
    moved = sorted(t for t in set(a) & set(b) if a[t] != b[t])[:5]
    raise ValueError(
        "The base and reward tokenizers differ, so the reward model's logits do not score the base model's tokens: "
        f"{len(a)} vs {len(b)} tokens; only in base: {only_a}; only in reward: {only_b}; different ids: {moved}. "
        "Use a reward model trained on the base model's tokenizer."
    )

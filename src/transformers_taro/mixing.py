"""The mixture maths: `mix` combines the base's and the reward models' log-probabilities with a weight per reward
model and position, and `check_alpha` is the one rule for a fixed weight. A leaf module: it imports nothing of the
library. `guidance.guided_scores` adds the steps every caller shares (log-softmax, the weight from a router or a
fixed alpha).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# A token the reward model rules out (-inf) gets this log-prob instead: still a prohibitive penalty for alpha > 0,
# and alpha = 0 then leaves the base scores bit for bit unchanged instead of turning 0 * -inf into NaN.
REWARD_LOGPROB_FLOOR = -1e4

MIXTURES = ("product", "geometric")
"""How a per-token weight mixes the two models; see [`mix`]."""


def check_alpha(alpha: float | None) -> float | None:
    """A fixed guidance weight as a float, or a `ValueError` that says what to pass instead (None passes through).

    The one rule for every fixed alpha (the guide, the processor, the command line): finite, at least 0 (a
    negative weight inverts the guidance), and within float32, the dtype the scores are mixed in.
    """
    if alpha is None:
        return None
    if isinstance(alpha, bool):  # float(True) is 1.0: a flag where a weight belongs is a mistake, not a weight
        raise ValueError(f"alpha must be a number, got the boolean {alpha!r}.")
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number, got {alpha!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"alpha must be a finite number, got {alpha}.")
    if value < 0:
        raise ValueError(f"alpha must be >= 0 (a negative weight inverts the guidance), got {alpha}.")
    if value > torch.finfo(torch.float32).max:
        raise ValueError(f"alpha={alpha} does not fit a float32 (the scores' dtype): use alpha <= 1e38.")
    return value


def as_list(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One reward model's tensor, or several models' sequence of them, as a list (one entry per reward model)."""
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def mix(
    base_logprobs: torch.Tensor,
    reward_logprobs: torch.Tensor | Sequence[torch.Tensor],
    weight: torch.Tensor,
    mixture: str = "product",
) -> torch.Tensor:
    r"""The guided (unnormalised) next-token scores from the models' log-probabilities and their weights.

    `"product"` (TARo, GenARM): :math:`\log p_b + \sum_k \alpha_k \log p_{r_k}`, one reward model or several.
    `"geometric"` (one reward model): :math:`(1 - w) \log p_b + w \log p_r`, with `weight` holding w.

    Both give the same greedy token when :math:`\alpha = w / (1 - w)`: the geometric scores are the product ones
    times :math:`1 - w`. What differs is the sharpness: a product weight above 0 sharpens the distribution, the
    geometric one interpolates between two normalised models, so a likelihood objective trained on it measures
    which way to mix rather than how sharp the result is.

    Args:
        base_logprobs: `[..., V_b]` log-probabilities of the base model.
        reward_logprobs: `[..., V_r]` log-probabilities of the reward model on the same prefixes, or a sequence of
            K such tensors, one per reward model.
        weight: the weight at each position, `[...]` for one reward model (alpha, or w for `"geometric"`), `[..., K]`
            for a sequence of K.
        mixture: `"product"` or `"geometric"`.

    Returns:
        `[..., V_b]` scores (`log_softmax` them for log-probabilities). Where the vocabularies differ only by
        padding rows, the shared part is mixed; base tokens beyond a reward model's vocabulary are ruled out
        (-inf) wherever its weight is non-zero. A weight of exactly 0 leaves the scores bit for bit as they were.

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro import mix
    >>> lb, lr = torch.randn(2, 10).log_softmax(-1), torch.randn(2, 10).log_softmax(-1)
    >>> scores = mix(lb, lr, torch.tensor([0.0, 0.5]))
    >>> torch.equal(scores[0], lb[0]), scores.shape
    (True, torch.Size([2, 10]))
    >>> lr2 = torch.randn(2, 10).log_softmax(-1)  # a second reward model: one weight per model and position
    >>> torch.equal(mix(lb, [lr, lr2], torch.tensor([[0.0, 0.0], [0.5, 0.0]])), scores)
    True
    ```
    """
    if mixture not in MIXTURES:
        raise ValueError(f"mixture={mixture!r}: choose one of {MIXTURES}.")
    rewards = as_list(reward_logprobs)
    weights = weight.unsqueeze(-1) if isinstance(reward_logprobs, torch.Tensor) else weight
    if weights.shape[-1] != len(rewards):
        raise ValueError(f"mix() got {len(rewards)} reward models but {weights.shape[-1]} weights per position.")
    if mixture == "geometric" and len(rewards) > 1:
        raise ValueError("The geometric mixture is defined for one reward model; use mixture='product' for several.")
    weights = weights.to(base_logprobs.dtype)
    scores = base_logprobs if mixture == "product" else (1 - weights) * base_logprobs
    for k, reward in enumerate(rewards):
        a = weights[..., k : k + 1]
        common = min(scores.shape[-1], reward.shape[-1])
        shared = scores[..., :common] + a * reward[..., :common].clamp(min=REWARD_LOGPROB_FLOOR)
        if common < scores.shape[-1]:
            shared = torch.cat([shared, scores[..., common:].masked_fill(a != 0, float("-inf"))], dim=-1)
        scores = shared
    return scores

"""The router's input features: the one function used at training and at decoding time.

Every feature is computed from the two next-token distributions (and, optionally, the reward model's hidden
state). None depends on the base model's width, which is what lets one router guide any base model that shares
the reward model's vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Log-probabilities are clamped before they enter features: a token one model rules out (-inf) must not turn a
# divergence into inf/nan, and the router should not see magnitudes it could never have seen in training.
_LOGPROB_FLOOR = -30.0
# Rough scale of a log-probability feature, so all features enter the MLP at order one.
_LOGPROB_SCALE = 10.0

NUM_SCALAR_FEATURES = 9


def num_features(num_top_logprobs: int, reward_hidden_size: int | None = None, num_reward_models: int = 1) -> int:
    """Width of the vector `router_features` returns for these settings (with `num_reward_models` reward models)."""
    return num_reward_models * (NUM_SCALAR_FEATURES + 2 * num_top_logprobs + (reward_hidden_size or 0))


def align_vocab(base_logprobs: torch.Tensor, reward_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both distributions to the shared vocabulary size (the extra rows are embedding padding)."""
    common = min(base_logprobs.shape[-1], reward_logprobs.shape[-1])
    return base_logprobs[..., :common], reward_logprobs[..., :common]


def router_features(
    base_logprobs: torch.Tensor,
    reward_logprobs: torch.Tensor | Sequence[torch.Tensor],
    num_top_logprobs: int = 4,
    reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    r"""Features of one decoding position (or of every position of a teacher-forced trace).

    With several reward models (`reward_logprobs` a sequence, and `reward_hidden_states` one per model if given),
    the features below are computed for each reward model against the base and concatenated in the models' order:
    the router sees each specialist's relation to the base, and no feature depends on the base's width.

    With base log-probs :math:`\ell_b`, reward log-probs :math:`\ell_r` over a vocabulary of size V
    (both already log-softmaxed, any leading shape ``[..., V]``), the feature vector is

    1. :math:`H(p_b)/\log V` and 2. :math:`H(p_r)/\log V` (normalised entropies);
    3. :math:`\max \ell_b` and 4. :math:`\max \ell_r` (confidence of each model);
    5. :math:`KL(p_b \| p_r)` and 6. :math:`KL(p_r \| p_b)`, squashed by :math:`\log(1+x)`;
    7. whether both argmaxes agree;
    8. :math:`\ell_r` at the base argmax and 9. :math:`\ell_b` at the reward argmax;
    10. the ``num_top_logprobs`` largest :math:`\ell_b` and then the ``num_top_logprobs`` largest :math:`\ell_r`;
    11. optionally the reward model's last hidden state at that position, as given.

    Log-probability features are clamped at -30 and divided by 10.

    Returns:
        `torch.Tensor` of shape ``[..., num_features(num_top_logprobs, hidden)]`` in float32.

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro.features import router_features
    >>> lb = torch.log_softmax(torch.randn(2, 100), -1)
    >>> lr = torch.log_softmax(torch.randn(2, 100), -1)
    >>> router_features(lb, lr, num_top_logprobs=3).shape
    torch.Size([2, 15])
    ```
    """
    if not isinstance(reward_logprobs, torch.Tensor):
        hidden = [None] * len(reward_logprobs) if reward_hidden_states is None else list(reward_hidden_states)
        return torch.cat(
            [router_features(base_logprobs, r, num_top_logprobs, h) for r, h in zip(reward_logprobs, hidden)], dim=-1
        )
    lb, lr = align_vocab(base_logprobs.float(), reward_logprobs.float())
    vocab = lb.shape[-1]
    lb = lb.clamp(min=_LOGPROB_FLOOR)
    lr = lr.clamp(min=_LOGPROB_FLOOR)
    pb, pr = lb.exp(), lr.exp()
    log_v = math.log(vocab)

    ent_b = -(pb * lb).sum(-1) / log_v
    ent_r = -(pr * lr).sum(-1) / log_v
    max_b, arg_b = lb.max(-1)
    max_r, arg_r = lr.max(-1)
    # Clamped log-probs make these KLs finite; they can come out slightly negative for near-identical inputs.
    kl_br = torch.log1p((pb * (lb - lr)).sum(-1).clamp(min=0))
    kl_rb = torch.log1p((pr * (lr - lb)).sum(-1).clamp(min=0))
    agree = (arg_b == arg_r).float()
    r_at_b = lr.gather(-1, arg_b.unsqueeze(-1)).squeeze(-1)
    b_at_r = lb.gather(-1, arg_r.unsqueeze(-1)).squeeze(-1)

    parts = [
        torch.stack(
            [
                ent_b,
                ent_r,
                max_b / _LOGPROB_SCALE,
                max_r / _LOGPROB_SCALE,
                kl_br,
                kl_rb,
                agree,
                r_at_b / _LOGPROB_SCALE,
                b_at_r / _LOGPROB_SCALE,
            ],
            dim=-1,
        )
    ]
    if num_top_logprobs > 0:
        if num_top_logprobs > vocab:
            raise ValueError(f"num_top_logprobs={num_top_logprobs} exceeds the vocabulary size {vocab}.")
        parts.append(lb.topk(num_top_logprobs, dim=-1).values / _LOGPROB_SCALE)
        parts.append(lr.topk(num_top_logprobs, dim=-1).values / _LOGPROB_SCALE)
    if reward_hidden_states is not None:
        parts.append(reward_hidden_states.float())
    return torch.cat(parts, dim=-1)

"""The router's input features: the one function used at training and at decoding time.

Every feature is computed from the two next-token distributions (and, optionally, the reward model's hidden
state). None depends on the base model's width, which is what lets one router guide any base model that shares
the reward model's vocabulary.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .router import TARoRouter

# Log-probabilities are clamped before they enter features: a token one model rules out (-inf) must not turn a
# divergence into inf/nan, and the router should not see magnitudes it could never have seen in training.
_LOGPROB_FLOOR = -30.0
# Rough scale of a log-probability feature, so all features enter the MLP at order one.
_LOGPROB_SCALE = 10.0

NUM_SCALAR_FEATURES = 9


def num_features(num_top_logprobs: int, reward_hidden_size: int | None = None) -> int:
    """Width of the vector `router_features` returns for these settings."""
    return NUM_SCALAR_FEATURES + 2 * num_top_logprobs + (reward_hidden_size or 0)


def align_vocab(base_logprobs: torch.Tensor, reward_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both distributions to the shared vocabulary size (the extra rows are embedding padding)."""
    common = min(base_logprobs.shape[-1], reward_logprobs.shape[-1])
    return base_logprobs[..., :common], reward_logprobs[..., :common]


def router_features(
    base_logprobs: torch.Tensor,
    reward_logprobs: torch.Tensor,
    num_top_logprobs: int = 4,
    reward_hidden_states: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Features of one decoding position (or of every position of a teacher-forced trace).

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


# A token the reward model rules out (-inf) gets this log-prob instead: still a prohibitive penalty for alpha > 0,
# and alpha = 0 then leaves the base scores bit for bit unchanged instead of turning 0 * -inf into NaN.
REWARD_LOGPROB_FLOOR = -1e4


MIXTURES = ("product", "geometric")
"""How a per-token weight mixes the two models; see [`mix`]."""


def guided_scores(base_logprobs: torch.Tensor, reward_logprobs: torch.Tensor, alpha: torch.Tensor,
                  mixture: str = "product") -> torch.Tensor:
    r"""The guided (unnormalised) next-token scores.

    `"product"`: :math:`\log p_b + \alpha \cdot \log p_r`; `"geometric"`: :math:`(1 - w) \log p_b + w \log p_r`
    with `alpha` holding w. `base_logprobs` `[..., V_b]`, `reward_logprobs` `[..., V_r]`, `alpha` `[...]`. The
    result has the base's vocabulary size. Where the vocabularies differ only by padding rows, the shared part is
    mixed; base tokens beyond the reward model's vocabulary are ruled out (-inf) wherever the weight is non-zero.
    """
    common = min(base_logprobs.shape[-1], reward_logprobs.shape[-1])
    a = alpha.unsqueeze(-1).to(base_logprobs.dtype)
    base = base_logprobs if mixture == "product" else (1 - a) * base_logprobs
    shared = base[..., :common] + a * reward_logprobs[..., :common].clamp(min=REWARD_LOGPROB_FLOOR)
    if common == base_logprobs.shape[-1]:
        return shared
    extra = base[..., common:].masked_fill(a != 0, float("-inf"))
    return torch.cat([shared, extra], dim=-1)


def mix(
    base_scores: torch.Tensor,
    reward_logits: torch.Tensor,
    *,
    alpha: float | None = None,
    router: TARoRouter | None = None,
    reward_hidden_states: torch.Tensor | None = None,
    check_finite: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The guided distribution, the one place it is computed: decoding, router training and lm-eval all call it.

    .. math::
        \text{scores} = \log\mathrm{softmax}(s_b) + \alpha_t \cdot \log\mathrm{softmax}(s_r)

    with :math:`\alpha_t` the fixed `alpha` (GenARM) or `router.compute_alpha(...)` (TARo) at each position. A
    router trained with `mixture="geometric"` outputs :math:`w_t \in [0, 1]` instead, and

    .. math::
        \text{scores} = (1 - w_t) \log\mathrm{softmax}(s_b) + w_t \log\mathrm{softmax}(s_r).

    Both give the same greedy token when :math:`\alpha = w / (1 - w)`: the geometric scores are the product ones
    times :math:`1 - w`. What differs is the sharpness: a product weight above 0 sharpens the distribution (the
    scores grow), the geometric one interpolates between two normalised models, so a likelihood objective trained
    on it measures which way to mix rather than how sharp the result is. Sampling temperature divides the scores
    as usual; for a geometric router, temperature 1 samples the interpolated distribution itself.

    Args:
        base_scores: `[..., V_b]` base logits (or log-probs: they are log-softmaxed again, which changes nothing).
        reward_logits: `[..., V_r]` reward-model logits on the same prefixes.
        alpha / router: Exactly one.
        reward_hidden_states: `[..., H]`, for routers that read the reward model's hidden state.
        check_finite: Raise on NaN/inf reward logits or router alphas, naming the usual cause.

    Returns:
        `(scores [..., V_b], alpha [...])`: unnormalised guided scores (`log_softmax` them for log-probs) and the
        weight used at each position (w for a geometric router).

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro.features import mix
    >>> scores, alpha = mix(torch.randn(2, 10), torch.randn(2, 10), alpha=0.5)
    >>> scores.shape, alpha.tolist()
    (torch.Size([2, 10]), [0.5, 0.5])
    ```
    """
    if (router is None) == (alpha is None):
        raise ValueError("mix() takes exactly one of `alpha` (fixed weight) or `router` (weight per token).")
    reward_logits = reward_logits.float()
    lse = torch.logsumexp(reward_logits, dim=-1, keepdim=True)
    if check_finite and not bool(torch.isfinite(lse).all()):
        raise ValueError(
            "The reward model produced NaN/inf logits. Check its weights and dtype (fp16 overflow is the usual "
            "cause: load it in bfloat16 or float32)."
        )
    reward_logprobs = reward_logits - lse
    base_logprobs = torch.log_softmax(base_scores.float(), dim=-1).to(reward_logprobs.device)
    if router is not None:
        weight = router.compute_alpha(base_logprobs, reward_logprobs, reward_hidden_states).float()
        weight = weight.to(base_logprobs.device)
        if check_finite and not bool(torch.isfinite(weight).all()):
            raise ValueError("The router produced a NaN/inf alpha: its weights are corrupt (NaN or inf). Load the "
                             "router again from an intact model.safetensors, or retrain it.")
    else:
        weight = torch.full(base_logprobs.shape[:-1], float(alpha), device=base_logprobs.device)
    mixture = router.config.mixture if router is not None else "product"
    return guided_scores(base_logprobs, reward_logprobs, weight, mixture), weight

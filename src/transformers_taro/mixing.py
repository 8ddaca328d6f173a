"""The guided distribution: `mix` combines the base's and the reward models' log-probabilities with a weight per
reward model and position.

`mix` is the one place the mixture is computed; `guided_scores` adds the steps every caller shares (log-softmax
both models, take the weight from a router or a fixed alpha). Decoding (`TARoProcessor`), router training and the
lm-eval model all call them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .router import TARoRouter

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


def guided_scores(
    base_scores: torch.Tensor,
    reward_logits: torch.Tensor | Sequence[torch.Tensor],
    *,
    alpha: float | Sequence[float] | None = None,
    router: TARoRouter | None = None,
    reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
    check_finite: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Log-softmax every model, take the weights from `router` (TARo) or the fixed `alpha` (GenARM), then `mix`.

    .. math::
        \text{scores} = \log\mathrm{softmax}(s_b) + \sum_k \alpha_{k,t} \cdot \log\mathrm{softmax}(s_{r_k})

    (or the geometric mixture, for a router trained with it: `router.config.mixture`).

    Args:
        base_scores: `[..., V_b]` base logits (or log-probs: log-softmaxing them again changes nothing).
        reward_logits: `[..., V_r]` reward-model logits on the same prefixes, or a sequence of them, one per
            reward model.
        alpha / router: Exactly one. With a sequence of reward models, `alpha` is a sequence of as many weights.
        reward_hidden_states: `[..., H]` (a sequence of them for several reward models), for routers that read
            the reward model's hidden state.
        check_finite: Raise on NaN/inf reward logits or router weights, naming the usual cause.

    Returns:
        `(scores [..., V_b], weight)`: unnormalised guided scores and the weight used at each position, `[...]`
        for one reward model, `[..., K]` for a sequence of K.

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro.mixing import guided_scores
    >>> scores, alpha = guided_scores(torch.randn(2, 10), torch.randn(2, 10), alpha=0.5)
    >>> scores.shape, alpha.tolist()
    (torch.Size([2, 10]), [0.5, 0.5])
    >>> scores, alphas = guided_scores(torch.randn(2, 10), [torch.randn(2, 10)] * 2, alpha=[1.0, 0.25])
    >>> alphas.tolist()
    [[1.0, 0.25], [1.0, 0.25]]
    ```
    """
    if (router is None) == (alpha is None):
        raise ValueError("guided_scores() takes exactly one of `alpha` (fixed weight) or `router` (weight per token).")
    single = isinstance(reward_logits, torch.Tensor)
    reward_logprobs = []
    for logits in as_list(reward_logits):
        logits = logits.float()
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)
        if check_finite and not bool(torch.isfinite(lse).all()):
            raise ValueError(
                "The reward model produced NaN/inf logits. Check its weights and dtype (fp16 overflow is the usual "
                "cause: load it in bfloat16 or float32)."
            )
        reward_logprobs.append(logits - lse)
    base_logprobs = torch.log_softmax(base_scores.float(), dim=-1).to(reward_logprobs[0].device)
    rewards = reward_logprobs[0] if single else reward_logprobs
    if router is None:
        alphas = [alpha] if single else list(alpha)
        if len(alphas) != len(reward_logprobs):
            raise ValueError(f"{len(alphas)} fixed weights for {len(reward_logprobs)} reward models: give one each.")
        weight = torch.tensor(alphas, dtype=torch.float32, device=base_logprobs.device)
        weight = weight.expand(*base_logprobs.shape[:-1], len(alphas))
        weight = weight[..., 0] if single else weight
        return mix(base_logprobs, rewards, weight), weight
    weight = router.compute_alpha(base_logprobs, rewards, reward_hidden_states).float()
    weight = weight.to(base_logprobs.device)
    if check_finite and not bool(torch.isfinite(weight).all()):
        raise ValueError(
            "The router produced a NaN/inf alpha: its weights are corrupt (NaN or inf). Load the "
            "router again from an intact model.safetensors, or retrain it."
        )
    return mix(base_logprobs, rewards, weight, router.config.mixture), weight

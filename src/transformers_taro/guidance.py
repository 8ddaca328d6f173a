"""Guided scores: what every caller of the mixture shares. Log-softmax the base's and the reward models' scores,
take the weights from a router (TARo) or fixed alphas (GenARM), then `mixing.mix`. Decoding (`TARoProcessor`),
router training's checks and the lm-eval model call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .mixing import as_list, mix
from .router import TARoRouter


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
    >>> from transformers_taro.guidance import guided_scores
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

"""The outcome objective: the router as a policy over its weight, trained by REINFORCE on graded rollouts.

At each decoded token the router proposes the logit m_t of its weight (`TARoRouter.weight_logit`); the policy
draws z_t ~ N(m_t, sigma^2) and decodes with weight `weight_max * sigmoid(z_t)` (a logit-normal policy over alpha
or w). Tokens are chosen greedily given the weight, as at test time, so the only randomness is the weight's. Each
problem gets K such rollouts; each is graded by the task's answer checker (reward 1 or 0). With the leave-one-out
baseline of the problem's other rollouts (RLOO), advantage A_i = r_i - mean_{j != i} r_j, and

    L_outcome = - sum_i A_i * sum_t log N(z_{i,t}; m_{i,t}, sigma^2) / sum_i T_i

whose gradient moves each m_t toward the weights drawn in rollouts that were right more often than their siblings.
At test time the router decodes with z_t = m_t (greedy in the weight, as in every other use of a router).

The rollouts run through `generate` with a [`TARoProcessor`], exactly the decoding the router is used with; the
policy only wraps the router to draw and record z_t. The features are recorded during the rollout (computed once,
from the frozen models) and the policy's mean is recomputed from them with gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..mixing import as_list
from ..processor import TARoProcessor
from ..router import TARoRouter
from .common import greedy_decode


class ExploringRouter(nn.Module):
    """A router that draws its weight logit from `N(weight_logit, sigma^2)` at each call and records the draw.

    It stands in for the router in a [`TARoProcessor`] (same `config`, same `compute_alpha` contract), so a
    rollout decodes exactly as the router would, with noise on the weight only.
    """

    def __init__(self, router: TARoRouter, sigma: float, generator: torch.Generator | None = None):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (the policy's spread in logit space), got {sigma}.")
        self.router, self.sigma, self.generator = router, sigma, generator
        self.steps: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []

    @property
    def config(self) -> Any:
        return self.router.config

    def compute_alpha(
        self,
        base_logprobs: torch.Tensor,
        reward_logprobs: torch.Tensor | Sequence[torch.Tensor],
        reward_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return self.router.compute_alpha(base_logprobs, reward_logprobs, reward_hidden_states, logit_hook=self._draw)

    def _draw(self, mean: torch.Tensor, features: torch.Tensor, reward_hidden_states: Any) -> torch.Tensor:
        """`z ~ N(mean, sigma^2)`, recorded with what the policy's mean is recomputed from."""
        noise = torch.randn(mean.shape, generator=self.generator, device="cpu").to(mean.device)
        z = mean.detach().float() + self.sigma * noise
        hidden = None
        if self.config.use_reward_hidden_states:
            hidden = torch.stack(as_list(reward_hidden_states), dim=-2)  # [..., K, H], as weight_logit reads it
        self.steps.append((features, hidden, z))
        return z


@dataclass
class Rollouts:
    """What the policy did: per rollout and decoded token the features, hidden states, drawn logit, validity."""

    features: torch.Tensor  # [N, T, F]
    hidden: torch.Tensor | None  # [N, T, K, H]: K reward models
    z: torch.Tensor  # [N, T] for one reward model, [N, T, K] for K
    mask: torch.Tensor  # [N, T]: the token was decoded (up to and including the row's end-of-sequence)
    tokens: torch.Tensor  # [N, T] the decoded token ids (padding after a row's end)
    texts: list[str]


def rollouts(
    base: PreTrainedModel,
    reward_model: PreTrainedModel | Sequence[PreTrainedModel],
    router: TARoRouter,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    sigma: float,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
) -> Rollouts:
    """Greedy guided decoding of `prompts` (one left-padded batch) with the weight drawn per token by the policy."""
    policy = ExploringRouter(router, sigma, generator)

    def processor_for(mask: torch.Tensor) -> TARoProcessor:
        return TARoProcessor(reward_model, router=policy, attention_mask=mask)

    new, mask, texts = greedy_decode(base, tokenizer, prompts, processor_for, max_new_tokens)
    recorded = policy.steps[: new.shape[1]]
    hidden = torch.stack([h for _, h, _ in recorded], 1).clone() if recorded[0][1] is not None else None
    return Rollouts(
        torch.stack([f for f, _, _ in recorded], 1).clone(),
        hidden,
        torch.stack([z for _, _, z in recorded], 1).clone(),
        mask,
        new,
        texts,
    )


def leave_one_out_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """`r_i - mean of the other rollouts of the same problem`; rows are `group` consecutive rollouts per problem."""
    if group < 2 or rewards.numel() % group:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group} >= 2 rollouts per problem.")
    r = rewards.view(-1, group).float()
    return (r - (r.sum(1, keepdim=True) - r) / (group - 1)).view(-1)


def reinforce_loss(router: TARoRouter, episodes: Rollouts, advantages: torch.Tensor, sigma: float) -> torch.Tensor:
    """`-sum_i A_i sum_t log N(z_it; m_it, sigma^2) / (number of tokens)`, with m recomputed with gradients."""
    device = router.head.weight.device
    mean = router.weight_logit(
        episodes.features.to(device), None if episodes.hidden is None else episodes.hidden.to(device)
    )
    mask = episodes.mask.to(device)
    log_prob = -((episodes.z.to(device) - mean) ** 2) / (2 * sigma**2)  # constants drop out of the gradient
    if log_prob.dim() > mask.dim():  # one weight per reward model: the policy's draws are independent
        log_prob = log_prob.sum(-1)
    weighted = advantages.to(device).unsqueeze(1) * log_prob * mask
    return -weighted.sum() / mask.sum().clamp(min=1)

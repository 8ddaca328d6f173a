"""The oracle objective: the router learns, per token, which fixed weights solved the problem it is decoding.

For every training problem the frozen base decodes greedily once per point g of the weight grid (each reward
model at each weight of `oracle_grid`: GenARM at fixed weights), and each answer is graded, r_g in {0, 1}. The
problem's target over the grid is

    t_g  ∝  r_g * exp(-oracle_tie_break * |g - prior|_1)

(the points that solved it, ties leaning toward the prior weight). A problem that every point solves, or none,
says nothing about the weight and is left out. Each kept problem becomes one training row: its prompt, the
answer decoded at its most likely target point (a correct guided trace: what the router reads when it decodes),
and the target. A router with a weight grid (`TARoRouterConfig.weight_grid`) is trained toward it with
cross-entropy at every token of the trace:

    L_oracle = mean_t  - sum_g t_g log softmax(router scores)_g

Within a group of problems the router cannot tell apart, the best choice is the grid point that solved most of
them. Cross-entropy learns the group's average target, whose most likely point is that one; the softmax mixes
every point with some mass, so a grid router decodes sharper than it was trained, at a `grid_temperature` below 1
(chosen on validation). (Maximising the target mass the router's choice hits, `sum_g t_g q_g`, aims at the same
point directly, but its gradient vanishes wherever q is confident and wrong: it stalls.) Where the features tell
problems apart (the reward models' hidden states know the question), the router can do better than any fixed
weight. Decoding uses the expected grid point under `softmax(scores / grid_temperature)`.

The grid decoding is the stage that costs: `len(oracle_grid) ** K` greedy decodes of each of `oracle_problems`
problems. It is written to `oracle_grid.jsonl` beside the router's checkpoints, and a resumed run reuses it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import format_prompt
from ..data.rows import read_jsonl
from ..files import write_atomically
from ..processor import TARoProcessor
from ..tasks import Task
from .common import greedy_decode

logger = logging.getLogger(__name__)

ORACLE_FILE = "oracle_grid.jsonl"


class OracleUninformative(ValueError):
    """No training problem separates the grid's weights: each was solved at every point, or at none."""


def decode_fixed(
    base: PreTrainedModel,
    reward_models: list[PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    weights: list[float],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy GenARM decoding of `prompts` at the fixed `weights` (one per reward model), in batches."""

    def processor_for(mask: torch.Tensor) -> TARoProcessor:
        return TARoProcessor(reward_models, alpha=weights, attention_mask=mask)

    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        texts += greedy_decode(base, tokenizer, batch, processor_for, max_new_tokens)[2]
    return texts


def grid_targets(
    rewards: torch.Tensor, points: torch.Tensor, prior: float, tie_break: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each problem's target over the grid from its graded decodes.

    Args:
        rewards: `[N, G]` 1 where the decode at grid point g solved problem n.
        points: `[G, K]` the grid points.
        prior: the weight (of every reward model) ties lean toward.
        tie_break: how strongly they lean: `exp(-tie_break * |g - prior|_1)`.

    Returns:
        `(targets [N, G], informative [N])`: rows sum to 1 where `informative` (some points solved it, some did
        not); elsewhere the row is all zeros.

    Example:
    ```python
    >>> import torch
    >>> from transformers_taro.training.oracle import grid_targets
    >>> points = torch.tensor([[0.0], [1.0], [2.0]])
    >>> t, keep = grid_targets(torch.tensor([[0, 1, 1], [1, 1, 1]]), points, prior=1.0, tie_break=0.0)
    >>> t.tolist(), keep.tolist()
    ([[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]], [True, False])
    ```
    """
    r = rewards.float()
    solved = r.sum(-1)
    informative = (solved > 0) & (solved < r.shape[-1])
    lean = torch.exp(-tie_break * (points - prior).abs().sum(-1))  # [G]
    mass = r * lean
    targets = mass / mass.sum(-1, keepdim=True).clamp(min=1e-12)
    return targets * informative.unsqueeze(-1), informative


def oracle_rows(
    base: PreTrainedModel,
    reward_models: list[PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    points: torch.Tensor,
    *,
    prior: float,
    tie_break: float,
    max_new_tokens: int,
    batch_size: int,
    system: str | None,
    work: str | Path,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Decode every problem of `task` at every grid point, grade, and build the oracle's training rows.

    The decodes are kept in `work/oracle_grid.jsonl` (one line per grid point, written as each finishes), so an
    interrupted run resumes at the next point; a file made with other problems or points is refused.

    Returns:
        `(rows, summary)`: rows with `prompt`, `completion` and `weight_target` (`[G]` floats) for each informative
        problem, and a summary (problems, informative ones, each point's accuracy, the oracle's accuracy) for the
        router's card and logs.
    """
    prompts = [format_prompt(task.question(row), tokenizer, system=task.system or system) for row in task.rows]
    file = Path(work) / ORACLE_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[float, ...], list[str]] = {}
    if file.is_file():
        for line in read_jsonl(file):
            if line["prompts"] != len(prompts) or line["first_prompt"] != prompts[0]:
                raise ValueError(
                    f"{file} holds grid decodes of other problems: delete it (or use another output_dir) to decode "
                    "these."
                )
            done[tuple(line["point"])] = line["texts"]

    def line(point: list[float], texts: list[str]) -> str:
        return json.dumps({"point": point, "prompts": len(prompts), "first_prompt": prompts[0], "texts": texts}) + "\n"

    for point in points.tolist():
        if tuple(point) in done:
            continue
        texts = decode_fixed(base, reward_models, tokenizer, prompts, point, max_new_tokens, batch_size)
        done[tuple(point)] = texts
        write_atomically(file, "".join(line(list(p), t) for p, t in done.items()))
        logger.warning("oracle grid: point %s solves %.3f", point, _solved(task, texts).float().mean())
    decoded = [done[tuple(p)] for p in points.tolist()]
    rewards = torch.stack([_solved(task, texts) for texts in decoded], dim=1)  # [N, G]
    targets, informative = grid_targets(rewards, points, prior, tie_break)
    rows = []
    for n in informative.nonzero().squeeze(-1).tolist():
        best = int(targets[n].argmax())
        rows.append({"prompt": prompts[n], "completion": decoded[best][n], "weight_target": targets[n].tolist()})
    accuracy = rewards.float().mean(0)
    summary = {
        "problems": len(prompts),
        "informative": len(rows),
        "grid_accuracy": {",".join(f"{w:g}" for w in p): round(float(a), 4) for p, a in zip(points.tolist(), accuracy)},
        "oracle_accuracy": round(float(rewards.any(-1).float().mean()), 4),
        "best_fixed_accuracy": round(float(accuracy.max()), 4),
    }
    return rows, summary


def oracle_loss(grid_logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the router's grid scores `[B, T, G]` toward each row's target `[B, G]` at the masked
    positions `[B, T]`, averaged over them."""
    log_q = torch.log_softmax(grid_logits.float(), -1)
    per_token = -(targets.to(log_q.device).unsqueeze(1) * log_q).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def _solved(task: Task, texts: list[str]) -> torch.Tensor:
    return torch.tensor([bool(task.grade(task.extract(t), task.gold(row))) for t, row in zip(texts, task.rows)])


def check_grid_size(num_points: int, problems: int) -> None:
    """Refuse a grid stage that could not finish: more than 1e6 decodes."""
    if num_points * problems > 1_000_000:
        raise ValueError(
            f"The oracle grid would decode {problems} problems at {num_points} grid points "
            f"({num_points * problems} decodes): use fewer oracle_problems first, then a coarser oracle_grid."
        )


__all__ = [
    "decode_fixed",
    "grid_targets",
    "oracle_loss",
    "oracle_rows",
    "ORACLE_FILE",
    "check_grid_size",
]

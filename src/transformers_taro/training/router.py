"""Router training: only the router learns; the base and reward models are frozen.

Objective, with q the guided distribution of `mixing.mix` (product `log p_b + alpha_t log p_r`, or geometric
`(1 - w_t) log p_b + w_t log p_r`, as `mixture` says; with several reward models, product
`log p_b + sum_k alpha_k,t log p_r_k`, the prior term averaged over the k weights):

    L = nll_weight    * mean_t -log q(y_t | y<t)               on correct step-wise traces (prompt masked)
      + margin_weight * mean_pairs -log sigmoid(margin_beta * (S(chosen) - S(rejected)))
      + outcome_weight * REINFORCE loss of graded guided rollouts                 (see `training.outcome`)
      + oracle_weight  * mean_t CE(router's grid scores, the weights that solved the problem)  (`training.oracle`)
      + alpha_reg     * mean_t (weight_t - prior)^2

where S(step) is the step's summed log-probability under q, for a correct and an incorrect next step after the
same prefix (`pairs_data`, step pairs as the reward model trains on). The NLL term asks the mixture to explain
correct reasoning; likelihood also punishes the sharpening a large product alpha brings, so its optimum can sit
below the accuracy optimum. The margin term asks only that the mixture rank the correct step above the
incorrect one: what decoding needs. The outcome term asks for what is measured: each step decodes
`outcome_problems` training problems `outcome_rollouts` times with the weight drawn around the router's (a
logit-normal policy, spread `outcome_sigma`), grades the answers and reinforces the weights of the rollouts that
were right more often than their siblings. The oracle term is the cheapest way to aim at accuracy: every training
problem is decoded once at each point of a grid of fixed weights and graded, and a router over that grid learns
which points solved the problems it decodes (its traces are then those correct guided decodes). The prior keeps
the weight near a sensible fixed one where the data is indifferent.

Built on transformers' `Trainer`: checkpointing, `--resume`, logging and `accelerate launch` come with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed

from ..data import SYSTEM_PROMPT, format_prompt
from ..extras import require
from ..files import atomic_save
from ..mixing import mix
from ..router import TARoRouter, TARoRouterConfig, check_weight_grid, grid_points
from ..tasks import Task
from .collate import TraceCollator
from .common import check_max_steps, resume_point
from .oracle import OracleUninformative, check_grid_size, oracle_loss, oracle_rows

logger = logging.getLogger(__name__)


@dataclass
class RouterTrainingConfig(TrainingArguments):
    """`TrainingArguments` plus the router's shape and objective.

    Args:
        num_top_logprobs, use_reward_hidden_states, router_hidden_size, router_layers, mixture, alpha_max, alpha_init:
            See [`TARoRouterConfig`].
        alpha_reg: Weight of the prior term `(alpha - alpha_prior)^2`.
        alpha_prior: The fixed weight alpha is pulled toward (defaults to `alpha_init`).
        max_length: Traces are cut to this many tokens (prompt included).
        system_prompt: The prompt format's system prompt (`""`: none): the traces', the outcome term's rollouts', and
            the guide's it writes (`guide.format_prompt`, `taro eval`).
    """

    num_top_logprobs: int = field(default=4, metadata={"help": "Top log-probs of each model in the features."})
    use_reward_hidden_states: bool = field(default=False, metadata={"help": "Also read the RM's hidden state."})
    router_hidden_size: int = field(default=64, metadata={"help": "Width of the router MLP."})
    router_layers: int = field(default=2, metadata={"help": "Hidden layers of the router MLP."})
    mixture: str = field(
        default="product",
        metadata={
            "help": "How the weight mixes the models: 'product' (log p_b + alpha log p_r, alpha in [0, alpha_max]) or "
            "'geometric' ((1 - w) log p_b + w log p_r, w in [0, 1]). Recorded in the router's config."
        },
    )
    alpha_max: float = field(default=4.0, metadata={"help": "Alpha lies in [0, alpha_max] (product mixture)."})
    alpha_init: float = field(default=1.0, metadata={"help": "Alpha of the untrained router."})
    nll_weight: float = field(default=1.0, metadata={"help": "Weight of the guided NLL on correct traces."})
    margin_weight: float = field(
        default=0.0, metadata={"help": "Weight of the step margin on step pairs (needs pairs_data)."}
    )
    margin_beta: float = field(default=1.0, metadata={"help": "beta of the step margin's logistic loss."})
    pairs_data: str | None = field(
        default=None,
        metadata={
            "help": "Step pairs for the margin term: GSM8K rows (incorrect steps made by corrupting gold ones), "
            "Math-Step-DPO rows, a local file or a Hub id."
        },
    )
    outcome_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the outcome term: REINFORCE on graded guided rollouts of the training problems (rows "
            "with a question and a numeric answer)."
        },
    )
    outcome_problems: int = field(default=8, metadata={"help": "Problems rolled out per step (outcome term)."})
    outcome_rollouts: int = field(
        default=4, metadata={"help": "Rollouts per problem (>= 2: the baseline is the mean of the others)."}
    )
    outcome_sigma: float = field(default=0.5, metadata={"help": "Spread of the policy's weight logit."})
    outcome_max_new_tokens: int = field(default=256, metadata={"help": "Length limit of a rollout."})
    oracle_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the oracle term: the router (a classifier over oracle_grid's weights) learns which "
            "fixed weights solved each training problem. Its traces are those correct guided decodes."
        },
    )
    oracle_grid: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0],
        metadata={"help": "The weights each reward model takes in the oracle's grid (all combinations are decoded)."},
    )
    oracle_problems: int = field(
        default=1000, metadata={"help": "Training problems the oracle grid decodes (the first ones of the data)."}
    )
    oracle_tie_break: float = field(
        default=0.25,
        metadata={"help": "Among the grid points that solved a problem, lean toward alpha_prior: exp(-this * L1)."},
    )
    grid_temperature: float = field(
        default=1.0, metadata={"help": "The grid router's decoding temperature (see TARoRouterConfig)."}
    )
    oracle_max_new_tokens: int = field(default=256, metadata={"help": "Length limit of a grid decode."})
    oracle_batch_size: int = field(default=64, metadata={"help": "Problems decoded at once in the grid stage."})
    cache_frozen_outputs: bool = field(
        default=False,
        metadata={
            "help": "Keep the frozen models' outputs on each trace and step pair in memory, computed on first use and "
            "reused in later epochs (they never change). Pays off over several epochs at a small vocabulary: "
            "it holds two full distributions per scored token."
        },
    )
    cache_max_gb: float = field(
        default=4.0,
        metadata={"help": "Refuse cache_frozen_outputs, before training, when the cache would exceed this many GB."},
    )
    alpha_reg: float = field(default=0.01, metadata={"help": "Weight of (alpha - alpha_prior)^2."})
    system_prompt: str = field(
        default=SYSTEM_PROMPT,
        metadata={
            "help": "System prompt of the traces' (and rollouts') prompt format, recorded in the guide it writes; '' "
            "for none. Use the one the reward model was trained with."
        },
    )
    alpha_prior: float | None = field(default=None, metadata={"help": "Prior alpha (default: alpha_init)."})
    init_router: str | None = field(
        default=None,
        metadata={
            "help": "Start from this saved router (folder or Hub id; its shape, features and mixture) instead of a "
            "fresh one: e.g. an NLL-trained router, refined by the outcome term."
        },
    )
    max_length: int = field(default=512, metadata={"help": "Maximum trace length in tokens."})
    learning_rate: float = field(default=1e-3, metadata={"help": "The router is small: a large rate is fine."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Rows are tokenized by the collator."})

    def __post_init__(self) -> None:
        check_max_steps(self.max_steps)
        if self.margin_weight > 0 and not self.pairs_data:
            raise ValueError("margin_weight > 0 needs pairs_data: step pairs (a GSM8K or Math-Step-DPO file or id).")
        if self.nll_weight <= 0 and self.margin_weight <= 0 and self.outcome_weight <= 0 and self.oracle_weight <= 0:
            raise ValueError(
                "nll_weight, margin_weight, outcome_weight and oracle_weight are all 0: the router would learn "
                "nothing. Set one > 0."
            )
        if self.oracle_weight > 0:
            if self.outcome_weight > 0:
                raise ValueError(
                    "oracle_weight and outcome_weight cannot be combined: the oracle's router chooses among weight "
                    "bins and has no weight logit for the outcome term's policy. Set one of them to 0."
                )
            check_weight_grid(self.oracle_grid, self.alpha_max, self.mixture)
            if self.oracle_problems < 1 or self.oracle_max_new_tokens < 1 or self.oracle_batch_size < 1:
                raise ValueError(
                    "oracle_problems, oracle_max_new_tokens and oracle_batch_size must be >= 1; got "
                    f"{self.oracle_problems}, {self.oracle_max_new_tokens}, {self.oracle_batch_size}."
                )
            if not math.isfinite(self.oracle_tie_break) or self.oracle_tie_break < 0:
                raise ValueError(f"oracle_tie_break must be a finite number >= 0, got {self.oracle_tie_break}.")
        if self.outcome_weight > 0:
            if self.outcome_rollouts < 2:
                raise ValueError(
                    f"outcome_rollouts={self.outcome_rollouts}: the outcome term's baseline is the "
                    "mean of a problem's other rollouts, so it needs >= 2."
                )
            if self.outcome_problems < 1 or self.outcome_sigma <= 0 or self.outcome_max_new_tokens < 1:
                raise ValueError(
                    "outcome_problems and outcome_max_new_tokens must be >= 1 and outcome_sigma > 0; "
                    f"got {self.outcome_problems}, {self.outcome_max_new_tokens}, {self.outcome_sigma}."
                )
        super().__post_init__()

    def router_config(
        self, vocab_size: int, reward_hidden_size: int, num_reward_models: int = 1, **names: Any
    ) -> TARoRouterConfig:
        return TARoRouterConfig(
            num_reward_models=num_reward_models,
            num_top_logprobs=self.num_top_logprobs,
            use_reward_hidden_states=self.use_reward_hidden_states,
            reward_hidden_size=reward_hidden_size if self.use_reward_hidden_states else None,
            router_hidden_size=self.router_hidden_size,
            router_layers=self.router_layers,
            alpha_max=self.alpha_max,
            alpha_init=self.alpha_init,
            mixture=self.mixture,
            vocab_size=vocab_size,
            weight_grid=list(self.oracle_grid) if self.oracle_weight > 0 else None,
            grid_temperature=self.grid_temperature,
            **names,
        )


class FrozenOutputs(NamedTuple):
    """What the frozen base and reward model(s) give for a teacher-forced batch, at its scored positions: with K > 1
    reward models, `reward_logits` is `[B, T, K, V]` and `reward_hidden_states` `[B, T, K, H]`."""

    base_logits: torch.Tensor
    reward_logits: torch.Tensor
    reward_hidden_states: torch.Tensor | None
    labels: torch.Tensor


class RouterTrainer(Trainer):
    """`Trainer` whose model is the router; the frozen base and reward model(s) supply its inputs.

    `reward_model` is one model, or a sequence of K in the order the router weighs them
    (`router.config.num_reward_models == K`)."""

    def __init__(
        self,
        base_model: PreTrainedModel,
        reward_model: PreTrainedModel | Sequence[PreTrainedModel],
        step_pairs: list[dict[str, str]] | None = None,
        outcome_task: Task | None = None,
        outcome_tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.step_pairs = step_pairs or []
        if self.args.margin_weight > 0 and not self.step_pairs:
            raise ValueError("margin_weight > 0 needs step_pairs.")
        self.outcome_task, self.outcome_tokenizer = outcome_task, outcome_tokenizer
        if self.args.outcome_weight > 0:
            if outcome_task is None or not outcome_task.rows or outcome_tokenizer is None:
                raise ValueError(
                    "outcome_weight > 0 needs outcome_task (problems with gradable answers) and "
                    "outcome_tokenizer (left-padded, for generation)."
                )
            if self.args.world_size > 1:
                raise ValueError(
                    "The outcome term is implemented and tested on one process only: run it without "
                    "`accelerate launch`, or set outcome_weight=0."
                )
        if self.step_pairs:  # steps are scored on their own: no EOS after them, the prompt and earlier steps masked
            self.pair_collator = TraceCollator(
                self.data_collator.tokenizer, self.data_collator.max_length, add_eos=False
            )
        if self.args.cache_frozen_outputs:
            self._check_cache_size()
        self.base_model = base_model.eval().requires_grad_(False)
        models = [reward_model] if isinstance(reward_model, torch.nn.Module) else list(reward_model)
        self.model.config.check_reward_model_count(len(models))
        self.reward_models = [m.eval().requires_grad_(False) for m in models]
        for frozen in (self.base_model, *self.reward_models):
            if getattr(frozen, "hf_device_map", None) is None:  # device_map="auto" models stay where they are
                frozen.to(self.args.device)
        self._alpha_log: list[torch.Tensor] = []
        self._margin_log: list[float] = []
        self._outcome_log: list[float] = []
        self._oracle_log: list[float] = []
        self._frozen_cache: dict[tuple[bytes, int], list[torch.Tensor | None]] = {}

    def _check_cache_size(self) -> None:
        """Refuse, before any training, a frozen-output cache larger than `cache_max_gb`: it holds two float32
        distributions (and the reward model's hidden state) per scored token of every trace and step pair."""
        tok = self.data_collator.tokenizer
        texts = [row["completion"] for row in self.train_dataset] + [
            p[side] for p in self.step_pairs for side in ("chosen", "rejected")
        ]
        tokens = sum(len(ids) + 1 for ids in tok(texts, add_special_tokens=False)["input_ids"])
        k = self.model.config.num_reward_models
        per_token = (k + 1) * len(tok) + k * (self.model.config.reward_hidden_size or 0)
        gb = tokens * per_token * 4 / 1e9
        if gb > self.args.cache_max_gb:
            raise ValueError(
                f"cache_frozen_outputs would keep {gb:.1f} GB ({tokens} scored tokens x {k + 1} distributions over "
                f"{len(tok)} tokens), over cache_max_gb={self.args.cache_max_gb}: set cache_frozen_outputs=False "
                "(nothing is lost but speed), train on fewer rows, or raise cache_max_gb if the memory is there."
            )

    def _frozen_logits(
        self, model: PreTrainedModel, inputs: dict[str, torch.Tensor], keep: torch.Tensor, hidden: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = model.device
        out = model(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            logits_to_keep=keep.to(device),
            output_hidden_states=hidden,
        )
        states = out.hidden_states[-1][:, keep.to(device)] if hidden else None
        return out.logits, states

    def _frozen(self, router: TARoRouter, inputs: dict[str, torch.Tensor]) -> FrozenOutputs:
        """The frozen models' outputs on a teacher-forced batch, cut to the positions that predict a completion
        token (the prompt's `[seq, vocab]` block is never computed)."""
        labels = inputs["labels"]
        scored = labels.ne(-100).any(dim=0).nonzero().squeeze(-1)
        keep = torch.arange(int(scored.min()), int(scored.max()) + 1, device=labels.device)
        hidden = router.config.use_reward_hidden_states
        outputs = (
            self._cached(inputs, keep, hidden)
            if self.args.cache_frozen_outputs
            else self._forward_frozen(inputs, keep, hidden)
        )
        device = router.head.weight.device
        return FrozenOutputs(*(None if t is None else t.to(device) for t in outputs), labels[:, keep].to(device))

    @torch.no_grad()
    def _forward_frozen(
        self, inputs: dict[str, torch.Tensor], keep: torch.Tensor, hidden: bool
    ) -> list[torch.Tensor | None]:
        base_logits, _ = self._frozen_logits(self.base_model, inputs, keep, hidden=False)
        outputs = [self._frozen_logits(model, inputs, keep, hidden=hidden) for model in self.reward_models]
        if len(outputs) == 1:
            return [base_logits, *outputs[0]]
        # One [B, T, K, V] block: a vocabulary padded by a few rows more is padded with -inf (no probability).
        width = max(logits.shape[-1] for logits, _ in outputs)
        logits = [torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=float("-inf")) for t, _ in outputs]
        states = torch.stack([s for _, s in outputs], dim=2) if hidden else None
        return [base_logits, torch.stack(logits, dim=2), states]

    def _cached(self, inputs: dict[str, torch.Tensor], keep: torch.Tensor, hidden: bool) -> list[torch.Tensor | None]:
        """`_forward_frozen` through the cache: a row (keyed by its tokens) is computed once, on its own scored
        positions, and placed at them in this batch's window. Outside a row's scored positions the window holds
        zeros, which no term reads (every term is masked by the labels)."""
        cache = self._frozen_cache
        ids, mask, labels = (inputs[k].cpu() for k in ("input_ids", "attention_mask", "labels"))
        start = int(keep[0])
        rows = []
        for i in range(len(labels)):
            scored = labels[i].ne(-100).nonzero().squeeze(-1)
            first = int(scored[0]) if len(scored) else -1  # the same tokens may be scored from another position
            rows.append(((ids[i][mask[i].bool()].numpy().tobytes(), first), scored - start))
        missing = [i for i, (key, _) in enumerate(rows) if key not in cache]
        if missing:
            index = torch.tensor(missing, device=inputs["labels"].device)
            computed = self._forward_frozen({k: v[index] for k, v in inputs.items()}, keep, hidden)
            computed = [None if t is None else t.cpu() for t in computed]
            for j, i in enumerate(missing):
                key, positions = rows[i]
                cache[key] = [None if t is None else t[j, positions] for t in computed]
        template = cache[rows[0][0]]
        window = [
            None if t is None else torch.zeros(len(rows), len(keep), *t.shape[1:], dtype=t.dtype) for t in template
        ]
        for i, (key, positions) in enumerate(rows):
            for out, stored in zip(window, cache[key]):
                if out is not None:
                    out[i, positions] = stored
        return window

    def _step_generator(self, salt: int = 0) -> torch.Generator:
        """Seeded by (seed, step, process): a resumed run draws what the uninterrupted one would have."""
        return torch.Generator().manual_seed(
            self.args.seed * 1_000_003 + self.state.global_step * 101 + self.args.process_index + salt
        )

    def _pair_batch(self) -> list[dict[str, str]]:
        """Step pairs for this step."""
        idx = torch.randint(
            len(self.step_pairs), (self.args.per_device_train_batch_size,), generator=self._step_generator()
        )
        return [self.step_pairs[i] for i in idx.tolist()]

    def _outcome(self, router: TARoRouter) -> torch.Tensor:
        """The outcome term for this step: graded rollouts of drawn training problems, then REINFORCE."""
        from .outcome import leave_one_out_advantages, reinforce_loss, rollouts

        task, args = self.outcome_task, self.args
        gen = self._step_generator(salt=7919)  # problems, then the policy's draws
        k = args.outcome_rollouts
        drawn = torch.randint(len(task.rows), (args.outcome_problems,), generator=gen).tolist()
        rows = [task.rows[i] for i in drawn for _ in range(k)]  # k consecutive rollouts per problem
        prompts = [
            format_prompt(task.question(row), self.outcome_tokenizer, system=task.system or self.args.system_prompt)
            for row in rows
        ]
        was_training = router.training
        router.eval()
        episodes = rollouts(
            self.base_model,
            self.reward_models,
            router,
            self.outcome_tokenizer,
            prompts,
            args.outcome_sigma,
            args.outcome_max_new_tokens,
            generator=gen,
        )
        router.train(was_training)
        rewards = torch.tensor(
            [float(task.grade(task.extract(text), task.gold(row))) for text, row in zip(episodes.texts, rows)]
        )
        self._outcome_log.append(float(rewards.mean()))
        return reinforce_loss(router, episodes, leave_one_out_advantages(rewards, k), args.outcome_sigma)

    def compute_loss(
        self,
        model: TARoRouter | torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        # Under DDP `model` is the wrapper: settings come from the router inside, the forward goes through the
        # wrapper (which synchronises the gradients), once per step: traces and step pairs share one forward.
        router = self.accelerator.unwrap_model(model)
        parts = [self._frozen(router, inputs)]
        pairs = self._pair_batch() if self.args.margin_weight > 0 else []
        if pairs:
            rows = [{"prompt": p["prompt"], "completion": p[side]} for side in ("chosen", "rejected") for p in pairs]
            parts.append(self._frozen(router, self.pair_collator(rows)))
        width = max(part.labels.shape[1] for part in parts)

        def padded(field: str, fill: float) -> torch.Tensor | None:
            """One field of every part, right-padded to the widest part and stacked: traces, then step pairs."""
            if getattr(parts[0], field) is None:
                return None
            return torch.cat(
                [
                    torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]), value=fill)
                    for t in (getattr(part, field) for part in parts)
                ]
            )

        labels = padded("labels", -100)
        mask = labels.ne(-100)
        base_logprobs = torch.log_softmax(padded("base_logits", 0.0).float(), -1)
        reward_logprobs = torch.log_softmax(padded("reward_logits", 0.0).float(), -1)
        if router.config.num_reward_models > 1:  # [B, T, K, V]: one [B, T, V] per reward model
            reward_logprobs = list(reward_logprobs.unbind(dim=2))
        out = model(base_logprobs, reward_logprobs, reward_hidden_states=padded("reward_hidden_states", 0.0))
        guided = torch.log_softmax(mix(base_logprobs, reward_logprobs, out.alpha, router.config.mixture), -1)
        weights = out.alpha if out.alpha.dim() > mask.dim() else out.alpha.unsqueeze(-1)  # [B, T, K]
        token_logprobs = guided.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        n = len(inputs["labels"])  # the first n rows are the traces, then the chosen steps, then the rejected ones
        nll = -token_logprobs[:n].sum() / mask[:n].sum().clamp(min=1)
        # The prior is given as an alpha: a geometric router is pulled to its greedy-equivalent w.
        prior = router.config.weight_of(
            self.args.alpha_prior if self.args.alpha_prior is not None else self.args.alpha_init
        )
        reg = ((weights[:n] - prior) ** 2).mean(-1).mul(mask[:n]).sum() / mask[:n].sum().clamp(min=1)
        loss = self.args.nll_weight * nll + self.args.alpha_reg * reg
        if self.args.outcome_weight > 0:
            loss = loss + self.args.outcome_weight * self._outcome(router)
        if self.args.oracle_weight > 0:
            oracle = oracle_loss(out.grid_logits[:n], inputs["weight_targets"], mask[:n])
            loss = loss + self.args.oracle_weight * oracle
            self._oracle_log.append(float(oracle.detach()))
        if pairs:
            sums = token_logprobs[n:].sum(-1)
            chosen, rejected = sums[: len(pairs)], sums[len(pairs) :]
            margin = -torch.nn.functional.logsigmoid(self.args.margin_beta * (chosen - rejected)).mean()
            loss = loss + self.args.margin_weight * margin
            self._margin_log.append(float(margin.detach()))
        self._alpha_log.append(weights.detach()[:n][mask[:n]])  # [tokens, K]
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._alpha_log:
            alphas = torch.cat(self._alpha_log)
            logs["alpha_mean"] = round(float(alphas.mean()), 4)
            logs["alpha_std"] = round(float(alphas.std()), 4) if alphas.numel() > 1 else 0.0
            if alphas.shape[-1] > 1:  # each reward model's mean weight
                for k, mean in enumerate(alphas.mean(0).tolist()):
                    logs[f"alpha_mean_{k}"] = round(mean, 4)
            self._alpha_log.clear()
        if self._margin_log:
            logs["margin_loss"] = round(sum(self._margin_log) / len(self._margin_log), 4)
            self._margin_log.clear()
        if self._oracle_log:
            logs["oracle_loss"] = round(sum(self._oracle_log) / len(self._oracle_log), 4)
            self._oracle_log.clear()
        if self._outcome_log:  # the share of rollouts graded right, under the exploring policy
            logs["rollout_accuracy"] = round(sum(self._outcome_log) / len(self._outcome_log), 4)
            self._outcome_log.clear()
        super().log(logs, *args, **kwargs)


def _graded_task(data: str, what: str) -> Task:
    """The training problems as a task for the outcome or oracle term: rows with a question and a numeric answer, all
    checked before any training (a bad row found at step 500 would lose the run)."""
    from ..data import load_rows
    from ..tasks import TASKS

    rows = load_rows(data)
    if not rows or "question" not in rows[0] or "answer" not in rows[0]:
        raise ValueError(
            f"The {what} term grades decodes of the training problems, but the rows of {data} have no "
            f"'question' and 'answer' fields (GSM8K format). Use GSM8K-format data, or {what}_weight=0."
        )
    task = TASKS["jsonl"](rows)
    task.source = data
    task.check_rows(0, len(rows))
    return task


def _oracle_traces(
    base: PreTrainedModel, reward_models: list[PreTrainedModel], base_model: str | None, data: str, config: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The oracle term's training rows (correct guided traces with their targets over the grid) and its summary."""
    from ..models import load_tokenizer

    task = _graded_task(data, "oracle")
    task.rows = task.rows[: config.oracle_problems]
    points = grid_points(config.oracle_grid, len(reward_models))
    check_grid_size(len(points), len(task.rows))
    prior = config.alpha_prior if config.alpha_prior is not None else config.alpha_init
    rows, summary = oracle_rows(
        base.to(config.device),
        [m.to(config.device) for m in reward_models],
        load_tokenizer(base_model),
        task,
        points,
        prior=prior,
        tie_break=config.oracle_tie_break,
        max_new_tokens=config.oracle_max_new_tokens,
        batch_size=config.oracle_batch_size,
        system=config.system_prompt,
        work=config.output_dir,
    )
    logger.warning("Oracle grid: %s", summary)
    if not rows:
        raise OracleUninformative(
            f"No training problem of {data} separates the grid's weights (each was solved at every grid point, or at "
            "none): the oracle term has nothing to learn. Use more or harder problems, or a wider oracle_grid."
        )
    return rows, summary


def _vocab_rows(model: PreTrainedModel) -> int:
    return model.get_output_embeddings().weight.shape[0]


def train_router(
    base_model: str | None,
    reward_model: str | Sequence[str] | Mapping[str, str],
    data: str,
    output_dir: str,
    config: RouterTrainingConfig | None = None,
    limit: int | None = None,
    resume: bool = False,
    device_map: str | None = None,
) -> str:
    """Train a router on correct traces from `data`, with frozen `base_model` and reward model(s); save it.

    Args:
        base_model: Hub id or folder of the base (None: the embedded default).
        reward_model: Hub id, folder, or LoRA adapter folder of the reward model; for several, `{name: path}` or
            `name=path` strings, in the order the router weighs them (the guide names them so).
        data: GSM8K or Math-Step-DPO rows (local file or Hub id).
        device_map: `"auto"` to spread large frozen models over the GPUs with accelerate.

    Returns:
        `output_dir`: `TARoRouter.from_pretrained(output_dir)` loads the router, and `output_dir/guide` is the guide
        (the reward model with this router) that `TARoGuide.from_pretrained` and `taro eval --guide` take.
    """
    datasets = require("datasets")

    from ..data import build_step_pairs, build_traces
    from ..defaults import DEFAULT_MODEL
    from ..guide import TARoGuide, named_reward_models
    from ..models import is_peft_adapter, load_causal_lm, load_tokenizer

    config = config or RouterTrainingConfig(output_dir=output_dir)
    config.output_dir = output_dir
    specs = named_reward_models(reward_model)
    paths = specs if isinstance(specs, dict) else {"": specs}
    tokenizer = load_tokenizer(base_model, padding_side="right")
    base = load_causal_lm(base_model, device_map=device_map)
    rms = {name: load_causal_lm(path, device_map=device_map) for name, path in paths.items()}
    # The oracle term trains on its own correct guided decodes (built below, after every cheaper check).
    traces = None
    if config.oracle_weight <= 0:
        traces = build_traces(data, tokenizer, limit=limit, system=config.system_prompt)
    if traces == []:
        raise ValueError(f"No traces could be built from {data}.")
    vocab = min(_vocab_rows(base), *(_vocab_rows(rm) for rm in rms.values()))
    hidden_sizes = {rm.config.get_text_config().hidden_size for rm in rms.values()}
    if config.use_reward_hidden_states and len(hidden_sizes) > 1:
        raise ValueError(
            f"use_reward_hidden_states needs reward models of one width; these have {sorted(hidden_sizes)}."
        )
    named = ", ".join(f"{n}={p}" for n, p in specs.items()) if isinstance(specs, dict) else specs
    names = dict(base_model_name_or_path=base_model or DEFAULT_MODEL, reward_model_name_or_path=named)
    set_seed(config.seed)  # the router's initial weights too, not only the Trainer's data order
    if config.init_router:
        from ..models import resolve

        router = TARoRouter.from_pretrained(resolve(config.init_router))
        router.config.check_reward_model_count(len(rms), where=f"init_router={config.init_router}")
        if config.oracle_weight > 0 and router.config.weight_grid is None:
            raise ValueError(f"init_router={config.init_router} has no weight_grid: the oracle term needs one.")
        router.config.update(names)
    else:
        router = TARoRouter(config.router_config(vocab, hidden_sizes.pop(), len(rms), **names))
    pairs = (
        build_step_pairs(config.pairs_data, tokenizer, seed=config.seed, system=config.system_prompt)
        if config.margin_weight > 0
        else None
    )
    if pairs is not None and not pairs:
        raise ValueError(f"No step pairs could be built from pairs_data={config.pairs_data}.")
    outcome_task = _graded_task(data, "outcome") if config.outcome_weight > 0 else None
    oracle = None
    if config.oracle_weight > 0:
        traces, oracle = _oracle_traces(base, list(rms.values()), base_model, data, config)
    logger.warning("Training the router on %d traces from %s", len(traces), data)
    trainer = RouterTrainer(
        base_model=base,
        reward_model=list(rms.values()),
        model=router,
        args=config,
        step_pairs=pairs,
        outcome_task=outcome_task,
        outcome_tokenizer=load_tokenizer(base_model) if outcome_task else None,
        train_dataset=datasets.Dataset.from_list(traces),
        data_collator=TraceCollator(tokenizer, config.max_length),
    )
    trainer.train(resume_from_checkpoint=resume_point(output_dir, resume))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    router.config.training_summary = (
        f"{trainer.state.global_step} steps on {len(traces)} correct traces from `{data}`"
        + (f"; loss {losses[0]:.4f} → {losses[-1]:.4f}" if losses else "")
        + f"; mixture={config.mixture}, nll_weight={config.nll_weight}, margin_weight={config.margin_weight}"
        + (f" on {len(pairs)} step pairs from `{config.pairs_data}` (beta {config.margin_beta})" if pairs else "")
        + (
            f", oracle_weight={config.oracle_weight} (grid {config.oracle_grid} per reward model; "
            f"{oracle['informative']} of {oracle['problems']} problems informative; best fixed point "
            f"{oracle['best_fixed_accuracy']:.3f}, oracle {oracle['oracle_accuracy']:.3f})"
            if oracle
            else ""
        )
        + (
            f", outcome_weight={config.outcome_weight} ({config.outcome_problems} problems x "
            f"{config.outcome_rollouts} rollouts a step, sigma {config.outcome_sigma})"
            if outcome_task
            else ""
        )
        + f", alpha_reg={config.alpha_reg}, lr={config.learning_rate}."
    )
    atomic_save(trainer.save_model, output_dir, trainer.accelerator)
    if trainer.is_world_process_zero():  # the router's weights are in memory on every process: one writes the guide
        adapters = {name: path if is_peft_adapter(path) else None for name, path in paths.items()}
        guide = TARoGuide(
            rms if isinstance(specs, dict) else rms[""],
            router=router,
            tokenizer=load_tokenizer(next(iter(paths.values()))),
            adapter_folder=adapters if isinstance(specs, dict) else adapters[""],
        )
        guide.config.system_prompt = config.system_prompt or None
        guide.config.training_summary = router.config.training_summary
        guide.save_pretrained(Path(output_dir) / "guide")
    trainer.accelerator.wait_for_everyone()
    return output_dir

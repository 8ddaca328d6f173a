"""Token-level (autoregressive) reward models, trained with TRL.

GenARM's reference-free loss on summed token log-probs of the step that follows a context,

    L = -log sigmoid(beta * (sum_t log pi_r(chosen_t | ...) - sum_t log pi_r(rejected_t | ...)))

with the context tokens masked out, is exactly TRL's CPO loss with `loss_type="sigmoid"` and `cpo_alpha=0` (no
behaviour-cloning term; CPO sums log-probs for the sigmoid loss). So the trainer is TRL's `CPOTrainer`, with that
loss, a model card from `hub_cards/`, and an atomic final save. `cpo_alpha > 0` (off by default) adds CPO's NLL term
on the chosen steps: the pure loss only separates pairs and lets the likelihood of correct steps fall, which can
make the reward model's token distribution a poor guide where no pair separates anything.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..cards import push_folder_to_hub, render_card
from ..data import SYSTEM_PROMPT
from ..extras import require
from ..files import atomic_save, copy_final_files
from .collate import TraceCollator
from .common import check_max_steps, resume_point

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.cpo import CPOConfig, CPOTrainer  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class RewardModelConfig(CPOConfig):
    """`CPOConfig` set to GenARM's loss. LoRA comes from TRL's `ModelConfig` (`--use_peft`, `--lora_r`, ...).

    Args:
        beta: Temperature of the pairwise loss (GenARM's beta).
        cpo_alpha: Weight of CPO's NLL term on the chosen steps (0: GenARM's loss exactly).
        system_prompt: The system prompt of the pairs' prompt format, for GSM8K and Math-Step-DPO rows (step-pairs
            rows come formatted); `""` for none. Use the one the guide will decode with.
    """

    loss_type: str = field(default="sigmoid", metadata={"help": "Must be 'sigmoid' (GenARM's loss)."})
    cpo_alpha: float = field(
        default=0.0,
        metadata={"help": "Weight of an NLL term on the chosen steps (CPO's). 0 is GenARM's loss exactly."},
    )
    beta: float = field(default=0.1, metadata={"help": "beta of -log sigmoid(beta * (logp_c - logp_r))."})
    system_prompt: str = field(
        default=SYSTEM_PROMPT,
        metadata={"help": "System prompt of the pairs' prompt format (GSM8K / Math-Step-DPO rows); '' for none."},
    )

    def __post_init__(self) -> None:
        if self.loss_type != "sigmoid" or self.cpo_alpha < 0:
            raise ValueError(
                "A GenARM reward model uses the reference-free sigmoid loss on summed log-probs: keep "
                f"loss_type='sigmoid' and cpo_alpha >= 0 (got loss_type={self.loss_type!r}, "
                f"cpo_alpha={self.cpo_alpha})."
            )
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}.")
        check_max_steps(self.max_steps)
        if self.bf16 is None and not torch.cuda.is_available():
            # TRL defaults to bf16, which transformers refuses without a GPU; CPU training runs in float32.
            self.bf16 = False
        if getattr(self, "activation_checkpointing", False) is None:
            # TRL sets the deprecated `gradient_checkpointing` by default (transformers >= 5.24 warns on it): carry
            # its value over to the new name, as transformers would, without the warning.
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()


class RewardModelTrainer(CPOTrainer):
    """TRL's `CPOTrainer` with GenARM's loss; see the module docstring for why that is the same loss."""

    @functools.cached_property
    def _tokenizer_adds_bos(self) -> bool:
        tok = self.processing_class
        return tok("x")["input_ids"][:1] == [tok.bos_token_id]

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
        """TRL's tokenization without the special tokens that guided decoding never sees at those places.

        TRL reads every response as a whole answer: BOS before the prompt, EOS after the response. A step in the
        middle of a solution is not the end of the answer: trained with that EOS, the reward model learns to end
        after every step, and guidance then cuts solutions short. So EOS stays only where the row says the step
        is the last one (`final`, written by `step_pairs_from_solutions`; rows without it keep TRL's EOS), and BOS
        only if the tokenizer itself adds one, as it does when the reward model guides decoding.
        """
        batch = super().tokenize_row(feature, model)
        tok = self.processing_class
        if not feature.get("final", True) and tok.eos_token_id is not None:
            for side in ("chosen_", "rejected_"):
                if batch[f"{side}input_ids"][-1:] == [tok.eos_token_id]:
                    _trim(batch, side, slice(None, -1))
        if tok.bos_token_id is not None and not self._tokenizer_adds_bos:
            for side in ("prompt_", "chosen_", "rejected_"):
                if batch[f"{side}input_ids"][:1] == [tok.bos_token_id]:
                    _trim(batch, side, slice(1, None))
        return batch


def _fitting(
    pairs: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int | None
) -> list[dict[str, Any]]:
    """The pairs whose context and longer step fit in `max_length` tokens. TRL would cut the others from the end,
    which scores a truncated step (or none: a context alone can fill `max_length`), so they are left out and
    counted instead."""
    if not max_length:
        return pairs
    prompt, chosen, rejected = (
        [len(ids) for ids in tokenizer([p[k] for p in pairs], add_special_tokens=False)["input_ids"]]
        for k in ("prompt", "chosen", "rejected")
    )
    lengths = [n + max(c, r) + 2 for n, c, r in zip(prompt, chosen, rejected)]  # + BOS and EOS, where they exist
    kept = [p for p, n in zip(pairs, lengths) if n <= max_length]
    if not kept:
        raise ValueError(
            f"No step pair fits in max_length={max_length} tokens (the shortest needs "
            f"{min(lengths)}): raise max_length."
        )
    if len(kept) < len(pairs):
        logger.warning(
            "%d of %d step pairs are longer than max_length=%d tokens and are left out (the longest "
            "needs %d): raise max_length to keep them.",
            len(pairs) - len(kept),
            len(pairs),
            max_length,
            max(lengths),
        )
    return kept


def _trim(batch: dict[str, Any], side: str, keep: slice) -> None:
    """Cut one side's token ids, attention mask and labels (where present) the same way."""
    for key in ("input_ids", "attention_mask", "labels"):
        if f"{side}{key}" in batch:
            batch[f"{side}{key}"] = batch[f"{side}{key}"][keep]


@torch.no_grad()
def continuation_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    continuations: list[str],
    batch_size: int = 8,
) -> torch.Tensor:
    """Sum of token log-probs of each continuation after its prompt: the GenARM reward of that step.

    Tokenized by `TraceCollator` (without a closing EOS), so both trainers see the same tokens.
    """
    collate = TraceCollator(tokenizer, max_length=1 << 30, add_eos=False)
    totals = []
    for i in range(0, len(prompts), batch_size):
        rows = [
            {"prompt": p, "completion": c}
            for p, c in zip(prompts[i : i + batch_size], continuations[i : i + batch_size])
        ]
        batch = {k: v.to(model.device) for k, v in collate(rows).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"]
        token_logprobs = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        totals.append((token_logprobs * labels.ne(-100)).sum(-1).cpu())
    return torch.cat(totals)


def evaluate_reward_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[dict[str, str]], beta: float = 0.1
) -> dict:
    """GenARM loss and pairwise accuracy (chosen step scored above rejected) of a reward model on step pairs."""
    prompts = [p["prompt"] for p in pairs]
    margin = continuation_logprobs(model, tokenizer, prompts, [p["chosen"] for p in pairs]) - continuation_logprobs(
        model, tokenizer, prompts, [p["rejected"] for p in pairs]
    )
    loss = -torch.nn.functional.logsigmoid(beta * margin).mean()
    return {"loss": float(loss), "accuracy": float((margin > 0).float().mean()), "n": len(pairs)}


def _write_card(folder: str, fields: dict[str, Any]) -> None:
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(render_card("reward_model.md", fields))


def train_reward_model(
    model: str | None,
    data: str,
    output_dir: str,
    config: RewardModelConfig | None = None,
    peft_config: Any | None = None,
    limit: int | None = None,
    resume: bool = False,
    sample_rejected: bool = False,
    samples_per_step: int = 2,
    sampling_batch_size: int = 16,
) -> str:
    """Train a reward model on step pairs built from `data` and save it (a causal LM or LoRA adapter) in `output_dir`.

    Args:
        model: Hub id or folder of the starting causal LM (None: the embedded default).
        data: GSM8K or Math-Step-DPO rows, or step pairs written by `step_pairs_from_solutions` (prompt, chosen,
            rejected, final); a local JSON/JSONL file or a Hub id.
        config: Training settings; `output_dir` overrides its `output_dir`.
        peft_config: A `peft.LoraConfig` (e.g. `trl.get_peft_config(ModelConfig(use_peft=True))`) to train a LoRA
            adapter instead of all weights.
        limit: Use the first `limit` source rows.
        resume: Continue from the newest checkpoint in `output_dir`.
        sample_rejected: For GSM8K, rejected steps are sampled from `model` and labelled automatically
            (`training.sampling.sample_incorrect_steps`); steps with no incorrect sample fall back to a corrupted
            gold step.
        samples_per_step: With `sample_rejected`, samples drawn per gold context.
        sampling_batch_size: With `sample_rejected`, contexts sampled together (a tiny model is fastest at hundreds).

    Returns:
        `output_dir`, which `TARoProcessor` takes after `load_causal_lm(output_dir)`.
    """
    datasets = require("datasets")

    from ..data import build_step_pairs, detect_format, gsm8k_solutions, load_rows
    from ..defaults import DEFAULT_MODEL
    from ..models import load_causal_lm, load_tokenizer
    from .sampling import sample_incorrect_steps

    config = config or RewardModelConfig(output_dir=output_dir)
    config.output_dir = output_dir
    tokenizer = load_tokenizer(model, padding_side="left")
    policy = load_causal_lm(model)
    rejected = None
    if sample_rejected:
        rows = load_rows(data)[:limit] if limit else load_rows(data)
        if detect_format(rows) != "gsm8k":
            raise ValueError("sample_rejected works on GSM8K-format data (question, answer).")
        solutions, _ = gsm8k_solutions(rows)
        rejected, counts = sample_incorrect_steps(
            policy,
            tokenizer,
            solutions,
            samples_per_step=samples_per_step,
            batch_size=sampling_batch_size,
            system=config.system_prompt,
        )
        logger.warning("Sampled step labels: %s", counts)
    pairs = build_step_pairs(data, tokenizer, limit=limit, rejected_steps=rejected, system=config.system_prompt)
    if not pairs:
        raise ValueError(f"No step pairs could be built from {data}.")
    pairs = _fitting(pairs, tokenizer, config.max_length)
    logger.warning("Training the reward model on %d step pairs from %s", len(pairs), data)
    policy.train()
    with warnings.catch_warnings():
        # peft asks a deprecated transformers property (`is_gradient_checkpointing`) when wrapping; not ours to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = RewardModelTrainer(
            model=policy,
            args=config,
            train_dataset=datasets.Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    trainer.train(resume_from_checkpoint=resume_point(output_dir, resume))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    name = model or DEFAULT_MODEL
    summary = (
        f"{trainer.state.global_step} steps on {len(pairs)} step pairs from `{data}`"
        + (f"; loss {losses[0]:.4f} → {losses[-1]:.4f}" if losses else "")
        + f"; beta={config.beta}, lr={config.learning_rate}, batch={config.per_device_train_batch_size}."
    )

    def save(folder: str) -> None:
        trainer.save_model(folder)  # on every process (ZeRO-3 gathers); it writes on the main one
        if not trainer.is_world_process_zero():
            return
        tokenizer.save_pretrained(folder)
        adapter = Path(folder) / "adapter_config.json"
        if adapter.is_file():
            # Record the name the user gave, not a machine-local path, so the adapter loads elsewhere too.
            cfg = json.loads(adapter.read_text())
            cfg["base_model_name_or_path"] = name
            adapter.write_text(json.dumps(cfg, indent=2))
        _write_card(
            folder,
            {
                "library_name": "peft" if peft_config else "transformers",
                "base_model_name_or_path": name,
                "beta": config.beta,
                "data": data,
                "lora": f"r={peft_config.r}" if peft_config else "no",
                "max_steps": trainer.state.global_step,
                "training_summary": summary,
            },
        )

    atomic_save(save, output_dir, trainer.accelerator)
    return output_dir


def push_reward_model(folder: str, repo_id: str, **kwargs: Any) -> Any:
    """Upload a trained reward-model folder (weights or adapter, tokenizer, model card) to the Hub."""
    return push_folder_to_hub(
        lambda target: copy_final_files(folder, target), repo_id, commit_message="Upload TARo reward model", **kwargs
    )

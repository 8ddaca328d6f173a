"""Incorrect next steps sampled from a model and labelled automatically (the Math-Shepherd idea)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import SYSTEM_PROMPT, Solution, format_prompt, label_step


def sample_incorrect_steps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    solutions: list[Solution],
    samples_per_step: int = 2,
    max_step_tokens: int = 48,
    batch_size: int = 16,
    temperature: float = 0.8,
    seed: int = 0,
    progress: bool = True,
    system: str | None = SYSTEM_PROMPT,
) -> tuple[dict[tuple[int, int], list[str]], dict[str, int]]:
    """Sample next steps from `model` on gold contexts (prompts in the format of `system`) and keep those
    `label_step` marks incorrect.

    Returns `{(solution index, step index): [incorrect steps]}` and counts of the labels given
    (`correct`, `incorrect`, `unknown`), the Math-Shepherd idea of process labels without annotators.
    """
    if batch_size < 1 or samples_per_step < 1:
        raise ValueError(
            f"batch_size and samples_per_step must be at least 1 (--sampling_batch_size, "
            f"--samples_per_step), got {batch_size} and {samples_per_step}."
        )
    jobs = [(si, k) for si, sol in enumerate(solutions) for k in range(len(sol.steps))]
    contexts = [
        format_prompt(solutions[si].question, tokenizer, system) + "".join(solutions[si].all_steps[:k])
        for si, k in jobs
    ]
    # Longest first, in batches of like length: each batch is left-padded to its longest context.
    order = sorted(range(len(jobs)), key=lambda j: -len(contexts[j]))
    jobs, contexts = [jobs[j] for j in order], [contexts[j] for j in order]
    found: dict[tuple[int, int], list[str]] = {}
    counts = {"correct": 0, "incorrect": 0, "unknown": 0}
    torch.manual_seed(seed)
    for start in tqdm(range(0, len(jobs), batch_size), desc="sampling steps", disable=not progress):
        enc = tokenizer(contexts[start : start + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                max_new_tokens=max_step_tokens,
                num_return_sequences=samples_per_step,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=["\n"],
                tokenizer=tokenizer,
            )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for j, text in enumerate(texts):
            si, k = jobs[start + j // samples_per_step]
            step = text.split("\n", 1)[0].strip()
            label = label_step(step, solutions[si], k)
            counts["unknown" if label is None else ("correct" if label else "incorrect")] += 1
            if label is False:
                found.setdefault((si, k), []).append(step + "\n")
    return found, counts

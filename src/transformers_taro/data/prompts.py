"""The math prompt: the system prompt the step-wise data, the shipped guide and evaluation use."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from .. import prompts

SYSTEM_PROMPT = "Solve the math problem step by step. Put each step on its own line and end with 'The answer is N.'"


def format_prompt(
    question: str, tokenizer: PreTrainedTokenizerBase | None = None, system: str | None = SYSTEM_PROMPT
) -> str:
    """[`transformers_taro.prompts.format_prompt`] with the math system prompt unless another is given."""
    return prompts.format_prompt(question, tokenizer, system)


def answer_step(answer: str) -> str:
    return f"The answer is {answer}.\n"

"""Prompt format: the one text a model sees before its solution, at training, decoding and evaluation time."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

SYSTEM_PROMPT = "Solve the math problem step by step. Put each step on its own line and end with 'The answer is N.'"
def format_prompt(question: str, tokenizer: PreTrainedTokenizerBase | None = None,
                  system: str | None = SYSTEM_PROMPT) -> str:
    """The text a model sees before its solution, the same at training, decoding and evaluation time.

    With a chat tokenizer: its chat template with a generation prompt. Otherwise a plain `Question: …\\nAnswer:`.
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question.strip()}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    return f"{head}Question: {question.strip()}\nAnswer:\n"


def answer_step(answer: str) -> str:
    return f"The answer is {answer}.\n"

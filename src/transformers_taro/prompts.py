"""The prompt format: the one text a model sees before its answer, at training, decoding and evaluation time."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def format_prompt(question: str, tokenizer: PreTrainedTokenizerBase | None = None, system: str | None = None) -> str:
    r"""`question` as a model sees it: with a chat tokenizer, its chat template (with `system` as the system message,
    if given) and a generation prompt; otherwise `system`, then `Question: ...\nAnswer:`.

    Example:
    ```python
    >>> from transformers_taro.prompts import format_prompt
    >>> format_prompt("What is 2 + 3?", system="Be brief.")
    'Be brief.\n\nQuestion: What is 2 + 3?\nAnswer:\n'
    ```
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question.strip()}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    return f"{head}Question: {question.strip()}\nAnswer:\n"

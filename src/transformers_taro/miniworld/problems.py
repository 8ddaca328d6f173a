"""Seeded multi-step arithmetic word problems, written in GSM8K's format so the whole data pipeline applies.

Each problem keeps a running total through a chain of 2-6 operations; every step is written with a GSM8K
calculator annotation (`<<a+b=c>>`), so step labels are checked automatically exactly as for GSM8K.
"""

from __future__ import annotations

import random
import string
from typing import Any

NAMES = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea"]
ITEMS = ["apples", "coins", "marbles", "stamps", "books", "cards", "shells", "pens"]
# Short clauses: at one token per character, every character of the question is paid for at every decoding step.
ADD = ["buys {n}", "finds {n}", "gets {n}", "wins {n}"]
SUB = ["gives away {n}", "loses {n}", "sells {n}", "uses {n}"]
MUL = ["doubles them", "triples them"]


def make_problem(rng: random.Random, steps: int) -> dict[str, Any]:
    """One problem with `steps` operations: `question` and a GSM8K-style `answer` ending in `#### N`."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(10, 99)
    sentences, lines = [], []
    for _ in range(steps):
        kind = rng.random()
        if kind < 0.15 and total < 200:
            factor = 2 if rng.random() < 0.6 else 3
            sentences.append(MUL[factor - 2])
            new = total * factor
            lines.append(f"{total} * {factor} = <<{total}*{factor}={new}>>{new}")
        elif kind < 0.55 and total > 20:
            n = rng.randint(10, min(99, total - 1))
            sentences.append(rng.choice(SUB).format(n=n))
            new = total - n
            lines.append(f"{total} - {n} = <<{total}-{n}={new}>>{new}")
        else:
            n = rng.randint(10, 99)
            sentences.append(rng.choice(ADD).format(n=n))
            new = total + n
            lines.append(f"{total} + {n} = <<{total}+{n}={new}>>{new}")
        total = new
    question = f"{name} has {lines[0].split(' ')[0]} {item}, " + ", ".join(sentences) + f". How many {item} now?"
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {total}", "steps": steps}


def make_problems(n: int, seed: int, min_steps: int = 2, max_steps: int = 6,
                  exclude: set[str] | None = None) -> list[dict[str, Any]]:
    """`n` distinct problems drawn with `seed`, none of whose questions is in `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out = []
    while len(out) < n:
        p = make_problem(rng, rng.randint(min_steps, max_steps))
        if p["question"] not in seen:
            seen.add(p["question"])
            out.append(p)
    return out


CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}A:\n{% endif %}"
)


def make_tokenizer() -> Any:
    """A character-level tokenizer (digits stay single tokens, so arithmetic is learnable by a tiny model)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="left")
    # A chat template makes `format_prompt` use this short prompt instead of the long system prompt: at one token
    # per character that prompt would be a third of every sequence the tiny models train and decode on.
    fast.chat_template = CHAT_TEMPLATE
    return fast

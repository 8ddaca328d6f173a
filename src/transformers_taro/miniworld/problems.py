"""Seeded multi-step arithmetic word problems, written in GSM8K's format so the whole data pipeline applies.

Each problem keeps a running total through a chain of 2-6 operations; every step is written with a GSM8K
calculator annotation (`<<a+b=c>>`), so step labels are checked automatically exactly as for GSM8K.
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

NAMES = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea"]
ITEMS = ["apples", "coins", "marbles", "stamps", "books", "cards", "shells", "pens"]
# Short clauses: at one token per character, every character of the question is paid for at every decoding step.
ADD = ["buys {n}", "finds {n}", "gets {n}", "wins {n}"]
SUB = ["gives away {n}", "loses {n}", "sells {n}", "uses {n}"]
MUL = ["doubles them", "triples them"]


def make_problem(rng: random.Random, steps: int) -> dict[str, Any]:
    """One problem with `steps` operations: `question` and a GSM8K-style `answer` ending in `#### N`.

    The question numbers its clauses and each solution line restates its clause before the arithmetic
    (`(2) gets 10: 196+10=206`). A model this small cannot learn to count clauses to find the k-th operand,
    but it learns to copy the clause that follows `(k)` quickly; what is left hard is the arithmetic, which is
    where the guidance has something to fix.
    """
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start = total = rng.randint(10, 99)
    clauses, lines = [], []
    for k in range(1, steps + 1):
        kind = rng.random()
        if kind < 0.15 and total < 200:
            factor = 2 if rng.random() < 0.6 else 3
            clause, op, n = MUL[factor - 2], "*", factor
            new = total * factor
        elif kind < 0.55 and total > 20:
            n = rng.randint(10, min(99, total - 1))
            clause, op = rng.choice(SUB).format(n=n), "-"
            new = total - n
        else:
            n = rng.randint(10, 99)
            clause, op = rng.choice(ADD).format(n=n), "+"
            new = total + n
        clauses.append(f"({k}) {clause}")
        lines.append(f"({k}) {clause}: <<{total}{op}{n}={new}>>{total}{op}{n}={new}")
        total = new
    question = f"{name} has {start} {item}, then " + ", ".join(clauses) + f". How many {item} now?"
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


def _words() -> list[str]:
    """Every word the generator and the prompt write: each becomes one token, with and without a leading space."""
    text = " ".join(NAMES + ITEMS + ADD + SUB + MUL) + " has then How many now Q A The answer is"
    return sorted(set(re.findall(r"[A-Za-z]+", text.replace("{n}", ""))), key=lambda w: (-len(w), w))


def make_tokenizer() -> Any:
    """The mini-world's tokenizer: the generator's words are single tokens, everything else one per character.

    Digits stay single tokens so arithmetic is learnable by a tiny model; whole words keep sequences short (about
    half the characters), which is what training and decoding pay for here. Any other text still round-trips,
    spelled out character by character, so nothing a user types is lost to `<unk>`.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = _words()
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    spaced = [" " + c for c in chars if not c.isalnum() and c != " "]
    whole = [lead + w + trail for w in words for lead in ("", " ") for trail in ("", " ")]
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + chars + spaced + whole)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # A known word takes the spaces around it, a space before punctuation joins it; anything else is one character.
    pattern = " ?(?:" + "|".join(words) + ")(?![A-Za-z]) ?| ?[^0-9A-Za-z ]|."
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="left")
    # A chat template makes `format_prompt` use this short prompt instead of the long system prompt, which would
    # otherwise be most of every sequence the tiny models train and decode on.
    fast.chat_template = CHAT_TEMPLATE
    return fast

"""Seeded multi-step word problems in two domains, written in GSM8K's format so the whole data pipeline applies.

- Domain A, arithmetic chains: one running total through 2-6 operations. The reward model learns from these only.
- Domain B, comparisons (the shipped world): a chain of people, each holding so many more or fewer than, twice or
  half as many as the one before (2-4 steps); the question asks about the last. The out-of-domain traffic that a
  reward model trained on arithmetic chains meets when deployed elsewhere: the same tokenizer, amounts stated as
  relations between people instead of events, and halving, which domain A never writes.
- Domain B as transfers (another world, `B_VARIANTS`): two people hand each other items (or swap what they hold)
  for 1-3 steps; the question asks what one of them holds at the end. Each step updates two totals, and the one
  asked about must be tracked by name, which the small base learns in about one draw of 7-10.

Every step is written with a GSM8K calculator annotation (`<<a+b=c>>`), so steps are checked automatically
exactly as for GSM8K.
"""

from __future__ import annotations

import functools
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
GIVE = ["gives", "hands", "pays"]
# Domain B and its variants, each another world: how the solution lays out the tracking (see make_transfer_problem).
B_VARIANTS: dict[str, dict[str, bool]] = {
    "b": {},
    "b-ordered": {"ordered": True},
    "b-restated": {"ordered": True, "restate": True},
    "b-copied": {"restate": True},
    "b-tracked": {"restate": True, "track": True},
    "b-named": {"restate": True, "track": True, "named": True},
}
# Domain B as comparisons between people (`make_comparison_problem`): another shape of B, with one total per line.
COMPARE = "compare"
MORE, FEWER, TWICE, HALF = "has {n} more than", "has {n} fewer than", "has twice as many as", "has half as many as"
DOMAINS = ("a", *B_VARIANTS, COMPARE)


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


def make_transfer_problem(
    rng: random.Random,
    steps: int,
    ordered: bool = False,
    restate: bool = False,
    track: bool = False,
    named: bool = False,
) -> dict[str, Any]:
    """One domain-B problem: two people, `steps` transfers or swaps, the question asks about one of them.

    Each solution line restates its clause, then both totals, giver first (`(2) Ben pays Ann 14: Ben 52-14=38, Ann
    30+14=44`); a swap copies them (`(3) they swap: Ann 38, Ben 44`). The answer is the asked person's last total:
    what must be tracked is who holds what, by name, as the order of the two changes from line to line. With
    `ordered` (domain "b-ordered") the totals are always written in the question's order, so each line's totals
    sit where the line before put them: the same reasoning with the tracking made positional. With `restate`, the
    solution opens by copying both starting totals (`(0) Ann 30, Ben 52`) and closes by copying the asked person's
    last one (`now: Ann 44`): each name is then followed directly by its number where it is first looked up (in
    the question, "has" sits between them). Domain "b-restated" is both; "b-copied" restates and keeps the giver
    first, so each line's signs stay where they are in "b". With `track` too ("b-tracked"), each transfer line
    ends by restating both new totals (`, now Ben 38, Ann 44`), so every total a later line reads sits right
    after its name, as a swap line already writes them. With `named` too ("b-named"), a clause writes the amount
    before the taker (`Ben pays 14 to Ann`): then the number after a name is always that person's total, and the
    last one written is the one a lookup needs.
    """
    first, second = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    held = {first: rng.randint(20, 99), second: rng.randint(20, 99)}
    start = dict(held)
    clauses, lines = [], [f"(0) {first} {held[first]}, {second} {held[second]}"] if restate else []
    for k in range(1, steps + 1):
        if k > 1 and rng.random() < 0.2:
            held = {first: held[second], second: held[first]}
            clauses.append(f"({k}) they swap")
            lines.append(f"({k}) they swap: {first} {held[first]}, {second} {held[second]}")
            continue
        giver, taker = (first, second) if rng.random() < 0.5 else (second, first)
        if held[giver] <= 10:
            giver, taker = taker, giver
        n = rng.randint(1, min(60, held[giver] - 1))
        verb = rng.choice(GIVE)
        clause = f"{giver} {verb} {n} to {taker}" if named else f"{giver} {verb} {taker} {n}"
        updates = []
        for name in (first, second) if ordered else (giver, taker):
            op = "-" if name == giver else "+"
            new = held[name] - n if op == "-" else held[name] + n
            updates.append(f"{name} <<{held[name]}{op}{n}={new}>>{held[name]}{op}{n}={new}")
            held[name] = new
        clauses.append(f"({k}) {clause}")
        names = (first, second) if ordered else (giver, taker)
        now = f", now {names[0]} {held[names[0]]}, {names[1]} {held[names[1]]}" if track else ""
        lines.append(f"({k}) {clause}: {updates[0]}, {updates[1]}{now}")
    asked = rng.choice([first, second])
    if restate:
        lines.append(f"now: {asked} {held[asked]}")
    question = (
        f"{first} has {start[first]} {item} and {second} has {start[second]}, then "
        + ", ".join(clauses)
        + f". How many {item} does {asked} have now?"
    )
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {held[asked]}", "steps": steps}


def make_comparison_problem(rng: random.Random, steps: int) -> dict[str, Any]:
    """One domain-B problem of comparisons: a chain of people, each holding a stated amount more or fewer than,
    twice or half as many as the one before; the question asks about the last.

    Each solution line restates its clause, then the new person's total (`(2) Cara has half as many as Ben: Cara
    46/2=23`). The total it starts from is the one the line before computed, as in domain A, so nothing must be
    looked up by name; what is new is the wording (amounts stated between people, not as events), and halving, an
    operation domain A never writes.
    """
    people = rng.sample(NAMES, steps + 1)
    item = rng.choice(ITEMS)
    start = total = rng.randint(10, 99)
    clauses, lines = [], []
    for k in range(1, steps + 1):
        kind = rng.random()
        if kind < 0.15 and total < 200:
            relation, op, n, new = TWICE, "*", 2, total * 2
        elif kind < 0.3 and total % 2 == 0 and total >= 20:
            relation, op, n, new = HALF, "/", 2, total // 2
        elif kind < 0.65 and total > 20:
            n = rng.randint(1, min(60, total - 1))
            relation, op, new = FEWER.format(n=n), "-", total - n
        else:
            n = rng.randint(1, 60)
            relation, op, new = MORE.format(n=n), "+", total + n
        clause = f"{people[k]} {relation} {people[k - 1]}"
        clauses.append(f"({k}) {clause}")
        lines.append(f"({k}) {clause}: {people[k]} <<{total}{op}{n}={new}>>{total}{op}{n}={new}")
        total = new
    question = (
        f"{people[0]} has {start} {item}, then " + ", ".join(clauses) + f". How many {item} does {people[-1]} have?"
    )
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {total}", "steps": steps}


def make_problems(
    n: int,
    seed: int,
    min_steps: int | None = None,
    max_steps: int | None = None,
    exclude: set[str] | None = None,
    domain: str = "a",
) -> list[dict[str, Any]]:
    """`n` distinct problems of `domain` ("a": 2-4 steps; "compare": 2-4; the transfer formats, `B_VARIANTS`: 1-3)
    drawn with `seed`, none of whose questions is in `exclude`."""
    if domain not in DOMAINS:
        raise ValueError(f"domain={domain!r}: the mini-world has domains {DOMAINS}.")
    if domain == "a":
        make, lo, hi = make_problem, 2, 4
    elif domain == COMPARE:
        make, lo, hi = make_comparison_problem, 2, 4
    else:
        make, lo, hi = functools.partial(make_transfer_problem, **B_VARIANTS[domain]), 1, 3
    lo, hi = min_steps or lo, max_steps or hi
    rng = random.Random(seed)
    seen = set(exclude or ())
    out = []
    while len(out) < n:
        p = make(rng, rng.randint(lo, hi))
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
    text = (
        " ".join(NAMES + ITEMS + ADD + SUB + MUL + GIVE + [MORE, FEWER, TWICE, HALF])
        + " has then How many now Q A The answer is and they swap does have"
    )
    return sorted(set(re.findall(r"[A-Za-z]+", text.replace("{n}", ""))), key=lambda w: (-len(w), w))


def make_tokenizer(one_token_names: bool = True) -> Any:
    """The mini-world's tokenizer: the generator's words are single tokens, everything else one per character.

    Digits stay single tokens so arithmetic is learnable by a tiny model; whole words keep sequences short (about
    half the characters), which is what training and decoding pay for here. Any other text still round-trips,
    spelled out character by character, so nothing a user types is lost to `<unk>`.

    A known word also takes the space after it. With `one_token_names` (the shipped world's scheme), a name takes
    the space before it instead: one token per name wherever it is written. Without, a name after another word
    ("and Fay", "gives Eli", "does Eli") is another token ("Fay ") than the same name elsewhere (" Fay "), and a
    model must learn that the two are one person before it can find a person's total by name; the first
    mini-world's small bases mostly never did (results/miniworld-v2-transfers/README.md,
    "Why the small base failed B, measured").
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = _words()
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    spaced = [" " + c for c in chars if not c.isalnum() and c != " "]
    whole = [lead + w + trail for w in words for lead in ("", " ") for trail in ("", " ")]
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + chars + spaced + whole)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # A known word takes the spaces around it (with one_token_names, not a space before a name, which the name takes);
    # a space before punctuation joins it; anything else is one character.
    before_name = "(?!(?:" + "|".join(NAMES) + ")(?![A-Za-z]))" if one_token_names else ""
    pattern = " ?(?:" + "|".join(words) + f")(?![A-Za-z])(?: {before_name})?| ?[^0-9A-Za-z ]|."
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )
    # A chat template makes `format_prompt` use this short prompt instead of the long system prompt, which would
    # otherwise be most of every sequence the tiny models train and decode on.
    fast.chat_template = CHAT_TEMPLATE
    return fast

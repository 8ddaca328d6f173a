"""Where answers to the transfers world's domain-B problems go wrong: the first error of each wrong answer, by kind.

Reads the `generations.jsonl` of `taro eval` / the mini-world's evaluations on transfer problems (any variant of
`B_VARIANTS`; the transfers world, `reproduce.py --domain-b b-copied`, archived in results/miniworld-v2-transfers/) and
replays each problem: for every solution line, the clause copied, each person's total before the step (copied from the
question or an earlier line), the amount, the arithmetic, the totals restated at the line's end ("b-tracked"), swaps,
the `now:` line of the restated variants, and the final answer. The first mismatch names the error. A total copied
before the step that is the *other* person's is counted apart ("binding"): a model that has not learned to find a total
by name picks one of the two at random, so "binding" near half of the lookups is that. An answer can be right by chance
after an error on the way; it is counted by its error, and how many the evaluation graded otherwise is printed.

    python research/miniworld/scripts/b_errors.py \
        runs/miniworld-b-copied-seed5/eval-test1/small-test_b-base/generations.jsonl
"""

import argparse
import collections
import json
import re

QUESTION = re.compile(r"(\w+) has (\d+) \w+ and (\w+) has (\d+), then (.*)\. How many \w+ does (\w+) have now\?")
UPDATE = re.compile(r"(\w+) (\d+)([-+])(\d+)=(\d+)")


def _clause(text: str) -> tuple[str, str, str] | None:
    """`(giver, taker, amount)` of a transfer clause, either way it is written: "Ben pays Ann 14" or, in
    "b-named", "Ben pays 14 to Ann" (the verb may be any of the synonyms)."""
    named = re.match(r"(\w+) \w+ (\d+) to (\w+)", text)
    if named:
        return named.group(1), named.group(3), named.group(2)
    plain = re.match(r"(\w+) \w+ (\w+) (\d+)", text)
    return plain.groups() if plain else None


def _totals(text: str) -> dict[str, int]:
    """`{name: total}` of text written as "Ann 38, Ben 44" (a swap line, or a line's restated totals)."""
    return {name: int(v) for name, v in re.findall(r"(\w+) (\d+)", text)}


def first_error(prompt: str, output: str) -> str:
    """The kind of the first error in `output`, or "correct"/"final answer" when every line is right."""
    first, n1, second, n2, clauses, asked = QUESTION.search(prompt).groups()
    held = {first: int(n1), second: int(n2)}
    steps = [c.strip() for c in re.split(r",? \(\d\) ", " " + clauses)[1:]]
    lines = [line for line in output.splitlines() if re.match(r"\([1-9]\)", line)]
    if len(lines) != len(steps):
        return "number of steps"
    for k, (clause, line) in enumerate(zip(steps, lines), start=1):
        body = line.split(": ", 1)[1] if ": " in line else ""
        if clause == "they swap":
            held = {first: held[second], second: held[first]}
            if _totals(body) != held:
                return "swap"
            continue
        giver, taker, amount = _clause(clause)
        if _clause(line.removeprefix(f"({k}) ")) != (giver, taker, amount):
            return "clause copy"
        updates = UPDATE.findall(body)
        if sorted(u[0] for u in updates) != sorted((giver, taker)):
            return "clause copy"
        new = {giver: held[giver] - int(amount), taker: held[taker] + int(amount)}
        for name, before, op, n, after in updates:
            if int(before) != held[name]:
                other = taker if name == giver else giver
                return f"binding (step {k})" if int(before) == held[other] else f"total copy (step {k})"
            if int(n) != int(amount) or op != ("-" if name == giver else "+"):
                return "amount or sign"
            if int(after) != new[name]:
                return "arithmetic"
        restated = body.partition(", now ")[2]  # "b-tracked" restates the new totals at the end of the line
        if restated and _totals(restated) != new:
            return "restated totals"
        held.update(new)
    now = re.search(r"now: (\w+) (\d+)", output)
    if now and (now.group(1) != asked or int(now.group(2)) != held[asked]):
        return "now: line"
    answer = re.search(r"The answer is (-?\d+)", output)
    return "correct" if answer and int(answer.group(1)) == held[asked] else "final answer"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generations", nargs="+", help="generations.jsonl files of domain-B evaluations")
    for path in ap.parse_args().generations:
        rows = [json.loads(line) for line in open(path)]
        errors = [first_error(r["prompt"], r["output"]) for r in rows]
        kinds = collections.Counter(errors)
        disagree = sum((e == "correct") != r["correct"] for e, r in zip(errors, rows))
        print(f"{path}: {len(rows)} problems" + (f" ({disagree} graded otherwise by the evaluation)" * bool(disagree)))
        for kind, count in kinds.most_common():
            print(f"  {kind:22s} {count:5d}  {count / len(rows):.3f}")

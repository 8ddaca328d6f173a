"""What the mini-world's router learned: alpha token by token, where TARo and GenARM disagree.

    python research/miniworld/scripts/alpha_traces.py      # after reproduce.py (the shipped seed): reads its test runs
    python research/miniworld/scripts/alpha_traces.py --method "ablation-product-outcome-sigma 1" \
        --guide "runs/miniworld-seed2/ablation/ablation-product-outcome-sigma 1" --name miniworld-alphas-outcome

Picks test problems of the small base that TARo gets right and GenARM (alpha chosen on A's validation) gets
wrong, and the reverse, in both domains; decodes them again with TARo to get the alpha of every token; writes
results/miniworld-alphas.{png,html} and, over every TARo answer of those test runs, the mean alpha by kind of
token over the first --sample test problems of each domain (results/miniworld-alphas.json). `--method` and
`--guide` name another router's test runs and guide folder (an ablation variant), `--name` the output files.
"""

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from taro_miniworld.pipeline import CHECKPOINTS, SHIPPED_SEED, MiniworldConfig
from transformers_taro.evaluation.session import Session
from transformers_taro.guide import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.visualize import AlphaScale, alpha_html, alpha_png, token_strings


def kind(previous: str, token: str) -> str:
    """The role of a token in a solution line, read from the text before it."""
    line = previous.rsplit("\n", 1)[-1]
    if token.strip().isdigit():
        if "=" in line and not re.search(r"[,]\s*\S*$", line.split("=")[-1]) and line.rstrip()[-1:] != ",":
            return "digit of a result (after =)"
        return "digit of an operand or a copied total"
    if token in "+-*":
        return "operator"
    if token == "\n" or token.endswith("\n"):
        return "end of line"
    return "word or punctuation"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default=f"runs/miniworld-seed{SHIPPED_SEED}")
    ap.add_argument("--per-case", type=int, default=2, help="problems shown per (domain, who is right) case")
    ap.add_argument("--sample", type=int, default=600, help="test problems per domain decoded again (the first N)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--method", default="taro", help="whose test runs: taro, or an ablation variant's folder name")
    ap.add_argument("--guide", default=str(CHECKPOINTS / "guide-a"), help="that router's guide folder")
    ap.add_argument("--name", default="miniworld-alphas", help="output files: RESULTS_DIR/NAME.{png,html,json}")
    a = ap.parse_args()
    cfg = MiniworldConfig()
    main = json.loads((Path(a.results_dir) / "miniworld.json").read_text())
    best = f"{main['best_alpha_on_validation']:g}"
    ev = Path(a.work_dir) / f"eval-test{cfg.test_seed}"
    tok = load_tokenizer(str(CHECKPOINTS / "small"))
    base = load_causal_lm(str(CHECKPOINTS / "small"))
    session = Session(base, tok, TARoGuide.from_pretrained(a.guide))
    sections, by_kind = [], defaultdict(list)
    for domain in "ab":
        taro = [json.loads(line) for line in (ev / f"small-test_{domain}-{a.method}" / "generations.jsonl").open()]
        genarm = [json.loads(line) for line in (ev / f"small-test_{domain}-genarm-{best}" / "generations.jsonl").open()]
        taro, genarm = taro[: a.sample], genarm[: a.sample]
        cases = {
            "TARo right, GenARM wrong": [t for t, g in zip(taro, genarm) if t["correct"] and not g["correct"]],
            "GenARM right, TARo wrong": [t for t, g in zip(taro, genarm) if g["correct"] and not t["correct"]],
        }
        picked = [(case, r) for case, rows in cases.items() for r in rows[: a.per_case]]
        # The sampled TARo answers of the run, decoded again for their alphas (greedy: the same tokens as in the run).
        for i in range(0, len(taro), 250):
            rows = taro[i : i + 250]
            for r, gen in zip(rows, session.generate([r["prompt"] for r in rows], max_new_tokens=cfg.max_new_tokens)):
                assert gen.text == r["output"], "greedy decoding gave another answer than the evaluated one"
                tokens = token_strings(tok, gen.token_ids)
                text = ""
                for t, alpha in zip(tokens, gen.alphas):
                    by_kind[(domain, kind(text, t))].append(alpha)
                    text += t
                for case, p in picked:
                    if p["index"] == r["index"]:
                        question = r["prompt"].split("Q: ", 1)[-1].split("\nA:")[0]
                        sections.append(
                            (f"Domain {domain.upper()}, {case} (gold {r['gold']:g}): {question}", tokens, gen.alphas)
                        )
    scale = AlphaScale.fit([s[2] for s in sections])
    out = Path(a.results_dir)
    (out / f"{a.name}.html").write_text(alpha_html(sections, scale))
    alpha_png(sections, str(out / f"{a.name}.png"), scale)
    summary = {f"{d}: {k}": {"mean_alpha": sum(v) / len(v), "tokens": len(v)} for (d, k), v in sorted(by_kind.items())}
    (out / f"{a.name}.json").write_text(json.dumps(summary, indent=2))
    for key, v in summary.items():
        print(f"{key:55s} mean alpha {v['mean_alpha']:.3f} over {v['tokens']} tokens")

#!/usr/bin/env bash
# Choose the prompt format for the arithmetic guide on validation (the issue's step 1): the base alone, greedy, on
# the first N validation problems of each family, under three system prompts. Resumable: a finished run is skipped,
# a killed one resumes from its generations. Outputs under $OUT/prompt-P/FAMILY.
# Usage: bash examples/smollm2/arith_prompts.sh   (N=200; problems from arithmetic_problems.py --out $OUT)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200}
OUT=${OUT:-runs/arith}
[ -f "$OUT/validation-two_steps.jsonl" ] || python examples/smollm2/arithmetic_problems.py --out "$OUT" --per-family 2000
declare -A SYSTEM=(
  [steps]="Solve the math problem step by step. Put each step on its own line and end with 'The answer is N.'"
  [short]="Solve the problem with one line of arithmetic, then write 'The answer is N.'"
  [number]="Answer with the number."
)
for p in steps short number; do
  for f in add_one_digit add_two_digit multiply give_away two_steps; do
    dir=$OUT/prompt-$p/$f
    [ -f "$dir/report.json" ] || taro eval --task gsm8k --method base --data "$OUT/validation-$f.jsonl" \
      --limit "$N" --max_new_tokens 96 --batch_size 16 --system_prompt "${SYSTEM[$p]}" --output_dir "$dir"
  done
done

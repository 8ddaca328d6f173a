#!/usr/bin/env bash
# The SmolLM2-135M-Instruct measurements recorded in the README: base, GenARM and TARo with the shipped guide.
# Usage: N_GSM8K=100 N_SVAMP=100 bash examples/smollm2/measure.sh   (outputs under runs/smollm2-eval/)
set -euo pipefail
cd "$(dirname "$0")/../.."
N_GSM8K=${N_GSM8K:-100}
N_SVAMP=${N_SVAMP:-100}
ALPHA=${ALPHA:-0.5}
OUT=${OUT:-runs/smollm2-eval}
common=(--batch-size 10 --max-new-tokens 200)
for task in gsm8k svamp; do
  n=$([ "$task" = gsm8k ] && echo "$N_GSM8K" || echo "$N_SVAMP")
  taro eval --task "$task" --method base --limit "$n" "${common[@]}" --output-dir "$OUT/$task-base"
  taro eval --task "$task" --method genarm --alpha "$ALPHA" --limit "$n" "${common[@]}" --output-dir "$OUT/$task-genarm"
  taro eval --task "$task" --method taro --limit "$n" "${common[@]}" --output-dir "$OUT/$task-taro"
done

#!/usr/bin/env bash
# The SmolLM2-135M-Instruct measurements recorded in the README: base, the best fixed alpha (GenARM) and TARo with
# the shipped guide, on GSM8K test and SVAMP.
# 1. GenARM's alpha is chosen on a validation split of GSM8K *train* (problems 7000-7063, disjoint from the
#    reward model's 0-99 and the router's 100-299) and recorded in the shipped guide's guide_config.json; the
#    test split is never used to choose anything.
# 2. base / genarm (that alpha) / taro on the first N_GSM8K GSM8K test problems and N_SVAMP SVAMP problems.
# Runs whose report.json exists are skipped, so an interrupted measurement resumes.
# Usage: N_GSM8K=300 N_SVAMP=100 bash examples/smollm2/measure.sh   (outputs under runs/smollm2-eval/)
set -euo pipefail
cd "$(dirname "$0")/../.."
N_GSM8K=${N_GSM8K:-300}
N_SVAMP=${N_SVAMP:-100}
N_VAL=${N_VAL:-64}
ALPHAS=${ALPHAS:-"0.1 0.25 0.5"}
OUT=${OUT:-runs/smollm2-eval}
GUIDE=src/transformers_taro/pretrained/smollm2-135m-gsm8k
TRAIN=${TRAIN:-$(python -c "from transformers_taro.evaluation.tasks import data_dir; print(data_dir() / 'gsm8k' / 'train.jsonl')")}

run() {  # run OUTPUT_DIR taro-eval-args...
  local dir=$1; shift
  [ -f "$dir/report.json" ] || taro eval "$@" --batch-size 32 --output-dir "$dir"
}

val_dirs=()
for a in $ALPHAS; do
  run "$OUT/val-genarm-$a" --task gsm8k --data "$TRAIN" --offset 7000 --limit "$N_VAL" --method genarm --alpha "$a" \
    --max-new-tokens 200
  val_dirs+=("$OUT/val-genarm-$a")
done
python -c "import sys; from transformers_taro.evaluation.runner import record_alpha_choice; \
print('best alpha on validation:', record_alpha_choice(sys.argv[2:], sys.argv[1]))" "$GUIDE" "${val_dirs[@]}"

# SVAMP solutions are one or two steps: 128 new tokens hold them.
for task in gsm8k svamp; do
  n=$([ "$task" = gsm8k ] && echo "$N_GSM8K" || echo "$N_SVAMP")
  tokens=$([ "$task" = gsm8k ] && echo 200 || echo 128)
  for method in base genarm taro; do
    run "$OUT/$task-$method" --task "$task" --method "$method" --limit "$n" --max-new-tokens "$tokens"
  done
done

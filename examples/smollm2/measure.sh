#!/usr/bin/env bash
# The SmolLM2-135M-Instruct measurements of the GSM8K guide (research/smollm2/smollm2-135m-gsm8k): base, GenARM at
# the alpha chosen on validation, and TARo, on GSM8K test and SVAMP, greedy.
# 1. GenARM's alpha is chosen on a validation split of GSM8K *train* (problems 7200-7472 by default, which nothing
#    trains on: see train_default.sh) and recorded in the guide's guide_config.json. No test problem is
#    used to choose anything.
# 2. base / genarm (that alpha) / taro on the first N_GSM8K GSM8K test problems and N_SVAMP SVAMP problems; then
#    the paired comparison (McNemar's exact test, bootstrap intervals) in $OUT/comparison.json.
# The guide's reward model is a LoRA adapter over the base, so `taro eval` decodes with the fused path (the same
# tokens as the processor path, faster). Runs whose report.json exists are skipped and a killed run resumes from
# its generations, so an interrupted measurement is simply run again.
# Usage: bash examples/smollm2/measure.sh   (N_GSM8K=500 N_SVAMP=1000 by default; outputs under runs/smollm2-eval/)
# Also: N_VAL, VAL_OFFSET, ALPHAS, BATCH, OUT, GUIDE, RESULTS, EVAL_ARGS ("--device-map auto" on a GPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
N_GSM8K=${N_GSM8K:-500}
N_SVAMP=${N_SVAMP:-1000}
VAL_OFFSET=${VAL_OFFSET:-7200}
N_VAL=${N_VAL:-273}
ALPHAS=${ALPHAS:-"0.25 0.5 1"}
OUT=${OUT:-runs/smollm2-eval}
BATCH=${BATCH:-32}
EVAL_ARGS=${EVAL_ARGS:-}  # e.g. "--device-map auto" on a GPU
GUIDE=${GUIDE:-research/smollm2/smollm2-135m-gsm8k}
TRAIN=${TRAIN:-$(python -c "from transformers_taro.tasks import data_dir; print(data_dir() / 'gsm8k' / 'train.jsonl')")}

run() {  # run OUTPUT_DIR taro-eval-args...
  local dir=$1; shift
  # shellcheck disable=SC2086
  [ -f "$dir/report.json" ] || taro eval "$@" --batch-size "$BATCH" --output-dir "$dir" $EVAL_ARGS
}

val_dirs=()
for a in $ALPHAS; do
  run "$OUT/val-genarm-$a" --task gsm8k --data "$TRAIN" --offset "$VAL_OFFSET" --limit "$N_VAL" --method genarm \
    --alpha "$a" --max-new-tokens 200 --guide "$GUIDE"
  val_dirs+=("$OUT/val-genarm-$a")
done
python -c "import sys; from transformers_taro.evaluation.runner import record_alpha_choice; \
print('best alpha on validation:', record_alpha_choice(sys.argv[2:], sys.argv[1]))" "$GUIDE" "${val_dirs[@]}"

# SVAMP solutions are one or two steps: 128 new tokens hold them.
for task in gsm8k svamp; do
  n=$([ "$task" = gsm8k ] && echo "$N_GSM8K" || echo "$N_SVAMP")
  tokens=$([ "$task" = gsm8k ] && echo 200 || echo 128)
  for method in base genarm taro; do
    guide=$([ "$method" = base ] && echo "" || echo "--guide $GUIDE")
    # shellcheck disable=SC2086
    run "$OUT/$task-$method" --task "$task" --method "$method" --limit "$n" --max-new-tokens "$tokens" $guide
  done
done
python examples/smollm2/compare.py "$OUT" --output "${RESULTS:-results/smollm2/comparison.json}"

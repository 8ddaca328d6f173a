#!/usr/bin/env bash
# The arithmetic guide for SmolLM2-135M-Instruct (src/transformers_taro/pretrained/smollm2-135m-arithmetic), from
# nothing to measured, on this CPU: problems, step pairs, a LoRA reward model, GenARM's alpha on validation, a
# router, then base / GenARM / TARo on test.
#   problems    examples/smollm2/arithmetic_problems.py: train / validation / test pools, disjoint by question.
#   in-domain   $IN_DOMAIN families (the base solves 30-70% of them under $SYSTEM; docs/results/smollm2.md):
#               train rows [0, PAIR_PROBLEMS) give the step pairs (incorrect steps sampled from the base and
#               labelled automatically on the first SAMPLE_PROBLEMS, corrupted gold steps on the rest); the next
#               HELDOUT_PROBLEMS give held-out pairs (every step sampled) for the reward model's pairwise accuracy;
#               the next ROUTER_PROBLEMS give the router's correct traces.
#   alpha       GenARM at each of $ALPHAS on the first N_VAL validation problems of each in-domain family; the best
#               (ties: the smaller) is the router's starting weight and prior, and the guide's fixed alpha.
#   test        N_TEST problems of each in-domain family, N_OOD of each $OUT_OF_DOMAIN family, N_GSM8K of GSM8K
#               test and N_SVAMP of SVAMP; base, GenARM and TARo, greedy; compare.py pairs them.
# Every stage is skipped once finished (its seconds are in $RUNS/stages.jsonl), and a killed stage resumes: the
# trainers from their last checkpoint, `taro eval` from its generations. Run it alone on the CPU.
#   ship        the guide to $SHIP, its card carrying the test table; `taro demo`'s problems to $DEMO (the next
#               DEMO_PER_FAMILY test problems of each in-domain family after the measured ones).
# Usage: bash examples/smollm2/train_arithmetic.sh   (everything under $RUNS, the guide in $RUNS/guide; to replace
# the package's shipped guide and demo problems: SHIP=src/transformers_taro/pretrained/smollm2-135m-arithmetic
# DEMO=src/transformers_taro/demo/arithmetic_demo.jsonl; SHIP=none ships nothing; MODEL= a base model folder or
# Hub id instead of the embedded SmolLM2; every count above can be set)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/smollm2-arith}
SHIP=${SHIP:-$RUNS/guide}
RESULTS=${RESULTS:-results/smollm2/arithmetic.json}
DEMO=${DEMO:-$RUNS/arithmetic_demo.jsonl}
DEMO_PER_FAMILY=${DEMO_PER_FAMILY:-20}
MODEL=${MODEL:-}
SYSTEM=${SYSTEM:-Answer with the number.}
IN_DOMAIN=${IN_DOMAIN:-add_one_digit multiply}
OUT_OF_DOMAIN=${OUT_OF_DOMAIN:-add_two_digit give_away}
PER_FAMILY=${PER_FAMILY:-20000}
PAIR_PROBLEMS=${PAIR_PROBLEMS:-1500}
SAMPLE_PROBLEMS=${SAMPLE_PROBLEMS:-300}
HELDOUT_PROBLEMS=${HELDOUT_PROBLEMS:-200}
ROUTER_PROBLEMS=${ROUTER_PROBLEMS:-400}
RM_STEPS=${RM_STEPS:-100}
ROUTER_STEPS=${ROUTER_STEPS:-100}
ALPHAS=${ALPHAS:-0.5 1 2}
N_VAL=${N_VAL:-200}
N_TEST=${N_TEST:-1000}
N_OOD=${N_OOD:-500}
N_GSM8K=${N_GSM8K:-300}
N_SVAMP=${N_SVAMP:-300}
TOKENS=${TOKENS:-96}
BATCH=${BATCH:-32}
TRAIN_BATCH=${TRAIN_BATCH:-8}
DATA_DIR=${TARO_DATA_DIR:-../shared/data}
P=$RUNS/problems
mkdir -p "$RUNS"

stage() {  # stage NAME COMMAND...: run COMMAND unless NAME finished before; record its seconds
  local name=$1 start=$SECONDS
  shift
  grep -qs "\"stage\": \"$name\"" "$RUNS/stages.jsonl" && return 0
  echo "== $name"
  "$@"
  printf '{"stage": "%s", "seconds": %d, "date": "%s"}\n' "$name" $((SECONDS - start)) "$(date -u +%F)" \
    >>"$RUNS/stages.jsonl"
}
resume_flag() {  # --resume when a killed run left a checkpoint in $1
  compgen -G "$1/checkpoint-*" >/dev/null && echo --resume || true
}
rows() {  # rows FILE FIRST COUNT: COUNT lines of a JSONL file from line FIRST (0-based)
  sed -n "$(($2 + 1)),$(($2 + $3))p" "$1"
}
base_flag() {  # base_flag FLAG: FLAG $MODEL when a base model is given, else nothing (the embedded default)
  [ -z "$MODEL" ] || printf '%s\n%s\n' "$1" "$MODEL"
}
evaluate() {  # evaluate OUTPUT_DIR taro-eval-args...: skipped when its report exists, resumed when killed
  local dir=$1
  shift
  [ -f "$dir/report.json" ] || taro eval "$@" --batch-size "$BATCH" --system-prompt "$SYSTEM" --output-dir "$dir" \
    $(base_flag --base-model)
}

problems() {
  python examples/smollm2/arithmetic_problems.py --out "$P" --per-family "$PER_FAMILY"
  : >"$P/validation-in-domain.jsonl"
  for f in $IN_DOMAIN; do rows "$P/validation-$f.jsonl" 0 "$N_VAL" >>"$P/validation-in-domain.jsonl"; done
}

pairs() {
  local f
  for f in $IN_DOMAIN; do
    python examples/smollm2/step_pairs.py --data "$P/train-$f.jsonl" --offset 0 --limit "$PAIR_PROBLEMS" \
      --sample-problems "$SAMPLE_PROBLEMS" --system-prompt "$SYSTEM" --output "$RUNS/pairs/train-$f.jsonl" \
      $(base_flag --model)
    python examples/smollm2/step_pairs.py --data "$P/train-$f.jsonl" --offset "$PAIR_PROBLEMS" \
      --limit "$HELDOUT_PROBLEMS" --sample-problems "$HELDOUT_PROBLEMS" --samples-per-step 1 \
      --system-prompt "$SYSTEM" --output "$RUNS/pairs/heldout-$f.jsonl" $(base_flag --model)
  done
  for f in $IN_DOMAIN; do cat "$RUNS/pairs/train-$f.jsonl"; done >"$RUNS/pairs/train.jsonl"
}

reward_model() {
  taro train-rm --data "$RUNS/pairs/train.jsonl" --use_peft --lora_r 16 --lora_alpha 32 --lora_dropout 0 \
    --lora_target_modules all-linear --learning-rate 5e-4 --cpo_alpha 0 --beta 0.1 --max-steps "$RM_STEPS" \
    --per-device-train-batch-size "$TRAIN_BATCH" --max-length 256 --logging-steps 10 --save-steps 50 \
    --save-total-limit 1 --output-dir "$RUNS/rm" $(base_flag --model_name_or_path) $(resume_flag "$RUNS/rm")
}

heldout() {  # pairwise accuracy per family, the reward model beside the base's own log-probs as a reward
  local f base
  base=${MODEL:-$(python -c "from transformers_taro.models import default_model_path; print(default_model_path())")}
  for f in $IN_DOMAIN; do
    python examples/smollm2/rm_heldout.py --pairs "$RUNS/pairs/heldout-$f.jsonl" \
      --output "$RUNS/rm-heldout-$f.json" "$RUNS/rm" "$base"
  done
}

validation() {
  local a
  evaluate "$RUNS/validation/base" --task gsm8k --data "$P/validation-in-domain.jsonl" --method base \
    --max-new-tokens "$TOKENS"
  for a in $ALPHAS; do
    evaluate "$RUNS/validation/genarm-$a" --task gsm8k --data "$P/validation-in-domain.jsonl" --method genarm \
      --reward-model "$RUNS/rm" --alpha "$a" --max-new-tokens "$TOKENS"
  done
}

validation_runs() {
  local a
  for a in $ALPHAS; do echo "$RUNS/validation/genarm-$a"; done
}

router() {
  local alpha
  # shellcheck disable=SC2046
  alpha=$(python -c "import sys; from transformers_taro.evaluation.runner import choose_alpha; \
print(choose_alpha(sys.argv[1:])[0])" $(validation_runs))
  echo "GenARM's alpha on validation: $alpha (the router's starting weight and prior)"
  for f in $IN_DOMAIN; do rows "$P/train-$f.jsonl" $((PAIR_PROBLEMS + HELDOUT_PROBLEMS)) "$ROUTER_PROBLEMS"; done \
    >"$RUNS/router-traces.jsonl"
  taro train-router --reward_model "$RUNS/rm" --data "$RUNS/router-traces.jsonl" --system_prompt "$SYSTEM" \
    --alpha_init "$alpha" --alpha_max 4 --alpha_reg 0.01 --learning_rate 2e-3 --max_steps "$ROUTER_STEPS" \
    --per_device_train_batch_size "$TRAIN_BATCH" --max_length 256 --logging_steps 10 --save_steps 50 \
    --output_dir "$RUNS/router" $(base_flag --base_model) $(resume_flag "$RUNS/router")
  # shellcheck disable=SC2046
  python -c "import sys; from transformers_taro.evaluation.runner import record_alpha_choice; \
record_alpha_choice(sys.argv[2:], sys.argv[1])" "$RUNS/router/guide" $(validation_runs)
}

test_runs() {
  local f n task method guide
  for f in $IN_DOMAIN $OUT_OF_DOMAIN; do
    n=$([[ " $IN_DOMAIN " == *" $f "* ]] && echo "$N_TEST" || echo "$N_OOD")
    for method in base genarm taro; do
      guide=$([ "$method" = base ] && echo "" || echo "--guide $RUNS/router/guide")
      # shellcheck disable=SC2086
      evaluate "$RUNS/test/$f-$method" --task gsm8k --data "$P/test-$f.jsonl" --limit "$n" --method "$method" \
        --max-new-tokens "$TOKENS" $guide
    done
  done
  for task in gsm8k svamp; do
    n=$([ "$task" = gsm8k ] && echo "$N_GSM8K" || echo "$N_SVAMP")
    [ "$n" -gt 0 ] || continue
    for method in base genarm taro; do
      guide=$([ "$method" = base ] && echo "" || echo "--guide $RUNS/router/guide")
      # shellcheck disable=SC2086
      evaluate "$RUNS/test/$task-$method" --task "$task" --data "$DATA_DIR/$task/test.jsonl" --limit "$n" \
        --method "$method" --max-new-tokens 160 $guide
    done
  done
}

stage problems problems
stage pairs pairs
stage reward_model reward_model
stage heldout heldout
stage validation validation
stage router router
stage test test_runs
records=(--record "stages=$RUNS/stages.jsonl" --record "guide=$RUNS/router/guide/guide_config.json"
  --record "validation_base=$RUNS/validation/base/report.json")
for f in $IN_DOMAIN; do records+=(--record "rm_heldout_$f=$RUNS/rm-heldout-$f.json"); done
# The in-domain families read as one set of problems (the traffic the guide serves), and the out-of-domain ones.
pools=(--pool "in_domain=$(echo $IN_DOMAIN | tr ' ' ,)")
[ -z "$OUT_OF_DOMAIN" ] || pools+=(--pool "out_of_domain=$(echo $OUT_OF_DOMAIN | tr ' ' ,)")
python examples/smollm2/compare.py "$RUNS/test" --output "$RESULTS" --markdown "$RUNS/test.md" "${records[@]}" \
  "${pools[@]}"
if [ "$SHIP" != none ]; then
  # `taro demo`'s problems: the next DEMO_PER_FAMILY test problems of each in-domain family after the measured
  # ones, the families interleaved.
  demo=()
  for f in $IN_DOMAIN; do
    rows "$P/test-$f.jsonl" "$N_TEST" "$DEMO_PER_FAMILY" >"$RUNS/demo-$f.jsonl"
    demo+=("$RUNS/demo-$f.jsonl")
  done
  paste -d '\n' "${demo[@]}" | grep -v '^$' >"$DEMO"
  # The guide as trained, its card carrying what was measured (saved by the library: folder and card together).
  python - "$RUNS/router/guide" "$SHIP" "$RUNS/test.md" "$RESULTS" <<'EOF'
import datetime
import sys

from transformers_taro import TARoGuide

guide_dir, ship, table, results = sys.argv[1:]
guide = TARoGuide.from_pretrained(guide_dir)
guide.config.evaluation = (
    f"Measured {datetime.date.today()} with this guide's base, greedy, on problems nothing was trained or chosen "
    f"on (`bash examples/smollm2/train_arithmetic.sh`; every figure in `{results}`):\n\n" + open(table).read()
)
guide.save_pretrained(ship)
print(f"Shipped to {ship}")
EOF
fi

#!/usr/bin/env bash
# The GSM8K guide for SmolLM2-135M-Instruct (research/smollm2/smollm2-135m-gsm8k, archived outside the package), from
# nothing.
# GSM8K train is split so that nothing is chosen on what trained it:
#   problems 0-5999     step pairs for the reward models (incorrect steps sampled from the base and labelled
#                       automatically on the first $SAMPLE_PROBLEMS; corrupted gold steps for the rest);
#   problems 6000-6799  correct traces for the router;
#   problems 7000-7199  held-out step pairs (all sampled where sampling finds an incorrect step): the reward-model
#                       variants are compared on them, and the one with the best pairwise accuracy is shipped;
#   problems 7200-7472  validation for GenARM's alpha (examples/smollm2/measure.sh).
# Reward-model variants ($VARIANTS): lora (LoRA r=16, GenARM's loss), lora-nll (the same plus CPO's NLL term on
# the chosen steps, cpo_alpha=1), full-nll (all weights, cpo_alpha=1; compared, but a full 135M model is too large
# to ship inside the package, so only LoRA variants are candidates for shipping).
# Every stage is skipped when its output exists and resumes from its last checkpoint when it was killed, so the
# script can simply be run again. Outputs under $RUNS; the held-out comparison in $RUNS/rm-heldout.json.
# Usage: bash examples/smollm2/train_default.sh
# Scale and place: RM_STEPS, ROUTER_STEPS, SAMPLE_PROBLEMS, TRAIN_PROBLEMS, HELDOUT_PROBLEMS, VARIANTS, RUNS, SHIP,
# DEVICE_ARGS. A dry run that leaves the archived guide alone: SHIP=/tmp/guide RUNS=/tmp/runs RM_STEPS=2 ...
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/gsm8k/train.jsonl}
RUNS=${RUNS:-runs/smollm2-v2}
SHIP=${SHIP:-research/smollm2/smollm2-135m-gsm8k}
RM_STEPS=${RM_STEPS:-300}
ROUTER_STEPS=${ROUTER_STEPS:-100}
SAMPLE_PROBLEMS=${SAMPLE_PROBLEMS:-300}
TRAIN_PROBLEMS=${TRAIN_PROBLEMS:-6000}
HELDOUT_PROBLEMS=${HELDOUT_PROBLEMS:-200}
VARIANTS=${VARIANTS:-"lora lora-nll full-nll"}
DEVICE_ARGS=${DEVICE_ARGS:-}  # "--device-map auto" samples and scores on the GPU (the trainers find it themselves)
mkdir -p "$RUNS"
[ -d "$RUNS/rm-previous" ] || [ ! -d "$SHIP/reward_model" ] || cp -r "$SHIP/reward_model" "$RUNS/rm-previous"

python examples/smollm2/step_pairs.py --data "$DATA" --offset 7000 --limit "$HELDOUT_PROBLEMS" \
  --sample-problems "$HELDOUT_PROBLEMS" \
  --samples-per-step 1 --output "$RUNS/pairs-heldout.jsonl" $DEVICE_ARGS
python examples/smollm2/step_pairs.py --data "$DATA" --offset 0 --limit "$TRAIN_PROBLEMS" --sample-problems "$SAMPLE_PROBLEMS" \
  --samples-per-step 1 --output "$RUNS/pairs-train.jsonl" $DEVICE_ARGS

resume_flag() {  # --resume when a killed run left a checkpoint in $1
  compgen -G "$1/checkpoint-*" >/dev/null && echo --resume || true
}

LORA="--use_peft --lora_r 16 --lora_alpha 32 --lora_dropout 0 --lora_target_modules all-linear --learning-rate 5e-4"
rm_dirs=()
for variant in $VARIANTS; do
  out="$RUNS/rm-$variant"
  rm_dirs+=("$out")
  [ -f "$out/README.md" ] && continue  # the model card is written last: finished
  case $variant in
    lora) args="$LORA --cpo_alpha 0" ;;
    lora-nll) args="$LORA --cpo_alpha 1" ;;
    full-nll) args="--learning-rate 2e-5 --cpo_alpha 1" ;;
    *) echo "unknown variant $variant (lora, lora-nll, full-nll)"; exit 2 ;;
  esac
  # shellcheck disable=SC2086
  taro train-rm --data "$RUNS/pairs-train.jsonl" $args --beta 0.1 --max-steps "$RM_STEPS" \
    --per-device-train-batch-size 8 --max-length 512 --logging-steps 10 --save-steps 50 --save-total-limit 1 \
    --output-dir "$out" $(resume_flag "$out")
done

# References on the same pairs: the base itself (its own log-probs as the reward) and the reward model that was
# shipped before this run (kept aside at the start).
references=("$(python -c "from transformers_taro.models import default_model_path; print(default_model_path())")")
[ -d "$RUNS/rm-previous" ] && references+=("$RUNS/rm-previous")
# shellcheck disable=SC2086
python examples/smollm2/rm_heldout.py --pairs "$RUNS/pairs-heldout.jsonl" --output "$RUNS/rm-heldout.json" \
  $DEVICE_ARGS "${rm_dirs[@]}" "${references[@]}"
# Shippable (LoRA) variants only; the first of a tie.
CHOSEN=$(python -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(max((d for d in sys.argv[2:] if '/rm-lora' in d), key=lambda d: r[d]['accuracy']))" \
  "$RUNS/rm-heldout.json" "${rm_dirs[@]}")
echo "Reward model chosen on held-out pairs: $CHOSEN"

python -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])][6000:6800]; \
open(sys.argv[2],'w').writelines(json.dumps(r)+'\n' for r in rows)" "$DATA" "$RUNS/router-traces.jsonl"
if [ ! -f "$RUNS/router/guide/guide_config.json" ]; then
  taro train-router --reward-model "$CHOSEN" --data "$RUNS/router-traces.jsonl" \
    --alpha-max 2.0 --alpha-init 0.5 --alpha-reg 0.01 --learning-rate 2e-3 \
    --max-steps "$ROUTER_STEPS" --per-device-train-batch-size 8 --max-length 512 \
    --logging-steps 10 --save-steps 50 --output-dir "$RUNS/router" $(resume_flag "$RUNS/router")
fi

# Ship the guide folder (adapter + router + guide_config.json; no checkpoints).
rm -rf "$SHIP"
cp -r "$RUNS/router/guide" "$SHIP"
echo "Shipped to $SHIP; now choose GenARM's alpha on validation and measure: bash examples/smollm2/measure.sh"

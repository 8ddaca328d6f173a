#!/usr/bin/env bash
# Reproduces the shipped default guide for SmolLM2-135M-Instruct (src/transformers_taro/pretrained/) on a CPU:
# a LoRA reward model trained with `taro train-rm` on GSM8K train step pairs (incorrect steps sampled from the
# base and labelled automatically, corrupted gold steps where no incorrect sample was found), then a router
# trained with `taro train-router` on GSM8K train traces, which writes the guide folder (reward model + router).
# Problems 0-99 train the reward model, 100-299 the router. GenARM's alpha is then chosen on validation by
# examples/smollm2/measure.sh and recorded in the guide's guide_config.json.
# Time on a 2-core CPU: about 70 minutes in all. Resumable: re-run with RESUME=--resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/gsm8k/train.jsonl}
RUNS=${RUNS:-runs/smollm2-default}
SHIP=src/transformers_taro/pretrained/smollm2-135m-gsm8k
RESUME=${RESUME:-}
mkdir -p "$RUNS" "$SHIP"

taro train-rm --data "$DATA" --limit 100 --sample-rejected --samples-per-step 1 \
  --use_peft --lora_r 8 --lora_alpha 16 --lora_dropout 0 --lora_target_modules all-linear \
  --beta 0.1 --learning-rate 5e-4 \
  --max-steps 60 --per-device-train-batch-size 4 --max-length 384 \
  --logging-steps 5 --save-steps 20 --output-dir "$RUNS/reward-model" $RESUME

# Router traces: GSM8K problems 100-299 (disjoint from the reward model's), written by the data module.
python -c "import json,sys; rows=[json.loads(l) for l in open('$DATA')][100:300]; \
open('$RUNS/router-traces.jsonl','w').writelines(json.dumps(r)+'\n' for r in rows)"
taro train-router --reward-model "$RUNS/reward-model" --data "$RUNS/router-traces.jsonl" \
  --alpha-max 2.0 --alpha-init 0.5 --alpha-reg 0.01 --learning-rate 2e-3 \
  --max-steps 50 --per-device-train-batch-size 4 --max-length 384 \
  --logging-steps 5 --save-steps 25 --output-dir "$RUNS/router" $RESUME

# Ship the guide folder (adapter + router + guide_config.json; no checkpoints).
rm -rf "$SHIP"
cp -r "$RUNS/router/guide" "$SHIP"
echo "Shipped to $SHIP"

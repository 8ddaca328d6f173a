"""Train a token-level reward model on step-wise pairs (thin wrapper over `taro train-rm`).

    python examples/train_reward_model.py --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct \
        --data ../shared/data/gsm8k/train.jsonl --output-dir rm --use_peft --max-steps 100
    accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml examples/train_reward_model.py \
        --model_name_or_path meta-llama/Llama-3.1-8B-Instruct --data xinlai/Math-Step-DPO-10K --output-dir rm-8b --bf16
"""

import sys

from transformers_taro.cli import main

if __name__ == "__main__":
    main(["train-rm", *sys.argv[1:]])

"""Train a TARo router with frozen base and reward models (thin wrapper over `taro train-router`).

    python examples/train_router.py --base-model HuggingFaceTB/SmolLM2-135M-Instruct --reward-model rm \
        --data ../shared/data/gsm8k/train.jsonl --output-dir router --max-steps 200   # guide in router/guide
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train_router.py ...
"""

import sys

from transformers_taro.cli import main

if __name__ == "__main__":
    main(["train-router", *sys.argv[1:]])

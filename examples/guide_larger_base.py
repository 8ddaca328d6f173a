"""Guide a large base with a guide (reward model + router) trained next to a small one with the same vocabulary.

The router reads only the two next-token distributions (and optionally the reward model's hidden state), never
the base's hidden states, so nothing needs retraining. `device_map="auto"` spreads the large base over the GPUs.

    python examples/guide_larger_base.py --base-model meta-llama/Llama-3.1-70B-Instruct \
        --guide my-org/llama-3-8b-gsm8k-guide "A train leaves at 3 pm ..."
"""

import argparse

from transformers_taro.evaluation.session import load_session

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", required=True, help="the large base: Hub id or folder")
    ap.add_argument("--guide", required=True, help="a guide folder or Hub id trained next to a smaller base")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("prompt")
    a = ap.parse_args()
    session = load_session(a.base_model, a.guide, device_map="auto")
    session.stream(a.prompt, max_new_tokens=a.max_new_tokens)

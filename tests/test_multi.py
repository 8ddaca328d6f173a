"""Several reward models in one guide: the sum formula, the single-model case, folders, the fused path, training,
and every way to ask for it wrongly."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import VOCAB, as_cached_hub_repo, gsm8k_rows, left_padded, tiny_lm
from transformers import LogitsProcessor, LogitsProcessorList

from transformers_taro import TARoGuide, TARoGuideConfig, TARoProcessor, TARoRouter, TARoRouterConfig, mix
from transformers_taro.features import num_features, router_features
from transformers_taro.guide import load_guide, named_reward_models

PROMPTS = [[1, 5, 9, 14, 3, 7], [1, 22, 8]]
GEN = dict(max_new_tokens=8, pad_token_id=0, eos_token_id=None, output_scores=True, return_dict_in_generate=True)
MODES = {
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True, temperature=0.8, top_k=0),
    "beam": dict(do_sample=False, num_beams=3, num_return_sequences=2),
}


class SumReference(LogitsProcessor):
    """`log_softmax(base) + sum_k alpha_k log_softmax(r_k)`, written the slow, obvious way: every reward model
    re-reads its whole prefix (its own prompt, if it has one, then the generated tokens) at every step."""

    def __init__(self, models, alphas, attention_mask, prompts=None):
        self.models, self.alphas, self.mask = models, alphas, attention_mask
        self.prompts = prompts or [None] * len(models)

    @torch.no_grad()
    def __call__(self, input_ids, scores):
        rows, prompt_len = input_ids.shape[0], self.mask.shape[1]
        k = rows // self.mask.shape[0]
        generated = input_ids[:, prompt_len:]
        out = torch.log_softmax(scores.float(), -1)
        for model, alpha, prompt in zip(self.models, self.alphas, self.prompts):
            if prompt is None:
                ids = input_ids
                mask = torch.cat([self.mask.repeat_interleave(k, 0), torch.ones_like(generated)], 1)
            else:
                ids = torch.cat([prompt[0].repeat_interleave(k, 0), generated], 1)
                mask = torch.cat([prompt[1].repeat_interleave(k, 0), torch.ones_like(generated)], 1)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
            out = out + alpha * torch.log_softmax(logits, -1)
        return out


def assert_same_decoding(ours, ref, atol=1e-4):
    assert torch.equal(ours.sequences, ref.sequences)
    for a, b in zip(ours.scores, ref.scores):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a))
        torch.testing.assert_close(a[finite], b[finite], atol=atol, rtol=0)


def reference(base, models, alphas, ids, mask, mode, prompts=None):
    torch.manual_seed(0)
    proc = SumReference(models, alphas, mask, prompts)
    return base.generate(
        input_ids=ids, attention_mask=mask, logits_processor=LogitsProcessorList([proc]), **GEN, **MODES[mode]
    )


def guided(guide, base, ids, mask, mode="greedy", **kw):
    torch.manual_seed(0)
    return guide.generate(base, input_ids=ids, attention_mask=mask, **GEN, **MODES[mode], **kw)


def two_router(seed=1, **kw):
    torch.manual_seed(seed)
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, alpha_init=1.0, num_reward_models=2, **kw))
    with torch.no_grad():
        router.head.weight.normal_(0, 0.5)  # weights that depend on the token and differ between the models
    return router


@pytest.mark.parametrize("mode", list(MODES))
def test_two_models_with_fixed_weights_equal_the_sum_formula(arch, mode):
    base, a, b = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2), tiny_lm(arch, seed=3)
    ids, mask = left_padded(PROMPTS)  # rows of two lengths: left padding
    guide = TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 0.5})
    ours = guided(guide, base, ids, mask, mode)
    assert_same_decoding(ours, reference(base, [a, b], [1.0, 0.5], ids, mask, mode))
    only_a = reference(base, [a], [1.0], ids, mask, mode)
    assert not torch.equal(ours.sequences, only_a.sequences), "the second reward model should change something"
    rows = ours.sequences.shape[0]
    assert guide.alphas.shape == (rows, 8, 2) and ours.alphas.shape == (rows, 8, 2)
    assert guide.reward_model_names == ["a", "b"]


@pytest.mark.parametrize("mode", list(MODES))
def test_zero_weight_on_all_but_one_is_the_single_model_guide(mode):
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    ids, mask = left_padded(PROMPTS)
    two = guided(TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 0.0}), base, ids, mask, mode)
    one = guided(TARoGuide(a, alpha=1.0), base, ids, mask, mode)
    assert torch.equal(two.sequences, one.sequences)
    for x, y in zip(two.scores, one.scores):
        assert torch.equal(x, y)  # 0 * log p_b adds exactly nothing
    assert one.alphas.shape == (one.sequences.shape[0], 8)  # one reward model: [rows, steps] as ever


def test_a_reward_prompt_per_model_matches_the_reference():
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    ids, mask = left_padded(PROMPTS)
    r_ids, r_mask = left_padded([[1, 60, 61] + p[1:] for p in PROMPTS])
    guide = TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 1.0})
    ours = guided(guide, base, ids, mask, reward_input_ids=[r_ids, None], reward_attention_mask=[r_mask, None])
    ref = reference(base, [a, b], [1.0, 1.0], ids, mask, "greedy", prompts=[(r_ids, r_mask), None])
    assert_same_decoding(ours, ref)
    with pytest.raises(ValueError, match="sequence of one per model"):
        guided(guide, base, ids, mask, reward_input_ids=r_ids)


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_a_router_over_two_models_decodes_with_its_own_weights(mode):
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    ids, mask = left_padded(PROMPTS)
    router = two_router()
    guide = TARoGuide({"a": a, "b": b}, router=router)
    out = guided(guide, base, ids, mask, mode)
    weights = out.alphas[~out.alphas.isnan().any(-1)]
    assert weights.shape[-1] == 2 and bool((weights >= 0).all() and (weights <= 4).all())
    assert not torch.allclose(weights[:, 0], weights[:, 1]), "the router weighs the two models differently"
    if mode == "greedy":  # each step's weights are the router's on that step's distributions, and the sum follows
        torch.manual_seed(0)
        probe = TARoProcessor([a, b], router=router, attention_mask=mask)
        base.generate(input_ids=ids, attention_mask=mask, logits_processor=LogitsProcessorList([probe]), **GEN)
        torch.testing.assert_close(probe.alphas, out.alphas)


def test_a_padded_row_equals_its_prompt_alone_with_a_router_over_two_models():
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    guide = TARoGuide({"a": a, "b": b}, router=two_router())
    ids, mask = left_padded(PROMPTS)
    batch = guided(guide, base, ids, mask)
    for i, prompt in enumerate(PROMPTS):
        one_ids, one_mask = left_padded([prompt])
        alone = guided(guide, base, one_ids, one_mask)
        assert batch.sequences[i, ids.shape[1] :].tolist() == alone.sequences[0, one_ids.shape[1] :].tolist()
        torch.testing.assert_close(batch.alphas[i], alone.alphas[0], atol=1e-5, rtol=0)


def test_router_features_and_mixture_with_several_models():
    lb, r1, r2 = (torch.randn(3, VOCAB).log_softmax(-1) for _ in range(3))
    both = router_features(lb, [r1, r2], num_top_logprobs=2)
    assert both.shape[-1] == num_features(2, num_reward_models=2) == 2 * num_features(2)
    assert torch.equal(both, torch.cat([router_features(lb, r1, 2), router_features(lb, r2, 2)], -1))
    w = torch.tensor([[0.5, 2.0]] * 3)
    torch.testing.assert_close(mix(lb, [r1, r2], w), lb + 0.5 * r1 + 2.0 * r2)
    router = two_router()
    assert router.compute_alpha(lb, [r1, r2]).shape == (3, 2)
    with pytest.raises(ValueError, match="trained for 2 reward model"):
        router.compute_alpha(lb, r1)
    with pytest.raises(ValueError, match="geometric mixture is defined for one reward model"):
        TARoRouterConfig(vocab_size=VOCAB, num_reward_models=2, mixture="geometric")
    with pytest.raises(ValueError, match="geometric mixture is defined for one reward model"):
        mix(lb, [r1, r2], w, "geometric")
    old = TARoRouter(TARoRouterConfig(vocab_size=VOCAB))  # a router of one model: k = 1 of the same class
    assert old.config.num_reward_models == 1 and old.compute_alpha(lb, r1).shape == (3,)
    assert old.compute_alpha(lb, [r1]).shape == (3, 1)


def lora_adapter(folder, base_dir, seed):
    """A LoRA adapter (non-zero weights drawn from `seed`) over the base saved in `base_dir`."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(
        tiny_lm(seed=7), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    model.save_pretrained(folder)
    config_file = folder / "adapter_config.json"
    config_file.write_text(
        json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": str(base_dir)})
    )
    return folder


def two_lora_guide(tmp_path, method="taro"):
    base = tiny_lm(seed=7)
    base.save_pretrained(tmp_path / "base")
    adapters = {name: lora_adapter(tmp_path / name, tmp_path / "base", seed) for name, seed in (("a", 11), ("b", 12))}
    router = two_router() if method == "taro" else None
    alpha = {"a": 1.0, "b": 0.5}
    return base, TARoGuide({}, router=router, alpha=alpha, adapter_folder=adapters)


@pytest.mark.parametrize("kind", ["full", "lora"])
@pytest.mark.parametrize("method", ["taro", "genarm"])
def test_save_load_generate_is_token_identical(tmp_path, kind, method):
    ids, mask = left_padded(PROMPTS)
    if kind == "lora":
        base, guide = two_lora_guide(tmp_path, method)
    else:
        base = tiny_lm(seed=1)
        router = two_router() if method == "taro" else None
        guide = TARoGuide({"a": tiny_lm(seed=2), "b": tiny_lm(seed=3)}, router=router, alpha={"a": 1.0, "b": 0.5})
    before = guided(guide, base, ids, mask)
    guide.save_pretrained(tmp_path / "g")
    assert sorted(os.listdir(tmp_path / "g" / "reward_models")) == ["a", "b"]
    assert not (tmp_path / "g" / "reward_model").exists()
    config = json.loads((tmp_path / "g" / "guide_config.json").read_text())
    assert config["reward_models"] == ["a", "b"] and config["alpha"] == {"a": 1.0, "b": 0.5}
    card = (tmp_path / "g" / "README.md").read_text()
    assert "`a` (" in card and "`b` (" in card
    loaded = TARoGuide.from_pretrained(tmp_path / "g")
    assert loaded.reward_model_names == ["a", "b"] and loaded.method == method
    after = guided(loaded, base, ids, mask)
    assert torch.equal(before.sequences, after.sequences)
    torch.testing.assert_close(before.alphas, after.alphas)


@pytest.mark.parametrize("mode", list(MODES))
def test_fused_equals_the_processor_path_with_two_adapters(tmp_path, mode):
    base, guide = two_lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    fused = guided(guide, base, ids, mask, mode, fused=True)
    proc = guided(guide, base, ids, mask, mode, fused=False)
    assert (fused.decoding, proc.decoding) == ("fused", "processor")
    assert_same_decoding(fused, proc)
    torch.testing.assert_close(fused.alphas, proc.alphas, atol=1e-5, rtol=0)


def test_fused_with_a_reward_prompt_for_one_of_two_adapters(tmp_path):
    base, guide = two_lora_guide(tmp_path, method="genarm")
    ids, mask = left_padded(PROMPTS)
    r_ids, r_mask = left_padded([[1, 60, 61, 62, 63] + p[1:] for p in PROMPTS])
    prompts = dict(reward_input_ids=[None, r_ids], reward_attention_mask=[None, r_mask])
    fused = guided(guide, base, ids, mask, fused=True, **prompts)
    proc = guided(guide, base, ids, mask, fused=False, **prompts)
    assert_same_decoding(fused, proc)
    assert not torch.equal(fused.sequences, guided(guide, base, ids, mask, fused=True).sequences)


def test_fused_needs_every_reward_model_to_be_an_adapter(tmp_path):
    from transformers_taro import FusedNotApplicable

    base, lora = two_lora_guide(tmp_path, method="genarm")
    mixed = TARoGuide(
        {"a": tiny_lm(seed=3)}, alpha={"a": 1.0, "b": 1.0}, adapter_folder={"b": lora._rewards["b"].adapter}
    )
    ids, mask = left_padded(PROMPTS)
    with pytest.raises(FusedNotApplicable, match="not every reward model"):
        guided(mixed, base, ids, mask, fused=True)
    assert guided(mixed, base, ids, mask).decoding == "processor"


def test_fixed_and_only_give_the_baselines():
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    ids, mask = left_padded(PROMPTS)
    guide = TARoGuide({"a": a, "b": b}, router=two_router(), alpha={"a": 1.0, "b": 0.5})
    fixed = guide.fixed()
    assert fixed.method == "genarm" and fixed.alpha == {"a": 1.0, "b": 0.5}
    same = TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 0.5})
    assert torch.equal(guided(fixed, base, ids, mask).sequences, guided(same, base, ids, mask).sequences)
    only_b = guide.only("b")
    assert only_b.reward_model_names == ["b"] and only_b.alpha == 0.5 and only_b.method == "genarm"
    single = TARoGuide(b, alpha=0.5)
    assert torch.equal(guided(only_b, base, ids, mask).sequences, guided(single, base, ids, mask).sequences)
    assert guide.only("a", alpha=2.0).alpha == 2.0
    assert guide.fixed({"a": 0.0, "b": 1.0}).alpha == {"a": 0.0, "b": 1.0}


def test_a_mismatch_in_the_number_of_reward_models_is_refused(tmp_path):
    a, b = tiny_lm(seed=2), tiny_lm(seed=3)
    one = TARoRouter(TARoRouterConfig(vocab_size=VOCAB))
    with pytest.raises(ValueError, match=r"trained for 1 reward model\(s\), and 2 are given \(a, b\)"):
        TARoGuide({"a": a, "b": b}, router=one)
    with pytest.raises(ValueError, match=r"trained for 2 reward model\(s\)"):
        TARoGuide(a, router=two_router())
    with pytest.raises(ValueError, match=r"trained for 1 reward model\(s\), and 2 are given: use a router"):
        TARoProcessor([a, b], router=one)
    TARoGuide({"a": a, "b": b}, router=two_router()).save_pretrained(tmp_path / "g")
    one.save_pretrained(tmp_path / "g" / "router")  # a router of another guide put in its place
    with pytest.raises(ValueError, match=r"its router/ was trained for 1 reward model\(s\), and 2 are given \(a, b\)"):
        TARoGuide.from_pretrained(tmp_path / "g")
    one.save_pretrained(tmp_path / "one-router")
    TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 1.0}).save_pretrained(tmp_path / "fixed")
    with pytest.raises(ValueError, match=r"one-router was trained for 1 reward model\(s\), and 2 are given \(a, b\)"):
        load_guide(tmp_path / "fixed", router=str(tmp_path / "one-router"))


def test_bad_input_is_refused_with_what_to_change():
    a, b = tiny_lm(seed=2), tiny_lm(seed=3)
    with pytest.raises(ValueError, match=r"given more than once"):
        TARoGuideConfig(method="genarm", reward_models=["a", "a"], alpha={"a": 1.0})
    with pytest.raises(ValueError, match=r"given more than once"):
        named_reward_models(["a=/x", "a=/y"])
    with pytest.raises(ValueError, match=r"need a name each: pass name=path"):
        named_reward_models(["a=/x", "/y"])
    with pytest.raises(ValueError, match=r"weights for \['c'\], which the guide lacks"):
        TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match=r"no weight \(missing or null\) for \['b'\].*0 leaves one out"):
        TARoGuide({"a": a, "b": b}, alpha={"a": 1.0})
    with pytest.raises(ValueError, match=r"alpha must be >= 0"):
        TARoGuide({"a": a, "b": b}, alpha={"a": -1.0, "b": 0.0})
    with pytest.raises(ValueError, match=r"give one weight per model"):
        TARoGuide({"a": a, "b": b}, alpha=1.0)
    with pytest.raises(ValueError, match=r"names reward models, but the guide holds one"):
        TARoGuide(a, alpha={"a": 1.0})
    with pytest.raises(ValueError, match=r"do not share one vocabulary"):
        TARoGuide({"a": a, "b": tiny_lm(vocab=VOCAB + 500, seed=3)}, alpha={"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"names the folder"):
        TARoGuide({"a/../b": a}, alpha={"a/../b": 1.0})
    guide = TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"no reward model 'c'; its reward models are \['a', 'b'\]"):
        guide.only("c")
    with pytest.raises(ValueError, match=r"guide.reward_models\[name\]"):
        guide.reward_model  # noqa: B018
    with pytest.raises(ValueError, match=r"2 fixed weight\(s\) for 3 reward models"):
        TARoProcessor([a, b, a], alpha=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"alpha must be a finite number"):
        TARoProcessor([a, b], alpha=[1.0, float("nan")])


def test_different_tokenizers_are_refused_when_a_guide_loads(tmp_path):
    from test_processor import _word_tokenizer

    a, b = tiny_lm(seed=2), tiny_lm(seed=3)
    TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 1.0}).save_pretrained(tmp_path / "g")
    _word_tokenizer([f"w{i}" for i in range(VOCAB - 3)]).save_pretrained(tmp_path / "g" / "reward_models" / "a")
    _word_tokenizer([f"v{i}" for i in range(VOCAB - 3)]).save_pretrained(tmp_path / "g" / "reward_models" / "b")
    with pytest.raises(ValueError, match="different tokenizers, and a guide.s reward models share one vocabulary"):
        TARoGuide.from_pretrained(tmp_path / "g")


def test_reports_and_pictures_show_each_reward_models_weight(tiny_model_dir, tmp_path):
    from transformers_taro.cli import main
    from transformers_taro.generation import Generation
    from transformers_taro.visualize import AlphaScale, alpha_html, model_sections

    out = tmp_path / "eval"
    args = ["eval", "--task", "gsm8k", "--base_model", tiny_model_dir, "--limit", "2", "--max_new_tokens", "5"]
    pairs = ["--reward_model", f"arith={tiny_model_dir}", "--reward_model", f"compare={tiny_model_dir}"]
    main([*args, *pairs, "--alpha", "arith=1", "--alpha", "compare=0.25", "--output_dir", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["mean_alpha"] == {"arith": 1.0, "compare": 0.25} and report["method"] == "genarm"
    row = json.loads((out / "generations.jsonl").read_text().splitlines()[0])
    assert row["alphas"][0] == [1.0, 0.25] and row["mean_alpha"] == {"arith": 1.0, "compare": 0.25}
    main(
        [*args, *pairs, "--alpha", "arith=1", "--alpha", "compare=0.25", "--method", "genarm:compare"]
        + [
            "--output_dir",
            str(tmp_path / "only"),
        ]
    )
    assert json.loads((tmp_path / "only" / "report.json").read_text())["mean_alpha"] == 0.25
    with pytest.raises(SystemExit, match="name=weight for each reward model"):
        main([*args, *pairs, "--alpha", "arith=x", "--output_dir", str(tmp_path / "bad")])
    gen = Generation("a b", [5, 6], [[1.0, 0.2], [0.5, 0.7]], ["arith", "compare"])
    sections = model_sections("Q", ["a", " b"], gen)
    assert [s[0] for s in sections] == ["weight of arith: Q", "weight of compare: Q"]
    assert sections[1][2] == [0.2, 0.7]
    page = alpha_html(sections, AlphaScale.fit([s[2] for s in sections]))
    assert page.count("<h3>") == 2 and "weight of compare" in page


@pytest.mark.slow
def test_a_router_trained_with_two_reward_models_reloads_and_guides(tiny_model_dir, tmp_path):
    from transformers_taro.cli import main
    from transformers_taro.models import load_causal_lm, load_tokenizer

    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(8)))
    other = load_causal_lm(tiny_model_dir)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.save_pretrained(tmp_path / "other")
    load_tokenizer(tiny_model_dir).save_pretrained(tmp_path / "other")
    out = tmp_path / "router"
    main(
        ["train-router", "--base_model", tiny_model_dir, "--reward_model", f"same={tiny_model_dir}"]
        + ["--data", str(data), "--output_dir", str(out), "--reward_model", f"other={tmp_path / 'other'}"]
        + ["--max_steps", "4", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2", "--use_cpu"]
        + ["--report_to", "none", "--disable_tqdm", "true", "--cache_frozen_outputs", "--save_steps", "4"]
        + ["--use_reward_hidden_states", "--logging_steps", "1", "--outcome_weight", "0.1"]
        + ["--outcome_problems", "2", "--outcome_rollouts", "2", "--outcome_max_new_tokens", "4"]
        + ["--system_prompt", "Answer with the number."]
    )
    router = TARoRouter.from_pretrained(out)
    assert router.config.num_reward_models == 2 and router.config.use_reward_hidden_states
    history = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert any("alpha_mean_1" in log for log in history) and any("rollout_accuracy" in log for log in history)
    guide = TARoGuide.from_pretrained(out / "guide")
    assert guide.reward_model_names == ["same", "other"] and guide.method == "taro"
    assert guide.config.system_prompt == "Answer with the number."  # the traces' prompt format, recorded
    tok = load_tokenizer(tiny_model_dir)
    enc = tok(["Tom has 3 apples."], return_tensors="pt")
    result = guide.generate(load_causal_lm(tiny_model_dir), **enc, max_new_tokens=5, do_sample=False)
    assert result.shape[1] == enc["input_ids"].shape[1] + 5 and guide.alphas.shape == (1, 5, 2)


def test_a_guide_of_two_loads_from_the_offline_cache_and_pushes_with_its_card(tmp_path, monkeypatch, fake_hub):
    guide = TARoGuide({"a": tiny_lm(seed=2), "b": tiny_lm(seed=3)}, router=two_router(), alpha={"a": 1.0, "b": 0.5})
    guide.save_pretrained(tmp_path / "src")
    as_cached_hub_repo(tmp_path / "src", "org/two", tmp_path / "hub", monkeypatch)
    loaded = TARoGuide.from_pretrained("org/two", cache_dir=tmp_path / "hub", local_files_only=True)
    assert loaded.reward_model_names == ["a", "b"] and loaded.router.config.num_reward_models == 2
    loaded.push_to_hub("org/two-copy")
    assert {"guide_config.json", "reward_models", "router", "README.md"} <= set(fake_hub["files"])
    assert "`a` (causal LM), `b` (causal LM)" in fake_hub["texts"]["README.md"]


def test_nan_from_either_reward_model_is_refused():
    base, a, b = tiny_lm(seed=1), tiny_lm(seed=2), tiny_lm(seed=3)
    with torch.no_grad():
        b.lm_head.weight.fill_(float("nan"))
    ids, mask = left_padded(PROMPTS)
    with pytest.raises(ValueError, match="NaN/inf logits"):
        guided(TARoGuide({"a": a, "b": b}, alpha={"a": 1.0, "b": 0.5}), base, ids, mask)


def test_a_router_over_two_models_guides_a_wider_base():
    a, b = tiny_lm(seed=2), tiny_lm(seed=3)
    guide = TARoGuide({"a": a, "b": b}, router=two_router())
    ids, mask = left_padded(PROMPTS)
    for width in (32, 64):  # the router reads distributions only, never the base's hidden states
        out = guided(guide, tiny_lm(width=width, seed=5), ids, mask)
        assert out.alphas.shape == (2, 8, 2) and bool(torch.isfinite(out.alphas).all())

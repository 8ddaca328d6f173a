"""The fused path: one batched forward for a LoRA reward model and its base, exactly the processor path's output."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import VOCAB, left_padded, tiny_lm
from transformers import TextIteratorStreamer

from transformers_taro import TARoGuide, TARoRouter, TARoRouterConfig
from transformers_taro.fused import FusedNotApplicable

PROMPTS = [[1, 5, 9, 14, 3, 7], [1, 22, 8]]
GEN = dict(max_new_tokens=8, pad_token_id=0, eos_token_id=None, output_scores=True, return_dict_in_generate=True)
MODES = {
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True, top_k=0, temperature=0.9),
    "beams": dict(do_sample=False, num_beams=3, num_return_sequences=2),
}


def lora_guide(tmp_path, arch="llama", method="taro", hidden=False, seed=7):
    """A base saved to a folder, a LoRA adapter over it (non-zero weights) and a guide over the adapter."""
    from peft import LoraConfig, get_peft_model

    base = tiny_lm(arch, seed=seed)
    base.save_pretrained(tmp_path / "base")
    fan = {"fan_in_fan_out": True} if arch == "gpt2" else {}
    peft_model = get_peft_model(
        tiny_lm(arch, seed=seed),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **fan),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config_file.write_text(
        json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": str(tmp_path / "base")})
    )
    router = None
    if method == "taro":
        torch.manual_seed(1)
        router = TARoRouter(
            TARoRouterConfig(
                vocab_size=VOCAB,
                alpha_init=1.5,
                use_reward_hidden_states=hidden,
                reward_hidden_size=32 if hidden else None,
            )
        )
        with torch.no_grad():
            router.head.weight.normal_(0, 0.5)  # alpha that depends on the token
    guide = TARoGuide(
        None, router=router, alpha=0.8 if method == "genarm" else None, adapter_folder=tmp_path / "adapter"
    )
    return base, guide


def both_paths(base, guide, ids, mask, **kw):
    out = {}
    for fused in (True, False):
        torch.manual_seed(0)
        result = guide.generate(base, fused=fused, input_ids=ids, attention_mask=mask, **{**GEN, **kw})
        out[fused] = (result, guide.alphas.clone(), guide.last_path)
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_equals_the_processor_path(tmp_path, arch, mode):
    base, guide = lora_guide(tmp_path, arch)
    ids, mask = left_padded(PROMPTS)
    out = both_paths(base, guide, ids, mask, **MODES[mode])
    (fused, fused_alphas, path), (proc, proc_alphas, proc_path) = out[True], out[False]
    assert (path, proc_path) == ("fused", "processor")
    assert torch.equal(fused.sequences, proc.sequences)
    for a, b in zip(fused.scores, proc.scores):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a))
        torch.testing.assert_close(a[finite], b[finite], atol=1e-4, rtol=0)
    torch.testing.assert_close(fused_alphas, proc_alphas, atol=1e-5, rtol=0)
    assert guide._reward.loaded  # the processor path merged the adapter; the fused path alone never needs to


@pytest.mark.parametrize("method,hidden", [("genarm", False), ("taro", True)])
def test_fixed_alpha_and_a_router_reading_hidden_states(tmp_path, method, hidden):
    base, guide = lora_guide(tmp_path, method=method, hidden=hidden)
    ids, mask = left_padded(PROMPTS)
    out = both_paths(base, guide, ids, mask, do_sample=False)
    assert torch.equal(out[True][0].sequences, out[False][0].sequences)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=0)


def test_a_padded_row_equals_its_prompt_alone(tmp_path):
    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    together = guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    alone_ids = torch.tensor([PROMPTS[1]])
    alone = guide.generate(
        base, fused=True, input_ids=alone_ids, attention_mask=torch.ones_like(alone_ids), do_sample=False, **GEN
    )
    assert torch.equal(together.sequences[1, -8:], alone.sequences[0, -8:])


def test_alpha_zero_is_plain_generate(tmp_path):
    base, guide = lora_guide(tmp_path, method="genarm")
    ids, mask = left_padded(PROMPTS)
    out = guide.fixed(0.0).generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    plain = base.generate(ids, attention_mask=mask, do_sample=False, **GEN)
    assert torch.equal(out.sequences, plain.sequences)
    guided = guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert not torch.equal(guided.sequences, plain.sequences)  # and alpha 0.8 does change them


@pytest.mark.parametrize("mode", ["greedy", "beams"])
@pytest.mark.parametrize("reward_prompts", [[[1, 40, 41, 42, 43, 44, 45, 46, 47], [1, 50, 51]], [[1, 60], [1, 61]]])
def test_a_separate_reward_prompt(tmp_path, reward_prompts, mode):
    """Longer or shorter than the base's prompts: both halves are padded to one length, each with its own mask."""
    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    r_ids, r_mask = left_padded(reward_prompts)
    out = {}
    for fused in (True, False):
        result = guide.generate(
            base,
            fused=fused,
            input_ids=ids,
            attention_mask=mask,
            reward_input_ids=r_ids,
            reward_attention_mask=r_mask,
            **{**GEN, **MODES[mode]},
        )
        out[fused] = (result, guide.alphas.clone())
    assert guide.last_path == "processor"
    assert torch.equal(out[True][0].sequences, out[False][0].sequences)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=0)
    same_prompt = guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, **{**GEN, **MODES[mode]})
    assert not torch.equal(same_prompt.sequences, out[True][0].sequences)  # the reward prompt was really used


def test_streamer_and_stopping_criteria(tmp_path):
    from transformers import MaxLengthCriteria, StoppingCriteriaList

    base, guide = lora_guide(tmp_path)
    ids = torch.tensor([PROMPTS[0]])

    class Collect(TextIteratorStreamer):
        def __init__(self):
            self.tokens = []

        def put(self, value):
            self.tokens.append(value)

        def end(self):
            pass

    streamer = Collect()
    stop = StoppingCriteriaList([MaxLengthCriteria(max_length=ids.shape[1] + 5)])
    out = guide.generate(
        base,
        fused=True,
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        streamer=streamer,
        stopping_criteria=stop,
        max_new_tokens=20,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert out.shape[1] == ids.shape[1] + 5 and guide.alphas.shape == (1, 5)
    assert torch.equal(torch.cat([t.reshape(-1) for t in streamer.tokens]), out[0])  # prompt, then each token


def test_the_model_is_left_as_it_was(tmp_path):
    base, guide = lora_guide(tmp_path)
    ids = torch.tensor([PROMPTS[0]])
    before = base.generate(ids, do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=None)
    guide.generate(base, fused=True, input_ids=ids, do_sample=False, max_new_tokens=6, pad_token_id=0)
    after = base.generate(ids, do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=None)
    assert torch.equal(before, after)
    assert all("forward" not in vars(m) for m in base.modules())  # no patched forward left behind
    assert not base._forward_hooks and not base._forward_pre_hooks


def test_when_the_fused_path_does_not_apply(tmp_path):
    base, guide = lora_guide(tmp_path)
    ids = torch.tensor([PROMPTS[0]])
    kw = dict(input_ids=ids, do_sample=False, max_new_tokens=3, pad_token_id=0)
    other = tiny_lm(seed=8)  # same architecture, other weights: never assumed to be the adapter's base
    guide.generate(other, **kw)
    assert guide.last_path == "processor"
    with pytest.raises(FusedNotApplicable, match="differs from the adapter's base"):
        guide.generate(other, fused=True, **kw)
    full = TARoGuide(tiny_lm(seed=2), alpha=1.0)
    with pytest.raises(FusedNotApplicable, match="not a LoRA adapter"):
        full.generate(base, fused=True, **kw)
    guide.generate(base, fused=False, **kw)
    assert guide.last_path == "processor"


def test_gpt2_conv1d_adapters_are_refused_clearly(tmp_path):
    base, guide = lora_guide(tmp_path, arch="gpt2")
    ids = torch.tensor([PROMPTS[0]])
    with pytest.raises(FusedNotApplicable, match="fan_in_fan_out"):
        guide.generate(base, fused=True, input_ids=ids, max_new_tokens=3, pad_token_id=0)
    guide.generate(base, input_ids=ids, max_new_tokens=3, pad_token_id=0)  # automatic: the processor path
    assert guide.last_path == "processor"


def repeated_bigrams(row: list[int]) -> int:
    pairs = list(zip(row, row[1:]))
    return len(pairs) - len(set(pairs))


def test_a_repetition_guard_holds_for_the_guided_distribution_on_both_paths(tmp_path):
    """`no_repeat_ngram_size` blocks through the mixture: the base's -inf stays -inf whatever the reward model says."""
    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    loose = both_paths(base, guide, ids, mask, max_new_tokens=40)
    assert any(repeated_bigrams(row) for row in loose[False][0].sequences.tolist())  # a tiny model loops
    guarded = both_paths(base, guide, ids, mask, max_new_tokens=40, no_repeat_ngram_size=2)
    assert torch.equal(guarded[True][0].sequences, guarded[False][0].sequences)
    for row, m in zip(guarded[True][0].sequences.tolist(), mask.tolist()):
        assert repeated_bigrams(row[m.count(0) :]) == 0  # padding aside


@pytest.mark.parametrize("bias", [False, True])
def test_the_output_layer_kernel_equals_linear(bias):
    from transformers_taro.fused import onednn_applies, onednn_forward

    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 300, bias=bias)
    if not onednn_applies(layer):
        pytest.skip("this torch build has no oneDNN")
    x = torch.randn(2, 3, 24)[:, -1:]  # as the output layer reads it: the last position of each row
    with torch.no_grad():
        expected = layer(x)
        got = onednn_forward(layer)(x)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    assert onednn_forward(layer)(x).grad_fn is not None  # with gradients wanted, it is nn.Linear's own
    assert not onednn_applies(layer.to(torch.bfloat16))


def test_the_fused_forward_runs_the_output_layer_through_onednn(tmp_path, monkeypatch):
    from transformers_taro import fused

    base, guide = lora_guide(tmp_path)
    if not fused.onednn_applies(base.get_output_embeddings()):
        pytest.skip("this torch build has no oneDNN")
    calls = []
    real = fused.onednn_forward

    def counting(layer):
        forward = real(layer)
        return lambda x: calls.append(x.shape[0]) or forward(x)

    monkeypatch.setattr(fused, "onednn_forward", counting)
    ids = torch.tensor([PROMPTS[0]])
    guide.generate(base, fused=True, input_ids=ids, do_sample=False, max_new_tokens=3, pad_token_id=0)
    assert calls == [2, 2, 2]  # base and reward rows, once per step
    assert "forward" not in vars(base.get_output_embeddings())


def test_the_output_layer_kernel_falls_back_when_onednn_refuses(monkeypatch):
    from transformers_taro.fused import onednn_forward

    layer = torch.nn.Linear(8, 5)
    forward = onednn_forward(layer)

    def refuse(*args):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", refuse, raising=False)
    x = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(forward(x), layer(x))


def test_a_device_map_auto_model_decodes_and_fused_none_never_raises(tmp_path):
    """`device_map="auto"` on a CPU-only machine places the whole model on the CPU (no accelerate hooks): the fused
    path applies, and its tokens are the processor path's."""
    from transformers import AutoModelForCausalLM

    _, guide = lora_guide(tmp_path)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", device_map="auto").eval()
    ids, mask = left_padded(PROMPTS)
    out = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    proc = guide.generate(base, fused=False, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert out.decoding in ("fused", "processor") and torch.equal(out.sequences, proc.sequences)


def test_accelerate_hooks_make_fused_none_fall_back_and_fused_true_refuse(tmp_path):
    from accelerate import cpu_offload

    from transformers_taro import FusedNotApplicable

    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    want = guide.generate(base, fused=False, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    cpu_offload(base, execution_device=torch.device("cpu"))  # weights offloaded, put back by hooks at each forward
    out = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert out.decoding == "processor" and torch.equal(out.sequences, want.sequences)
    with pytest.raises(FusedNotApplicable, match="accelerate hooks"):
        guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)


def test_the_verdict_is_checked_again_when_the_weights_change(tmp_path):
    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    assert guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN).decoding == "fused"
    other = tiny_lm(seed=99).state_dict()
    base.load_state_dict(other)  # in place: the same model object, other weights
    out = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert out.decoding == "processor"  # not the adapter's base any more


def test_an_adapter_saved_as_bin_falls_back(tmp_path):
    base, guide = lora_guide(tmp_path)
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    torch.save(weights, tmp_path / "adapter" / "adapter_model.bin")
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    ids, mask = left_padded(PROMPTS)
    from transformers_taro import FusedNotApplicable

    with pytest.raises(FusedNotApplicable, match="adapter_model.safetensors"):
        guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    fallback = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert fallback.decoding == "processor"  # peft reads the .bin: the processor path decodes with the adapter


@pytest.mark.parametrize("fused", [None, False])
def test_two_threads_sharing_a_guide_get_their_own_weights(tmp_path, fused):
    """Each call's weights come back with its output (`out.alphas`), and `guide.alphas` is per thread, on both
    paths (the fused one decodes one call at a time per model)."""
    import threading

    base, guide = lora_guide(tmp_path)
    prompts = {"short": [[1, 22, 8]], "long": [[1, 5, 9, 14, 3, 7]]}
    alone = {}
    for name, rows in prompts.items():
        ids = torch.tensor(rows)
        alone[name] = guide.generate(base, fused=fused, input_ids=ids, do_sample=False, **{**GEN, "max_new_tokens": 6})
        alone[name] = alone[name].alphas
    assert not torch.equal(alone["short"], alone["long"])
    got, errors = {}, []

    def worker(name: str) -> None:
        try:
            for _ in range(3):
                ids = torch.tensor(prompts[name])
                out = guide.generate(base, fused=fused, input_ids=ids, do_sample=False, **{**GEN, "max_new_tokens": 6})
                got.setdefault(name, []).append((out.alphas.clone(), guide.alphas.clone()))
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(name,)) for name in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, results in got.items():
        for returned, last in results:
            torch.testing.assert_close(returned, alone[name], atol=1e-5, rtol=0)
            torch.testing.assert_close(last, alone[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("extra", [{"lora_bias": True}, {"trainable_token_indices": [3, 5, 7]}])
def test_adapter_parts_the_delta_does_not_describe_fall_back(tmp_path, extra):
    """lora_bias adds B's bias, trainable_token_indices changes embedding rows: the fused path, which implements
    only scale · B A x, refuses them, and the default decodes with the processor path (the merged adapter)."""
    from peft import LoraConfig, get_peft_model

    from transformers_taro import FusedNotApplicable

    base = tiny_lm(seed=7)
    base.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(
        tiny_lm(seed=7), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **extra)
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "base")}))
    guide = TARoGuide(None, alpha=1.0, adapter_folder=tmp_path / "adapter")
    ids, mask = left_padded(PROMPTS)
    with pytest.raises(FusedNotApplicable, match=next(iter(extra))):
        guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    out = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert out.decoding == "processor"
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(tiny_lm(seed=7), tmp_path / "adapter").eval()  # as peft runs the folder
    if "trainable_token_indices" in extra:
        reloaded = reloaded.merge_and_unload()  # peft's wrapper of the embedding lacks what generate reads
    reference = TARoGuide(reloaded, alpha=1.0)
    want = reference.generate(base, fused=False, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert torch.equal(out.sequences, want.sequences)


def test_without_private_torch_the_fused_path_decodes_the_same_tokens(tmp_path, monkeypatch):
    """`TARO_NO_PRIVATE_TORCH=1`: no version counters, no oneDNN output layer; the same tokens, still fused, and a
    change of weights is still seen (every call compares them)."""
    from transformers_taro import fused

    base, guide = lora_guide(tmp_path)
    ids, mask = left_padded(PROMPTS)
    want = guide.generate(base, fused=True, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    monkeypatch.setenv(fused.PRIVATE_TORCH_ENV, "1")
    assert not fused.private_torch("version") and not fused.private_torch("onednn")
    assert not fused.onednn_applies(base.get_output_embeddings())
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: pytest.fail("private op"), raising=False)
    got = guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN)
    assert got.decoding == "fused" and torch.equal(got.sequences, want.sequences)
    base.load_state_dict(tiny_lm(seed=99).state_dict())
    assert guide.generate(base, input_ids=ids, attention_mask=mask, do_sample=False, **GEN).decoding == "processor"

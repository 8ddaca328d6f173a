"""Bad input and faults get a clear error that says what to change (issue: multi-process runs and faults)."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import VOCAB, tiny_lm

from transformers_taro import TARoGuide, TARoProcessor, TARoRouter, TARoRouterConfig
from transformers_taro.data import load_rows
from transformers_taro.guide import load_guide


def saved_router(folder, **config):
    TARoRouter(TARoRouterConfig(vocab_size=VOCAB, **config)).save_pretrained(folder)
    return folder


def test_a_folder_that_is_not_a_router_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        TARoRouter.from_pretrained(empty)
    tiny_lm().save_pretrained(tmp_path / "rm")
    with pytest.raises(ValueError, match="holds a 'llama' model, not a TARo router"):
        TARoRouter.from_pretrained(tmp_path / "rm")
    router = saved_router(tmp_path / "router")
    os.remove(router / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        TARoRouter.from_pretrained(router)


@pytest.mark.parametrize("keep", [0, 100])
def test_truncated_router_weights_are_named(tmp_path, keep):
    router = saved_router(tmp_path / "router")
    weights = router / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    with pytest.raises(ValueError, match="model.safetensors is corrupt or truncated"):
        TARoRouter.from_pretrained(router)


@pytest.mark.parametrize("edit", [{"router_hidden_size": 32}, {"num_top_logprobs": 2}, {"router_layers": 3}])
def test_a_router_config_edited_to_other_shapes_is_refused(tmp_path, edit):
    import json

    router = saved_router(tmp_path / "router")
    config = json.loads((router / "config.json").read_text())
    (router / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ValueError, match="config.json does not match model.safetensors"):
        TARoRouter.from_pretrained(router)
    (router / "config.json").write_text(json.dumps({**config, "alpha_max": 8.0}))  # same shapes: loads
    assert TARoRouter.from_pretrained(router).config.alpha_max == 8.0


@pytest.mark.parametrize("router", [False, True])
def test_a_base_with_another_vocabulary_is_refused_before_decoding(router):
    guide = TARoGuide(
        tiny_lm(seed=2),
        router=TARoRouter(TARoRouterConfig(vocab_size=VOCAB)) if router else None,
        alpha=None if router else 1.0,
    )
    other = tiny_lm(vocab=VOCAB + 2000, seed=7)
    with pytest.raises(
        ValueError, match=f"vocabulary of {VOCAB} tokens, the model it is asked to guide {VOCAB + 2000}"
    ):
        guide.generate(other, input_ids=torch.tensor([[1, 5, 9]]), max_new_tokens=2, pad_token_id=0)
    padded = tiny_lm(vocab=VOCAB + 32, seed=7)  # embedding padding rows are fine
    assert guide.generate(padded, input_ids=torch.tensor([[1, 5, 9]]), max_new_tokens=2, pad_token_id=0).shape == (1, 5)


def test_a_router_with_nan_weights_is_refused_while_decoding():
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB))
    with torch.no_grad():
        router.head.bias.fill_(float("nan"))
    guide = TARoGuide(tiny_lm(seed=2), router=router)
    with pytest.raises(ValueError, match="NaN/inf alpha"):
        guide.generate(tiny_lm(seed=7), input_ids=torch.tensor([[1, 5, 9]]), max_new_tokens=2, pad_token_id=0)


def test_the_router_checks_both_vocabularies():
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB))
    small = torch.randn(1, VOCAB).log_softmax(-1)
    with pytest.raises(ValueError, match="reward model's has 5000"):
        router.compute_alpha(small, torch.randn(1, 5000).log_softmax(-1))
    with pytest.raises(ValueError, match="base model's has 5000"):
        router.compute_alpha(torch.randn(1, 5000).log_softmax(-1), small)
    padded = torch.randn(1, VOCAB + 32).log_softmax(-1)  # embedding padding rows are fine
    assert router.compute_alpha(small, padded).shape == (1,)


def test_paths_that_do_not_exist_are_named_before_anything_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_guide(reward_model=str(tmp_path / "nonexistent"), alpha=1.0)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        TARoRouter.from_pretrained("./no/router/here")
    with pytest.raises(FileNotFoundError, match="no such file .*not a Hub dataset id"):
        load_rows("data/nope.jsonl")


@pytest.mark.parametrize("alpha,message", [(-3.0, "negative weight inverts"), (1e40, "does not fit a float32")])
def test_alphas_the_processor_cannot_use(alpha, message):
    with pytest.raises(ValueError, match=message):
        TARoProcessor(tiny_lm(), alpha=alpha)


def test_zero_training_steps_are_refused(tmp_path):
    from transformers_taro.training import RewardModelConfig, RouterTrainingConfig

    for config in (RewardModelConfig, RouterTrainingConfig):
        with pytest.raises(ValueError, match="--max_steps must be positive"):
            config(output_dir=str(tmp_path), max_steps=0)
    assert RouterTrainingConfig(output_dir=str(tmp_path), max_steps=-1).max_steps == -1  # "train by epochs"


def test_masks_that_cannot_be_this_batchs_are_refused():
    from conftest import left_padded

    base, rm = tiny_lm(seed=7), tiny_lm(seed=2)
    ids, mask = left_padded([[1, 5, 9, 14, 3, 7], [1, 22, 8]])
    kw = dict(max_new_tokens=2, pad_token_id=0, do_sample=False)

    def run(ids, mask):
        proc = TARoProcessor(rm, alpha=1.0, attention_mask=mask, pad_token_id=0)
        base.generate(ids, attention_mask=mask, logits_processor=[proc], **kw)

    other = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])  # same shape, another batch's
    with pytest.raises(ValueError, match="hides non-padding tokens of row 1"):
        TARoProcessor(rm, alpha=1.0, attention_mask=other, pad_token_id=0)(ids, torch.randn(2, VOCAB))
    with pytest.raises(ValueError, match="1 rows for 2 different prompts"):
        TARoProcessor(rm, alpha=1.0, attention_mask=mask[:1], pad_token_id=0)(ids, torch.randn(2, VOCAB))
    empty = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="Row 1 of the batch is an empty prompt"):
        TARoProcessor(rm, alpha=1.0, attention_mask=empty, pad_token_id=0)(ids, torch.randn(2, VOCAB))
    run(ids, mask)  # the right mask still works
    beams = dict(num_beams=2, num_return_sequences=2)  # generate's own expansion: one mask row per prompt is right
    proc = TARoProcessor(rm, alpha=1.0, attention_mask=mask, pad_token_id=0)
    out = base.generate(ids, attention_mask=mask, logits_processor=[proc], **kw, **beams)
    assert out.shape[0] == 4


def test_a_save_killed_over_an_older_router_never_loads_new_weights_under_the_old_config(tmp_path, monkeypatch):
    from transformers_taro import files as common

    folder = saved_router(tmp_path / "router", alpha_max=4.0)
    newer = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, alpha_max=8.0))
    real_replace = os.replace

    def killed_before_the_config(src, dst):
        if str(dst).endswith("config.json"):
            raise KeyboardInterrupt  # the process dies between the weights and the config
        real_replace(src, dst)

    monkeypatch.setattr(common.os, "replace", killed_before_the_config)
    with pytest.raises(KeyboardInterrupt):
        common.atomic_save(newer.save_pretrained, folder)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TARoRouter.from_pretrained(folder)
    common.atomic_save(newer.save_pretrained, folder)  # saving again completes it
    assert TARoRouter.from_pretrained(folder).config.alpha_max == 8.0


def test_token_ids_beyond_the_reward_vocabulary_are_named():
    base, reward = tiny_lm(vocab=VOCAB + 16, seed=7), tiny_lm(vocab=VOCAB, seed=2)  # within padding: not refused
    guide = TARoGuide(reward, alpha=1.0)
    with pytest.raises(ValueError, match=f"Token id {VOCAB + 3} is beyond the reward model's vocabulary"):
        guide.generate(base, input_ids=torch.tensor([[1, 5, VOCAB + 3]]), max_new_tokens=2, pad_token_id=0)


def test_unmasked_batches_are_refused_unless_padding_can_be_ruled_out():
    """No mask: a pad id (given, the tokenizer's, or the reward model's generation config's) finds left padding;
    with none of them a batch of several rows is refused, since a padded row would be read with its padding."""
    from conftest import left_padded

    base, rm = tiny_lm(seed=7), tiny_lm(seed=2)
    ids, _ = left_padded([[1, 5, 9, 14, 3, 7], [1, 22, 8]])
    kw = dict(max_new_tokens=2, pad_token_id=0, do_sample=False)
    with pytest.raises(ValueError, match="left-padded but TARoProcessor got no attention_mask"):
        base.generate(ids, logits_processor=[TARoProcessor(rm, alpha=1.0)], **kw)  # pad id from rm's config
    rm.generation_config.pad_token_id = None  # as for many Llama-3-style models
    with pytest.raises(ValueError, match="padding cannot be ruled out"):
        base.generate(ids, logits_processor=[TARoProcessor(rm, alpha=1.0)], **kw)
    with pytest.raises(ValueError, match="left-padded"):
        base.generate(ids, logits_processor=[TARoProcessor(rm, alpha=1.0, pad_token_id=0)], **kw)
    base.generate(ids[:1, 3:], logits_processor=[TARoProcessor(rm, alpha=1.0)], **kw)  # one row: nothing to pad


def test_a_hub_id_offline_fails_naming_the_offline_default(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from transformers_taro.defaults import DEFAULT_MODEL_DESCRIPTION, describe_model
    from transformers_taro.models import resolve

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="'default' is the embedded SmolLM2-135M-Instruct \\(Q4_1 GGUF"):
        resolve("HuggingFaceTB/SmolLM2-135M-Instruct")  # the Hub's weights, never silently the GGUF
    assert describe_model(None) == describe_model("default") == DEFAULT_MODEL_DESCRIPTION
    assert describe_model("org/model") == "org/model"


def test_an_out_of_range_alpha_is_refused_before_anything_loads(tmp_path):
    from transformers_taro.cli import main

    missing = str(tmp_path / "no-such-guide")  # would fail later, when loading: the alpha is checked first
    for alpha in ("1e39", "-1", "nan"):
        with pytest.raises(SystemExit, match="alpha"):
            main(["eval", "--task", "gsm8k", "--guide", missing, "--alpha", alpha, "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_masks_that_expose_padding_or_do_not_cover_the_prompt_are_refused():
    from conftest import left_padded

    rm = tiny_lm(seed=2)
    ids, mask = left_padded([[1, 5, 9, 14, 3, 7], [1, 22, 8]])
    exposing = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]])  # marks a leading pad id as a token
    with pytest.raises(ValueError, match="marks padding of row 1"):
        TARoProcessor(rm, alpha=1.0, attention_mask=exposing, pad_token_id=0)(ids, torch.randn(2, VOCAB))
    with pytest.raises(ValueError, match="covers 4 tokens but the prompt has 6"):  # shorter: padding read as tokens
        TARoProcessor(rm, alpha=1.0, attention_mask=mask[:, 2:], pad_token_id=0)(ids, torch.randn(2, VOCAB))
    longer = torch.cat([torch.zeros(2, 2, dtype=torch.long), mask], dim=1)
    for pad in (0, None):  # with the pad id known too (the path that checks masked tokens)
        with pytest.raises(ValueError, match="covers 8 tokens but the prompt has 6"):
            TARoProcessor(rm, alpha=1.0, attention_mask=longer, pad_token_id=pad)(ids, torch.randn(2, VOCAB))


@pytest.mark.parametrize("fused", [False, True])
def test_the_fused_path_refuses_what_the_processor_path_refuses(tmp_path, fused):
    from test_fused import lora_guide

    base, guide = lora_guide(tmp_path)
    ids = torch.tensor([[0, 0, 1, 5, 9], [1, 22, 8, 4, 6]])
    kw = dict(max_new_tokens=2, do_sample=False, pad_token_id=0)
    with pytest.raises(ValueError, match="left-padded but TARoProcessor got no attention_mask"):
        guide.generate(base, fused=fused, input_ids=ids, **kw)
    with pytest.raises(ValueError, match="empty prompt"):
        mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
        guide.generate(base, fused=fused, input_ids=ids, attention_mask=mask, **kw)
    with pytest.raises(ValueError, match="prompt is empty"):
        guide.generate(base, fused=fused, input_ids=torch.zeros(1, 0, dtype=torch.long), **kw)
    if not fused:  # fused=None with embeddings: refused clearly, not a size mismatch inside generate
        embeds = base.get_input_embeddings()(ids[1:])
        with pytest.raises(ValueError, match="inputs_embeds cannot be guided"):
            guide.generate(base, inputs_embeds=embeds, **kw)


def test_reward_vocabularies_beyond_embedding_padding_are_refused():
    from transformers_taro.vocabulary import check_vocabulary_sizes

    base = tiny_lm(seed=1)
    ids = torch.tensor([[1, 5, 9]])
    for rm_vocab in (2000, 500):  # 1904 or 404 rows more than a 96-token base: another vocabulary
        proc = TARoProcessor(tiny_lm(vocab=rm_vocab, seed=2), alpha=1.0)
        with pytest.raises(ValueError, match="do not share one vocabulary"):
            base.generate(ids, logits_processor=[proc], max_new_tokens=2, do_sample=False, pad_token_id=0)
        guide = TARoGuide(tiny_lm(vocab=rm_vocab, seed=2), alpha=1.0)
        with pytest.raises(ValueError, match="guided decoding needs one vocabulary"):
            guide.generate(base, input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
    check_vocabulary_sizes(151936, 151665)  # Qwen2's padding, tokenizers unknown: fine
    check_vocabulary_sizes(VOCAB + 32, VOCAB)

    class Tok:  # what the rule reads of a tokenizer: its real vocabulary
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    check_vocabulary_sizes(128, 100, Tok(100), Tok(100))  # the extra rows lie beyond both tokenizers
    with pytest.raises(ValueError, match="120 real tokens"):
        check_vocabulary_sizes(128, 100, Tok(120), Tok(120))


def test_a_reward_tokenizer_of_the_same_size_in_another_order_is_refused(tmp_path):
    """Same vocabulary size, another token order: only the tokenizers tell, and the evaluation session passes its
    base's tokenizer to the guide, which compares it with the guide's own."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from transformers_taro.evaluation.session import Session

    words = ["<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(VOCAB - 3)]

    def tokenizer(order):
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(order)}, unk_token="<pad>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", padding_side="left")

    base_tok = tokenizer(words)
    rm_tok = tokenizer(words[:3] + list(reversed(words[3:])))
    guide = TARoGuide(tiny_lm(seed=2), alpha=1.0, tokenizer=rm_tok)
    session = Session(tiny_lm(seed=1), base_tok, guide)
    with pytest.raises(ValueError, match="tokenizers differ"):
        session.generate(["w1 w2 w3"], max_new_tokens=2)
    same = Session(tiny_lm(seed=1), base_tok, TARoGuide(tiny_lm(seed=2), alpha=1.0, tokenizer=tokenizer(words)))
    assert len(same.generate(["w1 w2 w3"], max_new_tokens=2)) == 1


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "is empty"),
        ('{"method": "taro", "alp', "is not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('"taro"', "holds a JSON str"),
        ('{"method": "genarm", "alpha": "abc"}', "alpha must be a number, got 'abc'"),
    ],
)
def test_a_broken_guide_config_is_named_with_what_is_wrong(tmp_path, text, message):
    TARoGuide(tiny_lm(seed=2), alpha=0.5).save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "guide_config.json").write_text(text)
    with pytest.raises(ValueError, match="guide_config.json") as err:
        TARoGuide.from_pretrained(tmp_path / "g")
    assert message in str(err.value)


def test_an_empty_reward_model_folder_and_a_missing_adapter_base_are_named(tmp_path):
    import json
    import shutil

    from test_fused import lora_guide

    TARoGuide(tiny_lm(seed=2), alpha=0.5).save_pretrained(tmp_path / "g")
    shutil.rmtree(tmp_path / "g" / "reward_model")
    (tmp_path / "g" / "reward_model").mkdir()
    with pytest.raises(FileNotFoundError, match="reward_model/ is empty or incomplete"):
        TARoGuide.from_pretrained(tmp_path / "g")

    _, guide = lora_guide(tmp_path / "lora")
    guide.save_pretrained(tmp_path / "lg")
    config_file = tmp_path / "lg" / "reward_model" / "adapter_config.json"
    for base in (str(tmp_path / "gone"), "some-org/not-cached", "relative/from/elsewhere/base"):
        config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": base}))
        with pytest.raises(FileNotFoundError, match="base_model_name_or_path="):
            TARoGuide.from_pretrained(tmp_path / "lg")


def test_a_truncated_router_config_is_named(tmp_path):
    folder = saved_router(tmp_path / "router")
    (folder / "config.json").write_text('{"model_type": "taro_rou')
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        TARoRouter.from_pretrained(folder)


@pytest.mark.slow
def test_unusual_prompts_decode_on_both_paths(tiny_model_dir):
    """Emoji, CJK, a NUL character and a 20,000-character prompt: tokenized and guided like any other."""
    from transformers_taro.evaluation.session import Session
    from transformers_taro.models import load_causal_lm, load_tokenizer

    base, tok = load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)
    guide = TARoGuide(load_causal_lm(tiny_model_dir), alpha=1.0)
    prompts = ["How many 🍎 are left? 🙂", "小明有3个苹果。", "a\x00b", "Tom has 3 apples. " * 1112]
    for fused in (None, False):
        out = Session(base, tok, guide, fused=fused).generate(prompts, max_new_tokens=3)
        assert len(out) == 4 and all(len(g.alphas) == len(g.token_ids) for g in out)

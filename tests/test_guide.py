"""`TARoGuide`: one folder for a reward model and a router (or a fixed alpha); it decodes exactly as the processor."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from conftest import VOCAB, as_cached_hub_repo, left_padded, tiny_lm
from transformers import LogitsProcessorList

from transformers_taro import TARoGuide, TARoGuideConfig, TARoProcessor, TARoRouter, TARoRouterConfig
from transformers_taro.guide import load_guide

PROMPTS = [[1, 5, 9, 14, 3, 7], [1, 22, 8]]
GEN = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)


def lora_reward_model(base_seed: int = 7):
    """A LoRA adapter over a copy of the base, with non-zero weights so it changes the distribution."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_lm(seed=base_seed), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    return model.eval()


def router():
    torch.manual_seed(1)
    r = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, alpha_init=1.5))
    with torch.no_grad():
        r.head.weight.normal_(0, 0.5)  # a router whose alpha depends on the token
    return r


def by_hand(base, rm, ids, mask, **kw):
    proc = TARoProcessor(rm, attention_mask=mask, **kw)
    out = base.generate(ids, attention_mask=mask, logits_processor=LogitsProcessorList([proc]), **GEN)
    return out, proc.alphas


@pytest.mark.parametrize("kind", ["full", "lora"])
@pytest.mark.parametrize("method", ["taro", "genarm"])
def test_save_load_generate_equals_the_processor_by_hand(tmp_path, kind, method):
    base = tiny_lm(seed=7)
    if kind == "full":
        rm = tiny_lm(seed=2)
    else:
        adapter = tmp_path / "adapter"
        peft_model = lora_reward_model()
        peft_model.save_pretrained(adapter)
        (adapter / "checkpoint-3").mkdir()  # as a training folder has: not part of the guide
        # As a user's adapter folder names its base: here a local folder with the base's weights.
        tiny_lm(seed=7).save_pretrained(tmp_path / "lora-base")
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(
            json.dumps({**cfg, "base_model_name_or_path": str(tmp_path / "lora-base")})
        )
        rm = peft_model.merge_and_unload()
    r = router() if method == "taro" else None
    alpha = 0.7 if method == "genarm" else None
    guide = TARoGuide(rm, router=r, alpha=alpha, adapter_folder=adapter if kind == "lora" else None)
    guide.save_pretrained(tmp_path / "guide")
    files = set(os.listdir(tmp_path / "guide"))
    assert {"guide_config.json", "reward_model", "README.md"} <= files
    assert ("router" in files) == (method == "taro")
    assert os.path.isfile(
        tmp_path / "guide" / "reward_model" / ("adapter_config.json" if kind == "lora" else "model.safetensors")
    )
    assert not os.path.exists(tmp_path / "guide" / "reward_model" / "checkpoint-3")

    loaded = TARoGuide.from_pretrained(tmp_path / "guide")
    assert loaded.method == method
    ids, mask = left_padded(PROMPTS)
    out = loaded.generate(base, input_ids=ids, attention_mask=mask, **GEN)
    want, want_alphas = by_hand(base, rm, ids, mask, router=r, alpha=alpha)
    assert torch.equal(out, want)
    torch.testing.assert_close(loaded.alphas, want_alphas, atol=1e-6, rtol=0)
    plain = base.generate(ids, attention_mask=mask, **GEN)
    assert not torch.equal(out, plain)  # the guide really guided


def test_fixed_gives_genarm_at_the_recorded_alpha(tmp_path):
    base, rm = tiny_lm(seed=7), tiny_lm(seed=2)
    guide = TARoGuide(rm, router=router(), alpha=0.4)
    assert guide.method == "taro" and guide.alpha == 0.4
    fixed = guide.fixed()
    assert fixed.method == "genarm" and fixed.router is None and fixed.reward_model is rm
    ids, mask = left_padded(PROMPTS)
    fixed.generate(base, input_ids=ids, attention_mask=mask, **GEN)
    assert torch.all(fixed.alphas == 0.4)
    assert guide.fixed(2.0).alpha == 2.0
    with pytest.raises(ValueError, match="records no fixed alpha"):
        TARoGuide(rm, router=router()).fixed()


def test_generate_keeps_other_processors_and_the_alphas_per_call():
    from transformers import MinLengthLogitsProcessor

    base, rm = tiny_lm(seed=7), tiny_lm(seed=2)
    guide = TARoGuide(rm, alpha=1.0)
    ids, mask = left_padded(PROMPTS)
    extra = LogitsProcessorList([MinLengthLogitsProcessor(ids.shape[1] + 8, eos_token_id=2)])
    guide.generate(base, input_ids=ids, attention_mask=mask, logits_processor=extra, **GEN)
    assert guide.alphas.shape == (2, 8)
    guide.generate(base, input_ids=ids[:1], attention_mask=mask[:1], **{**GEN, "max_new_tokens": 3})
    assert guide.alphas.shape == (1, 3)  # the last call's, not a mix


def test_save_replaces_an_old_guide_as_a_whole(tmp_path):
    rm = tiny_lm(seed=2)
    TARoGuide(rm, router=router()).save_pretrained(tmp_path / "g")
    TARoGuide(rm, alpha=0.5).save_pretrained(tmp_path / "g")  # over a TARo guide: no stale router/ left
    assert not (tmp_path / "g" / "router").exists()
    assert TARoGuide.from_pretrained(tmp_path / "g").method == "genarm"
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no scratch folders left behind


def test_save_never_deletes_what_the_user_had_in_the_folder(tmp_path):
    rm = tiny_lm(seed=2)
    out = tmp_path / "out"
    (out / "checkpoint-100").mkdir(parents=True)
    (out / "checkpoint-100" / "state.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    guide = TARoGuide(rm, router=router())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        guide.save_pretrained(out)
    assert sorted(os.listdir(out)) == ["checkpoint-100", "notes.txt"]  # refused before writing anything
    guide.save_pretrained(out, overwrite=True)  # the guide's entries beside the user's files
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoint-100" / "state.json").is_file()
    TARoGuide(rm, alpha=0.5).save_pretrained(out)  # a guide folder now: its own entries are replaced
    assert (out / "notes.txt").read_text() == "mine" and not (out / "router").exists()
    assert TARoGuide.from_pretrained(out).method == "genarm"


def test_save_refuses_a_file_and_the_working_directory(tmp_path, monkeypatch):
    guide = TARoGuide(tiny_lm(seed=2), alpha=0.5)
    (tmp_path / "a-file").write_text("keep")
    with pytest.raises(FileExistsError, match="is a file"):
        guide.save_pretrained(tmp_path / "a-file")
    assert (tmp_path / "a-file").read_text() == "keep"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for target in (".", str(tmp_path)):
        with pytest.raises(ValueError, match="working directory"):
            guide.save_pretrained(target, overwrite=True)
    assert os.getcwd() == str(work) and os.listdir(work) == []


def test_a_guide_saved_beside_or_onto_its_own_adapter_keeps_it(tmp_path):
    """The adapter a guide reads from is never deleted by saving: beside it (`out/rm`) or onto it (`out`)."""
    from peft import LoraConfig, get_peft_model

    base = tiny_lm(seed=7)
    base.save_pretrained(tmp_path / "base")
    adapter = tmp_path / "out" / "rm"
    peft_model = get_peft_model(tiny_lm(seed=7), LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(tmp_path / "base")})
    )
    guide = TARoGuide(None, alpha=0.5, adapter_folder=adapter)
    ids = torch.tensor([[1, 5, 9]])
    want = guide.generate(base, input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    guide.save_pretrained(tmp_path / "out", overwrite=True)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert torch.equal(guide.generate(base, input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0), want)
    loaded = TARoGuide.from_pretrained(tmp_path / "out")
    loaded.save_pretrained(tmp_path / "out")  # onto the folder it reads its adapter from
    again = TARoGuide.from_pretrained(tmp_path / "out")
    assert torch.equal(again.generate(base, input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0), want)


def test_hub_id_loads_from_the_offline_cache(tmp_path, monkeypatch):
    rm = tiny_lm(seed=2)
    TARoGuide(rm, router=router()).save_pretrained(tmp_path / "src")
    as_cached_hub_repo(tmp_path / "src", "org/my-guide", tmp_path / "hub", monkeypatch)
    guide = TARoGuide.from_pretrained("org/my-guide", cache_dir=tmp_path / "hub", local_files_only=True)
    assert guide.method == "taro"
    with pytest.raises(FileNotFoundError, match="HF cache"):
        TARoGuide.from_pretrained("org/not-there", cache_dir=tmp_path / "hub", local_files_only=True)


def test_push_to_hub_uploads_the_folder_with_its_card(fake_hub):
    guide = TARoGuide(tiny_lm(seed=2), router=router(), alpha=0.3)
    assert guide.push_to_hub("org/guide") == "ok"
    assert fake_hub["repo"] == "org/guide"
    assert {"guide_config.json", "reward_model", "router", "README.md"} <= set(fake_hub["files"])
    card = fake_hub["texts"]["README.md"]
    assert "TARo guide" in card and "| method | taro |" in card and "$" not in card.split("## Use")[0]
    assert json.loads(fake_hub["texts"]["guide_config.json"])["alpha"] == 0.3


def test_bad_guides_are_clear_errors(tmp_path, caplog):
    rm = tiny_lm(seed=2)
    with pytest.raises(ValueError, match="router .* or a fixed alpha"):
        TARoGuide(rm)
    with pytest.raises(ValueError, match="finite"):
        TARoGuide(rm, alpha=float("nan"))
    with pytest.raises(ValueError, match="negative weight inverts"):
        TARoGuide(rm, alpha=-1.0)
    with pytest.raises(ValueError, match="negative weight inverts"):
        TARoGuide(rm, router=router()).fixed(-0.5)
    with pytest.raises(ValueError, match="method='taro' but a router was not given"):
        TARoGuide(rm, alpha=1.0, config=TARoGuideConfig(method="taro"))
    with pytest.raises(ValueError, match="method"):
        TARoGuideConfig(method="fancy")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="not a TARo guide folder"):
        TARoGuide.from_pretrained(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        TARoGuide.from_pretrained(str(tmp_path / "missing"))
    TARoGuide(rm, router=router()).save_pretrained(tmp_path / "g")
    config = json.loads((tmp_path / "g" / "guide_config.json").read_text())
    (tmp_path / "g" / "guide_config.json").write_text(json.dumps({**config, "colour": "red"}))
    with caplog.at_level(logging.WARNING, logger="transformers_taro.guide"):
        newer = TARoGuide.from_pretrained(tmp_path / "g")  # a newer version's setting: dropped with one warning
    assert newer.method == "taro" and not hasattr(newer.config, "colour")
    assert [r.getMessage() for r in caplog.records if "colour" in r.getMessage()] != []
    (tmp_path / "g" / "guide_config.json").write_text(json.dumps(config))
    os.remove(tmp_path / "g" / "router" / "config.json")
    with pytest.raises(FileNotFoundError, match="router/config.json"):
        TARoGuide.from_pretrained(tmp_path / "g")


def test_load_guide_assembles_from_parts(tmp_path):
    tiny_lm(seed=2).save_pretrained(tmp_path / "rm")
    router().save_pretrained(tmp_path / "router")
    taro = load_guide(reward_model=str(tmp_path / "rm"), router=str(tmp_path / "router"))
    assert taro.method == "taro"
    assert load_guide(reward_model=str(tmp_path / "rm"), alpha=0.5).alpha == 0.5
    assert load_guide(reward_model=str(tmp_path / "rm"), router=str(tmp_path / "router"), alpha=0.5).method == "genarm"
    assert load_guide(method="base") is None
    with pytest.raises(ValueError, match="needs --router"):
        load_guide(reward_model=str(tmp_path / "rm"))
    with pytest.raises(ValueError, match="negative"):
        load_guide(reward_model=str(tmp_path / "rm"), alpha=-1.0)


def test_beam_search_alphas_belong_to_the_returned_sequences():
    """With beams and num_return_sequences, `guide.alphas` has one row per returned sequence, and each row is the
    router's weight on that sequence's own prefixes (teacher-forced), not that of a beam alive at the end. (The
    fused path gives the same alphas: tests/test_fused.py, mode "beams".)"""
    base, rm = tiny_lm(seed=7), tiny_lm(seed=2)
    guide = TARoGuide(rm, router=router())
    ids, mask = left_padded(PROMPTS)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None, num_beams=3, num_return_sequences=2)
    out = guide.generate(base, input_ids=ids, attention_mask=mask, **kw)
    assert torch.is_tensor(out) and guide.alphas.shape == (4, 6)  # what the caller asked for: sequences
    full_mask = torch.cat([mask.repeat_interleave(2, 0), torch.ones(4, 6, dtype=torch.long)], 1)
    pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        b = base(input_ids=out, attention_mask=full_mask, position_ids=pos).logits
        r = rm(input_ids=out, attention_mask=full_mask, position_ids=pos).logits
        expected = guide.router(b, r).alpha[:, ids.shape[1] - 1 : -1]
    torch.testing.assert_close(guide.alphas, expected, atol=1e-5, rtol=0)
    proc = guide.processor(attention_mask=mask)  # a bare processor keeps the rows of the beams alive at the end
    bare = base.generate(
        input_ids=ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([proc]),
        return_dict_in_generate=True,
        output_scores=True,
        **kw,
    )
    assert proc.alphas.shape == (6, 6)  # 3 beams per prompt
    torch.testing.assert_close(proc.alphas_of(bare.beam_indices), expected, atol=1e-5, rtol=0)
    as_dict = guide.generate(base, input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **kw)
    assert torch.equal(as_dict.sequences, out) and as_dict.beam_indices is not None
    torch.testing.assert_close(as_dict.alphas, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(guide.alphas, expected, atol=1e-5, rtol=0)
    from transformers import GenerationConfig  # beams asked for through a generation_config, not kwargs

    via_config = guide.generate(base, input_ids=ids, attention_mask=mask, generation_config=GenerationConfig(**kw))
    assert torch.equal(via_config, out)
    torch.testing.assert_close(guide.alphas, expected, atol=1e-5, rtol=0)


def test_a_card_names_the_default_base_by_what_it_is(tmp_path):
    guide = TARoGuide(tiny_lm(seed=2), alpha=0.5)
    guide.config.base_model_name_or_path = "default"
    guide.save_pretrained(tmp_path / "g")
    card = (tmp_path / "g" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card  # the Hub's metadata: its original
    assert "| base model it was trained next to | `SmolLM2-135M-Instruct (Q4_1 GGUF" in card  # what it is


def test_what_a_guide_was_measured_on_travels_with_it(tmp_path):
    guide = TARoGuide(tiny_lm(seed=2), alpha=0.5)
    guide.save_pretrained(tmp_path / "before")
    assert "Not recorded with this guide." in (tmp_path / "before" / "README.md").read_text()
    guide.config.evaluation = "| problems | n | base | GenARM |\n|---|---|---|---|\n| multiply | 1000 | 0.45 | 0.60 |\n"
    guide.save_pretrained(tmp_path / "g")
    card = (tmp_path / "g" / "README.md").read_text()
    assert "## Evaluation\n\n| problems | n | base | GenARM |" in card and "| multiply | 1000 | 0.45 | 0.60 |" in card
    assert TARoGuide.from_pretrained(tmp_path / "g").config.evaluation == guide.config.evaluation


def test_the_guide_config_reads_and_writes_like_a_peft_config(tmp_path):
    guide = TARoGuide(tiny_lm(seed=2), alpha=0.5)
    guide.save_pretrained(tmp_path / "skipped", is_main_process=False)
    assert not (tmp_path / "skipped").exists()  # another process's save writes nothing
    guide.save_pretrained(tmp_path / "g")
    config = TARoGuideConfig.from_pretrained(tmp_path / "g")  # no model loaded
    assert config.to_dict() == guide.config.to_dict() and config.alpha == 0.5
    config.alpha = 2.0
    config.save_pretrained(tmp_path / "g")
    assert TARoGuide.from_pretrained(tmp_path / "g").alpha == 2.0

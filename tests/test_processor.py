"""The processor's guarantees, each checked against plain `generate` or an uncached reference."""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, left_padded, tiny_lm
from transformers import LogitsProcessor, LogitsProcessorList

from transformers_taro import TARoProcessor, TARoRouter, TARoRouterConfig

PROMPTS = [[1, 5, 9, 14, 3, 7], [1, 22, 8]]
GEN = dict(max_new_tokens=8, pad_token_id=0, eos_token_id=None)


class UncachedReference(LogitsProcessor):
    """GenARM written the slow, obvious way: the reward model re-reads the whole prefix every step."""

    def __init__(self, rm, alpha, attention_mask, reward_input_ids=None, reward_attention_mask=None):
        self.rm, self.alpha, self.mask = rm, alpha, attention_mask
        self.r_ids, self.r_mask = reward_input_ids, reward_attention_mask

    @torch.no_grad()
    def __call__(self, input_ids, scores):
        rows, prompt_len = input_ids.shape[0], self.mask.shape[1]
        k = rows // self.mask.shape[0]
        generated = input_ids[:, prompt_len:]
        if self.r_ids is None:
            ids = input_ids
            mask = torch.cat([self.mask.repeat_interleave(k, 0), torch.ones_like(generated)], 1)
        else:
            ids = torch.cat([self.r_ids.repeat_interleave(k, 0), generated], 1)
            mask = torch.cat([self.r_mask.repeat_interleave(k, 0), torch.ones_like(generated)], 1)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.rm(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
        common = min(scores.shape[-1], logits.shape[-1])
        out = torch.log_softmax(scores.float(), -1)
        out[:, :common] += self.alpha * torch.log_softmax(logits, -1)[:, :common]
        out[:, common:] = float("-inf")
        return out


def run(base, ids, mask, proc, seed=0, **kw):
    torch.manual_seed(seed)
    return base.generate(
        input_ids=ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([proc] if proc else []),
        return_dict_in_generate=True,
        output_scores=True,
        **GEN,
        **kw,
    )


MODES = {
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True, temperature=0.8, top_k=0),
    "beam": dict(do_sample=False, num_beams=3, num_return_sequences=2),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_alpha_zero_is_plain_generate(arch, mode):
    base, rm = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2)
    ids, mask = left_padded(PROMPTS)
    plain = run(base, ids, mask, None, **MODES[mode])
    guided = run(base, ids, mask, TARoProcessor(rm, alpha=0.0, attention_mask=mask), **MODES[mode])
    assert torch.equal(plain.sequences, guided.sequences)


@pytest.mark.parametrize("mode", list(MODES))
def test_fixed_alpha_matches_uncached_reference(arch, mode):
    base, rm = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2)
    ids, mask = left_padded(PROMPTS)
    proc = TARoProcessor(rm, alpha=1.5, attention_mask=mask)
    ours = run(base, ids, mask, proc, **MODES[mode])
    ref = run(base, ids, mask, UncachedReference(rm, 1.5, mask), **MODES[mode])
    plain = run(base, ids, mask, None, **MODES[mode])
    assert torch.equal(ours.sequences, ref.sequences)
    for a, b in zip(ours.scores, ref.scores):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a))
        assert torch.allclose(a[finite], b[finite], atol=1e-4)
    assert not torch.equal(ours.sequences, plain.sequences), "guidance should change something in this setup"
    assert proc.alphas.shape == (ours.sequences.shape[0] if mode != "beam" else 6, GEN["max_new_tokens"])


@pytest.mark.parametrize("use_router", [False, True])
def test_padded_row_equals_prompt_alone(arch, use_router):
    base, rm = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2)
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, alpha_init=1.0)) if use_router else None

    def proc(mask):
        return (
            TARoProcessor(rm, router=router, attention_mask=mask)
            if use_router
            else TARoProcessor(rm, alpha=2.0, attention_mask=mask)
        )

    ids, mask = left_padded(PROMPTS)
    p = proc(mask)
    batch = run(base, ids, mask, p)
    for i, prompt in enumerate(PROMPTS):
        one_ids, one_mask = left_padded([prompt])
        q = proc(one_mask)
        alone = run(base, one_ids, one_mask, q)
        assert batch.sequences[i, ids.shape[1] :].tolist() == alone.sequences[0, one_ids.shape[1] :].tolist()
        assert torch.allclose(p.alphas[i], q.alphas[0], atol=1e-5)


def test_reward_model_is_prefilled_once_then_one_token_per_step():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    seen: list[int] = []
    rm.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    ids, mask = left_padded(PROMPTS)
    run(base, ids, mask, TARoProcessor(rm, alpha=1.0, attention_mask=mask))
    assert seen == [ids.shape[1]] + [1] * (GEN["max_new_tokens"] - 1)


def test_reusing_a_processor_resets_its_state():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    ids, mask = left_padded(PROMPTS)
    proc = TARoProcessor(rm, alpha=1.0, attention_mask=mask)
    first = run(base, ids, mask, proc)
    second = run(base, ids, mask, proc)
    assert torch.equal(first.sequences, second.sequences)
    assert proc.alphas.shape == (2, GEN["max_new_tokens"])
    # A different batch: refused without a new mask, then a new mask through reset() gives a fresh result.
    ids2, mask2 = left_padded([[1, 40, 41], [1, 3, 3, 3, 3], [1, 7]])
    with pytest.raises(ValueError, match="reset"):
        run(base, ids2[:2], mask2[:2], proc)
    proc.reset(attention_mask=mask2)
    reused = run(base, ids2, mask2, proc)
    fresh = run(base, ids2, mask2, TARoProcessor(rm, alpha=1.0, attention_mask=mask2))
    assert torch.equal(reused.sequences, fresh.sequences)


@pytest.mark.parametrize("rm_vocab,base_vocab", [(VOCAB + 8, VOCAB), (VOCAB, VOCAB + 8)])
def test_vocabularies_differing_by_padding_rows(rm_vocab, base_vocab):
    base, rm = tiny_lm(vocab=base_vocab, seed=1), tiny_lm(vocab=rm_vocab, seed=2)
    ids, mask = left_padded(PROMPTS)
    ours = run(base, ids, mask, TARoProcessor(rm, alpha=1.0, attention_mask=mask))
    ref = run(base, ids, mask, UncachedReference(rm, 1.0, mask))
    assert torch.equal(ours.sequences, ref.sequences)
    assert int(ours.sequences[:, ids.shape[1] :].max()) < min(rm_vocab, base_vocab)


def test_separate_reward_prompt_matches_reference(arch):
    base, rm = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2)
    ids, mask = left_padded(PROMPTS)
    r_ids, r_mask = left_padded([[1, 60, 61] + p[1:] for p in PROMPTS])
    proc = TARoProcessor(rm, alpha=1.0, attention_mask=mask, reward_input_ids=r_ids, reward_attention_mask=r_mask)
    ours = run(base, ids, mask, proc)
    ref = run(base, ids, mask, UncachedReference(rm, 1.0, mask, r_ids, r_mask))
    same_prompt = run(base, ids, mask, TARoProcessor(rm, alpha=1.0, attention_mask=mask))
    assert torch.equal(ours.sequences, ref.sequences)
    assert not torch.equal(ours.sequences, same_prompt.sequences)


def test_router_guides_bases_of_different_widths():
    rm = tiny_lm(seed=2)
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, use_reward_hidden_states=True, reward_hidden_size=32))
    ids, mask = left_padded(PROMPTS)
    torch.manual_seed(0)
    with torch.no_grad():  # a router whose alpha really depends on its inputs, not the flat fresh one
        for p in router.parameters():
            p.normal_(0, 0.5)
    used = []
    for width, arch in ((32, "llama"), (64, "qwen2")):
        base = tiny_lm(arch, width=width, layers=3, seed=5)
        proc = TARoProcessor(rm, router=router, attention_mask=mask)
        out = run(base, ids, mask, proc)
        # The alpha used at each step is the router applied to *this* base's distribution there (teacher-forced),
        # whatever the base's width: the router never reads the base's hidden states.
        seq = out.sequences
        full_mask = torch.cat([mask, torch.ones(2, seq.shape[1] - mask.shape[1], dtype=mask.dtype)], 1)
        pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            b = base(seq, attention_mask=full_mask, position_ids=pos).logits
            r = rm(seq, attention_mask=full_mask, position_ids=pos, output_hidden_states=True)
            steps = slice(ids.shape[1] - 1, seq.shape[1] - 1)
            want = router(b[:, steps], r.logits[:, steps], reward_hidden_states=r.hidden_states[-1][:, steps]).alpha
        torch.testing.assert_close(proc.alphas, want, atol=1e-4, rtol=1e-4)
        used.append(proc.alphas)
    assert not torch.allclose(used[0], used[1], atol=1e-3)  # each base got its own per-token weights


# -- bad input: a clear error that says what to change ------------------------------------------------------


def test_exactly_one_of_router_and_alpha():
    rm = tiny_lm()
    with pytest.raises(ValueError, match="exactly one"):
        TARoProcessor(rm)
    with pytest.raises(ValueError, match="exactly one"):
        TARoProcessor(rm, alpha=1.0, router=TARoRouter(TARoRouterConfig()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_alpha_is_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        TARoProcessor(tiny_lm(), alpha=bad)


def test_padded_batch_without_mask_is_refused():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    ids, _ = left_padded(PROMPTS)
    with pytest.raises(ValueError, match="attention_mask"):
        base.generate(input_ids=ids, logits_processor=[TARoProcessor(rm, alpha=1.0)], **GEN)


def test_router_with_other_vocabulary_is_refused():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    ids, mask = left_padded(PROMPTS)
    proc = TARoProcessor(rm, router=TARoRouter(TARoRouterConfig(vocab_size=VOCAB * 2)), attention_mask=mask)
    with pytest.raises(ValueError, match=f"vocabulary of {VOCAB * 2} tokens"):
        base.generate(input_ids=ids, attention_mask=mask, logits_processor=[proc], **GEN)


def test_non_finite_reward_logits_are_refused():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    with torch.no_grad():
        rm.lm_head.weight[3, 0] = float("nan")
    ids, mask = left_padded(PROMPTS)
    with pytest.raises(ValueError, match="NaN/inf"):
        base.generate(
            input_ids=ids,
            attention_mask=mask,
            logits_processor=[TARoProcessor(rm, alpha=1.0, attention_mask=mask)],
            **GEN,
        )


def test_mask_of_another_batch_is_refused():
    base, rm = tiny_lm(seed=1), tiny_lm(seed=2)
    ids, mask = left_padded(PROMPTS)
    proc = TARoProcessor(rm, alpha=1.0, attention_mask=torch.ones(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="rows"):
        base.generate(input_ids=ids, attention_mask=mask, logits_processor=[proc], **GEN)


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_different_tokenizers_are_refused_with_the_difference_named():
    a = _word_tokenizer(["<unk>", "one", "two", "three"])
    b = _word_tokenizer(["<unk>", "one", "two", "four"])
    with pytest.raises(ValueError, match="four"):
        TARoProcessor(tiny_lm(), alpha=1.0, tokenizer=a, reward_tokenizer=b)
    TARoProcessor(tiny_lm(), alpha=1.0, tokenizer=a, reward_tokenizer=_word_tokenizer(["<unk>", "one", "two", "three"]))

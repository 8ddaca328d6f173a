"""The outcome objective: the router as a logit-normal policy over its weight, REINFORCE on graded rollouts."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import gsm8k_rows, tiny_lm

from transformers_taro import TARoProcessor, TARoRouter, TARoRouterConfig
from transformers_taro.data import format_prompt
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training import RouterTrainingConfig, train_router
from transformers_taro.training.outcome import (
    ExploringRouter,
    Rollouts,
    leave_one_out_advantages,
    reinforce_loss,
    rollouts,
)


def _router(vocab: int, **kw) -> TARoRouter:
    torch.manual_seed(0)
    return TARoRouter(TARoRouterConfig(vocab_size=vocab, **kw)).eval()


def test_weight_logit_is_what_compute_alpha_squashes():
    router = _router(50, use_reward_hidden_states=True, reward_hidden_size=8)
    lb, lr, h = torch.randn(3, 50).log_softmax(-1), torch.randn(3, 50).log_softmax(-1), torch.randn(3, 8)
    from transformers_taro.features import router_features

    logit = router.weight_logit(router_features(lb, lr, router.config.num_top_logprobs), h)
    assert torch.allclose(router.compute_alpha(lb, lr, h), router.config.alpha_max * torch.sigmoid(logit))


def test_a_near_zero_spread_policy_decodes_as_the_router(tiny_model_dir):
    """Rollouts go through generate + TARoProcessor: with sigma -> 0 they are the router's own greedy decoding,
    and the policy recorded one draw per decoded token."""
    tok = load_tokenizer(tiny_model_dir)
    base, rm = load_causal_lm(tiny_model_dir), tiny_lm("llama", vocab=len(tok), width=32, seed=5, max_positions=1024)
    router = _router(len(tok))
    prompts = [format_prompt(r["question"], tok) for r in gsm8k_rows(3)]
    episodes = rollouts(
        base, rm, router, tok, prompts, sigma=1e-6, max_new_tokens=12, generator=torch.Generator().manual_seed(0)
    )
    enc = tok(prompts, return_tensors="pt", padding=True)
    proc = TARoProcessor(rm, router=router, attention_mask=enc["attention_mask"])
    out = base.generate(
        **enc, logits_processor=[proc], do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id
    )
    new = out[:, enc["input_ids"].shape[1] :]
    assert episodes.texts == [tok.decode(row, skip_special_tokens=True) for row in new]
    assert episodes.z.shape == new.shape and episodes.features.shape[:2] == new.shape
    assert torch.allclose(torch.sigmoid(episodes.z) * router.config.alpha_max, proc.alphas, atol=1e-5)
    assert bool(episodes.mask[:, 0].all())


def test_rollouts_mask_ends_at_the_first_end_of_sequence(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(tiny_model_dir)
    router = _router(len(tok))
    prompts = [format_prompt(r["question"], tok) for r in gsm8k_rows(2)]
    first = rollouts(base, rm, router, tok, prompts, sigma=1e-6, max_new_tokens=6)
    stop = int(first.tokens[0, 2])  # make the third token of row 0 an end-of-sequence token
    base.generation_config.eos_token_id = [tok.eos_token_id, stop]
    again = rollouts(base, rm, router, tok, prompts, sigma=1e-6, max_new_tokens=6)
    for row in range(2):
        ends = [t for t in range(again.tokens.shape[1]) if int(again.tokens[row, t]) in (stop, tok.eos_token_id)]
        expected = ends[0] + 1 if ends else again.tokens.shape[1]  # the end token itself was decoded, with a weight
        assert int(again.mask[row].sum()) == expected and bool(again.mask[row, :expected].all())
    assert int(again.mask[0].sum()) <= 3


def test_leave_one_out_advantages():
    adv = leave_one_out_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), group=3)
    assert adv.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="groups of 1"):
        leave_one_out_advantages(torch.ones(4), group=1)
    with pytest.raises(ValueError, match="groups of 3"):
        leave_one_out_advantages(torch.ones(4), group=3)


def test_reinforce_moves_the_weight_toward_what_was_rewarded():
    """A bandit: on one kind of token a high weight is right, on another a low one. REINFORCE with the
    leave-one-out baseline learns both from graded draws alone."""
    torch.manual_seed(0)
    router = _router(20)
    features = torch.randn(2, router.config.num_features)  # two kinds of token
    opt = torch.optim.Adam(router.parameters(), lr=0.05)
    sigma, gen = 0.5, torch.Generator().manual_seed(1)
    start = float(router.weight_logit(features[:1]).detach())  # alpha_init's logit; a reward one sigma away either way
    for _ in range(150):
        # 16 one-token rollouts, in groups of 4: the first 8 of the first kind, the rest of the second
        feats = torch.cat([features[:1].repeat(8, 1), features[1:].repeat(8, 1)]).unsqueeze(1)
        with torch.no_grad():
            z = router.weight_logit(feats) + sigma * torch.randn(16, 1, generator=gen)
        reward = torch.cat([(z[:8, 0] > start + 0.5), (z[8:, 0] < start - 0.5)]).float()
        episodes = Rollouts(feats, None, z, torch.ones(16, 1, dtype=torch.bool), torch.zeros(16, 1), [""] * 16)
        opt.zero_grad()
        reinforce_loss(router, episodes, leave_one_out_advantages(reward, 4), sigma).backward()
        opt.step()
    with torch.no_grad():
        high, low = router.weight_logit(features.unsqueeze(1)).squeeze(1).tolist()
    assert high > start + 0.5 and low < start - 0.5, (start, high, low)


def test_exploring_router_checks_its_inputs():
    router = _router(20)
    with pytest.raises(ValueError, match="sigma"):
        ExploringRouter(router, 0.0)
    with pytest.raises(ValueError, match="vocabulary of 20 tokens"):
        ExploringRouter(router, 0.5).compute_alpha(torch.zeros(1, 2000), torch.zeros(1, 2000))


@pytest.mark.slow
def test_train_router_with_the_outcome_term(tiny_model_dir, tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(6)))
    out = str(tmp_path / "router")
    cfg = RouterTrainingConfig(
        output_dir=out,
        max_steps=2,
        per_device_train_batch_size=2,
        logging_steps=1,
        save_steps=2,
        use_cpu=True,
        disable_tqdm=True,
        outcome_weight=1.0,
        outcome_problems=2,
        outcome_rollouts=2,
        outcome_max_new_tokens=8,
        report_to="none",
    )
    before = TARoRouter(cfg.router_config(len(load_tokenizer(tiny_model_dir)), 32))
    train_router(tiny_model_dir, tiny_model_dir, str(data), out, cfg)
    router = TARoRouter.from_pretrained(out)
    assert "outcome_weight=1.0 (2 problems x 2 rollouts" in router.config.training_summary
    state = json.load(open(os.path.join(out, "checkpoint-2", "trainer_state.json")))
    assert all("rollout_accuracy" in h for h in state["log_history"] if "loss" in h)
    assert any(not torch.equal(p, q) for p, q in zip(before.parameters(), router.parameters()))


def test_outcome_settings_and_data_are_checked(tiny_model_dir, tmp_path):
    def cfg(**kw):
        return RouterTrainingConfig(output_dir=str(tmp_path / "o"), use_cpu=True, outcome_weight=1.0, **kw)

    with pytest.raises(ValueError, match="needs >= 2"):
        cfg(outcome_rollouts=1)
    with pytest.raises(ValueError, match="outcome_sigma"):
        cfg(outcome_sigma=0.0)
    assert cfg(nll_weight=0.0).outcome_weight == 1.0  # the outcome term alone is an objective
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "initial_reason_steps": "", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(ValueError, match="no 'question' and 'answer'"):
        train_router(tiny_model_dir, tiny_model_dir, str(bad), str(tmp_path / "r"), cfg(max_steps=1))
    rows = gsm8k_rows(2) + [{"question": "q", "answer": "no number here"}]
    unparseable = tmp_path / "rows.jsonl"
    unparseable.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="row 2"):
        train_router(tiny_model_dir, tiny_model_dir, str(unparseable), str(tmp_path / "r"), cfg(max_steps=1))

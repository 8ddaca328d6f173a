"""The oracle objective: a router over a weight grid, trained toward the fixed weights that solved each problem."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import gsm8k_rows, tiny_lm
from test_training import router_config

from transformers_taro import TARoGuide, TARoRouter, TARoRouterConfig
from transformers_taro.data import SYSTEM_PROMPT, format_prompt
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.router import grid_points
from transformers_taro.tasks import Task
from transformers_taro.training import RouterTrainingConfig, train_router
from transformers_taro.training import oracle as oracle_module
from transformers_taro.training.oracle import ORACLE_FILE, decode_fixed, grid_targets, oracle_loss, oracle_rows


def test_grid_targets_keep_what_separates_the_weights_and_lean_toward_the_prior():
    points = grid_points([0.0, 1.0, 4.0], 1)
    rewards = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    targets, informative = grid_targets(rewards, points, prior=1.0, tie_break=0.5)
    assert informative.tolist() == [True, False, False, True]
    assert torch.allclose(targets[informative].sum(-1), torch.ones(2))
    assert targets[0, 0] == 0 and targets[0, 1] > targets[0, 2] > 0  # both solved it; 1 is nearer the prior
    assert targets[3].tolist() == [1.0, 0.0, 0.0]
    assert not targets[1].any() and not targets[2].any()


def test_grid_router_starts_near_alpha_init_and_round_trips(tmp_path):
    router = TARoRouter(TARoRouterConfig(vocab_size=50, num_reward_models=2, weight_grid=[0, 0.5, 1, 2, 4]))
    lb, lr = torch.randn(3, 50).log_softmax(-1), torch.randn(3, 50).log_softmax(-1)
    alpha = router.compute_alpha(lb, [lr, lr])
    assert alpha.shape == (3, 2) and torch.allclose(alpha, torch.ones(3, 2), atol=0.05)
    out = router(lb, [lr, lr])
    assert out.grid_logits.shape == (3, 25) and torch.allclose(out.alpha, alpha)
    assert grid_points([0, 1], 2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    router.save_pretrained(tmp_path / "r")
    loaded = TARoRouter.from_pretrained(tmp_path / "r")
    assert loaded.config.weight_grid == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert torch.equal(loaded.compute_alpha(lb, [lr, lr]), alpha)
    one = TARoRouter(TARoRouterConfig(vocab_size=50, weight_grid=[0, 2]))
    assert one.compute_alpha(lb, lr).shape == (3,)  # one reward model: no K axis, as a sigmoid router
    with pytest.raises(ValueError, match="no weight logit"):
        one.weight_logit(torch.zeros(3, one.config.num_features))


@pytest.mark.parametrize(
    ("grid", "kw", "match"),
    [
        ([0, 1, 1], {}, "each listed once"),
        ([1], {}, "at least two"),
        ([0, 8], {}, r"alpha_max=4"),
        ([0, True], {}, "list of numbers"),
        ("0,1", {}, "list of numbers"),
        ([0, 1], {"mixture": "geometric", "alpha_init": 0.5}, "product mixture"),
    ],
)
def test_a_bad_weight_grid_is_refused(grid, kw, match):
    with pytest.raises(ValueError, match=match):
        TARoRouterConfig(vocab_size=50, weight_grid=grid, **kw)


def test_the_oracle_loss_teaches_a_router_to_tell_problems_apart():
    """Two kinds of problem that only the reward models' hidden state tells apart, each solved by other weights: the
    trained router gives each kind its own weights, which no fixed weight can."""
    torch.manual_seed(0)
    cfg = TARoRouterConfig(
        vocab_size=20,
        num_reward_models=2,
        weight_grid=[0, 1, 4],
        use_reward_hidden_states=True,
        reward_hidden_size=4,
    )
    router = TARoRouter(cfg)
    points = cfg.grid_points
    lb = torch.randn(8, 5, 20).log_softmax(-1)  # 8 problems, 5 tokens each; the distributions say nothing of kind
    lr = [lb.clone(), lb.clone()]
    group = torch.arange(8) % 2
    hidden = 0.3 * torch.randn(8, 5, 2, 4) + (group.float() * 2 - 1).view(8, 1, 1, 1)
    wanted = torch.tensor([[4.0, 0.0], [0.0, 1.0]])[group]  # kind 0 solved by (4, 0), kind 1 by (0, 1)
    targets = (points.unsqueeze(0) == wanted.unsqueeze(1)).all(-1).float()  # [8, G]
    mask = torch.ones(8, 5)
    opt = torch.optim.Adam(router.parameters(), lr=1e-2)
    from transformers_taro.features import router_features

    features = router_features(lb, lr, cfg.num_top_logprobs)
    for _ in range(150):
        loss = oracle_loss(router.grid_logits(features, hidden), targets, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        alpha = router.compute_alpha(lb, lr, list(hidden.unbind(-2)))  # [8, 5, 2]
    assert torch.allclose(alpha[group == 0], torch.tensor([4.0, 0.0]), atol=0.3)
    assert torch.allclose(alpha[group == 1], torch.tensor([0.0, 1.0]), atol=0.3)


def test_a_lower_grid_temperature_decodes_nearer_the_most_likely_point():
    cfg = TARoRouterConfig(vocab_size=20, weight_grid=[0, 1, 4])
    router = TARoRouter(cfg)
    scores = torch.log(torch.tensor([[0.3, 0.25, 0.45]]))  # most likely 4, yet the expected weight is 2.05
    assert router.expected_weight(scores).item() == pytest.approx(2.05)
    cfg.grid_temperature = 0.05
    assert router.expected_weight(scores).item() == pytest.approx(4.0, abs=0.01)
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ValueError, match="grid_temperature"):
            TARoRouterConfig(vocab_size=20, weight_grid=[0, 1], grid_temperature=bad)


def _task_solved_at(base, rm, tok, rows, weight: float, system: str | None = None) -> Task:
    """A task whose gold answer is each problem's decode at `weight`: a grid point solves a problem where it decodes
    as `weight` does."""
    prompts = [format_prompt(r["question"], tok, system=system) for r in rows]
    gold = decode_fixed(base, [rm], tok, prompts, [weight], max_new_tokens=6, batch_size=4)
    rows = [{**r, "gold_text": g} for r, g in zip(rows, gold)]
    return Task("decodes", rows, lambda r: r["question"], lambda r: r["gold_text"], lambda t: t, lambda p, g: p == g)


def test_oracle_rows_decode_the_grid_grade_and_resume(tiny_model_dir, tmp_path, monkeypatch):
    tok = load_tokenizer(tiny_model_dir)
    base = load_causal_lm(tiny_model_dir)
    rm = tiny_lm("llama", vocab=len(tok), width=32, seed=5, max_positions=1024)
    task = _task_solved_at(base, rm, tok, gsm8k_rows(6), 4.0)
    points = grid_points([0.0, 4.0], 1)
    kw = dict(prior=0.0, tie_break=0.25, max_new_tokens=6, batch_size=4, system=None, work=tmp_path)
    rows, summary = oracle_rows(base, [rm], tok, task, points, **kw)
    assert summary["problems"] == 6 and summary["grid_accuracy"]["4"] == 1.0
    assert summary["informative"] == len(rows) > 0  # where weight 0 decodes otherwise, only 4 solved it
    for row in rows:
        assert row["weight_target"] == [0.0, 1.0]
        assert row["completion"] in [r["gold_text"] for r in task.rows]
    assert (tmp_path / ORACLE_FILE).is_file()

    def must_not_decode(*args, **kwargs):
        raise AssertionError("a resumed grid decodes nothing it has")

    monkeypatch.setattr(oracle_module, "decode_fixed", must_not_decode)
    assert oracle_rows(base, [rm], tok, task, points, **kw) == (rows, summary)
    task.rows = task.rows[1:]
    with pytest.raises(ValueError, match="other problems"):
        oracle_rows(base, [rm], tok, task, points, **kw)


def _oracle_config(out: str, **kw) -> RouterTrainingConfig:
    """`test_training.router_config` with the oracle term alone, on a grid of two weights, at toy size."""
    oracle = dict(nll_weight=0.0, oracle_weight=1.0, oracle_grid=[0.0, 4.0], oracle_problems=6)
    toy = dict(max_steps=4, per_device_train_batch_size=2, save_steps=4, learning_rate=5e-2)
    return router_config(out, **{**toy, **oracle, "oracle_max_new_tokens": 6, "oracle_batch_size": 3, **kw})


@pytest.mark.slow
def test_train_router_with_the_oracle_term(tiny_model_dir, tmp_path, monkeypatch):
    """End to end: the grid stage, the router over the grid trained toward what solved each problem, the guide."""
    from transformers_taro.training import router as router_module

    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(6)))
    tok = load_tokenizer(tiny_model_dir)
    base = load_causal_lm(tiny_model_dir)
    rm_dir = str(tmp_path / "rm")
    tiny_lm("llama", vocab=len(tok), width=32, seed=5, max_positions=1024).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    task = _task_solved_at(base, load_causal_lm(rm_dir), tok, gsm8k_rows(6), 4.0, system=SYSTEM_PROMPT)
    monkeypatch.setattr(router_module, "_graded_task", lambda data, what: task)
    out = str(tmp_path / "router")
    train_router(tiny_model_dir, rm_dir, str(data), out, _oracle_config(out))
    router = TARoRouter.from_pretrained(out)
    assert router.config.weight_grid == [0.0, 4.0]
    assert "oracle_weight=1.0 (grid [0.0, 4.0]" in router.config.training_summary
    state = json.load(open(os.path.join(out, "checkpoint-4", "trainer_state.json")))
    losses = [h["oracle_loss"] for h in state["log_history"] if "oracle_loss" in h]
    assert losses[-1] < losses[0]  # toward weight 4, from a start at alpha_init 1 (the grid point 0)
    guide = TARoGuide.from_pretrained(os.path.join(out, "guide"))
    assert guide.router.config.weight_grid == [0.0, 4.0]


def test_oracle_settings_and_uninformative_problems_are_refused(tiny_model_dir, tmp_path):
    out = str(tmp_path / "r")
    with pytest.raises(ValueError, match="cannot be combined"):
        _oracle_config(out, outcome_weight=1.0)
    with pytest.raises(ValueError, match="alpha_max"):
        _oracle_config(out, oracle_grid=[0.0, 9.0])
    with pytest.raises(ValueError, match="oracle_problems"):
        _oracle_config(out, oracle_problems=0)
    assert _oracle_config(out).router_config(50, 8).weight_grid == [0.0, 4.0]
    assert _oracle_config(out, oracle_weight=0.0, nll_weight=1.0).router_config(50, 8).weight_grid is None
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(3)))
    with pytest.raises(ValueError, match="separates the grid's weights"):  # a random model solves none of them
        train_router(tiny_model_dir, tiny_model_dir, str(data), out, _oracle_config(out, oracle_problems=3))

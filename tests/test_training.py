"""Both trainers on tiny models and a few rows of real GSM8K: loss goes down, artifacts reload, resume works."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import gsm8k_rows

from transformers_taro import TARoGuide, TARoProcessor, TARoRouter
from transformers_taro.data import build_step_pairs, build_traces
from transformers_taro.guidance import guided_scores
from transformers_taro.models import load_causal_lm, load_tokenizer
from transformers_taro.training import (
    RewardModelConfig,
    RouterTrainingConfig,
    TraceCollator,
    evaluate_reward_model,
    train_reward_model,
    train_router,
)

pytestmark = pytest.mark.slow  # trains models


@pytest.fixture(scope="module")
def gsm8k_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(12)))
    return str(path)


def rm_config(out, **kw):
    base = dict(
        output_dir=out,
        max_steps=6,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_steps=3,
        report_to="none",
        beta=0.5,
        use_cpu=True,
        max_length=768,
        disable_tqdm=True,
    )
    base.update(kw)
    return RewardModelConfig(**base)


@pytest.fixture(scope="module")
def trained_rm(tiny_model_dir, gsm8k_file, tmp_path_factory):
    """One reward model, trained once, that differs from the base, so the guided NLL depends on alpha."""
    rm_dir = str(tmp_path_factory.mktemp("shared-rm") / "rm")
    train_reward_model(tiny_model_dir, gsm8k_file, rm_dir, rm_config(rm_dir, max_steps=4, save_steps=100))
    return rm_dir


def lora(r: int = 4):
    from trl import ModelConfig, get_peft_config

    return get_peft_config(ModelConfig(use_peft=True, lora_r=r, lora_alpha=2 * r, lora_target_modules="all-linear"))


def losses(folder):
    state = json.load(open(os.path.join(folder, "checkpoint-6", "trainer_state.json")))
    return [h["loss"] for h in state["log_history"] if "loss" in h]


@pytest.mark.parametrize("use_lora", [False, True])
def test_reward_model_trains_and_reloads(tiny_model_dir, gsm8k_file, tmp_path, use_lora):
    out = str(tmp_path / "rm")
    tok = load_tokenizer(tiny_model_dir)
    pairs = build_step_pairs(gsm8k_file, tok)
    before = evaluate_reward_model(load_causal_lm(tiny_model_dir), tok, pairs, beta=0.5)
    cfg = rm_config(out, max_steps=10, learning_rate=2e-2 if use_lora else 5e-3)
    train_reward_model(tiny_model_dir, gsm8k_file, out, cfg, peft_config=lora() if use_lora else None)
    after = evaluate_reward_model(load_causal_lm(out), tok, pairs, beta=0.5)
    assert after["loss"] < before["loss"] - 0.01, (before, after)
    files = set(os.listdir(out))
    assert ("adapter_config.json" in files) == use_lora and "README.md" in files
    assert "pairs" in open(os.path.join(out, "README.md")).read()
    rm = load_causal_lm(out)  # a LoRA adapter is merged into a plain causal LM
    tok = load_tokenizer(out)
    assert not hasattr(rm, "peft_config")
    enc = tok(["Tom has 3 apples."], return_tensors="pt")
    proc = TARoProcessor(rm, alpha=1.0, attention_mask=enc["attention_mask"])
    base = load_causal_lm(tiny_model_dir)
    base.generate(**enc, logits_processor=[proc], max_new_tokens=3, pad_token_id=0)
    assert proc.alphas.shape == (1, 3)


def test_reward_model_rejects_a_non_genarm_loss(tmp_path):
    with pytest.raises(ValueError, match="sigmoid"):
        RewardModelConfig(output_dir=str(tmp_path), loss_type="hinge")
    with pytest.raises(ValueError, match="cpo_alpha >= 0"):
        RewardModelConfig(output_dir=str(tmp_path), cpo_alpha=-1.0)
    assert RewardModelConfig(output_dir=str(tmp_path), cpo_alpha=0.5).cpo_alpha == 0.5


def test_reward_model_resume_keeps_finished_steps(tiny_model_dir, gsm8k_file, tmp_path):
    out = str(tmp_path / "rm")
    train_reward_model(tiny_model_dir, gsm8k_file, out, rm_config(out, max_steps=3))
    assert os.path.isdir(os.path.join(out, "checkpoint-3"))
    train_reward_model(tiny_model_dir, gsm8k_file, out, rm_config(out, max_steps=6), resume=True)
    state = json.load(open(os.path.join(out, "checkpoint-6", "trainer_state.json")))
    logged_steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged_steps == [1, 2, 3, 4, 5, 6]  # steps 1-3 come from the first run, not redone
    with pytest.raises(FileNotFoundError, match="no complete, readable checkpoint"):
        train_reward_model(
            tiny_model_dir, gsm8k_file, str(tmp_path / "empty"), rm_config(str(tmp_path / "e")), resume=True
        )


def router_config(out, **kw):
    base = dict(
        output_dir=out,
        max_steps=6,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_steps=3,
        learning_rate=1e-2,
        use_cpu=True,
        disable_tqdm=True,
        alpha_reg=0.0,
    )
    base.update(kw)
    return RouterTrainingConfig(**base)


@pytest.mark.parametrize("hidden", [False, True])
def test_router_trains_and_reloads(tiny_model_dir, gsm8k_file, trained_rm, tmp_path, hidden):
    rm_dir = trained_rm
    out = str(tmp_path / "router")
    cfg = router_config(out, use_reward_hidden_states=hidden, max_steps=10)
    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(rm_dir)
    tok = load_tokenizer(tiny_model_dir, padding_side="right")
    batch = TraceCollator(tok, 768)(build_traces(gsm8k_file, tok)[:8])

    def guided_nll(router):
        with torch.no_grad():
            b = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            r = rm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            h = r.hidden_states[-1] if hidden else None
            scores, _ = guided_scores(b, r.logits, router=router, reward_hidden_states=h)
            logp = torch.log_softmax(scores, -1).gather(-1, batch["labels"].clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scored = batch["labels"].ne(-100)
            return float(-(logp * scored).sum() / scored.sum())

    untrained = TARoRouter(cfg.router_config(base.config.vocab_size, rm.config.hidden_size))
    train_router(tiny_model_dir, rm_dir, gsm8k_file, out, cfg)
    router = TARoRouter.from_pretrained(out)
    assert guided_nll(router) < guided_nll(untrained) - 1e-3
    assert router.config.use_reward_hidden_states == hidden
    assert router.config.reward_model_name_or_path == rm_dir
    assert "traces" in router.config.training_summary
    guide = TARoGuide.from_pretrained(os.path.join(out, "guide"))  # the router and its reward model, as one folder
    assert guide.method == "taro" and guide.router.config.use_reward_hidden_states == hidden
    assert torch.equal(guide.router.head.weight, router.head.weight)


def test_router_resume(tiny_model_dir, gsm8k_file, tmp_path):
    import shutil

    out = str(tmp_path / "router")
    train_router(tiny_model_dir, tiny_model_dir, gsm8k_file, out, router_config(out, max_steps=3))
    # A run killed while writing checkpoint-5: weights there, trainer_state.json not yet (it is written last).
    shutil.copytree(os.path.join(out, "checkpoint-3"), os.path.join(out, "checkpoint-5"))
    os.remove(os.path.join(out, "checkpoint-5", "trainer_state.json"))
    train_router(tiny_model_dir, tiny_model_dir, gsm8k_file, out, router_config(out, max_steps=6), resume=True)
    state = json.load(open(os.path.join(out, "checkpoint-6", "trainer_state.json")))
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]


def test_trace_collator_labels_only_the_completion(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir, padding_side="right")
    rows = [
        {"prompt": "Question: 2+2?\nAnswer:\n", "completion": "2+2 = 4\nThe answer is 4.\n"},
        {"prompt": "Question: 1?\nAnswer:\n", "completion": "1\n"},
    ]
    batch = TraceCollator(tok, max_length=64)(rows)
    for i, row in enumerate(rows):
        p = tok(row["prompt"])["input_ids"]
        c = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        scored = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert scored == c
        assert batch["labels"][i, len(p) - 1] == c[0]
        assert torch.equal(batch["input_ids"][i, : len(p) + len(c)], torch.tensor(p + c))


def test_cli_train_commands(tiny_model_dir, gsm8k_file, tmp_path, capsys, fake_hub):
    from transformers_taro.cli import main

    rm_dir, router_dir = str(tmp_path / "rm"), str(tmp_path / "router")
    main(
        [
            "train-rm",
            "--model_name_or_path",
            tiny_model_dir,
            "--data",
            gsm8k_file,
            "--output-dir",
            rm_dir,
            "--use_peft",
            "--lora_r",
            "4",
            "--max-steps",
            "2",
            "--per-device-train-batch-size",
            "2",
            "--max-length",
            "768",
            "--use-cpu",
            "--push_to_hub",
            "--hub_model_id",
            "me/my-rm",
        ]
    )
    assert json.load(open(os.path.join(rm_dir, "adapter_config.json")))["r"] == 4
    # Trainer's own flags push the finished folder once, with its card, and no checkpoint on the way.
    assert fake_hub["repo"] == "me/my-rm" and "adapter_config.json" in fake_hub["files"]
    assert "README.md" in fake_hub["files"] and not any(f.startswith("checkpoint-") for f in fake_hub["files"])
    main(
        [
            "train-router",
            "--base-model",
            tiny_model_dir,
            "--reward-model",
            rm_dir,
            "--data",
            gsm8k_file,
            "--output-dir",
            router_dir,
            "--max-steps",
            "2",
            "--per-device-train-batch-size",
            "2",
            "--use-cpu",
            "--push_to_hub",
        ]
    )
    assert fake_hub["repo"] == "router"  # no --hub_model_id: Trainer's rule, the output folder's name
    assert "guide_config.json" in fake_hub["files"] and "router" in fake_hub["files"]
    out = capsys.readouterr().out
    assert f"Reward model saved to {rm_dir}" in out and f"Router saved to {router_dir}" in out
    assert TARoRouter.from_pretrained(router_dir).config.vocab_size == load_causal_lm(tiny_model_dir).config.vocab_size
    assert TARoGuide.from_pretrained(os.path.join(router_dir, "guide")).method == "taro"
    with pytest.raises(SystemExit):
        main(["train-rm", "--output-dir", rm_dir])
    assert "required: --data" in capsys.readouterr().err


def test_reward_model_ends_only_the_last_step_with_eos(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from transformers_taro.training.reward_model import RewardModelTrainer

    tok = load_tokenizer(tiny_model_dir)
    rows = [
        {"prompt": "Question: 2+3?\nAnswer:\n", "chosen": "2+3=5\n", "rejected": "2+3=6\n", "final": False},
        {
            "prompt": "Question: 2+3?\nAnswer:\n2+3=5\n",
            "chosen": "The answer is 5.\n",
            "rejected": "The answer is 6.\n",
            "final": True,
        },
    ]
    args = RewardModelConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to=[], max_length=64)
    trainer = RewardModelTrainer(
        model=load_causal_lm(tiny_model_dir), args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    middle, last = trainer.train_dataset[0], trainer.train_dataset[1]
    for side in ("chosen", "rejected"):
        assert middle[f"{side}_input_ids"][-1] != tok.eos_token_id
        assert last[f"{side}_input_ids"][-1] == tok.eos_token_id
        # What decoding sees: the tokenizer's own encoding of prompt + step, no BOS it would not add.
        text = rows[0]["prompt"] + rows[0][side]
        assert tok.decode(middle[f"{side}_input_ids"]) == text
        assert len(middle[f"{side}_labels"]) == len(middle[f"{side}_input_ids"])


def test_the_same_seed_gives_the_same_router(tiny_model_dir, gsm8k_file, trained_rm, tmp_path):
    routers = []
    for run in ("a", "b"):
        out = str(tmp_path / run)
        train_router(tiny_model_dir, trained_rm, gsm8k_file, out, router_config(out, max_steps=2, seed=0))
        routers.append(TARoRouter.from_pretrained(out))
    for p, q in zip(routers[0].parameters(), routers[1].parameters()):
        assert torch.equal(p, q)  # initial weights seeded too, not only the data order


def test_a_router_can_start_from_a_saved_one(tiny_model_dir, gsm8k_file, trained_rm, tmp_path):
    first = str(tmp_path / "first")
    train_router(tiny_model_dir, trained_rm, gsm8k_file, first, router_config(first, max_steps=2, alpha_init=2.0))
    start = TARoRouter.from_pretrained(first)
    again = str(tmp_path / "again")
    cfg = router_config(again, max_steps=1, learning_rate=0.0, init_router=first, seed=5)  # seed 5: another init
    train_router(tiny_model_dir, trained_rm, gsm8k_file, again, cfg)
    resumed = TARoRouter.from_pretrained(again)
    assert resumed.config.alpha_init == 2.0  # the saved router's settings, not the config's default of 1
    for p, q in zip(start.parameters(), resumed.parameters()):
        assert torch.equal(p, q)  # learning rate 0: it is the saved router
    other = {"a": trained_rm, "b": trained_rm}
    with pytest.raises(ValueError, match="init_router=.* was trained for 1 reward model"):
        train_router(
            tiny_model_dir,
            other,
            gsm8k_file,
            str(tmp_path / "x"),
            router_config(str(tmp_path / "x"), init_router=first),
        )


def test_router_margin_and_geometric_mixture_train_and_are_recorded(tiny_model_dir, gsm8k_file, trained_rm, tmp_path):
    """A geometric router trained on NLL + step margin: the loss is the documented objective, computed by hand."""
    from transformers_taro.training.router import RouterTrainer

    out = str(tmp_path / "router")
    cfg = router_config(
        out, mixture="geometric", margin_weight=2.0, margin_beta=0.5, pairs_data=gsm8k_file, nll_weight=0.5, max_steps=4
    )
    train_router(tiny_model_dir, trained_rm, gsm8k_file, out, cfg)
    router = TARoRouter.from_pretrained(out)
    assert router.config.mixture == "geometric" and "margin_weight=2.0" in router.config.training_summary
    state = json.load(open(os.path.join(out, "checkpoint-3", "trainer_state.json")))
    assert all("margin_loss" in h for h in state["log_history"] if "loss" in h)
    assert TARoGuide.from_pretrained(os.path.join(out, "guide")).router.config.mixture == "geometric"

    # The objective, recomputed from its definition on the trainer's own batches.
    base, rm = load_causal_lm(tiny_model_dir), load_causal_lm(trained_rm)
    tok = load_tokenizer(tiny_model_dir, padding_side="right")
    pairs = build_step_pairs(gsm8k_file, tok)
    import datasets

    trainer = RouterTrainer(
        base_model=base,
        reward_model=rm,
        model=router,
        args=cfg,
        step_pairs=pairs,
        train_dataset=datasets.Dataset.from_list(build_traces(gsm8k_file, tok)),
        data_collator=TraceCollator(tok, cfg.max_length),
    )
    batch = TraceCollator(tok, cfg.max_length)(build_traces(gsm8k_file, tok)[:3])
    drawn = trainer._pair_batch()

    def summed(rows, collator):
        b = collator(rows)
        with torch.no_grad():
            scores, w = guided_scores(
                base(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits,
                rm(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits,
                router=router,
            )
        logp = torch.log_softmax(scores, -1).gather(-1, b["labels"].clamp(min=0).unsqueeze(-1)).squeeze(-1)
        mask = b["labels"].ne(-100)
        return (logp * mask).sum(-1), mask, w

    trace_sums, trace_mask, w = summed([dict(r) for r in build_traces(gsm8k_file, tok)[:3]], TraceCollator(tok, 768))
    steps = TraceCollator(tok, 768, add_eos=False)
    chosen, _, _ = summed([{"prompt": p["prompt"], "completion": p["chosen"]} for p in drawn], steps)
    rejected, _, _ = summed([{"prompt": p["prompt"], "completion": p["rejected"]} for p in drawn], steps)
    prior = 1.0 / 2.0  # alpha_init 1 as a geometric weight
    expected = (
        0.5 * -trace_sums.sum() / trace_mask.sum()
        + cfg.alpha_reg * (((w - prior) ** 2) * trace_mask).sum() / trace_mask.sum()
        + 2.0 * -torch.nn.functional.logsigmoid(0.5 * (chosen - rejected)).mean()
    )
    with torch.no_grad():
        got = trainer.compute_loss(router, batch)
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)
    assert 0 <= float(w.min()) and float(w.max()) <= 1


def test_router_objective_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs pairs_data"):
        router_config(str(tmp_path), margin_weight=1.0)
    with pytest.raises(ValueError, match="learn nothing"):
        router_config(str(tmp_path), nll_weight=0.0)
    with pytest.raises(ValueError, match="mixture"):
        RouterTrainingConfig(output_dir=str(tmp_path), mixture="sum").router_config(10, 8)


def test_cached_frozen_outputs_train_the_same_router(tiny_model_dir, gsm8k_file, trained_rm, tmp_path):
    """The cache changes where the frozen outputs come from, not what they are: several epochs (traces and step
    pairs seen again) give the same router as recomputing them every step."""
    from transformers_taro.training.router import RouterTrainer

    pairs_file = tmp_path / "pairs.jsonl"  # one problem: a few step pairs, each drawn again and again
    pairs_file.write_text(json.dumps(gsm8k_rows(1)[0]) + "\n")
    routers, calls = [], []
    forward = RouterTrainer._forward_frozen

    def counted(self, inputs, keep, hidden):
        calls[-1] += len(inputs["labels"])
        return forward(self, inputs, keep, hidden)

    RouterTrainer._forward_frozen = counted
    try:
        for cached in (False, True):
            calls.append(0)
            out = str(tmp_path / f"cached-{cached}")
            cfg = router_config(
                out,
                max_steps=9,
                seed=0,
                cache_frozen_outputs=cached,
                margin_weight=1.0,
                pairs_data=pairs_file,
                use_reward_hidden_states=True,
                per_device_train_batch_size=2,
            )
            train_router(tiny_model_dir, trained_rm, gsm8k_file, out, cfg, limit=4)  # 4 traces, batch 2: 4.5 epochs
            routers.append(TARoRouter.from_pretrained(out))
    finally:
        RouterTrainer._forward_frozen = forward
    for p, q in zip(routers[0].parameters(), routers[1].parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    assert calls[1] < calls[0] / 2, calls  # the traces were computed once, not once per epoch


def test_frozen_output_cache_too_large_is_refused_before_training(tiny_model_dir, gsm8k_file, trained_rm, tmp_path):
    out = str(tmp_path / "router")
    with pytest.raises(ValueError, match="cache_max_gb"):
        train_router(
            tiny_model_dir,
            trained_rm,
            gsm8k_file,
            out,
            router_config(out, cache_frozen_outputs=True, cache_max_gb=1e-6),
        )
    assert not os.path.exists(os.path.join(out, "checkpoint-1"))


def test_step_pairs_longer_than_max_length_are_left_out_and_counted(tiny_model_dir, caplog):
    """TRL would cut a long pair from the end and train on a truncated step (or on none); it is left out instead."""
    from transformers_taro.training.reward_model import _fitting

    tok = load_tokenizer(tiny_model_dir)
    short = {"prompt": "Question: 2+3?\nAnswer:\n", "chosen": "2+3=5\n", "rejected": "2+3=6\n", "final": False}
    long = {**short, "prompt": "Question: " + "2+3 " * 200 + "?\nAnswer:\n"}
    with caplog.at_level("WARNING"):
        assert _fitting([short, long, short], tok, 64) == [short, short]
    assert "1 of 3 step pairs are longer than max_length=64" in caplog.text
    with pytest.raises(ValueError, match="raise max_length"):
        _fitting([long], tok, 64)


def test_resume_skips_a_checkpoint_with_unreadable_weights(tmp_path, caplog):
    """A checkpoint whose trainer_state.json is intact but whose weights are cut short is passed over, saying so,
    for the newest complete and readable one."""
    import logging
    import shutil

    from transformers_taro import TARoRouterConfig
    from transformers_taro.training.common import resume_point

    good = tmp_path / "checkpoint-3"
    good.mkdir()
    (good / "trainer_state.json").write_text('{"global_step": 3}')
    TARoRouter(TARoRouterConfig(vocab_size=50)).save_pretrained(good)
    shutil.copytree(good, tmp_path / "checkpoint-5")
    weights = tmp_path / "checkpoint-5" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a disk that filled up while it was written
    with caplog.at_level(logging.WARNING):
        assert resume_point(tmp_path, True) == str(good)
    assert "checkpoint-5 is skipped: model.safetensors cannot be read" in caplog.text
    shutil.rmtree(good)
    with pytest.raises(FileNotFoundError, match="no complete, readable checkpoint"):
        resume_point(tmp_path, True)

"""The router as a transformers model: save/load, Hub resolution offline, model card, train == decode."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import VOCAB, left_padded, tiny_lm
from safetensors.torch import load_file

from transformers_taro import TARoProcessor, TARoRouter, TARoRouterConfig
from transformers_taro.features import num_features, router_features


def trained_looking_router(**kw) -> TARoRouter:
    torch.manual_seed(0)
    router = TARoRouter(TARoRouterConfig(vocab_size=VOCAB, reward_model_name_or_path="org/rm", **kw))
    with torch.no_grad():
        for p in router.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # move away from init so a load that re-initialises would show
    return router


def test_save_load_is_bitwise_identical(tmp_path):
    router = trained_looking_router()
    router.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= set(os.listdir(tmp_path))
    loaded = TARoRouter.from_pretrained(tmp_path)
    for (n1, p1), (n2, p2) in zip(router.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    lb, lr = torch.randn(5, VOCAB).log_softmax(-1), torch.randn(5, VOCAB).log_softmax(-1)
    assert torch.equal(router.compute_alpha(lb, lr), loaded.compute_alpha(lb, lr))
    assert set(load_file(tmp_path / "model.safetensors")) == set(router.state_dict())


def test_hub_id_resolves_from_offline_cache(tmp_path):
    """A Hub id loads from a populated HF cache with local_files_only=True (no network)."""
    router = trained_looking_router()
    snap = tmp_path / "cache" / "models--org--my-router" / "snapshots" / ("a" * 40)
    router.save_pretrained(snap)
    (tmp_path / "cache" / "models--org--my-router" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--my-router" / "refs" / "main").write_text("a" * 40)
    loaded = TARoRouter.from_pretrained("org/my-router", cache_dir=tmp_path / "cache", local_files_only=True)
    assert torch.equal(loaded.head.weight, router.head.weight)
    with pytest.raises(OSError):
        TARoRouter.from_pretrained("org/not-cached", cache_dir=tmp_path / "cache", local_files_only=True)


def test_model_card_is_rendered_and_pushed(fake_hub):
    router = trained_looking_router(training_summary="12 steps on GSM8K pairs")
    router.push_to_hub("me/router")
    assert fake_hub["repo"] == "me/router"
    assert fake_hub["files"] == ["README.md", "config.json", "model.safetensors"]
    card = fake_hub["texts"]["README.md"]
    assert "`org/rm`" in card and "12 steps on GSM8K pairs" in card
    assert "$" not in card.split("## Use")[0]  # every placeholder filled


def test_config_has_no_generation_parameter_names(tmp_path):
    cfg = TARoRouterConfig(vocab_size=VOCAB)
    cfg.save_pretrained(tmp_path)  # transformers refuses generation parameters in a model config
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "taro_router" and saved["num_top_logprobs"] == 4


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="alpha_init"):
        TARoRouterConfig(alpha_init=5.0, alpha_max=4.0)
    with pytest.raises(ValueError, match="reward_hidden_size"):
        TARoRouterConfig(use_reward_hidden_states=True)


def test_fresh_router_starts_at_alpha_init():
    router = TARoRouter(TARoRouterConfig(alpha_init=0.5, alpha_max=2.0))
    lb, lr = torch.randn(4, VOCAB).log_softmax(-1), torch.randn(4, VOCAB).log_softmax(-1)
    assert torch.allclose(router.compute_alpha(lb, lr), torch.full((4,), 0.5), atol=0.05)


def test_features_shape_and_finiteness_with_ruled_out_tokens():
    lb = torch.randn(2, 3, VOCAB).log_softmax(-1)
    lr = torch.randn(2, 3, VOCAB).log_softmax(-1)
    lr[..., :10] = float("-inf")
    f = router_features(lb, lr, num_top_logprobs=3)
    assert f.shape == (2, 3, num_features(3)) and bool(torch.isfinite(f).all())


@pytest.mark.parametrize("hidden", [False, True])
def test_teacher_forced_alphas_equal_decoding_alphas(arch, hidden):
    """The router sees at training time exactly what it sees at decoding time (one feature function)."""
    base, rm = tiny_lm(arch, seed=1), tiny_lm(arch, seed=2)
    cfg = dict(use_reward_hidden_states=True, reward_hidden_size=32) if hidden else {}
    router = trained_looking_router(**cfg)
    ids, mask = left_padded([[1, 5, 9, 14, 3, 7], [1, 22, 8]])
    proc = TARoProcessor(rm, router=router, attention_mask=mask)
    seqs = base.generate(
        input_ids=ids,
        attention_mask=mask,
        logits_processor=[proc],
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    full_mask = torch.cat([mask, torch.ones(2, 6, dtype=torch.long)], 1)
    pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        b = base(input_ids=seqs, attention_mask=full_mask, position_ids=pos).logits
        r = rm(input_ids=seqs, attention_mask=full_mask, position_ids=pos, output_hidden_states=True)
        h = r.hidden_states[-1] if hidden else None
        alphas = router(b, r.logits, reward_hidden_states=h).alpha
    p = ids.shape[1]
    assert torch.allclose(alphas[:, p - 1 : -1], proc.alphas, atol=1e-4)


def test_forward_returns_the_weights_only_and_the_guided_nll_trains_them():
    from transformers_taro import mix

    router = trained_looking_router()
    b, r = torch.randn(2, 4, VOCAB), torch.randn(2, 4, VOCAB)
    labels = torch.tensor([[3, 4, -100, 6], [-100, 1, 2, 3]])
    out = router(b, r)
    assert set(out.keys()) == {"alpha"}  # the router computes weights; it mixes nothing and scores nothing
    assert torch.allclose(out.alpha, router.compute_alpha(b.log_softmax(-1), r.log_softmax(-1)))
    mixed = mix(b.log_softmax(-1), r.log_softmax(-1), out.alpha).log_softmax(-1)
    a = out.alpha.unsqueeze(-1)
    assert torch.allclose(mixed, (b.log_softmax(-1) + a * r.log_softmax(-1)).log_softmax(-1), atol=1e-6)
    keep = labels != -100
    nll = -mixed[keep].gather(-1, labels[keep].unsqueeze(-1)).mean()
    nll.backward()
    assert router.head.weight.grad is not None and router.head.weight.grad.abs().sum() > 0


def test_geometric_router_mixes_convexly_and_decodes_greedily_like_its_product_alpha(tmp_path):
    from transformers_taro import TARoRouterConfig
    from transformers_taro.guidance import guided_scores

    torch.manual_seed(0)
    router = TARoRouter(TARoRouterConfig(vocab_size=50, mixture="geometric", alpha_init=1.0)).eval()
    lb, lr = torch.randn(4, 7, 50), torch.randn(4, 7, 50)
    with torch.no_grad():
        scores, w = guided_scores(lb, lr, router=router)
    assert torch.allclose(w, torch.full_like(w, 0.5), atol=1e-3)  # alpha_init 1 = w 1/2
    blp, rlp = lb.log_softmax(-1), lr.log_softmax(-1)
    assert torch.allclose(scores, (1 - w[..., None]) * blp + w[..., None] * rlp, atol=1e-5)
    product, _ = guided_scores(lb, lr, alpha=1.0)  # same greedy token as alpha = w / (1 - w), everywhere
    assert torch.equal(scores.argmax(-1), product.argmax(-1))
    router.save_pretrained(tmp_path / "r")
    again = TARoRouter.from_pretrained(tmp_path / "r")
    assert again.config.mixture == "geometric"
    with pytest.raises(ValueError, match="mixture"):
        TARoRouterConfig(mixture="sum")

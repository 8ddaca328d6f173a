"""Tiny randomly initialised causal LMs of three architectures, built in code: no test needs the Hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 96
ARCHS = ("llama", "qwen2", "gpt2")


def tiny_lm(
    arch: str = "llama", vocab: int = VOCAB, width: int = 32, layers: int = 2, seed: int = 0, max_positions: int = 256
):
    """A tiny causal LM. A large init range makes next-token distributions peaked, so greedy choices are not
    decided by float noise and equality tests between two correct computations are meaningful."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.3)
    if arch == "llama":
        cfg = LlamaConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            **common,
        )
        model = LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = Qwen2Config(
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            **common,
        )
        model = Qwen2ForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(n_embd=width, n_layer=layers, n_head=4, n_positions=max_positions, **common)
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(arch)
    model.generation_config.pad_token_id = 0
    return model.eval()


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


def left_padded(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask of a left-padded batch."""
    n = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (n - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = FIXTURES / "data"
"""A `TARO_DATA_DIR` folder of small benchmark excerpts (tests/fixtures/README.md): no test reads outside the
repository."""
GSM8K_TRAIN = DATA / "gsm8k" / "train.jsonl"
GSM8K_TEST = DATA / "gsm8k" / "test.jsonl"


@pytest.fixture(autouse=True)
def fixture_data_dir(monkeypatch):
    """Every test reads benchmark files from the fixtures, never from a folder beside the checkout, and never
    reaches for the Hub (a name that is not a local folder fails at once instead of waiting on the network)."""
    monkeypatch.setenv("TARO_DATA_DIR", str(DATA))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def gsm8k_rows(n: int) -> list[dict]:
    """The first n rows of the GSM8K train excerpt (at most 200)."""
    import json

    with open(GSM8K_TRAIN) as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder with a tiny Llama and a small byte-level BPE tokenizer trained here on GSM8K text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["question"] + "\n" + r["answer"] for r in gsm8k_rows(200)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_lm("llama", vocab=len(hf_tok), width=32, seed=3, max_positions=1024)
    model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id = 0, 1, 2
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return str(folder)


def as_cached_hub_repo(folder: Path, repo_id: str, cache: Path, monkeypatch) -> None:
    """Move `folder` into `cache` laid out as the HF cache lays out a downloaded repo `repo_id`, and make it the
    cache `huggingface_hub` reads."""
    import os

    from huggingface_hub import constants

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.parent.mkdir(parents=True)
    os.rename(folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture
def fake_hub(monkeypatch):
    """A stand-in for `huggingface_hub.HfApi` that records what would be uploaded: repo, file names, texts."""
    import os

    uploaded: dict = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kw):
            uploaded["repo"] = repo_id
            uploaded["files"] = sorted(os.listdir(folder_path))
            uploaded["texts"] = {
                name: open(os.path.join(folder_path, name)).read()
                for name in uploaded["files"]
                if name.endswith((".md", ".json"))
            }
            return "ok"

    monkeypatch.setattr("transformers_taro.cards.HfApi", FakeApi)
    return uploaded

"""`taro` and its commands describe every option with its default; bare `taro` prints the help."""

from __future__ import annotations

import argparse

import pytest

from transformers_taro.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_bare_taro_prints_the_help(capsys):
    main([])
    out = capsys.readouterr().out
    for command in ("demo", "generate", "eval", "train-rm", "train-router", "lm-eval"):
        assert command in out


@pytest.mark.parametrize("command", ["demo", "generate", "eval"])
def test_every_option_is_described_with_its_default(command, capsys):
    parser = _subparsers(build_parser())[command]
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"taro {command}: {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "(default:" in out


@pytest.mark.parametrize("command,flag", [("train-rm", "--use_peft"), ("train-router", "--reward_model")])
def test_training_commands_show_their_own_help(command, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert flag in out and "(default:" in out


def test_demo_refuses_negative_sizes():
    from transformers_taro.evaluation.demo import run_demo

    with pytest.raises(ValueError, match="0 skips that part"):
        run_demo(problems=-1)


def test_a_bad_prompt_or_html_path_is_refused_before_loading(tmp_path, monkeypatch):
    import transformers_taro.evaluation.session as session

    monkeypatch.setattr(session, "load_session", lambda *a, **k: pytest.fail("loaded models"))
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # how Python hands over argv bytes that are not UTF-8
    with pytest.raises(SystemExit, match="not valid UTF-8"):
        main(["generate", bad])
    for html in (tmp_path / "no-such-folder" / "a.html", tmp_path):
        with pytest.raises(SystemExit, match="--html .* cannot be written"):
            main(["generate", "What is 2 + 3?", "--html", str(html)])


def test_an_uncached_hub_id_for_a_router_or_reward_model_says_so(tmp_path):
    for flag in ("--router", "--reward_model"):
        args = ["eval", "--task", "gsm8k", "--output_dir", str(tmp_path / "o"), flag, "someone/not-cached"]
        with pytest.raises(SystemExit, match="not in the HF cache, and the Hub is unreachable"):
            main([*args, "--alpha", "0.5"] if flag == "--reward_model" else args)


def test_a_prompt_longer_than_the_models_positions_is_named():
    from conftest import tiny_lm

    from transformers_taro.evaluation.session import Session

    model = tiny_lm("gpt2", max_positions=16)

    class Words:  # a stand-in tokenizer: one token per word
        pad_token_id, eos_token_id = 0, 2

        def __call__(self, prompts, **kw):
            import torch

            ids = torch.tensor([[1 + i % 90 for i in range(len(p.split()))] for p in prompts])
            return _Batch(input_ids=ids, attention_mask=torch.ones_like(ids))

    class _Batch(dict):
        def to(self, device):
            return self

    with pytest.raises(ValueError, match="The prompt has 40 tokens; the model takes 16"):
        Session(model, Words()).generate([" ".join(["w"] * 40)], max_new_tokens=2)

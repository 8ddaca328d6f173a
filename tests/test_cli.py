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

"""`taro`: the command line. Each command parses its arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

_Formatter = argparse.ArgumentDefaultsHelpFormatter
DESCRIPTION = """TARo / GenARM reward-guided decoding for Hugging Face transformers.

  taro demo                                     measured evidence, then SmolLM2 with a shipped guide, offline
  taro generate "prompt" [--guide ID]           stream a guided answer, coloured by alpha
  taro eval --task gsm8k [--guide ID] --output_dir DIR
  taro train-rm --data PATH --output_dir DIR [--use_peft] ...
  taro train-router --reward_model DIR --data PATH --output_dir DIR ...
  taro lm-eval --model taro --model_args guide=ID --tasks gsm8k ...

`taro COMMAND --help` describes every option of a command. A mistake in what was asked ends a command with one line
on stderr; add --debug to see the traceback."""


@dataclass
class TrainRMArguments:
    data: str = field(metadata={"help": "GSM8K or Math-Step-DPO rows: a JSON/JSONL file or a Hub dataset id."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N source rows."})
    resume: bool = field(default=False, metadata={"help": "Continue from the newest checkpoint in --output_dir."})
    sample_rejected: bool = field(default=False, metadata={"help": "GSM8K: sample and auto-label incorrect steps."})
    samples_per_step: int = field(default=2, metadata={"help": "Samples per gold context with --sample_rejected."})
    sampling_batch_size: int = field(default=16, metadata={"help": "Contexts sampled together with --sample_rejected."})


@dataclass
class TrainRouterArguments:
    reward_model: list[str] = field(
        metadata={
            "help": "The reward model: Hub id, folder or LoRA adapter folder. Several: name=path pairs, after one "
            "flag or each after its own, in the order the router weighs them."
        }
    )
    data: str = field(metadata={"help": "GSM8K or Math-Step-DPO rows: a JSON/JSONL file or a Hub dataset id."})
    base_model: str | None = field(default=None, metadata={"help": "Hub id or folder (None: embedded SmolLM2)."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N source rows."})
    resume: bool = field(default=False, metadata={"help": "Continue from the newest checkpoint in --output_dir."})
    device_map: str | None = field(default=None, metadata={"help": "'auto' spreads large frozen models (accelerate)."})


def train_rm(argv: list[str]) -> None:
    from .training import RewardModelConfig, push_reward_model, train_reward_model  # noqa: I001 (checks the extra)
    from trl import ModelConfig, get_peft_config

    parser = HfArgumentParser(
        (TrainRMArguments, RewardModelConfig, ModelConfig),
        prog="taro train-rm",
        description="Train a token-level reward model (GenARM's loss) on step pairs.",
    )
    args, config, model_args = parser.parse_args_into_dataclasses(argv)
    push, config.push_to_hub = config.push_to_hub, False  # the finished folder is pushed once, with its card
    out = train_reward_model(
        model_args.model_name_or_path,
        args.data,
        config.output_dir,
        config,
        peft_config=get_peft_config(model_args),
        limit=args.limit,
        resume=args.resume,
        sample_rejected=args.sample_rejected,
        samples_per_step=args.samples_per_step,
        sampling_batch_size=args.sampling_batch_size,
    )
    if not _main_process():
        return
    print(f"Reward model saved to {out}")
    if push:
        push_reward_model(out, _hub_model_id(config))
        print(f"Pushed to {_hub_model_id(config)}")


def train_router_cmd(argv: list[str]) -> None:
    from .guide import TARoGuide
    from .training import RouterTrainingConfig, train_router

    parser = HfArgumentParser(
        (TrainRouterArguments, RouterTrainingConfig),
        prog="taro train-router",
        description="Train a router next to a frozen base and reward model; writes a guide.",
    )
    args, config = parser.parse_args_into_dataclasses(_merge_repeated(argv, "--reward_model", "--reward-model"))
    push, config.push_to_hub = config.push_to_hub, False  # the finished guide is pushed once, with its card
    out = train_router(
        args.base_model,
        args.reward_model,
        args.data,
        config.output_dir,
        config,
        limit=args.limit,
        resume=args.resume,
        device_map=args.device_map,
    )
    if not _main_process():
        return
    print(f"Router saved to {out}; the guide (reward model + router) to {out}/guide")
    if push:
        TARoGuide.from_pretrained(f"{out}/guide").push_to_hub(_hub_model_id(config))
        print(f"Pushed the guide to {_hub_model_id(config)}")


def _merge_repeated(argv: list[str], *flag: str) -> list[str]:
    """`--flag a --flag b` as `--flag a b`: HfArgumentParser reads a list field from one flag, and a repeated flag
    would silently keep only its last values."""
    values, rest, i = [], [], 0
    while i < len(argv):
        name, eq, inline = argv[i].partition("=")
        if name in flag:
            if eq:
                values.append(inline)
                i += 1
            else:
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    values.append(argv[i])
                    i += 1
        else:
            rest.append(argv[i])
            i += 1
    return rest + ([flag[0], *values] if values else [])


def _check_writable(path: Path, flag: str) -> None:
    """`path` can be written (a new or existing file in an existing, writable folder), or exit saying why."""
    folder = path.parent if str(path.parent) else Path(".")
    if (
        path.is_dir()
        or not folder.is_dir()
        or not os.access(folder, os.W_OK)
        or (path.exists() and not os.access(path, os.W_OK))
    ):
        raise SystemExit(
            f"{flag} {path} cannot be written (a folder, a missing folder, or no permission): choose another path."
        )


def _hub_model_id(config) -> str:
    """Trainer's rule: `--hub_model_id`, else the output folder's name."""
    return config.hub_model_id or Path(config.output_dir).name


def _main_process() -> bool:
    """Under a multi-process launch only the main process reports and uploads."""
    from accelerate import PartialState

    return PartialState().is_main_process


def _positive_int(text: str) -> int:
    """A count of at least 1, checked while the arguments are parsed, before anything loads."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _model_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument(
        "--base_model", "--base-model", default=None, help="base model: Hub id or folder (None: the embedded SmolLM2)"
    )
    p.add_argument(
        "--guide",
        default=None,
        help="guide folder or Hub id (None: the shipped SmolLM2 guide, for the default base only)",
    )
    p.add_argument(
        "--reward_model",
        "--reward-model",
        action="append",
        default=None,
        help="instead of --guide: assemble one from this reward model (Hub id, folder or LoRA adapter); repeat as "
        "name=path for several",
    )
    p.add_argument("--router", default=None, help="router folder or Hub id (replaces the guide's router)")
    p.add_argument(
        "--alpha",
        action="append",
        default=None,
        help="a fixed guidance weight (GenARM); with a TARo guide, decode GenARM at this weight; with several reward "
        "models, repeat as name=weight",
    )
    p.add_argument("--method", type=_method, default=None, help=_METHOD_HELP)
    p.add_argument(
        "--max_new_tokens",
        "--max-new-tokens",
        type=_positive_int,
        default=max_new_tokens,
        help="tokens to generate at most",
    )
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"), help="model dtype (None: as saved)")
    p.add_argument(
        "--device_map", "--device-map", default=None, help="'auto' spreads large models over the GPUs (accelerate)"
    )
    p.add_argument(
        "--no_fused",
        "--no-fused",
        dest="fused",
        action="store_const",
        const=False,
        default=None,
        help="decode with the processor path even where the fused path (LoRA reward model) applies",
    )
    p.add_argument(
        "--no_repeat_ngram_size",
        "--no-repeat-ngram-size",
        type=int,
        default=None,
        help="a repetition guard: never generate the same N tokens twice (None: no guard)",
    )
    p.add_argument(
        "--system_prompt",
        "--system-prompt",
        default=None,
        help="every prompt's system message; '' for none (None: the task's, else the guide's, else the math prompt)",
    )


def _method(value: str) -> str:
    """`--method`: base, genarm, taro, or genarm:NAME (one reward model of a guide that holds several)."""
    kind, colon, name = value.partition(":")
    if kind not in ("base", "genarm", "taro") or (colon and (kind != "genarm" or not name)):
        raise argparse.ArgumentTypeError(f"{value!r}: choose base, genarm, taro, or genarm:NAME (a reward model)")
    return value


def _alpha(values: list[str] | None) -> float | dict[str, float] | None:
    """`--alpha`: one number, or name=weight pairs (repeated) for a guide of several reward models."""
    if not values:
        return None
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        pairs = [v.partition("=") for v in values]
        if any(not eq for _, eq, _ in pairs):
            raise ValueError
        names = [name for name, _, _ in pairs]
        if len(set(names)) < len(names):
            raise SystemExit(f"--alpha names a reward model twice ({names}): give each one weight.")
        return {name: float(weight) for name, _, weight in pairs}
    except ValueError:
        raise SystemExit(
            f"--alpha {' '.join(values)}: pass one number, or name=weight for each reward model (e.g. --alpha "
            "arith=1 --alpha compare=0.5)."
        ) from None


def _load_session(a: argparse.Namespace):
    """The base and guide `_model_args`' flags ask for."""
    from .evaluation.session import load_session

    return load_session(
        a.base_model,
        a.guide,
        reward_model=a.reward_model[0] if a.reward_model and len(a.reward_model) == 1 else a.reward_model,
        router=a.router,
        alpha=_alpha(a.alpha),
        method=a.method,
        device_map=a.device_map,
        dtype=a.dtype,
        fused=a.fused,
        no_repeat_ngram_size=a.no_repeat_ngram_size,
        system_prompt=a.system_prompt,
    )


def generate(a: argparse.Namespace) -> None:
    # Checked before any model loads: a bad prompt or output path found after loading would waste the wait.
    try:
        a.prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise SystemExit(
            "The prompt is not valid UTF-8 text (its bytes could not be decoded): pass it as UTF-8."
        ) from None
    if a.html is not None:
        _check_writable(Path(a.html), "--html")

    session = _load_session(a)
    session.stream(a.prompt, max_new_tokens=a.max_new_tokens, html=a.html)


def evaluate_cmd(a: argparse.Namespace) -> None:
    from .evaluation.runner import run_eval
    from .tasks import load_task

    task = load_task(a.task, a.data, question_field=a.question_field, answer_field=a.answer_field)
    session = _load_session(a)
    report = run_eval(
        session,
        task,
        a.output_dir,
        limit=a.limit,
        offset=a.offset,
        batch_size=a.batch_size,
        max_new_tokens=a.max_new_tokens,
    )
    if report:  # only the main process reports under accelerate launch
        print(
            f"{report['task']} {report['method']}: accuracy {report['accuracy']:.3f} "
            f"(95% CI {report['ci95'][0]:.3f}-{report['ci95'][1]:.3f}, n={report['n']}), "
            f"{report['tokens_per_s']:.1f} tokens/s. Written to {a.output_dir}"
        )


def demo(a: argparse.Namespace) -> None:
    from .evaluation.demo import run_demo

    run_demo(
        a.problems,
        a.max_new_tokens,
        a.data,
        a.output_dir,
        guide=a.guide,
        dtype=a.dtype,
        miniworld_problems=a.miniworld_problems,
    )


def lm_eval_cmd(argv: list[str]) -> None:
    try:
        from .evaluation.harness import main as harness_main
    except ImportError as err:
        raise SystemExit(
            f"taro lm-eval needs lm-evaluation-harness: pip install 'transformers-taro[lm-eval]' ({err})"
        ) from err
    harness_main(argv)


_METHOD_HELP = (
    "base: no guidance; genarm: the guide's reward model(s) at fixed weights; genarm:NAME: only the reward model "
    "NAME of a guide of several, at its fixed weight (or --alpha); taro: the guide's router "
    "(None: the guide's own method, or genarm when --alpha is given)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taro", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="the measured effect (mini-world), then a real model, SmolLM2, on arithmetic (offline)",
        formatter_class=_Formatter,
        description="1. The shipped mini-world on fresh mixed traffic of two domains: the base, each "
        "reward model alone, the best fixed pair of weights, per-domain weights and the router over both, "
        "accuracy and McNemar p-values, a plot. 2. The embedded SmolLM2-135M-Instruct alone, with GenARM and "
        "with TARo (the shipped arithmetic guide) on arithmetic test problems, then one TARo answer coloured "
        "by alpha.",
    )
    p.add_argument(
        "--miniworld_problems",
        "--miniworld-problems",
        type=int,
        default=300,
        help="mini-world test problems per domain (0: skip part 1)",
    )
    p.add_argument(
        "--problems",
        type=int,
        default=40,
        help="how many arithmetic problems SmolLM2 solves in part 2, alone, with GenARM and with TARo (0: skip it)",
    )
    p.add_argument("--guide", default=None, help="guide folder or Hub id (None: the shipped arithmetic guide)")
    p.add_argument(
        "--max_new_tokens",
        "--max-new-tokens",
        type=_positive_int,
        default=96,
        help="tokens to generate at most per answer",
    )
    p.add_argument(
        "--data",
        default=None,
        help="GSM8K-format JSONL for part 2 (None: the arithmetic test problems shipped with the package)",
    )
    p.add_argument("--output_dir", "--output-dir", default="taro-demo", help="where alphas.html and alphas.png go")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"), help="model dtype (None: as saved)")
    p.set_defaults(run=demo)

    p = sub.add_parser(
        "generate",
        help="stream a guided answer, coloured by alpha",
        formatter_class=_Formatter,
        description="Stream a guided answer to one prompt, then show it coloured by alpha.",
    )
    _model_args(p, max_new_tokens=256)
    p.add_argument("--html", default=None, help="also write the alpha-coloured answer to this HTML file")
    p.add_argument("prompt", help="the question to answer")
    p.set_defaults(run=generate)

    from .tasks import TASKS

    p = sub.add_parser(
        "eval",
        help="accuracy (bootstrap CI) and tokens/s on a task",
        formatter_class=_Formatter,
        description="Evaluate on a task; writes generations.jsonl and report.json. Under "
        "`accelerate launch` the problems are sharded over processes.",
    )
    _model_args(p, max_new_tokens=256)
    p.add_argument("--task", required=True, choices=sorted(TASKS), help="the benchmark")
    p.add_argument(
        "--data",
        default=None,
        help="the task's JSONL file, a dataset folder or a Hub dataset id "
        "(None: under $TARO_DATA_DIR, else the task's Hub dataset)",
    )
    p.add_argument(
        "--question_field", "--question-field", default="question", help="task jsonl: the field holding the question"
    )
    p.add_argument(
        "--answer_field", "--answer-field", default="answer", help="task jsonl: the field holding the numeric answer"
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N problems (None: all)")
    p.add_argument("--offset", type=int, default=0, help="skip the first N problems")
    p.add_argument("--batch_size", "--batch-size", type=int, default=8, help="prompts generated together")
    p.add_argument("--output_dir", "--output-dir", required=True, help="where generations.jsonl and report.json go")
    p.set_defaults(run=evaluate_cmd)

    # These parse their own arguments (HfArgumentParser, lm-eval): everything after the command goes to them.
    for name, text, run in (
        ("train-rm", "train a token-level reward model (TRL, GenARM's loss)", train_rm),
        ("train-router", "train a router next to a frozen base and reward model; writes a guide", train_router_cmd),
        ("lm-eval", "lm-evaluation-harness with the `taro` model registered", lm_eval_cmd),
    ):
        p = sub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        p.add_argument("argv", nargs=argparse.REMAINDER)
        p.set_defaults(run_argv=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    """The `taro` command. A mistake in what was asked (a library `ValueError`, a missing file, a folder held by
    another run) ends it with one line on stderr and exit status 1; `--debug`, anywhere, shows the traceback."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    if not argv:
        parser.print_help()
        return
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if hasattr(args, "run_argv"):
            args.run_argv(args.argv)
        else:
            args.run(args)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        if debug:
            raise
        raise SystemExit(f"taro {args.command}: error: {err} (--debug shows where)") from None


if __name__ == "__main__":
    main()

"""`taro`: the command line. Each command parses its arguments and calls the library; nothing else lives here.

    taro demo
    taro generate [--base-model ID] [--reward-model ID] [--router ID | --alpha A] "prompt"
    taro eval --task gsm8k --method taro --limit 300 --output-dir runs/gsm8k-taro
    taro train-rm --model ID --data PATH --output-dir DIR [--lora] [--max-steps N] [--beta B] ...
    taro train-router --base-model ID --reward-model ID --data PATH --output-dir DIR [--max-steps N] ...
    taro lm-eval --model taro --model_args method=taro --tasks gsm8k [any lm-evaluation-harness flag]
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

COMMANDS = ("demo", "generate", "eval", "train-rm", "train-router", "lm-eval")


@dataclass
class TrainRMArguments:
    model: str | None = field(default=None, metadata={"help": "Hub id or folder (default: embedded SmolLM2-135M)."})
    data: str = field(default="", metadata={"help": "GSM8K or Math-Step-DPO rows: JSON/JSONL file or Hub id."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N source rows."})
    resume: bool = field(default=False, metadata={"help": "Continue from the newest checkpoint in --output-dir."})
    sample_rejected: bool = field(default=False, metadata={"help": "GSM8K: sample and auto-label incorrect steps."})
    samples_per_step: int = field(default=2, metadata={"help": "Samples per gold context with --sample-rejected."})
    upload_to: str | None = field(default=None, metadata={"help": "Hub repo to upload the result to."})


@dataclass
class TrainRouterArguments:
    base_model: str | None = field(default=None, metadata={"help": "Hub id or folder (default: embedded)."})
    reward_model: str = field(default="", metadata={"help": "Hub id, folder or LoRA adapter folder."})
    data: str = field(default="", metadata={"help": "GSM8K or Math-Step-DPO rows: JSON/JSONL file or Hub id."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N source rows."})
    resume: bool = field(default=False, metadata={"help": "Continue from the newest checkpoint in --output-dir."})
    device_map: str | None = field(default=None, metadata={"help": "'auto' spreads large frozen models (accelerate)."})
    upload_to: str | None = field(default=None, metadata={"help": "Hub repo to upload the router to."})


def _require(value: str, flag: str, command: str) -> None:
    if not value:
        raise SystemExit(f"taro {command}: {flag} is required (see taro {command} --help).")


def train_rm(argv: list[str]) -> None:
    from .training import RewardModelConfig, push_reward_model, train_reward_model

    parser = HfArgumentParser((TrainRMArguments, RewardModelConfig), prog="taro train-rm")
    args, config = parser.parse_args_into_dataclasses(argv)
    _require(args.data, "--data", "train-rm")
    out = train_reward_model(args.model, args.data, config.output_dir, config, limit=args.limit, resume=args.resume,
                             sample_rejected=args.sample_rejected, samples_per_step=args.samples_per_step)
    print(f"Reward model saved to {out}")
    if args.upload_to:
        push_reward_model(out, args.upload_to)
        print(f"Uploaded to {args.upload_to}")


def train_router_cmd(argv: list[str]) -> None:
    from .router import TARoRouter
    from .training import RouterTrainingConfig, train_router

    parser = HfArgumentParser((TrainRouterArguments, RouterTrainingConfig), prog="taro train-router")
    args, config = parser.parse_args_into_dataclasses(argv)
    _require(args.reward_model, "--reward-model", "train-router")
    _require(args.data, "--data", "train-router")
    out = train_router(args.base_model, args.reward_model, args.data, config.output_dir, config, limit=args.limit,
                       resume=args.resume, device_map=args.device_map)
    print(f"Router saved to {out}")
    if args.upload_to:
        TARoRouter.from_pretrained(out).push_to_hub(args.upload_to)
        print(f"Uploaded to {args.upload_to}")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-model", default=None, help="Hub id or folder (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--reward-model", default=None, help="Hub id, folder or LoRA adapter (default: the shipped one)")
    p.add_argument("--router", default=None, help="router Hub id or folder (default: the shipped one)")
    p.add_argument("--alpha", type=float, default=None, help="fixed guidance weight (GenARM)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device-map", default=None, help="'auto' to spread large models with accelerate")


def generate(argv: list[str]) -> None:
    from .evaluation.session import load_session

    p = argparse.ArgumentParser(prog="taro generate", description="Stream a guided answer, coloured by alpha.")
    _model_args(p)
    p.add_argument("--method", choices=("base", "genarm", "taro"), default=None,
                   help="default: genarm with --alpha, else taro")
    p.add_argument("--html", default=None, help="also write the alpha-coloured answer to this HTML file")
    p.add_argument("prompt")
    a = p.parse_args(argv)
    method = a.method or ("genarm" if a.alpha is not None else "taro")
    session = load_session(a.base_model, a.reward_model, a.router, method, a.alpha, a.device_map)
    session.stream(a.prompt, max_new_tokens=a.max_new_tokens, html=a.html)


def evaluate_cmd(argv: list[str]) -> None:
    from .evaluation.runner import run_eval
    from .evaluation.session import load_session
    from .evaluation.tasks import TASKS, load_task

    p = argparse.ArgumentParser(prog="taro eval", description="Accuracy (bootstrap CI) and tokens/s on a task.")
    _model_args(p)
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--data", default=None, help="the task's file (default: ../shared/data/...)")
    p.add_argument("--question-field", default="question")
    p.add_argument("--answer-field", default="answer")
    p.add_argument("--method", required=True, choices=("base", "genarm", "taro"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--offset", type=int, default=0, help="skip the first N problems")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output-dir", required=True)
    a = p.parse_args(argv)
    task = load_task(a.task, a.data, question_field=a.question_field, answer_field=a.answer_field)
    session = load_session(a.base_model, a.reward_model, a.router, a.method, a.alpha, a.device_map)
    report = run_eval(session, task, a.output_dir, limit=a.limit, offset=a.offset, batch_size=a.batch_size,
                      max_new_tokens=a.max_new_tokens)
    print(f"{report['task']} {report['method']}: accuracy {report['accuracy']:.3f} "
          f"(95% CI {report['ci95'][0]:.3f}-{report['ci95'][1]:.3f}, n={report['n']}), "
          f"{report['tokens_per_s']:.1f} tokens/s. Written to {a.output_dir}")


def demo(argv: list[str]) -> None:
    from .evaluation.demo import run_demo

    p = argparse.ArgumentParser(prog="taro demo", description="Base vs GenARM vs TARo on a few GSM8K problems.")
    p.add_argument("--problems", type=int, default=4)
    p.add_argument("--alpha", type=float, default=None, help="GenARM weight (default: the shipped best alpha)")
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--data", default=None, help="GSM8K test file (default: ../shared/data/gsm8k/test.jsonl)")
    p.add_argument("--output-dir", default="taro-demo", help="where the HTML and PNG go")
    a = p.parse_args(argv)
    run_demo(a.problems, a.alpha, a.max_new_tokens, a.data, a.output_dir)


def lm_eval_cmd(argv: list[str]) -> None:
    try:
        from .evaluation.harness import main as harness_main
    except ImportError as err:
        raise SystemExit(f"taro lm-eval needs lm-evaluation-harness: pip install 'transformers-taro[lm-eval]' ({err})")
    harness_main(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        raise SystemExit(0 if not argv or argv[0] in ("-h", "--help") else f"unknown command {argv[0]!r}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command, rest = argv[0], argv[1:]
    {"demo": demo, "generate": generate, "eval": evaluate_cmd, "train-rm": train_rm,
     "train-router": train_router_cmd, "lm-eval": lm_eval_cmd}[command](rest)


if __name__ == "__main__":
    main()

"""Guided decoding speed and memory, measured side by side in one run (ratios, not absolute figures, are the result).

On the embedded SmolLM2-135M-Instruct with the shipped guide (a LoRA reward model and a router), for each batch
size, in interleaved rounds (so drift of a shared machine hits every method alike), median tokens/s of:
- plain `generate` (no guidance);
- the processor path: `guide.generate(base, fused=False)` (base forward + reward-model forward per token);
- the fused path: `guide.generate(base, fused=True)` (one forward over 2B rows);
- peft's own mixed batch: one `PeftModel` over a second copy of the base with the guide's adapter(s), each prompt
  repeated once per block with `adapter_names=["__base__", ..., "default", ...]`, guided by a logits processor that
  mixes the blocks' scores with the same router (`guidance.guided_scores`) and gives every block the guided scores,
  so all blocks take the same token: what a peft user would build first;
- transformers' CFG processor with the reward model as its guide (`UnbatchedClassifierFreeGuidanceLogitsProcessor`),
  a peer that also runs a second model per token;
- on CPU, for information: plain `generate` with its output layer run through oneDNN, as the fused path runs its
  own (`fused.onednn_forward`). That kernel is faster at 1 row too, so the fused path is also given as a ratio to
  half of this stronger plain baseline.
Each is printed as a ratio to the two-forward limit (plain / 2): what a guided token costs if the reward model
costs as much as the base. With `--reward-models K` (K > 1) the guide holds K LoRA reward models (the shipped
adapter, and copies of it with other weights: its B matrices negated, or scaled) and a seeded router over them;
the limit is then plain / (K + 1), the CFG peer (one guide model) is left out, and the fused path runs
(K + 1)·B rows. Then whether the fused path gives the processor path's tokens (greedy, every row of a
batch of GSM8K-style prompts), and the peak memory (max RSS) of a process that loads the models and decodes with
each path, each in its own process (after loading, so the loading peak common to both does not hide it).

    python benchmarks/throughput.py                       # batch 1 and 8, 64 new tokens, 3 rounds
    python benchmarks/throughput.py --reward-models 2     # a guide of two LoRA reward models and a router
    python benchmarks/throughput.py --rounds 5 --batch-sizes 1 4 8 --new-tokens 32
    python benchmarks/throughput.py --device cuda --random-weights ~/.cache/transformers_taro/<model folder>

`--random-weights DIR` builds the embedded model's architecture from DIR's `config.json` and tokenizer with seeded
random weights, and points the shipped adapter at them: for a machine that lacks the 98 MB GGUF (speed does not
depend on the weights' values; the identical-tokens check still compares the two paths on the same weights).
On CUDA, memory is the peak the device allocated while decoding, not the process's resident memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from peft import PeftConfig
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)

from transformers_taro import DEFAULT_GUIDE, TARoGuide
from transformers_taro.fused import onednn_applies, onednn_forward
from transformers_taro.guidance import guided_scores
from transformers_taro.models import load_causal_lm, load_tokenizer

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. How much "
    "more money does Betty need?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
]


def prompts(guide: TARoGuide, tok, batch: int, device: str) -> dict:
    texts = [guide.format_prompt(QUESTIONS[i % len(QUESTIONS)], tok) for i in range(batch)]
    return tok(texts, return_tensors="pt", padding=True).to(device)


def several(guide: TARoGuide, k: int, dtype: str) -> TARoGuide:
    """A guide of `k` LoRA reward models over the same base and a seeded router over them: the shipped adapter and
    k - 1 copies whose B matrices are scaled by -1, 0.5, ... (other reward models; speed does not depend on the
    values)."""
    from safetensors.torch import load_file, save_file

    from transformers_taro import TARoRouter, TARoRouterConfig

    work = Path(tempfile.mkdtemp(prefix="taro-bench-k-"))
    source = Path(guide.name_or_path) / "reward_model"
    folders = {}
    for j in range(k):
        folder = work / f"rm{j}"
        shutil.copytree(source, folder)
        weights = load_file(folder / "adapter_model.safetensors")
        factor = 1.0 if j == 0 else (-1.0 if j == 1 else 1.0 / j)
        save_file(
            {n: t * factor if ".lora_B." in n else t for n, t in weights.items()}, folder / "adapter_model.safetensors"
        )
        folders[f"rm{j}"] = folder
    torch.manual_seed(0)
    shipped = guide.router.config
    router = TARoRouter(
        TARoRouterConfig(vocab_size=shipped.vocab_size, num_top_logprobs=shipped.num_top_logprobs, num_reward_models=k)
    )
    multi = TARoGuide({}, router=router, adapter_folder=folders, tokenizer=guide.tokenizer)
    multi.config.system_prompt = guide.config.system_prompt
    for reward in multi._rewards.values():
        reward.load_kwargs = {"dtype": dtype}
    return multi


def load(random_weights: str | None, device: str, dtype: str = "float32", reward_models: int = 1):
    """Tokenizer, base and shipped guide: the embedded model, or its architecture with seeded random weights; the
    base and the reward model in `dtype` (the router computes in float32 either way). With `reward_models` > 1, a
    guide of that many reward models (`several`)."""
    if random_weights is None:
        tok, base = load_tokenizer(None), load_causal_lm(None, dtype=dtype)
        guide = TARoGuide.from_pretrained(DEFAULT_GUIDE, dtype=dtype)
    else:
        tok = AutoTokenizer.from_pretrained(random_weights, padding_side="left")
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(random_weights)).eval()
        base = base.to(getattr(torch, dtype))
        # The fused path compares the model with the adapter's base on disk, so the random base is saved and the
        # shipped guide (copied) names it as its adapter's base.
        work = Path(tempfile.mkdtemp(prefix="taro-bench-"))
        base.save_pretrained(work / "base")
        shutil.copytree(DEFAULT_GUIDE, work / "guide")
        adapter_config = work / "guide" / "reward_model" / "adapter_config.json"
        config = json.loads(adapter_config.read_text())
        config["base_model_name_or_path"] = str(work / "base")
        adapter_config.write_text(json.dumps(config))
        guide = TARoGuide.from_pretrained(work / "guide", dtype=dtype)
    if reward_models > 1:
        guide = several(guide, reward_models, dtype)
    return tok, base.to(device), guide.to(device)


class MixedBatchGuidance(LogitsProcessor):
    """Guidance over peft's mixed batch: rows `[j*B:(j+1)*B]` are block j (0: the base, j: adapter j). The base
    block's scores are mixed with the adapters' by the guide's router or fixed weights, and every block gets the
    mixed scores, so that each block's greedy token is the same (the adapters' caches follow the decoded text)."""

    def __init__(self, guide: TARoGuide, blocks: int):
        self.guide, self.blocks = guide, blocks

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        b = scores.shape[0] // self.blocks
        rewards = [scores[j * b : (j + 1) * b] for j in range(1, self.blocks)]
        if self.guide.method == "taro":
            mixed, _ = guided_scores(scores[:b], rewards if len(rewards) > 1 else rewards[0], router=self.guide.router)
        else:
            weights = self.guide.config.weights()
            mixed, _ = guided_scores(scores[:b], rewards if len(rewards) > 1 else rewards[0], alpha=weights)
        return mixed.repeat(self.blocks, 1)


def peft_mixed_batch(guide: TARoGuide, random_weights: str | None, device: str, dtype: str) -> Any:
    """A `PeftModel` over a fresh copy of the base holding the guide's adapter(s) by name, and `run(enc, gen)`,
    which decodes `enc` as one mixed batch guided by `MixedBatchGuidance`; returns the base block's sequences."""
    from peft import PeftModel

    if random_weights is None:
        copy = load_causal_lm(None, dtype=dtype)
    else:
        adapter = next(iter(guide._rewards.values())).adapter
        copy = load_causal_lm(PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path, dtype=dtype)
    names = guide.reward_model_names
    folders = [reward.adapter for reward in guide._rewards.values()]
    model = PeftModel.from_pretrained(copy, str(folders[0]), adapter_name=names[0])
    for name, folder in zip(names[1:], folders[1:]):
        model.load_adapter(str(folder), adapter_name=name)
    model = model.to(device).eval()
    blocks = len(names) + 1

    def run(enc: dict, gen: dict) -> torch.Tensor:
        b = enc["input_ids"].shape[0]
        adapter_names = [name for name in ["__base__", *names] for _ in range(b)]
        out = model.generate(
            input_ids=enc["input_ids"].repeat(blocks, 1),
            attention_mask=enc["attention_mask"].repeat(blocks, 1),
            adapter_names=adapter_names,
            logits_processor=LogitsProcessorList([MixedBatchGuidance(guide, blocks)]),
            **gen,
        )
        return out[:b]

    return run


def _device_memory_mib(device: str, peak: bool) -> float:
    stat = torch.cuda.max_memory_allocated if peak else torch.cuda.memory_allocated
    return stat(device) / 2**20


def _status_mib(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def memory_child(
    path: str, batch: int, new_tokens: int, random_weights: str | None, device: str, dtype: str, reward_models: int
) -> None:
    """Load what `path` decodes with, reset the peak, decode once; print resident and peak RSS (MiB) as JSON.

    Loading a model has a transient peak of its own, the same for both paths; what differs is what each path
    holds while decoding (the processor path a merged copy of the reward model, the fused path none), so the peak
    is reset (Linux: `clear_refs` 5; CUDA: the allocator's peak) once everything is loaded and resident.
    """
    tok, base, guide = load(random_weights, device, dtype, reward_models)
    enc = prompts(guide, tok, batch, device)
    cuda = device.startswith("cuda")
    # Weights load memory-mapped and become resident on first use: one short decode first makes every page the
    # path uses resident (and pays the one-time costs: the processor path's merge, the fused path's weight check).
    guide.generate(base, fused=path == "fused", **enc, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    gc.collect()
    if cuda:
        resident = _device_memory_mib(device, peak=False)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        resident = _status_mib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    guide.generate(
        base, fused=path == "fused", **enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
    )
    peak = _device_memory_mib(device, peak=True) if cuda else _status_mib("VmHWM")
    print(json.dumps({"path": guide.last_path, "resident_mib": resident, "peak_mib": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--identity-rows", type=int, default=16, help="greedy rows compared token by token")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="of base and reward model")
    ap.add_argument(
        "--random-weights",
        default=None,
        metavar="DIR",
        help="a folder with the embedded model's config.json and tokenizer: random weights of that shape",
    )
    ap.add_argument("--reward-models", type=int, default=1, help="K: a guide of K LoRA reward models and a router")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    k = args.reward_models
    if args.memory_child:
        memory_child(
            args.memory_child, max(args.batch_sizes), args.new_tokens, args.random_weights, args.device, args.dtype, k
        )
        return

    tok, base, guide = load(args.random_weights, args.device, args.dtype, k)
    rm = list(guide.reward_models.values())[0]  # merged once here, so no method pays the lazy load inside a timed call
    n = args.new_tokens
    gen = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)

    def timed(run, enc) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = run(enc)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize(args.device)
        elapsed = time.perf_counter() - start
        assert out.shape[1] - enc["input_ids"].shape[1] == n
        return enc["input_ids"].shape[0] * n / elapsed

    methods = {
        "plain generate": lambda enc: base.generate(**enc, **gen),
        "processor path": lambda enc: guide.generate(base, fused=False, **enc, **gen),
        "fused path": lambda enc: guide.generate(base, fused=True, **enc, **gen),
    }
    mixed_batch = peft_mixed_batch(guide, args.random_weights, args.device, args.dtype)
    methods["peft mixed batch"] = lambda enc: mixed_batch(enc, gen)
    if k == 1:
        # The peer reads the whole prompt with its guide model, as a reward model must: same work as a prefill.
        methods["CFG processor (transformers)"] = lambda enc: base.generate(
            **enc,
            **gen,
            logits_processor=LogitsProcessorList(
                [
                    UnbatchedClassifierFreeGuidanceLogitsProcessor(
                        1.5, rm, unconditional_ids=enc["input_ids"], unconditional_attention_mask=enc["attention_mask"]
                    )
                ]
            ),
        )
    head = base.get_output_embeddings()
    if onednn_applies(head):

        def plain_onednn(enc):
            head.forward = onednn_forward(head)
            try:
                return base.generate(**enc, **gen)
            finally:
                del head.forward

        methods["plain generate, oneDNN output layer"] = plain_onednn
    weights = "random weights of its shape" if args.random_weights else "its weights"
    where = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    what = (
        "shipped LoRA guide" if k == 1 else f"a guide of {k} LoRA reward models (the shipped one and copies) + router"
    )
    print(
        f"SmolLM2-135M-Instruct ({weights}) + {what}, {n} new tokens, {args.rounds} interleaved rounds, "
        f"median tokens/s; torch {torch.__version__}, transformers {transformers.__version__}, {where}, "
        f"dtype {base.dtype}"
    )
    for batch in args.batch_sizes:
        enc = prompts(guide, tok, batch, args.device)
        for run in methods.values():  # warm-up: first-call costs are not decoding speed
            timed(run, enc)
        speeds: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, run in methods.items():
                speeds[name].append(timed(run, enc))
        median = {name: statistics.median(v) for name, v in speeds.items()}
        limit = median["plain generate"] / (k + 1)
        print(f"\nbatch {batch}:  ({k + 1}-forward limit = plain / {k + 1} = {limit:.1f} tok/s)")
        for name, value in median.items():
            spread = f"{min(speeds[name]):.1f}-{max(speeds[name]):.1f}"
            print(f"  {name:36s} {value:7.1f} tok/s  (rounds {spread})  {value / limit:5.2f}x the limit")
        print(f"  fused / processor path: {median['fused path'] / median['processor path']:.2f}x")
        print(f"  fused path / peft mixed batch: {median['fused path'] / median['peft mixed batch']:.2f}x")
        if "plain generate, oneDNN output layer" in median:
            stronger = median["plain generate, oneDNN output layer"] / (k + 1)
            print(
                f"  fused path / (plain generate with the oneDNN output layer / {k + 1}): "
                f"{median['fused path'] / stronger:.2f}x"
            )

    rows = args.identity_rows
    enc = prompts(guide, tok, rows, args.device)
    with torch.inference_mode():
        fused = guide.generate(base, fused=True, **enc, **gen)
        alphas_fused = guide.alphas.clone()
        proc = guide.generate(base, fused=False, **enc, **gen)
        alphas_proc = guide.alphas.clone()
        peft = mixed_batch(enc, gen)
    same = sum(bool(torch.equal(a, b)) for a, b in zip(fused, proc))
    print(
        f"\nidentical tokens, fused vs processor path (greedy, batch {rows}, {n} tokens): {same}/{rows} rows; "
        f"max |alpha difference| {float((alphas_fused - alphas_proc).abs().max()):.2e}"
    )
    same_peft = sum(bool(torch.equal(a, b)) for a, b in zip(fused, peft))
    print(f"identical tokens, fused path vs peft mixed batch: {same_peft}/{rows} rows")

    held = "device memory allocated" if args.device.startswith("cuda") else "resident"
    print(
        f"\nmemory of a process that loads base + guide, then decodes batch {max(args.batch_sizes)} "
        f"({held} before decoding; peak while decoding):"
    )
    for path in ("processor", "fused"):
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                path,
                "--batch-sizes",
                str(max(args.batch_sizes)),
                "--new-tokens",
                str(n),
                "--device",
                args.device,
                "--dtype",
                args.dtype,
                "--reward-models",
                str(k),
            ]
            + (["--random-weights", args.random_weights] if args.random_weights else []),
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"  {report['path']:10s} path: {held} {report['resident_mib']:.0f} MiB, peak {report['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()

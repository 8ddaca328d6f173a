"""Two CPU processes (torchrun + gloo) for the training commands: they train, save once, and the result guides."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from transformers_taro import TARoGuide
from transformers_taro.models import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.slow


def launch(args, port):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "transformers_taro.cli",
        *args,
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from conftest import gsm8k_rows

    path = tmp_path_factory.mktemp("mp-data") / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(8)))
    return str(path)


@pytest.mark.parametrize("lora", [True, False])
def test_train_rm_and_router_with_two_processes(tiny_model_dir, data_file, tmp_path, lora):
    rm_dir, router_dir = tmp_path / "rm", tmp_path / "router"
    peft = ["--use_peft", "--lora_r", "4", "--lora_target_modules", "all-linear"] if lora else []
    common = ["--per-device-train-batch-size", "2", "--use-cpu", "--report-to", "none", "--save-steps", "2"]
    out = launch(
        [
            "train-rm",
            "--model_name_or_path",
            tiny_model_dir,
            "--data",
            data_file,
            "--output-dir",
            str(rm_dir),
            "--max-steps",
            "2",
            "--max-length",
            "768",
            *peft,
            *common,
        ],
        29551 + lora,
    )
    assert out.count("Reward model saved") == 1  # reported by the main process only
    assert (rm_dir / ("adapter_config.json" if lora else "config.json")).is_file()
    assert not (rm_dir / ".saving-final").exists()

    out = launch(
        [
            "train-router",
            "--base-model",
            tiny_model_dir,
            "--reward-model",
            str(rm_dir),
            "--data",
            data_file,
            "--output-dir",
            str(router_dir),
            "--max-steps",
            "4",
            *common,
        ],
        29553 + lora,
    )
    assert out.count("Router saved") == 1
    state = json.loads((router_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    guide = TARoGuide.from_pretrained(router_dir / "guide")
    tok = load_tokenizer(tiny_model_dir)
    enc = tok(["Tom has 3 apples."], return_tensors="pt")
    guide.generate(load_causal_lm(tiny_model_dir), **enc, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert guide.alphas.shape == (1, 4) and bool(torch.isfinite(guide.alphas).all())


def test_two_process_router_training_killed_mid_way_resumes_without_losing_or_repeating_steps(
    tiny_model_dir, data_file, tmp_path
):
    import signal
    import time

    out = tmp_path / "router"
    args = [
        "train-router",
        "--base-model",
        tiny_model_dir,
        "--reward-model",
        tiny_model_dir,
        "--data",
        data_file,
        "--output-dir",
        str(out),
        "--max-steps",
        "60",
        "--save-steps",
        "2",
        "--logging-steps",
        "1",
        "--per-device-train-batch-size",
        "2",
        "--use-cpu",
        "--report-to",
        "none",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        "-m",
        "transformers_taro.cli",
        *args,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "checkpoint-4" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "training ended or stalled before checkpoint-4"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks and the launcher, as a kill or a lost machine would
    proc.wait()
    assert not (out / "checkpoint-60").exists()

    launch([*args, "--resume"], 29563)
    state = json.loads((out / "checkpoint-60" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 61))  # every step once: none lost, none repeated
    assert TARoGuide.from_pretrained(out / "guide").router is not None

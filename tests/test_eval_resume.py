"""`taro eval` survives interruptions and refuses bad input before generating anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from transformers_taro.evaluation.runner import run_eval
from transformers_taro.generation import Generation
from transformers_taro.tasks import load_task

ROWS = [{"question": f"What is {k} + {k}?", "answer": f"{k} + {k} = {2 * k}\n#### {2 * k}"} for k in range(1, 12)]


@dataclass
class FakeSession:
    """What `run_eval` needs of a session: answers right on even k, a per-call count, and an optional crash."""

    crash_on_call: int | None = None
    calls: int = 0
    generated: list[str] = field(default_factory=list)
    method: str = "genarm"
    names: dict = field(default_factory=lambda: {"base_model": "tiny", "guide": "g", "alpha": 0.5})
    guide: None = None
    generation_kwargs: dict = field(default_factory=dict)
    base: object = field(default_factory=lambda: type("Base", (), {"dtype": torch.float32})())

    def prompt(self, question, system=None):
        return question

    def generate(self, prompts, max_new_tokens=256):
        self.calls += 1
        if self.crash_on_call == self.calls:
            raise KeyboardInterrupt  # as Ctrl-C or a kill would stop the run mid-way
        self.generated += prompts
        out = []
        for p in prompts:
            k = int(p.split()[2])
            out.append(Generation(f"The answer is {2 * k if k % 2 == 0 else k}.", [5] * k, [0.5] * k))
        return out


def task_file(tmp_path, rows=ROWS, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def comparable(report):
    return {k: v for k, v in report.items() if k not in ("tokens_per_s", "generation_seconds", "resumed_from")}


def generations(folder):
    return [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (folder / "generations.jsonl").read_text().splitlines()
    ]


def test_an_interrupted_run_resumes_without_losing_or_repeating_problems(tmp_path):
    task = load_task("gsm8k", task_file(tmp_path))
    first_run = FakeSession()
    whole = run_eval(first_run, task, str(tmp_path / "whole"), batch_size=2)
    # Longest prompts first (k = 10, 11), then in index order; the files are in index order all the same.
    assert first_run.generated == [f"What is {k} + {k}?" for k in [10, 11, *range(1, 10)]]
    assert [g["index"] for g in generations(tmp_path / "whole")] == list(range(11))

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_eval(FakeSession(crash_on_call=3), task, str(out), batch_size=2)
    journal = out / "generations.part0.jsonl"
    assert len(journal.read_text().splitlines()) == 4  # the two finished batches, flushed; the third is lost
    assert not (out / "report.json").exists()
    with journal.open("a") as f:
        f.write('{"index": 2, "prompt": "What is 3')  # a kill in the middle of a write

    again = FakeSession()
    resumed = run_eval(again, task, str(out), batch_size=2)
    # k = 10, 11, 1, 2 were written before the kill: nothing redone, nothing skipped
    assert again.generated == [f"What is {k} + {k}?" for k in range(3, 10)]
    assert resumed["resumed_from"] == 4
    assert comparable(resumed) == comparable(whole)
    assert generations(out) == generations(tmp_path / "whole")
    assert not list(out.glob("generations.part*"))  # merged into generations.jsonl
    assert whole["n"] == 11 and whole["accuracy"] == pytest.approx(5 / 11)


def test_a_finished_run_is_not_redone_and_other_settings_are_refused(tmp_path):
    task = load_task("gsm8k", task_file(tmp_path))
    out = str(tmp_path / "run")
    first = run_eval(FakeSession(), task, out, limit=6)
    again = FakeSession()
    assert comparable(run_eval(again, task, out, limit=6)) == comparable(first)
    assert again.calls == 0
    with pytest.raises(ValueError, match="limit: 6 there, 4 now"):
        run_eval(FakeSession(), task, out, limit=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        run_eval(FakeSession(), task, out, limit=6, max_new_tokens=12)
    other_guide = FakeSession(names={"base_model": "tiny", "guide": "another", "alpha": 0.5})
    with pytest.raises(ValueError, match="guide: 'g' there, 'another' now"):
        run_eval(other_guide, task, out, limit=6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(limit=0), "--limit must be at least 1"),
        (dict(limit=-2), "--limit must be at least 1"),
        (dict(offset=11), r"--offset must be in \[0, 11\)"),
        (dict(offset=-1), r"--offset must be in \[0, 11\)"),
        (dict(batch_size=0), "--batch_size must be at least 1"),
        (dict(batch_size=-1), "--batch_size must be at least 1"),
    ],
)
def test_arguments_that_select_nothing_are_refused(tmp_path, kwargs, message):
    session = FakeSession()
    with pytest.raises(ValueError, match=message):
        run_eval(session, load_task("gsm8k", task_file(tmp_path)), str(tmp_path / "out"), **kwargs)
    assert session.calls == 0 and not (tmp_path / "out").exists()


def test_bad_rows_and_files_are_named_before_generating(tmp_path):
    session = FakeSession()
    bad = task_file(tmp_path, ROWS[:3] + [{"question": "What is 9 + 9?", "solution": "18"}] + ROWS[3:], "bad.jsonl")
    with pytest.raises(ValueError, match=r"bad\.jsonl:4: row 3 .*KeyError"):
        run_eval(session, load_task("gsm8k", bad), str(tmp_path / "out"))
    unparseable = task_file(tmp_path, [{"question": "q?", "answer": "#### many"}], "words.jsonl")
    with pytest.raises(ValueError, match=r"words\.jsonl:1: .*Unparseable numeric answer"):
        run_eval(session, load_task("jsonl", unparseable), str(tmp_path / "out"))
    assert session.calls == 0

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_task("gsm8k", str(empty))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + '{"question": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(ValueError, match=r"latin\.jsonl:2 is not valid UTF-8"):
        load_task("gsm8k", str(latin))


def test_an_output_folder_that_cannot_hold_results_is_refused_first(tmp_path):
    task = load_task("gsm8k", task_file(tmp_path))
    session = FakeSession()
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        run_eval(session, task, str(a_file))
    with pytest.raises(PermissionError, match="cannot be written"):
        run_eval(session, task, str(a_file / "below"))
    old = tmp_path / "old-style"
    old.mkdir()
    (old / "generations.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="without a run.json"):
        run_eval(session, task, str(old))
    assert session.calls == 0


@pytest.mark.slow
def test_two_cpu_processes_give_the_one_process_result(tiny_model_dir, tmp_path):
    """`torchrun` with 2 CPU processes (gloo): every problem exactly once, the same records as one process."""
    import os
    import subprocess
    import sys

    data = task_file(tmp_path, [json.loads(line) for line in open(_gsm8k())][:7])
    args = [
        "eval",
        "--task",
        "gsm8k",
        "--data",
        data,
        "--base-model",
        tiny_model_dir,
        "--reward-model",
        tiny_model_dir,
        "--alpha",
        "1",
        "--max-new-tokens",
        "6",
        "--batch-size",
        "2",
        "--output-dir",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "transformers_taro.cli", *args, str(tmp_path / "one")],
        env=env,
        check=True,
        capture_output=True,
    )
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29541",
        "-m",
        "transformers_taro.cli",
        *args,
        str(tmp_path / "two"),
    ]
    result = subprocess.run(launch, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1
    assert [r["index"] for r in generations(tmp_path / "two")] == list(range(7))  # each problem exactly once
    assert generations(tmp_path / "two") == generations(tmp_path / "one")
    assert two["accuracy"] == one["accuracy"] and two["n"] == one["n"] == 7


def _gsm8k():
    from conftest import GSM8K_TEST

    return GSM8K_TEST


@dataclass
class GuideFolder:
    """What `run_eval` reads of a loaded guide: the folder it came from."""

    name_or_path: str
    alpha: float = 0.5
    last_path: str = "processor"


def test_a_guide_retrained_in_place_is_never_mixed_in_nor_reused(tmp_path, capsys):
    task = load_task("gsm8k", task_file(tmp_path))
    folder = tmp_path / "guide"
    folder.mkdir()
    (folder / "guide_config.json").write_text('{"method": "taro", "alpha": 0.5}')
    (folder / "router").mkdir()
    (folder / "router" / "model.safetensors").write_bytes(b"trained")
    out = str(tmp_path / "run")
    session = FakeSession(guide=GuideFolder(str(folder)))
    with pytest.raises(KeyboardInterrupt):
        run_eval(FakeSession(guide=session.guide, crash_on_call=2), task, out, batch_size=2)
    # Recording the fixed alpha chosen on validation does not change what the router decodes: the run resumes.
    (folder / "guide_config.json").write_text('{"method": "taro", "alpha": 1.0, "alpha_selection": {"n": 4}}')

    (folder / "router" / "model.safetensors").write_bytes(b"retrained")  # retrained in place
    with pytest.raises(ValueError, match="other files: guide router changed since"):
        run_eval(session, task, out, batch_size=2)
    assert session.calls == 0
    (folder / "router" / "model.safetensors").write_bytes(b"trained")
    assert run_eval(session, task, out, batch_size=2)["n"] == len(ROWS)  # the alpha recorded: resumed, not refused


def test_a_finished_run_rerun_after_its_data_changed_is_refused(tmp_path):
    path = task_file(tmp_path)
    out = str(tmp_path / "run")
    run_eval(FakeSession(), load_task("gsm8k", path), out)
    task_file(tmp_path, rows=list(reversed(ROWS)))  # the same file, edited
    with pytest.raises(ValueError, match="data changed since"):
        run_eval(FakeSession(), load_task("gsm8k", path), out)


def test_other_fields_of_a_jsonl_task_are_other_settings(tmp_path):
    rows = [{"q": r["question"], "a": 2 * k, "b": k} for k, r in enumerate(ROWS, 1)]
    path = task_file(tmp_path, rows)
    out = str(tmp_path / "run")
    run_eval(FakeSession(), load_task("jsonl", path, question_field="q", answer_field="a"), out)
    with pytest.raises(ValueError, match="answer_field: 'a' there, 'b' now"):
        run_eval(FakeSession(), load_task("jsonl", path, question_field="q", answer_field="b"), out)


def test_reused_records_are_said_and_a_rerun_keeps_the_report_of_the_run_that_generated(tmp_path, capsys):
    task = load_task("gsm8k", task_file(tmp_path))
    out = tmp_path / "run"
    session = FakeSession(guide=GuideFolder(str(task.source)))  # any local path: its fingerprint is recorded
    session.guide.last_path = "fused"
    first = run_eval(session, task, str(out), batch_size=4)
    assert first["decoding"] == "fused"
    capsys.readouterr()
    again = FakeSession(guide=GuideFolder(str(task.source), last_path="processor"))
    second = run_eval(again, task, str(out), batch_size=2)
    assert again.calls == 0 and second == first  # not rewritten with this call's decoding path or batch size
    assert "reused 11 of 11 records" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text()) == first


def test_a_second_run_writing_into_the_same_folder_is_refused(tmp_path):
    import os

    task = load_task("gsm8k", task_file(tmp_path))
    out = tmp_path / "run"
    run_eval(FakeSession(), task, str(out), limit=2)
    (out / ".writing.lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(RuntimeError, match="another run .* is writing here"):
        run_eval(FakeSession(), task, str(out), limit=4 - 2)
    (out / ".writing.lock").write_text("999999999")  # a killed run's lock: taken over
    run_eval(FakeSession(), task, str(out), limit=2)
    assert not (out / ".writing.lock").exists()

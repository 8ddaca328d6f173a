"""`taro eval`: batched guided generation over a task, graded, with a bootstrap CI and throughput.

Under `accelerate launch`, each process takes a contiguous shard of the problems; the records are gathered to the
main process, which writes one `generations.jsonl` and one `report.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..extras import require
from ..files import fingerprint, process_alive, read_json_object, write_atomically, write_json
from ..graders import grading_timeouts
from ..tasks import Task
from .session import Session


def bootstrap_ci(correct: list[bool], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the accuracy."""
    if not correct:
        return (0.0, 0.0)
    values = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mcnemar(correct_a: list[bool], correct_b: list[bool]) -> dict[str, Any]:
    """McNemar's exact test of two methods graded on the same problems, in the same order.

    It is the two-sided binomial test of the discordant pairs (right under one method only) against 1/2
    (`scipy.stats.binomtest`); `only_a` and `only_b` count them.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"A paired test needs the same problems: {len(correct_a)} against {len(correct_b)} results.")
    binomtest = require("scipy.stats").binomtest
    only_a = sum(a and not b for a, b in zip(correct_a, correct_b))
    only_b = sum(b and not a for a, b in zip(correct_a, correct_b))
    return {
        "n": len(correct_a),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0,
    }


def paired_comparison(run_a: str, run_b: str) -> dict[str, Any]:
    """Two `taro eval` runs on the same problems, compared problem by problem ([`mcnemar`]).

    Also: how many outputs are identical and how many extracted answers agree.
    """
    a, b = (
        {r["index"]: r for r in map(json.loads, (Path(d) / "generations.jsonl").read_text().splitlines())}
        for d in (run_a, run_b)
    )
    if a.keys() != b.keys():
        raise ValueError(
            f"{run_a} and {run_b} are not on the same problems ({len(a)} vs {len(b)}, "
            f"{len(a.keys() ^ b.keys())} differ): a paired test needs the same ones."
        )
    return {
        **mcnemar([a[i]["correct"] for i in a], [b[i]["correct"] for i in a]),
        "accuracy_a": sum(r["correct"] for r in a.values()) / len(a),
        "accuracy_b": sum(r["correct"] for r in b.values()) / len(b),
        "identical_outputs": sum(a[i]["output"] == b[i]["output"] for i in a),
        "same_answer": sum(a[i]["extracted"] == b[i]["extracted"] for i in a),
    }


def best_alpha(accuracy_by_alpha: dict[float, float]) -> float:
    """The fixed alpha with the highest validation accuracy; ties go to the smallest (least guidance)."""
    if not accuracy_by_alpha:
        raise ValueError("No validation accuracies to choose an alpha from.")
    return max(sorted(accuracy_by_alpha), key=lambda a: accuracy_by_alpha[a])


def choose_alpha(report_dirs: list[str]) -> tuple[float, dict[str, Any]]:
    """GenARM's alpha from `taro eval --method genarm` reports on a validation split (`best_alpha`), and the
    record of the choice (split, problems, accuracy per alpha, rule) that `record_alpha_choice` keeps."""
    reports = [json.loads((Path(d) / "report.json").read_text()) for d in report_dirs]
    if any(r["method"] != "genarm" for r in reports):
        raise ValueError("choose_alpha takes reports of --method genarm runs only.")
    accuracy = {float(r["alpha"]): r["accuracy"] for r in reports}
    selection = {
        "task": reports[0]["task"],
        "n": reports[0]["n"],
        "offset": reports[0]["offset"],
        "accuracy_by_alpha": {f"{a:g}": accuracy[a] for a in sorted(accuracy)},
        "rule": "highest validation accuracy; ties go to the smaller alpha",
    }
    return best_alpha(accuracy), selection


def record_alpha_choice(report_dirs: list[str], guide_folder: str) -> float:
    """Choose GenARM's alpha from `taro eval --method genarm` reports on a validation split; record it in a guide.

    Writes `alpha` and `alpha_selection` into the guide folder's `guide_config.json` (atomically), so
    `guide.fixed()` and `taro eval --method genarm` use that alpha when none is given.
    """
    from ..guide import GUIDE_CONFIG_NAME, TARoGuideConfig

    best, selection = choose_alpha(report_dirs)
    path = Path(guide_folder) / GUIDE_CONFIG_NAME
    config = dataclasses.replace(TARoGuideConfig.from_file(path), alpha=best, alpha_selection=selection)
    write_json(path, dataclasses.asdict(config))
    return best


def summarize(records: list[dict[str, Any]], task: str, method: str, seconds: float, extra: dict | None = None) -> dict:
    correct = [bool(r["correct"]) for r in records]
    tokens = sum(r["new_tokens"] for r in records)
    alphas = [r["mean_alpha"] for r in records if r["mean_alpha"] is not None]
    if alphas and isinstance(alphas[0], dict):  # several reward models: each one's mean weight
        mean_alpha = {name: sum(a[name] for a in alphas) / len(alphas) for name in alphas[0]}
    else:
        mean_alpha = sum(alphas) / len(alphas) if alphas else None
    return {
        "task": task,
        "method": method,
        "n": len(records),
        "accuracy": sum(correct) / len(correct) if correct else 0.0,
        "ci95": list(bootstrap_ci(correct)),
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "generation_seconds": seconds,
        "new_tokens": tokens,
        "mean_alpha": mean_alpha,
        **(extra or {}),
    }


RUN_FILE, GENERATIONS_FILE, REPORT_FILE = "run.json", "generations.jsonl", "report.json"


def _rounded(alphas: list) -> list:
    """Weights to 4 decimals, one per token or one list per token (several reward models)."""
    return [_rounded(a) if isinstance(a, list) else round(a, 4) for a in alphas]


def run_eval(
    session: Session,
    task: Task,
    output_dir: str,
    limit: int | None = None,
    offset: int = 0,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    progress: bool = True,
) -> dict:
    """Evaluate `session` on `task`; write `generations.jsonl` and `report.json`; return the report.

    Problems are generated longest prompt first, in batches of like length (the written files are in index order).
    Resumable: each process appends its records to a journal (`generations.part<rank>.jsonl`), flushed after every
    batch, so a kill loses at most the batch in flight; run again with the same settings (`run.json`) and the
    problems already written are skipped. A folder holding a run with other settings is refused. Arguments, rows
    and the output folder are checked before anything is generated. Under `accelerate launch` each process takes a
    contiguous share of the remaining problems; the new records are gathered to the main process (accelerate's
    `gather_object`), which writes `generations.jsonl` and then `report.json` atomically. Other processes return
    an empty dict. `progress=False` hides the progress bar.

    Each record holds the answer's `token_ids` and the weight used at each (`alphas`, empty for the base), so the
    pictures of a run can be drawn from its files.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # CPU processes (gloo) need cpu=True, which PartialState, unlike the Accelerator, does not read from the env.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    start, stop = _problem_range(len(task.rows), limit, offset, batch_size)
    task.check_rows(start, stop)
    out = Path(output_dir)
    settings = {
        "task": task.name,
        "data": task.source,
        "offset": offset,
        "limit": limit,
        "method": session.method,
        "max_new_tokens": max_new_tokens,
        "dtype": str(session.base.dtype).removeprefix("torch."),
        "alpha": session.guide.alpha if session.guide is not None and session.method == "genarm" else None,
        **(task.fields or {}),
        **session.names,
        **session.generation_kwargs,
        "fingerprints": _fingerprints(session, task),
    }
    if state.is_main_process:
        _claim_output_dir(out, settings)
    state.wait_for_everyone()
    with _writer_lock(out) if state.is_main_process else contextlib.nullcontext():
        return _run(session, task, out, settings, state, start, stop, batch_size, max_new_tokens, progress)


def _run(
    session: Session,
    task: Task,
    out: Path,
    settings: dict[str, Any],
    state: Any,
    start: int,
    stop: int,
    batch_size: int,
    max_new_tokens: int,
    progress: bool,
) -> dict:
    from accelerate.utils import gather_object

    timeouts_before = grading_timeouts()
    done = {r["index"] for r in _written_records(out) if start <= r["index"] < stop}
    todo = [i for i in range(start, stop) if i not in done]
    if done and state.is_main_process:
        print(
            f"{out}: reused {len(done)} of {stop - start} records written earlier with the same settings and "
            f"files; generating {len(todo)}."
        )
    if not todo and (out / REPORT_FILE).is_file():
        # Nothing generated now: the report of the run that generated stands (its decoding path, batch size, ...).
        return json.loads((out / REPORT_FILE).read_text(encoding="utf-8")) if state.is_main_process else {}
    new: list[dict[str, Any]] = []
    with (
        state.split_between_processes(todo) as mine,
        open(out / f"generations.part{state.process_index}.jsonl", "a", encoding="utf-8") as journal,
    ):
        prompt_of = {i: session.prompt(task.question(task.rows[i]), task.system) for i in mine}
        # Longest prompts first, in batches of like length: a batch is left-padded to its longest prompt and decodes
        # until its longest answer ends, and longer questions tend to have longer answers (in the mini-world, 0.7x
        # the time of index order). Records are keyed by index, so nothing written depends on the order; the length
        # is counted in characters, a proxy for tokens that needs no tokenizer.
        by_length = sorted(mine, key=lambda i: -len(prompt_of[i]))
        for first in tqdm(
            range(0, len(by_length), batch_size),
            desc=f"{task.name} {session.method}",
            disable=not (progress and state.is_local_main_process),
        ):
            batch = by_length[first : first + batch_size]
            prompts = [prompt_of[i] for i in batch]
            t0 = time.perf_counter()
            gens = session.generate(prompts, max_new_tokens=max_new_tokens)
            share = (time.perf_counter() - t0) / len(batch)
            for i, prompt, gen in zip(batch, prompts, gens):
                gold = task.gold(task.rows[i])
                pred = task.extract(gen.text)
                record = {
                    "index": i,
                    "prompt": prompt,
                    "output": gen.text,
                    "extracted": pred,
                    "gold": gold,
                    "correct": bool(task.grade(pred, gold)),
                    "mean_alpha": gen.mean_alpha,
                    "new_tokens": len(gen.token_ids),
                    "seconds": share,
                    "token_ids": gen.token_ids,
                    "alphas": _rounded(gen.alphas),
                }
                journal.write(json.dumps(record) + "\n")
                new.append(record)
            journal.flush()
            os.fsync(journal.fileno())
    if state.num_processes > 1:
        new = gather_object(new)
    if not state.is_main_process:
        return {}
    records = {r["index"]: r for r in _written_records(out)}
    records.update((r["index"], r) for r in new)
    missing = [i for i in range(start, stop) if i not in records]
    if missing:
        raise RuntimeError(f"{len(missing)} problems have no record (first: {missing[0]}); run again to resume.")
    ordered = [records[i] for i in range(start, stop)]
    write_atomically(out / GENERATIONS_FILE, "".join(json.dumps(r) + "\n" for r in ordered))
    for journal_file in out.glob("generations.part*.jsonl"):
        journal_file.unlink()
    extra = {
        "offset": start,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "processes": state.num_processes,
        "resumed_from": len(done),
        "dtype": settings["dtype"],
        "grading_timeouts": grading_timeouts() - timeouts_before,
        "decoding": None if session.guide is None else session.guide.last_path,
        "alpha": settings["alpha"],
        **session.names,
        **session.generation_kwargs,
        "fingerprints": settings["fingerprints"],
    }
    report = summarize(ordered, task.name, session.method, sum(r.get("seconds", 0.0) for r in ordered), extra)
    write_atomically(out / REPORT_FILE, json.dumps(report, indent=2))
    return report


def _problem_range(rows: int, limit: int | None, offset: int, batch_size: int) -> tuple[int, int]:
    """`[start, stop)` of the problems to evaluate, or a clear error for arguments that select none or make no sense."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {batch_size}.")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (leave it out for every problem), got {limit}.")
    if not 0 <= offset < rows:
        raise ValueError(f"--offset must be in [0, {rows}) for this task's {rows} problems, got {offset}.")
    return offset, rows if limit is None else min(rows, offset + limit)


def _fingerprints(session: Session, task: Task) -> dict[str, str]:
    """Content fingerprints of the local files a run depends on: the data, the base, the guide or its parts. A
    resumed run whose files changed (a guide retrained in place, an edited data file) is then refused, not mixed."""
    from ..guide import GUIDE_CONFIG_NAME, REWARD_MODEL_DIR, REWARD_MODELS_DIR, ROUTER_DIR, named_reward_models

    guide = getattr(session.guide, "name_or_path", None)
    paths = {
        "data": task.source,
        "base_model": getattr(session.base, "name_or_path", None),
        "guide reward_model": guide and Path(guide) / REWARD_MODEL_DIR,
        "guide reward_models": guide and Path(guide) / REWARD_MODELS_DIR,
        "guide router": guide and Path(guide) / ROUTER_DIR,
        "router": session.names.get("router"),
    }
    if session.names.get("reward_model"):
        specs = named_reward_models(session.names["reward_model"])
        for name, path in specs.items() if isinstance(specs, dict) else [("", specs)]:
            paths[f"reward_model {name}".strip()] = path
    prints = {name: fingerprint(path) for name, path in paths.items() if path and Path(path).exists()}
    if guide and (Path(guide) / GUIDE_CONFIG_NAME).is_file():
        # Choosing the fixed alpha on validation records it in the config: not a change of what a run decodes with
        # (a GenARM run records its alpha among the settings).
        config = read_json_object(Path(guide) / GUIDE_CONFIG_NAME)
        decoding = {k: v for k, v in config.items() if k not in ("alpha", "alpha_selection", "training_summary")}
        prints["guide config"] = hashlib.sha256(json.dumps(decoding, sort_keys=True).encode()).hexdigest()[:16]
    return prints


@contextlib.contextmanager
def _writer_lock(out: Path) -> Iterator[None]:
    """One run writes into a folder at a time: a second is refused while the first's process is alive."""
    lock = out / ".writing.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid == os.getpid() and lock.resolve() in _HELD_LOCKS:
                raise RuntimeError(
                    f"{out}: this process is already writing a run here; use another --output_dir."
                ) from None
            if pid and pid != os.getpid() and process_alive(pid):
                raise RuntimeError(
                    f"{out}: another run (process {pid}) is writing here. Wait for it, or use another --output_dir."
                ) from None
            # Left by a run that was killed (its pid may since have been given to this very process).
            lock.unlink(missing_ok=True)
    else:
        raise RuntimeError(f"{out}: could not take {lock.name}; another run may be starting here.")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    _HELD_LOCKS.add(lock.resolve())
    try:
        yield
    finally:
        _HELD_LOCKS.discard(lock.resolve())
        lock.unlink(missing_ok=True)


_HELD_LOCKS: set[Path] = set()
"""The writer locks this process holds: a lock file with this process's pid that is not among them is stale."""


def _claim_output_dir(out: Path, settings: dict[str, Any]) -> None:
    """Make sure results can be written to `out` before generating; refuse a run made with other settings."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output_dir {out} is a file, not a folder: choose another path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"--output_dir {out} cannot be written to ({err.strerror}): choose another path."
        ) from err
    run_file = out / RUN_FILE
    if run_file.is_file():
        try:
            previous = read_json_object(run_file)
        except ValueError as err:
            raise ValueError(
                f"{err} It records the settings of the run in {out}: delete {out} to start over, or use another "
                "--output_dir."
            ) from None
        changed = sorted(
            k for k in (set(previous) | set(settings)) - {"fingerprints"} if previous.get(k) != settings.get(k)
        )
        was, now = previous.get("fingerprints") or {}, settings["fingerprints"]
        files = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        if files:
            raise ValueError(
                f"{out} holds a run made with other files: {', '.join(files)} changed since (content "
                "fingerprints in its run.json). Its results cannot be mixed in or reused: use another "
                "--output_dir, or delete that one to start over."
            )
        if changed:
            what = ", ".join(f"{k}: {previous.get(k)!r} there, {settings.get(k)!r} now" for k in changed)
            raise ValueError(
                f"{out} holds a run with other settings ({what}). Its results cannot be mixed in: use "
                "another --output_dir, or delete that one to start over."
            )
    elif (out / GENERATIONS_FILE).exists() or (out / REPORT_FILE).exists():
        raise ValueError(
            f"{out} holds results without a {RUN_FILE} (another version's run?): use another "
            "--output_dir, or delete that one."
        )
    else:
        write_atomically(run_file, json.dumps(settings, indent=2))


def load_records(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a finished `run_eval` run (its `generations.jsonl`), in problem order."""
    path = Path(output_dir) / GENERATIONS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _written_records(out: Path) -> list[dict[str, Any]]:
    """Records already written: the merged file and any journals. A kill can leave a journal's last line cut
    short; it is dropped (that problem is generated again)."""
    records = []
    for path in [out / GENERATIONS_FILE, *sorted(out.glob("generations.part*.jsonl"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

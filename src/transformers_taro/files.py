"""Writing files and folders so that a crash never leaves something that looks complete but is not.

One place decides how the library writes: a file is written beside its target and renamed over it; a folder is
built in a scratch folder on the same filesystem and moved into place; a trained folder is copied without the
pickled training arguments that only `Trainer` can read back.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LOADABLE_LAST = ("config.json", "adapter_config.json")
"""Files that make a folder loadable by `from_pretrained`: written after everything they describe."""
NOT_COPIED = frozenset({"training_args.bin"})
"""Pickled `TrainingArguments`: meaningful only to the run that wrote them, and unsafe to unpickle elsewhere."""


FULL_HASH_LIMIT = 64 << 20
"""Files up to this size are fingerprinted by content; larger ones (model weights) by size and modification time."""


def fingerprint(path: str | os.PathLike) -> str:
    """A short fingerprint of a file or folder's contents: it changes when any file in it changes.

    Files up to `FULL_HASH_LIMIT` are hashed whole; larger ones contribute their size and modification time, so
    fingerprinting a folder of large weights costs no full read.
    """
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root) if file != root else file.name}\0{stat.st_size}\0".encode())
        if stat.st_size <= FULL_HASH_LIMIT:
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in `path`, or a `ValueError` naming the file and what is wrong with it (empty, cut short,
    not JSON, or JSON that is not an object)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path} is empty: it was cut short while being written. Save or download it again.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): it was cut "
            "short or edited by hand. Save or download it again."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object of settings.")
    return data


def safetensors_shapes(path: str | os.PathLike, what: str = "the model") -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, read from its header alone; a `ValueError` names the file when it
    is cut short or corrupt (safetensors checks that the header covers the whole file)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError as err:
        raise ValueError(f"{path} is corrupt or truncated ({err}). Save or download {what} again.") from None


def check_weight_files(folder: str | os.PathLike, what: str = "the model") -> None:
    """Every `*.safetensors` file in `folder` is whole (`safetensors_shapes`), before anything loads them."""
    for file in sorted(Path(folder).glob("*.safetensors")):
        safetensors_shapes(file, what)


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write `content` to `path` through a temporary file renamed over it: readers see the old file or the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """`write_atomically` for a JSON document, indented, with a final newline."""
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def write_folder_atomically(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(scratch)` on an empty scratch folder beside `target`, then move it to `target` in one rename.

    `target` must not exist or be a folder this library may replace: the caller decides that. A crash leaves the
    old folder (or none), never a mix of both.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_beside(target)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    try:
        write(scratch)
        if target.exists():
            os.replace(target, old)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_entries_atomically(
    target: str | os.PathLike,
    write: Callable[[Path], None],
    entries: tuple[str, ...],
    *,
    marker: str,
    overwrite: bool = False,
) -> None:
    """Write a folder's own `entries` (files or subfolders) into `target`, leaving everything else in it alone.

    `write(scratch)` builds the entries in a scratch folder beside `target`; each then replaces its old version in
    one rename, `marker` (the file that makes the folder loadable) removed first and written last, so a crash never
    leaves a folder that loads a mix of old and new. An entry the new folder lacks is removed.

    Refused, before anything is written: `target` an existing file; the working directory or a folder holding it;
    a folder with other contents that is not already such a folder (no `marker`), unless `overwrite`, which writes
    the entries beside what is there. A user's files are never deleted.
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file: save into a folder (a new one, or one this library wrote).")
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        raise ValueError(f"{target} is the working directory or holds it: save into a subfolder of its own.")
    if target.is_dir() and not (target / marker).is_file() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{target} holds other files and is not a folder this library wrote (no {marker}): choose a new or "
            f"empty folder, or pass overwrite=True to write {', '.join(entries)} beside what is there (nothing "
            "else is touched)."
        )
    target.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_beside(target)
    try:
        write(scratch / "new")
        _move_in(scratch / "new", target, entries, last=(marker,), trash=scratch / ".replaced")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


STALE_SCRATCH_SECONDS = 3600
"""A scratch folder that names no process is left alone for this long before a later save removes it."""


def _scratch_beside(target: Path) -> Path:
    """A new scratch folder beside `target`, named for this process; those that a killed save of the same target
    left behind (their process is gone) are removed first."""
    prefix = f".{target.name}.saving-"
    for stale in target.parent.glob(glob.escape(prefix) + "*"):
        pid, _, _ = stale.name.removeprefix(prefix).partition("-")
        if pid.isdigit():
            gone = int(pid) != os.getpid() and not process_alive(int(pid))
        else:  # written by an older version, which did not name the process
            gone = time.time() - stale.stat().st_mtime > STALE_SCRATCH_SECONDS
        if gone and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{prefix}{os.getpid()}-"))


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move_in(new: Path, target: Path, names: Iterable[str], last: tuple[str, ...], trash: Path) -> None:
    """Move each of `names` from `new` into `target`, each old version into `trash` (which the caller deletes).

    The files of `last` (those that make the folder loadable) are deleted first and come back last: a crash
    part-way leaves a folder that does not load, never one that loads new files under old settings. Each move is
    one rename on one filesystem. A name `new` lacks is only removed.
    """
    trash.mkdir()
    for name in last:
        (target / name).unlink(missing_ok=True)
    for name in sorted(names, key=lambda n: n in last):
        old, fresh = target / name, new / name
        if old.exists() or old.is_symlink():
            os.replace(old, trash / name)
        if fresh.exists():
            os.replace(fresh, old)


def copy_final_files(folder: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy the files directly in `folder` (not its `checkpoint-N/` subfolders nor `NOT_COPIED`) into `target`,
    the files of `LOADABLE_LAST` last."""
    folder, target = Path(folder), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    files = [f for f in folder.iterdir() if f.is_file() and f.name not in NOT_COPIED]
    for f in sorted(files, key=lambda f: f.name in LOADABLE_LAST):
        shutil.copy2(f, target / f.name)


def copy_folder(folder: str | os.PathLike, target: str | os.PathLike) -> None:
    """Replace `target` with a copy of `folder` (every file and subfolder, `NOT_COPIED` aside), in one rename."""
    ignore = shutil.ignore_patterns(*NOT_COPIED)

    def write(scratch: Path) -> None:
        shutil.copytree(folder, scratch, dirs_exist_ok=True, ignore=ignore)

    write_folder_atomically(target, write)


def atomic_save(save: Callable[[str], None], output_dir: str | os.PathLike, accelerator: Any = None) -> None:
    """Run `save(folder)` into a scratch folder, then move its files into `output_dir`, config files last.

    Unlike `write_folder_atomically`, this keeps what else `output_dir` holds (a trainer's `checkpoint-N/`). A crash
    while saving never leaves a half-written model that loads: an older model's config is removed first, the new
    weights are in place before the config that makes the folder loadable, and each move is an atomic rename.

    Under several processes (`accelerator` given), every process calls `save` on the same scratch folder, since
    saving can need all of them (DeepSpeed ZeRO-3 gathers the weights; `Trainer.save_model` writes on the main
    process only), and the main process alone moves the files.
    """
    out = Path(output_dir)
    scratch = out / ".saving-final"
    main = accelerator is None or accelerator.is_main_process
    if main:
        shutil.rmtree(scratch, ignore_errors=True)  # left by a run killed while saving
        scratch.mkdir(parents=True)
    _barrier(accelerator)
    try:
        save(str(scratch))
        _barrier(accelerator)
        if main:
            _move_in(scratch, out, os.listdir(scratch), last=LOADABLE_LAST, trash=scratch / ".replaced")
    finally:
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
    _barrier(accelerator)


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()

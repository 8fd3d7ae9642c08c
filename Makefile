# Two commands: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: demo test ui bench env clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build, not the registry's newest CUDA one
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

env: $(BIN)/.installed

demo: env
	$(BIN)/dbarch demo

test: env
	$(BIN)/pytest -q

ui: env
	$(BIN)/dbarch ui

bench: env
	$(BIN)/python benchmarks/run_all.py

clean:
	-$(BIN)/dbarch db stop
	rm -rf $(VENV) .dbarch

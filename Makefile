# Two commands: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: demo test ui bench quality env clean hypopg prometheus

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

test: env hypopg prometheus
	$(BIN)/pytest -q

# HypoPG on the machine's PostgreSQL 15 (Debian), for the what-if costing tests. Best effort: where it
# cannot be installed (not root, not Debian, no PostgreSQL 15) those tests are skipped and say why.
hypopg:
	@if [ -x /usr/lib/postgresql/15/bin/postgres ] && [ ! -f /usr/share/postgresql/15/extension/hypopg.control ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing postgresql-15-hypopg (what-if costing tests)"; \
	  apt-get install -y -q postgresql-15-hypopg >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql-15-hypopg >/dev/null 2>&1; } \
	  || echo "postgresql-15-hypopg could not be installed: the HypoPG tests will be skipped"; \
	fi

# promtool (Debian's prometheus package), for the alert rule's tests. Best effort, like HypoPG: where it
# cannot be installed those tests are skipped and say why.
prometheus:
	@if ! command -v promtool >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing prometheus (promtool, for the alert rule tests)"; \
	  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; } \
	  || echo "prometheus could not be installed: the promtool tests will be skipped"; \
	fi

ui: env
	$(BIN)/dbarch ui

bench: env
	$(BIN)/python benchmarks/run_all.py

# advisor quality: 5 new random seeds of the generated suite (log off and on) against the measured
# oracle, then the demo, shop and TPC-H workloads; prints the seeds (replay: QUALITY_ARGS="--seeds 1,2"),
# mean and worst seed, and the calibration table
QUALITY_ARGS ?= --count 5
quality: env
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/quality/run_generated.py $(QUALITY_ARGS) --fixed-workloads --json .dbarch/quality.json

clean:
	-$(BIN)/dbarch db stop
	rm -rf $(VENV) .dbarch

# Fil: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core, for the reader page's accessibility test (npm, kept out of git)
AXE := .cache/axe/node_modules/axe-core/axe.min.js

.PHONY: run test check style types bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --group dev
	touch $(STAMP)

run: $(STAMP)
	CURATION_DEMO=$${CURATION_DEMO:-1} $(BIN)/python app.py

# Debian packages the tests need (redis-server, chromium); installed only when missing.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing npm from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq npm >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq redis-server >/dev/null; }

$(AXE): | system-deps
	npm install --prefix .cache/axe --no-audit --no-fund --silent axe-core@4

test: $(STAMP) system-deps $(AXE)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff format --check curation app.py tests bench
	$(BIN)/ruff check curation app.py tests bench
	$(BIN)/mypy

style: $(STAMP)
	$(BIN)/ruff format curation app.py tests bench
	$(BIN)/ruff check --fix curation app.py tests bench

bench: $(STAMP)
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Issue 6 §6 benchmarks (BENCHMARKS.md): capacity step search, two processes on Redis, reconnect storm, polling load.
.PHONY: bench-capacity bench-redis bench-storm bench-polls bench-scale
bench-capacity: $(STAMP)
	$(BIN)/python bench/capacity.py
bench-redis: $(STAMP) system-deps
	$(BIN)/python bench/redis_fanout.py
	$(BIN)/python bench/redis_fanout.py --steps 10000,15000,19600,25000,30000 --duration 15
bench-storm: $(STAMP) system-deps
	$(BIN)/python bench/storm.py
bench-polls: $(STAMP) system-deps
	$(BIN)/python bench/polls.py
bench-scale: bench-capacity bench-redis bench-storm bench-polls

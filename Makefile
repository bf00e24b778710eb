# sae-lake: `make demo` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test servers ui lint docs mutate bench clean

venv: $(VENV)/.installed

# torch is installed first, pinned, so no resolver ever pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,docs]'
	$(BIN)/pip install -q --no-deps sae-dashboard==0.8.0  # its Neuronpedia layout, for a test; its own pins clash
	touch $@

demo: venv
	$(BIN)/sae-lake demo

# Two test processes (pytest-xdist), one intra-op thread each (tests/tiny_world.py): both cores, no oversubscription.
TEST_WORKERS ?= 2
test: venv servers
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The servers the tests start on loopback and stop again (PostgreSQL, Redis), and the browser the dashboard tests
# open pages in (Chromium and its driver), from Debian when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
servers:
	@(ls /usr/lib/postgresql/*/bin/pg_ctl || command -v pg_ctl) >/dev/null 2>&1 && command -v redis-server >/dev/null \
		&& command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql redis-server chromium chromium-driver)

ui: venv
	$(BIN)/dagster dev

# ruff, and the layer contract: no import cycle, shared code imports no domain, sae_models no pipeline.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

# The documentation site (docs/, mkdocs.yml) into site/, offline; any warning fails it.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Mutation testing ([tool.mutmut] in pyproject.toml) of the statistics, the SAE base class and the evaluations'
# scoring; incremental: a rerun tests only the functions that changed. Survivors are listed by `mutmut results`
# (docs/testing.md).
mutate: venv
	$(BIN)/pip install -q -e '.[mutate]'
	-timeout 3600 $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

bench: venv
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/stream_training.py
	$(BIN)/python bench/stream_training.py --memory
	$(BIN)/python bench/steer.py
	$(BIN)/python bench/dtc.py
	$(BIN)/python bench/patch.py
	$(BIN)/python bench/object_store.py
	$(BIN)/python bench/autointerp.py   # needs the demo's lake
	$(BIN)/python bench/steering_successors.py   # needs the demo's lake
	$(BIN)/python bench/steering_ceiling.py   # needs the demo's lake
	$(BIN)/python bench/demo_workers.py   # needs the demo's lake
	$(BIN)/python bench/dashboards.py --lake lake --browser   # needs the demo's lake

clean:
	rm -rf site mutants lake dagster_home/storage dagster_home/logs dagster_home/history dagster_home/schedules

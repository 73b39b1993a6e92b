# Retune: `make demo` runs the demo scenario, `make test` runs the checks and the tests.
# Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | cksum | cut -d' ' -f1)
DEMO   := $(CURDIR)/.demo

# make splits words at spaces: `rm -rf $(DEMO)` in "~/my project" would remove "~/my".
ifneq ($(word 2,$(CURDIR)),)
$(error this checkout's path has a space ("$(CURDIR)"), which make cannot pass safely to rm and the state URLs: move or link it to a path without spaces)
endif

# The embedded default: SQLite for Airflow, MLflow and Optuna, all under .demo/. The
# production topology's variables (a shell that sourced .stack/env.sh) are dropped, so the
# demo never writes to the stack's PostgreSQL, MLflow or Airflow.
DEMO_ENV := env -u AIRFLOW__DATABASE__SQL_ALCHEMY_CONN -u AIRFLOW__CORE__EXECUTOR \
	-u AIRFLOW__CORE__EXECUTION_API_SERVER_URL -u AIRFLOW__API__HOST -u AIRFLOW__API__PORT \
	-u AIRFLOW__API__BASE_URL -u RETUNE_OPTUNA_STORAGE -u RETUNE_POLICY_DB -u RETUNE_ARTIFACT_ROOT \
	-u RETUNE_CONFIG_DIR \
	RETUNE_STATE_DIR="$(DEMO)" \
	AIRFLOW_HOME="$(DEMO)/airflow" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	AIRFLOW__CORE__PLUGINS_FOLDER="$(CURDIR)/plugins" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	MLFLOW_TRACKING_URI="sqlite:///$(DEMO)/mlflow.db"

# The LocalExecutor's tasks fork from a process that imported Retune's libraries once
# (include/retune/preload.py; the same as FORKSERVER_ENV in scripts/stack.py).
FORKSERVER_ENV := AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver \
	AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=airflow.executors.local_executor,airflow.sdk.execution_time.task_runner,retune.preload

.PHONY: install browser demo status test lint typecheck unit airflow-ui mlflow-ui stack-up stack-down stack-status bench bench-quick clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Headless Chromium and its driver from Debian's packages, for the browser test (tests/ui).
# A no-op when both are there; installed with apt-get when root; otherwise a notice, and
# tests/ui skips (or fails, when CI=true).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium and chromium-driver (apt-get) for tests/ui"; \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	else \
		echo "browser: notice: /usr/bin/chromium or /usr/bin/chromedriver is missing and cannot be installed here"; \
		echo "browser: (not root or no apt-get); install chromium and chromium-driver to run tests/ui, which skips until then"; \
	fi

demo: install
	rm -rf "$(DEMO)"
	$(DEMO_ENV) $(BIN)/python scripts/demo.py

# Where the demo model stands after `make demo` (champion, challenger, lock, decisions); CONFIG=name for another.
CONFIG ?= demo
status: install
	@$(DEMO_ENV) $(BIN)/python -m retune status --config $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check include dags plugins scripts tests

typecheck: install
	$(BIN)/mypy

# Two pytest workers, one file each at a time (module fixtures such as test_stack's stack
# start once): a real-server test runs one task at a time and leaves a core idle, which the
# unit tests use. Measured here on 2 cores: 968 s with one worker, 621 s with two.
# TEST_WORKERS=0 runs in one process (as plain `pytest` does).
TEST_WORKERS ?= 2
test: install browser lint typecheck
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

unit: install
	$(BIN)/python -m pytest tests/retune

# The Airflow UI on the demo state (run `make demo` first): http://localhost:8080,
# the login is printed by `airflow standalone`. Its extra links open `make mlflow-ui`
# (RETUNE_MLFLOW_UI_URL=... for another address).
airflow-ui: install
	$(DEMO_ENV) $(FORKSERVER_ENV) RETUNE_MLFLOW_UI_URL=$${RETUNE_MLFLOW_UI_URL:-http://localhost:5000} $(BIN)/airflow standalone

# The MLflow UI on the demo state: http://localhost:5000
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(DEMO)/mlflow.db" --port 5000

# The production topology without Docker: PostgreSQL, MLflow server, Airflow services with the
# CeleryExecutor and a Celery worker on the local Redis (RETUNE_STACK_EXECUTOR=local: the
# LocalExecutor, no Redis) on loopback ports; see scripts/stack.py for the settings.
stack-up: install
	$(BIN)/python scripts/stack.py up

stack-down: install
	$(BIN)/python scripts/stack.py down

stack-status: install
	$(BIN)/python scripts/stack.py status

# Benchmarks (bench/): tables on stdout, results in bench/results/ (latest.json, a dated copy
# in history/, one PNG per benchmark). Never fail on a number. The full run takes up to an hour.
bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) "$(DEMO)" .retune .stack .pytest_cache .mypy_cache .ruff_cache

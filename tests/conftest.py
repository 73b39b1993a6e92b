"""Test-wide setup: a private Airflow home and Retune state, set before Airflow is imported.

Airflow reads its configuration once, on first import, so the environment is set here, at
collection time, not in a fixture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"

_HOME = Path(tempfile.mkdtemp(prefix="retune-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# dag.test() runs stand for DAGs a person has unpaused: monitor_drift triggers no retune of a
# paused retune_model. The real servers (tests/airflow_server.py, scripts/stack.py) create
# DAGs paused, as production does, and unpause what a test needs.
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ.setdefault("RETUNE_STATE_DIR", str(_HOME / "state"))
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("RETUNE_OPTUNA_STORAGE", None)


@pytest.fixture
def datasets() -> Path:
    """The shared datasets; skipped with a reason when absent, never when CI=true."""
    if not DATASETS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DATASETS} is missing; CI must run the real-data tests")
        pytest.skip(f"{DATASETS} is absent (the tests on real data need ../shared/datasets)")
    return DATASETS


@pytest.fixture(autouse=True)
def _isolate_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep one test's MLflow URIs out of the next: ``mlflow.set_tracking_uri`` changes process
    globals and the ``MLFLOW_TRACKING_URI`` variable, which Retune's settings read."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")  # recorded as absent: undone after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


# Test modules that start Airflow's services or run many DAG runs, longest first (measured
# 2026-11-27: 120-250 s each on a slow 2-core machine). Only the order of the run depends on it.
HEAVIEST = (
    "tests/e2e/test_scheduler.py",
    "tests/ui/test_trigger_form.py",
    "tests/e2e/test_stack.py",
    "tests/api/test_rest_trigger.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest modules first: the heaviest listed, then every module with a ``slow``
    test (it runs DAGs end to end), then the rest, each group in collection order.

    With two pytest-xdist workers and ``--dist loadfile`` a worker takes the next module when
    it runs out; the many short unit-test modules at the end then even out the two workers'
    loads. xdist's own order (``--loadscope-reorder``, its default; the Makefile turns it
    off) puts modules with many tests first, which left the one-test, four-minute modules to
    the end, one worker running them while the other had nothing left.
    """
    del config
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        where = item.path.relative_to(ROOT).as_posix()
        if where in HEAVIEST:
            return HEAVIEST.index(where)
        return len(HEAVIEST) + (0 if item.path in slow else 1)

    items.sort(key=rank)

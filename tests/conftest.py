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

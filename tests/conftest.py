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

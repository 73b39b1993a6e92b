"""Fixtures for end-to-end runs: an Airflow metadata DB and a fresh Retune state per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The Airflow metadata database (SQLite in the test's AIRFLOW_HOME), migrated once."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def retune_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private state and config folders for one test."""
    state = tmp_path / "state"
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RETUNE_OPTUNA_STORAGE", raising=False)
    return {"state": state, "configs": configs}


def write_config(folder: Path, name: str, changes: dict[str, Any] | None = None, base: Path | None = None) -> Path:
    """Copy a config (default: the demo's) into ``folder`` as ``<name>.yaml`` with nested changes."""
    raw = yaml.safe_load((base or ROOT / "include" / "configs" / "demo.yaml").read_text())
    raw["name"] = name

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and v and isinstance(dst.get(k), dict):  # {} replaces
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(raw, changes or {})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def fresh_dags() -> dict[str, Any]:
    """Parse the DAG folder afresh (a DAG object keeps the params of its last test run)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags

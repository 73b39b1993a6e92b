"""Where Retune keeps its state (retune.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune.errors import ConfigError
from retune.settings import get_settings


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MLFLOW_TRACKING_URI", "RETUNE_OPTUNA_STORAGE", "RETUNE_POLICY_DB", "RETUNE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_embedded_default_keeps_every_database_in_the_state_folder(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    s = get_settings()
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert s.optuna_storage == f"sqlite:///{tmp_path / 'state' / 'optuna.db'}"
    assert s.policy_db == f"sqlite:///{tmp_path / 'state' / 'policy.db'}"
    assert (tmp_path / "state").is_dir()


@pytest.mark.parametrize("folder", ["50%20off", "what?", "take#2"])
def test_a_state_folder_a_sqlite_url_cannot_carry_is_refused(embedded: pytest.MonkeyPatch, tmp_path: Path, folder: str) -> None:
    """SQLAlchemy reads sqlite:///.../50%20off as '50 off' and cuts at '?': the databases
    would be written somewhere else than the folder named."""
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / folder))
    with pytest.raises(ConfigError, match=r"RETUNE_STATE_DIR: .* a SQLite URL cannot carry"):
        get_settings()
    assert not (tmp_path / folder).exists(), "nothing created"


def test_such_a_folder_is_fine_when_no_sqlite_url_is_built_from_it(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "50%20off"))
    embedded.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    embedded.setenv("RETUNE_OPTUNA_STORAGE", "postgresql+psycopg2://postgres@127.0.0.1:5432/optuna")
    assert get_settings().policy_db.startswith("postgresql")


@pytest.mark.parametrize(
    "tracking",
    [
        "postgresql+psycopg2://mlflow@db:5432/mlflow",
        "postgresql://mlflow@db/mlflow",
        "mysql+pymysql://mlflow@db/mlflow",
        "mssql+pyodbc://mlflow@db/mlflow",
        "sqlite:////srv/mlflow.db",
        "file:///srv/mlruns",
        "/srv/mlruns",
    ],
)
def test_a_tracking_database_gets_the_state_folders_artifact_root(
    embedded: pytest.MonkeyPatch, tmp_path: Path, tracking: str
) -> None:
    """Without one, MLflow put a database-tracked experiment's artifacts in ./mlruns under the
    working directory of whichever process created the experiment."""
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    embedded.setenv("MLFLOW_TRACKING_URI", tracking)
    assert get_settings().artifact_root == (tmp_path / "state" / "mlartifacts").as_uri()


@pytest.mark.parametrize("tracking", ["http://mlflow:5000", "https://mlflow.example.com", "databricks", "databricks://prof"])
def test_a_tracking_server_chooses_its_own_artifact_root(embedded: pytest.MonkeyPatch, tmp_path: Path, tracking: str) -> None:
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    embedded.setenv("MLFLOW_TRACKING_URI", tracking)
    assert get_settings().artifact_root is None


def test_an_explicit_artifact_root_wins(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    embedded.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg2://mlflow@db/mlflow")
    embedded.setenv("RETUNE_ARTIFACT_ROOT", "s3://bucket/retune")
    assert get_settings().artifact_root == "s3://bucket/retune"


@pytest.mark.postgres
def test_an_experiment_tracked_in_postgresql_keeps_its_artifacts_in_the_state_folder(
    embedded: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Measured by a reviewer: with a PostgreSQL tracking URI a new experiment's
    artifact_location was <cwd>/mlruns/1."""
    from mlflow import MlflowClient
    from pg import temp_database  # type: ignore[import-not-found]

    from retune.tracking import ensure_experiment

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    embedded.chdir(elsewhere)
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    with temp_database("retune_artifacts") as url:
        embedded.setenv("MLFLOW_TRACKING_URI", url.replace("postgresql://", "postgresql+psycopg2://", 1))
        settings = get_settings()
        cl = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        experiment = cl.get_experiment(ensure_experiment(cl, "retune/demo", settings))
        run = cl.create_run(experiment.experiment_id)
        cl.log_text(run.info.run_id, "hello", "note.txt")
        cl.set_terminated(run.info.run_id)
    assert experiment.artifact_location == (tmp_path / "state" / "mlartifacts" / "retune_demo").as_uri()
    assert list((tmp_path / "state" / "mlartifacts").rglob("note.txt")), "the artifact is in the state folder"
    assert not list(elsewhere.iterdir()), "nothing written under the working directory"

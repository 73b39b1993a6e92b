"""Where Retune keeps its state (retune.settings)."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _installed_copy(tmp_path: Path) -> Path:
    """The library laid out as a non-editable install has it: site-packages/retune, with no
    include/configs beside it."""
    import shutil

    import retune

    site = tmp_path / "site-packages"
    shutil.copytree(Path(retune.__file__).parent, site / "retune", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def _run_cli(site: Path, tmp_path: Path, *args: str, config_dir: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETUNE_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(site), RETUNE_STATE_DIR=str(tmp_path / "state"))
    if config_dir is not None:
        env["RETUNE_CONFIG_DIR"] = config_dir
    return subprocess.run(
        [sys.executable, "-m", "retune", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_an_installed_package_without_retune_config_dir_says_to_set_it(tmp_path: Path) -> None:
    """Installed (not editable), the default config folder resolves to site-packages/configs,
    which does not exist: the error said only '<site-packages>/configs/demo.yaml: config file
    does not exist', and a monitor run listed no configs and checked nothing."""
    site = _installed_copy(tmp_path)
    status = _run_cli(site, tmp_path, "status", "--config", "demo")
    assert status.returncode == 1
    assert f"config folder {site / 'configs'} does not exist" in status.stderr
    assert "RETUNE_CONFIG_DIR is unset" in status.stderr and "set RETUNE_CONFIG_DIR" in status.stderr
    check = _run_cli(site, tmp_path, "check")
    assert check.returncode == 1 and "RETUNE_CONFIG_DIR is unset" in check.stderr, check.stderr
    named = _run_cli(site, tmp_path, "check", "--config", "demo")
    assert named.returncode == 1 and "RETUNE_CONFIG_DIR is unset" in named.stdout, named.stdout


def test_a_missing_config_folder_is_named_with_the_variable(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from retune.pipeline import load_named_config
    from retune.schedule import list_configs

    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    embedded.setenv("RETUNE_CONFIG_DIR", str(tmp_path / "typo"))
    message = f"config folder {tmp_path / 'typo'} does not exist (RETUNE_CONFIG_DIR is '{tmp_path / 'typo'}')"
    with pytest.raises(ConfigError) as loading:
        load_named_config("demo")
    assert str(loading.value).startswith(message)
    with pytest.raises(ConfigError, match="RETUNE_CONFIG_DIR"):
        list_configs()  # the monitor's list: it returned [] and the run checked no model
    (tmp_path / "typo").mkdir()
    assert list_configs() == []
    with pytest.raises(ConfigError, match=r"demo\.yaml: config file does not exist"):
        load_named_config("demo")  # the folder is there: the file is what is missing


def test_a_read_only_caller_gets_the_settings_without_the_state_folder(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`retune status` said "(nothing was created)" after get_settings had made the folder."""
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    s = get_settings(create=False)
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert not (tmp_path / "state").exists()
    get_settings()
    assert (tmp_path / "state").is_dir()

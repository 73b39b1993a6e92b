"""MLflow tracking helpers: experiments, parent and child runs, lineage.

Runs are addressed by id, so each Airflow task (a separate process) picks up the retune's
one parent run and adds to it. Child runs carry the ``mlflow.parentRunId`` tag, which is
what makes the MLflow UI show a retune as one expandable row.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retune.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
TRACKED_PACKAGES = ("scikit-learn", "optuna", "mlflow", "evidently", "pandas", "numpy", "apache-airflow")


def require_store(settings: Settings) -> None:
    """Refuse a tracking store that would be created by opening it: the embedded default's
    SQLite file that does not exist means a wrong or fresh ``RETUNE_STATE_DIR``, where a
    command that reads the registry (status, rollback, a trial worker) would create an empty
    ``mlflow.db`` and report "no champion". A server URL is not checked.

    Args:
        settings: State locations (``tracking_uri``).

    Raises:
        ConfigError: The SQLite file does not exist (nothing was created): a setting to fix,
            which no retry helps (the DAGs fail such a task at once).
    """
    from retune.db import sqlite_file
    from retune.errors import ConfigError

    tracking_file = sqlite_file(settings.tracking_uri)
    if tracking_file is not None and not tracking_file.exists():
        raise ConfigError(
            f"no Retune state here: {tracking_file} does not exist (nothing was created). Is RETUNE_STATE_DIR "
            f"({settings.state_dir}) right? `make demo` keeps its state in .demo"
        )


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URI."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(cl: MlflowClient, name: str, settings: Settings) -> str:
    """The id of an experiment, created (with the state folder's artifact root) if needed.

    Args:
        cl: MLflow client.
        name: Experiment name.
        settings: Where artifacts go for the embedded default.

    Returns:
        The experiment id.
    """
    from mlflow.exceptions import MlflowException

    exp = cl.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if settings.artifact_root:
        location = f"{settings.artifact_root.rstrip('/')}/{name.replace('/', '_')}"
    try:
        return str(cl.create_experiment(name, artifact_location=location))
    except MlflowException:  # created concurrently by another task
        exp = cl.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a model's behaviour."""
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the code, from ``RETUNE_GIT_COMMIT`` or ``git`` if this is a checkout."""
    env = os.environ.get("RETUNE_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def log_json(cl: MlflowClient, run_id: str, value: Any, artifact_file: str) -> None:
    """Log a JSON value as an artifact of a run."""
    log_text(cl, run_id, json.dumps(value, indent=2, default=str), artifact_file)


def log_text(cl: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    """Log text as an artifact of a run (HTML, Markdown, JSON)."""
    cl.log_text(run_id, text, artifact_file)


def log_figure(cl: MlflowClient, run_id: str, figure: Any, artifact_file: str) -> None:
    """Log a matplotlib or plotly figure as an artifact of a run."""
    cl.log_figure(run_id, figure, artifact_file)


@contextlib.contextmanager
def active_run(run_id: str) -> Iterator[None]:
    """Make an existing run the active fluent run without finishing it afterwards.

    ``mlflow.<flavor>.log_model`` logs to the active run; tasks resume the retune's parent
    run for that and hand it back still RUNNING for the next task.
    """
    import mlflow

    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run(status="RUNNING")


def artifact_uri(cl: MlflowClient, run_id: str, path: str) -> str:
    """The URI of an artifact of a run."""
    return f"{cl.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    """A private temporary folder for files that are logged and then removed."""
    return tempfile.TemporaryDirectory(prefix="retune-")


def end_trial_run(cl: MlflowClient, run_id: str, *, state: str, status: str, reason: str | None = None) -> list[Exception]:
    """Tag a trial's MLflow child run with its Optuna state and terminate it.

    Every step is tried even when an earlier one fails (an MLflow outage that fails the tag
    must not leave the run RUNNING when the server answers again for ``set_terminated``).

    Args:
        cl: MLflow client.
        run_id: The child run.
        state: The trial's Optuna state (tag ``optuna.trial_state``).
        status: The run's end status (``FINISHED``, ``KILLED``, ``FAILED``).
        reason: Why it failed (tag ``retune.failure``), if it did.

    Returns:
        The MLflow errors, each already logged (empty: the run was closed).
    """
    errors: list[Exception] = []
    tags = {"optuna.trial_state": state, **({"retune.failure": reason} if reason else {})}
    for key, value in tags.items():
        try:
            cl.set_tag(run_id, key, value)
        except Exception as exc:  # noqa: BLE001 - still terminate the run
            errors.append(exc)
            log.warning("could not tag MLflow run %s %s=%s: %s", run_id, key, value, exc)
    try:
        cl.set_terminated(run_id, status=status)
    except Exception as exc:  # noqa: BLE001 - returned to the caller
        errors.append(exc)
        log.warning("could not end MLflow run %s as %s: %s", run_id, status, exc)
    return errors


def fail_trial_run(cl: MlflowClient, run_id: str, reason: str) -> None:
    """Mark a trial's MLflow child run FAILED (tags ``optuna.trial_state=FAIL`` and
    ``retune.failure``); an MLflow error is logged, never raised: the study matters more."""
    end_trial_run(cl, run_id, state="FAIL", status="FAILED", reason=reason)

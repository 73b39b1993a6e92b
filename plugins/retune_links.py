"""Extra links from Retune's task instances to MLflow: the retune's parent run, the registered
model version and the Evidently drift report.

The links are *global* operator extra links: Airflow 3 evaluates them in the api-server for
every task (TaskFlow ``@task`` tasks included, mapped or not) and each link returns ``""``,
which the UI does not show, outside ``retune_model`` and ``monitor_drift`` or while its data
is not there yet. They read the tasks' XCom return values straight from the metadata
database, the only place the api-server has them (the Task SDK's ``XCom.get_value`` works
only inside a running task):

=====================  =================================================================
link                   shown on, and read from
=====================  =================================================================
MLflow retune run      every ``retune_model`` task; ``retune.load_data``'s
                       ``experiment_id`` and ``parent_run_id``
MLflow model version   every ``retune_model`` task; ``retune.register``'s ``model_name``
                       and ``version``
Evidently drift        ``monitor_drift.check_drift`` (each mapped index: its own model);
report                 its ``monitor_run_id``, ``experiment_id`` and ``report_uri``. On
                       ``retune_model``, the drift check that triggered the retune (the
                       same keys in the run conf's ``drift``)
=====================  =================================================================

The MLflow UI is ``RETUNE_MLFLOW_UI_URL``, or ``MLFLOW_TRACKING_URI`` when that is an
``http(s)`` server, without any ``user:password@`` in it; with neither there are no links (a
SQLite tracking store has no UI URL).
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

RETUNE_DAG = "retune_model"
MONITOR_DAG = "monitor_drift"
LOAD_DATA_TASK = "retune.load_data"
REGISTER_TASK = "retune.register"
CHECK_DRIFT_TASK = "check_drift"
REPORT_PATH = "drift/report.html"


# --------------------------------------------------------------------------- URLs


def mlflow_ui_base() -> str:
    """The MLflow UI's base URL without a trailing slash, or ``""`` when there is none.

    A ``user:password@`` in the URL (basic auth in ``MLFLOW_TRACKING_URI``) is dropped: the
    links are shown to everyone who can see the task in the Airflow UI.
    """
    base = os.environ.get("RETUNE_MLFLOW_UI_URL") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    base = base.strip()
    if not base.startswith(("http://", "https://")):
        return ""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")


def _part(value: Any) -> str:
    return quote(str(value), safe="")


def run_url(base: str, experiment_id: Any, run_id: Any) -> str:
    """An MLflow run page; ``#/runs/<id>`` (MLflow finds the experiment) without an experiment id."""
    if not base or not run_id:
        return ""
    if experiment_id in (None, ""):
        return f"{base}/#/runs/{_part(run_id)}"
    return f"{base}/#/experiments/{_part(experiment_id)}/runs/{_part(run_id)}"


def model_version_url(base: str, model_name: Any, version: Any) -> str:
    """A registered model version's page."""
    if not base or not model_name or version in (None, ""):
        return ""
    return f"{base}/#/models/{_part(model_name)}/versions/{_part(version)}"


def experiment_from_artifact_uri(artifact_uri: Any, run_id: str) -> str | None:
    """The experiment id in an artifact URI laid out as ``.../<experiment id>/<run id>/artifacts/...``.

    That is MLflow's default layout (``mlflow-artifacts:/1/<run>/artifacts/...``); an
    experiment created with its own artifact location has no id in its URIs: None.
    """
    if not isinstance(artifact_uri, str) or not run_id:
        return None
    match = re.search(rf"/(\d+)/{re.escape(run_id)}/artifacts/", artifact_uri)
    return match.group(1) if match else None


def report_url(base: str, monitor_run_id: Any, report_uri: Any = None, experiment_id: Any = None) -> str:
    """The Evidently report in the drift check run's artifact view.

    The artifact view needs the experiment id (given, or read from ``report_uri``); without it
    the link opens the run. No report (``report_uri`` None: the check made no HTML, as for a
    calm window under the default ``drift.report: on_drift``) and no run: no link.
    """
    if not base or not monitor_run_id or not report_uri:
        return ""
    experiment_id = experiment_id or experiment_from_artifact_uri(report_uri, str(monitor_run_id))
    if not experiment_id:
        return run_url(base, None, monitor_run_id)
    path = "/".join(_part(p) for p in REPORT_PATH.split("/"))
    return f"{run_url(base, experiment_id, monitor_run_id)}/artifacts/{path}"


# --------------------------------------------------------------------------- metadata DB


def decoded(value: Any) -> Any:
    """A stored XCom or conf value with JSON text decoded (as is when it is not JSON); never
    instantiates classes from stored data."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    """An XCom or conf value as a dict, ``{}`` when it is none."""
    value = decoded(value)
    return value if isinstance(value, dict) else {}


def xcom_value(dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """A task instance's XCom value as stored (JSON text or already decoded), ``None`` when absent."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(key=key, run_id=run_id, dag_ids=dag_id, task_ids=task_id, map_indexes=map_index).with_only_columns(
                XComModel.value
            )
        ).first()
    return None if row is None else row.value


def return_value(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    """A task instance's XCom return value (a dict), ``{}`` when absent."""
    return _as_dict(xcom_value(dag_id, run_id, task_id, map_index=map_index))


def run_conf(dag_id: str, run_id: str) -> dict[str, Any]:
    """A DAG run's conf, ``{}`` when absent."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conf = session.scalar(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    return _as_dict(conf)


def retune_run_carries(token: str) -> bool:
    """Whether a ``retune_model`` run exists whose conf carries the policy ``token``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import Text, cast, select

    with create_session() as session:  # tokens are hex: no LIKE wildcard can be in one
        confs = session.scalars(
            select(DagRun.conf).where(DagRun.dag_id == RETUNE_DAG, cast(DagRun.conf, Text).like(f"%{token}%"))
        ).all()
    return any(isinstance(c := decoded(conf), dict) and c.get("policy_token") == token for conf in confs)


# --------------------------------------------------------------------------- links


class _RetuneLink(BaseOperatorLink):
    """A link that is ``""`` when its data is missing or cannot be read."""

    name = "Retune"

    def url(self, ti_key: TaskInstanceKey, base: str) -> str:
        raise NotImplementedError

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if ti_key.dag_id not in (RETUNE_DAG, MONITOR_DAG):
            return ""
        base = mlflow_ui_base()
        if not base:
            return ""
        try:
            return self.url(ti_key, base)
        except Exception:  # noqa: BLE001 (a link must never break the task page)
            log.warning("%s link of %s failed", self.name, ti_key, exc_info=True)
            return ""


class MlflowRetuneRunLink(_RetuneLink):
    """The retune's MLflow parent run (one child run per trial)."""

    name = "MLflow retune run"

    def url(self, ti_key: TaskInstanceKey, base: str) -> str:
        if ti_key.dag_id != RETUNE_DAG:
            return ""
        ctx = return_value(ti_key.dag_id, ti_key.run_id, LOAD_DATA_TASK)
        return run_url(base, ctx.get("experiment_id"), ctx.get("parent_run_id"))


class MlflowModelVersionLink(_RetuneLink):
    """The model version the retune registered."""

    name = "MLflow model version"

    def url(self, ti_key: TaskInstanceKey, base: str) -> str:
        if ti_key.dag_id != RETUNE_DAG:
            return ""
        result = return_value(ti_key.dag_id, ti_key.run_id, REGISTER_TASK)
        return model_version_url(base, result.get("model_name"), result.get("version"))


class EvidentlyReportLink(_RetuneLink):
    """The Evidently drift report of a drift check (or of the check that triggered a retune)."""

    name = "Evidently drift report"

    def url(self, ti_key: TaskInstanceKey, base: str) -> str:
        if ti_key.dag_id == MONITOR_DAG:
            if ti_key.task_id != CHECK_DRIFT_TASK:
                return ""
            found = return_value(ti_key.dag_id, ti_key.run_id, CHECK_DRIFT_TASK, ti_key.map_index)
        else:
            found = _as_dict(run_conf(ti_key.dag_id, ti_key.run_id).get("drift"))
        return report_url(base, found.get("monitor_run_id"), found.get("report_uri"), found.get("experiment_id"))


class RetuneLinksPlugin(AirflowPlugin):
    """Registers the links for every operator; each answers only for Retune's two DAGs."""

    name = "retune_links"
    global_operator_extra_links = [MlflowRetuneRunLink(), MlflowModelVersionLink(), EvidentlyReportLink()]

"""The plugins against a real Airflow metadata database (SQLite in the tests' AIRFLOW_HOME,
migrated and with the DAGs serialized by the CLI): the receiver's run creation, the extra
links as the api-server evaluates them, on the serialized tasks of the DAGs in the DB, and the
listener's clean-up after a monitor run that ended before it started its retunes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from retune_alert_samples import grafana_payload

AIRFLOW = str(Path(sys.executable).parent / "airflow")
UI = "http://mlflow.example:5000"


@pytest.fixture(scope="module")
def metadata_db() -> None:
    """The tests' metadata DB, migrated, with ``retune_model`` and ``monitor_drift`` serialized in
    it and ``retune_model`` unpaused (DAGs are paused at creation by default)."""
    env = {**os.environ}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    for cmd in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", "retune_model"]):
        out = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, check=False, timeout=300)
        assert out.returncode == 0, f"airflow {' '.join(cmd)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


@pytest.fixture
def run_ids(metadata_db: None) -> Iterator[list[str]]:
    """Run ids to delete after the test (the DB is shared with the other tests of the session)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    ids: list[str] = []
    yield ids
    with create_session() as session:
        for run in session.scalars(select(DagRun).where(DagRun.run_id.in_(ids))):
            session.delete(run)


def _run(dag_id: str, run_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is not None:
            session.expunge(run)
        return run


def test_create_retune_run_creates_a_queued_run(alerts: ModuleType, run_ids: list[str]) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import select

    assert alerts.retune_dag_problem() is None
    conf = {
        "config": "demo",
        "trigger": "alert",
        "force": False,
        "window": "latest",
        "alert": {"labels": {"alertname": "X", "model": "demo-demand"}, "annotations": {}, "startsAt": "2025-06-01T10:00:00Z"},
        "policy_token": "0123abcd",
        "idempotency_key": "alert:demo:abc:2025-06-01T10:00:00Z",
    }
    run_id = alerts.create_retune_run(run_id=alerts.run_id_for("demo", conf["idempotency_key"]), conf=conf, note="test alert")
    run_ids.append(run_id)
    run = _run("retune_model", run_id)
    assert run is not None
    assert (str(run.state), str(run.run_type), run.triggered_by) == ("queued", "manual", DagRunTriggeredByType.REST_API)
    assert run.conf == conf
    assert run.triggering_user_name == "retune-alert-receiver"
    with create_session() as session:
        tasks = set(session.scalars(select(TaskInstance.task_id).where(TaskInstance.run_id == run_id)))
    assert {"retune.drift_gate", "retune.load_data", "retune.register"} <= tasks


def test_bad_conf_is_refused_by_the_dags_params(alerts: ModuleType, run_ids: list[str]) -> None:
    with pytest.raises(Exception, match="trigger"):
        alerts.create_retune_run(run_id="alert__bad", conf={"config": "demo", "trigger": "pager"}, note="")
    assert _run("retune_model", "alert__bad") is None


def test_retune_dag_problem_names_a_missing_dag(alerts: ModuleType, metadata_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "RETUNE_DAG_ID", "no_such_dag")
    assert "not in the metadata database" in alerts.retune_dag_problem()


def test_retune_dag_problem_names_a_paused_dag(alerts: ModuleType, metadata_db: None) -> None:
    env = {**os.environ}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)

    def airflow(*args: str) -> None:
        out = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, check=False, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]

    airflow("dags", "pause", "retune_model")
    try:
        problem = alerts.retune_dag_problem()
        assert problem is not None and "retune_model is paused" in problem and "airflow dags unpause" in problem
    finally:
        airflow("dags", "unpause", "retune_model")
    assert alerts.retune_dag_problem() is None


def test_grafana_alert_creates_a_run_in_the_db(
    client: Any, auth: dict, retune_state: dict, policy: ModuleType, run_ids: list[str]
) -> None:
    resp = client.post("/alerts/grafana", content=json.dumps(grafana_payload()), headers=auth)
    assert resp.status_code == 202, resp.text
    [result] = resp.json()["results"]
    assert result["triggered"] is True
    run_ids.append(result["dag_run_id"])
    run = _run("retune_model", result["dag_run_id"])
    assert run.conf["trigger"] == "alert"
    assert run.conf["config"] == "shop"
    assert policy.holds("shop", run.conf["policy_token"])


# --------------------------------------------------------------------------- links


def _links(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, str | None]:
    """What ``GET .../taskInstances/{task_id}/links`` answers: every link of the serialized task."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        task = dag.get_task(task_id)
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
        assert ti is not None, (dag_id, run_id, task_id, map_index)
        return {name: task.get_extra_links(ti, name) or None for name in task.extra_links}


def _xcom(dag_id: str, run_id: str, task_id: str, value: Any, map_index: int = -1) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        XComModel.set("return_value", value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, session=session)


def _trigger(dag_id: str, run_id: str, conf: dict | None = None) -> None:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    trigger_dag(dag_id, run_id=run_id, conf=conf, triggered_by=DagRunTriggeredByType.TEST)


LINKS = ("Evidently drift report", "MLflow model version", "MLflow retune run")


def test_links_of_a_retune_run(metadata_db: None, run_ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETUNE_MLFLOW_UI_URL", UI + "/")
    run_id = "links__retune"
    drift = {"monitor_run_id": "mon42", "report_uri": "mlflow-artifacts:/5/mon42/artifacts/drift/report.html"}
    _trigger("retune_model", run_id, {"config": "demo", "trigger": "drift", "drift": drift})
    run_ids.append(run_id)

    before = _links("retune_model", run_id, "retune.register")
    assert set(LINKS) <= set(before)  # the plugin's global links are on the TaskFlow task
    assert before["MLflow retune run"] is None and before["MLflow model version"] is None  # nothing ran yet
    assert before["Evidently drift report"] == f"{UI}/#/experiments/5/runs/mon42/artifacts/drift/report.html"

    _xcom("retune_model", run_id, "retune.load_data", {"config": "demo", "experiment_id": "3", "parent_run_id": "p0a1"})
    _xcom("retune_model", run_id, "retune.register", {"model_name": "demo-demand", "version": "7", "promoted": True})
    expected = {
        "MLflow retune run": f"{UI}/#/experiments/3/runs/p0a1",
        "MLflow model version": f"{UI}/#/models/demo-demand/versions/7",
        "Evidently drift report": f"{UI}/#/experiments/5/runs/mon42/artifacts/drift/report.html",
    }
    for task_id in ("retune.load_data", "retune.register", "retune.drift_gate", "retune.tune"):  # tune is mapped
        got = _links("retune_model", run_id, task_id)
        assert {k: got[k] for k in LINKS} == expected, task_id


def test_drift_report_link_of_a_mapped_check(metadata_db: None, run_ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    monkeypatch.setenv("MLFLOW_TRACKING_URI", UI)
    run_id = "links__monitor"
    _trigger("monitor_drift", run_id)
    run_ids.append(run_id)
    with create_session() as session:  # what the scheduler's expansion does for a second config
        session.execute(
            update(TaskInstance).where(TaskInstance.run_id == run_id, TaskInstance.task_id == "check_drift").values(map_index=1)
        )
    _xcom(
        "monitor_drift",
        run_id,
        "check_drift",
        {"config": "shop", "monitor_run_id": "m9", "report_uri": "mlflow-artifacts:/12/m9/artifacts/drift/report.html"},
        map_index=1,
    )
    got = _links("monitor_drift", run_id, "check_drift", map_index=1)
    assert got["Evidently drift report"] == f"{UI}/#/experiments/12/runs/m9/artifacts/drift/report.html"
    assert got["MLflow retune run"] is None and got["MLflow model version"] is None
    trigger = _links("monitor_drift", run_id, "trigger_retune")
    assert "Triggered DAG" in trigger and all(trigger[k] is None for k in LINKS)


def test_no_links_without_an_mlflow_ui(metadata_db: None, run_ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETUNE_MLFLOW_UI_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/mlflow.db")
    run_id = "links__no_ui"
    _trigger("retune_model", run_id, {"config": "demo"})
    run_ids.append(run_id)
    _xcom("retune_model", run_id, "retune.load_data", {"experiment_id": "3", "parent_run_id": "p0a1"})
    got = _links("retune_model", run_id, "retune.load_data")
    assert all(got[k] is None for k in LINKS)


# --------------------------------------------------------------------------- listener


def test_a_failed_monitor_run_cancels_the_decisions_whose_retune_never_started(
    retune_state: dict, policy: ModuleType, run_ids: list[str], metadata_db: None
) -> None:
    """trigger_retune out of retries after retunes_to_trigger took two locks, one retune run
    created: the other decision is cancelled (lock back, the same key decided afresh), the
    started retune keeps its lock."""
    import importlib
    import threading

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    listener = importlib.import_module("retune_listener")
    decided = {name: policy.decide(name, source="drift", key=f"drift:{name}:2025-06-01") for name in ("demo", "shop")}
    assert all(d.triggered for d in decided.values())
    confs = [
        {
            "config": name,
            "window": "latest",
            "force": False,
            "trigger": "drift",
            "policy_token": d.token,
            "idempotency_key": f"drift:{name}:2025-06-01",
        }
        for name, d in decided.items()
    ]
    monitor_run = "listener__monitor"
    _trigger("monitor_drift", monitor_run)
    run_ids.append(monitor_run)
    _xcom("monitor_drift", monitor_run, listener.PLAN_TASK, confs)
    _trigger("retune_model", "listener__shop_retune", confs[1])  # shop's retune was started
    run_ids.append("listener__shop_retune")

    assert listener.untriggered_retunes(monitor_run) == [("demo", decided["demo"].token)]
    with create_session() as session:  # the scheduler's call, with the run as it hands it over
        run = session.scalar(select(DagRun).where(DagRun.run_id == monitor_run))
        listener.on_dag_run_failed(run, "task_failure")
    for thread in threading.enumerate():
        if thread.name == f"retune-lock-{monitor_run}":
            thread.join(timeout=60)

    assert not policy.holds("demo", decided["demo"].token)
    assert policy.holds("shop", decided["shop"].token)  # its run releases it
    [demo] = [h for h in policy.history("demo") if h["token"] == decided["demo"].token]
    assert demo["triggered"] is False and demo["outcome"].startswith(
        "cancelled: monitor_drift run listener__monitor ended failed"
    )
    again = policy.decide("demo", source="drift", key="drift:demo:2025-06-01")  # the next monitor run's retry
    assert again.triggered, again.reason
    assert listener.cancel_untriggered_retunes(monitor_run, "again") == ["demo"]  # harmless twice: the old token holds nothing
    assert policy.holds("demo", again.token)


def test_a_retune_run_failed_before_its_drift_gate_finished_cancels_its_decision(
    retune_state: dict, policy: ModuleType, run_ids: list[str], metadata_db: None
) -> None:
    """A person marks an alert's run failed while its drift gate fails and retries: no
    release_lock, no token in XCom. The listener cancels the conf's decision (the alert's
    resend triggers) rather than releasing it (a duplicate from then on); a run whose gate
    finished is released as before."""
    import importlib

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    listener = importlib.import_module("retune_listener")
    confs = {}
    for name in ("demo", "shop"):
        decided = policy.decide(name, source="alert", key=f"alert:{name}:abc")
        confs[name] = {"config": name, "trigger": "alert", "policy_token": decided.token, "idempotency_key": f"alert:{name}:abc"}
        _trigger("retune_model", f"listener__{name}_alert", confs[name])
        run_ids.append(f"listener__{name}_alert")
    with create_session() as session:  # shop's gate finished and handed the token on
        for key, value in (("policy_token", confs["shop"]["policy_token"]), ("policy_config", "shop")):
            XComModel.set(
                key, value, dag_id="retune_model", task_id=listener.GATE_TASK, run_id="listener__shop_alert", session=session
            )

    for name in ("demo", "shop"):
        assert listener.release_abandoned_lock("retune_model", f"listener__{name}_alert", confs[name], "marked failed") == name
        assert policy.current_lock(name) is None
    [demo] = [h for h in policy.history("demo") if h["token"] == confs["demo"]["policy_token"]]
    assert demo["triggered"] is False and "before its drift gate admitted the retune" in demo["outcome"], demo
    assert policy.decide("demo", source="alert", key="alert:demo:abc").triggered, "the resend triggers"
    [shop] = [h for h in policy.history("shop") if h["token"] == confs["shop"]["policy_token"]]
    assert shop["triggered"] is True and shop["outcome"].startswith("failed: run listener__shop_alert"), shop
    assert "duplicate" in policy.decide("shop", source="alert", key="alert:shop:abc").reason

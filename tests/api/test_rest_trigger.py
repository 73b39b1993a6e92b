"""An alert triggers a retune through Airflow's REST API (v2), with the official Python client
(`apache-airflow-client`), against a real api-server (`airflow standalone`, see
tests/airflow_server.py).

The client gets a JWT from `POST /auth/token` (SimpleAuthManager user `admin`), triggers
`retune_model` with an alert's conf, and the run must succeed with that conf and register a
version tagged `retune.trigger=alert`. Requests without a token, or with a bad one, are
refused; a conf outside the Params' schema is refused with the param named.

A run marked failed by a person while it tunes gives the model's trigger-policy lock back (the
plugin ``retune_listener``): without it, every retune request would be skipped until the lock
expires. Both tests share one server; the alert test runs first (it expects no earlier run).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from airflow_server import ADMIN, CONFIG_N_TRIALS, AirflowServer, airflow_server  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

# idempotency_key is no Param: the caller's own key for the request (its resend is a duplicate)
ALERT_CONF = {
    "config": "demo",
    "window": "reference",
    "force": True,
    "n_trials": 3,
    "trigger": "alert",
    "idempotency_key": "pager-7",
}
assert ALERT_CONF["n_trials"] != CONFIG_N_TRIALS


def _status_without_auth(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(
        url,
        data=b'{"logical_date": null, "conf": {}}',
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    with airflow_server(tmp_path_factory.mktemp("rest")) as running:
        yield running


def _use_server_state(server: AirflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the server's policy decisions from this process."""
    monkeypatch.setenv("RETUNE_STATE_DIR", str(server.state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(server.configs))
    for name in ("RETUNE_POLICY_DB", "RETUNE_OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def test_alert_triggers_retune_through_rest_api(server: AirflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_client.client as ac
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.api.task_instance_api import TaskInstanceApi
    from airflow_client.client.exceptions import ApiException
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    runs_url = f"{server.url}/api/v2/dags/retune_model/dagRuns"
    # No token, or a forged one: refused, and no run is created.
    assert _status_without_auth(runs_url) in (401, 403)
    assert _status_without_auth(runs_url, {"Authorization": "Bearer not-a-jwt"}) in (401, 403)

    token = server.token(ADMIN)  # POST /auth/token {"username", "password"}
    config = ac.Configuration(host=server.url, access_token=token)
    with ac.ApiClient(config) as client:
        dag_runs = DagRunApi(client)
        # A conf outside the Params' schema is refused before any run exists.
        with pytest.raises(ApiException) as refused:
            dag_runs.trigger_dag_run("retune_model", TriggerDAGRunPostBody(logical_date=None, conf={**ALERT_CONF, "n_trials": 0}))
        assert refused.value.status == 400
        assert "n_trials" in str(refused.value.body)
        assert dag_runs.get_dag_runs("retune_model").dag_runs == []

        run = dag_runs.trigger_dag_run("retune_model", TriggerDAGRunPostBody(logical_date=None, conf=ALERT_CONF))
        run_id = run.dag_run_id
        assert run.conf is not None and {k: run.conf[k] for k in ALERT_CONF} == ALERT_CONF

        deadline = time.monotonic() + 240  # about 40 s alone; headroom for a loaded machine
        state = str(run.state.value)
        while state not in ("success", "failed"):
            tis = TaskInstanceApi(client).get_task_instances("retune_model", run_id).task_instances
            if any(ti.state is not None and ti.state.value in ("failed", "up_for_retry") for ti in tis):
                pytest.fail(server.failure_report("retune_model", run_id))
            assert time.monotonic() < deadline, server.failure_report("retune_model", run_id)
            time.sleep(3)
            state = str(dag_runs.get_dag_run("retune_model", run_id).state.value)
        assert state == "success", server.failure_report("retune_model", run_id)

        done = dag_runs.get_dag_run("retune_model", run_id)
        assert done.conf is not None
        assert {k: done.conf[k] for k in ALERT_CONF} == ALERT_CONF
        tis = TaskInstanceApi(client).get_task_instances("retune_model", run_id).task_instances
        states = {ti.task_id: ti.state.value if ti.state else None for ti in tis}
        assert states.get("retune.register") == "success", f"the retune did not register a model: {states}"

    cl = server.mlflow_client()
    versions = cl.search_model_versions("name='demo-demand'")
    assert len(versions) == 1, [v.version for v in versions]
    tags = versions[0].tags
    assert tags["retune.trigger"] == "alert"
    assert tags["airflow.run_id"] == run_id
    parent = cl.get_run(tags["retune.parent_run_id"])
    assert parent.data.tags["retune.trigger"] == "alert"
    assert parent.data.params["n_trials"] == str(ALERT_CONF["n_trials"])

    from retune import policy

    _use_server_state(server, monkeypatch)
    [decision] = [d for d in policy.history("demo") if d["source"] == "alert"]
    assert decision["idempotency_key"] == ALERT_CONF["idempotency_key"], "the conf's key, not the run's"
    assert decision["triggered"] and decision["outcome"].startswith("registered"), decision


def _xcom(server: AirflowServer, run_id: str, task_id: str, key: str = "return_value") -> Any:
    status, body = server.request("GET", f"/api/v2/dags/retune_model/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
    assert status == 200, f"XCom {task_id}/{key}: {status} {body}"
    return body["value"]


@pytest.mark.parametrize("mark", ["failed", "success"])
def test_a_run_marked_by_hand_gives_the_lock_back(server: AirflowServer, monkeypatch: pytest.MonkeyPatch, mark: str) -> None:
    """A person marks a tuning run failed or success: Airflow skips release_lock, so the
    listener gives the lock back and closes the MLflow parent run FAILED (it registered nothing)."""
    import optuna

    from retune import policy

    _use_server_state(server, monkeypatch)
    long_study = {"config": "demo", "window": "reference", "force": True, "n_trials": 1000, "timeout": 3600}
    status, run = server.request("POST", "/api/v2/dags/retune_model/dagRuns", {"logical_date": None, "conf": long_study})
    assert status == 200, f"trigger: {status} {run}"
    run_id = run["dag_run_id"]

    deadline = time.monotonic() + 240
    while not any(
        ti["task_id"] == "retune.tune" and ti["state"] == "running" for ti in server.task_instances("retune_model", run_id)
    ):
        assert time.monotonic() < deadline, "the retune never started tuning\n" + server.failure_report("retune_model", run_id)
        server.check_alive()
        time.sleep(2)
    token = _xcom(server, run_id, "retune.drift_gate", "policy_token")
    parent_run_id = _xcom(server, run_id, "retune.load_data")["parent_run_id"]
    assert isinstance(token, str) and policy.holds("demo", token), "the tuning run holds the model's lock"
    blocked = policy.decide("demo", source="manual", key="while-tuning", force=True)
    assert not blocked.triggered and "already running" in blocked.reason

    # what the UI's "Mark run as failed" / "as success" sends
    status, body = server.request("PATCH", f"/api/v2/dags/retune_model/dagRuns/{run_id}", {"state": mark})
    assert status == 200 and body["state"] == mark, f"{status} {body}"

    cl = server.mlflow_client()
    deadline = time.monotonic() + 60
    while policy.holds("demo", token) or cl.get_run(parent_run_id).info.status != "FAILED":
        assert time.monotonic() < deadline, (
            f"lock held: {policy.holds('demo', token)}, parent run {cl.get_run(parent_run_id).info.status}\n{server.log_tail()}"
        )
        time.sleep(1)
    states = {ti["task_id"]: ti["state"] for ti in server.task_instances("retune_model", run_id)}
    assert states["retune.release_lock"] != "success", f"release_lock did not run: {states}"

    # the supervisor SIGTERMs the tune task (SIGKILL 5 s later): the study stops in time, its
    # trial in flight ends FAIL with its child run; both stayed RUNNING for ever after the SIGKILL
    parent = cl.get_run(parent_run_id)
    study = server.study(parent.data.params["study_name"])
    deadline = time.monotonic() + 60
    while running := [t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]:
        assert time.monotonic() < deadline, f"trial(s) {running} still RUNNING after the run was marked\n{server.log_tail()}"
        time.sleep(1)
    children = cl.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    assert children, "the tune task ran trials"
    assert not [r.data.tags.get("mlflow.runName") for r in children if r.info.status == "RUNNING"], "child runs left RUNNING"
    decision = next(d for d in policy.history("demo") if d["token"] == token)
    assert decision["outcome"].startswith(f"{mark}: run {run_id} ended without release_lock"), decision
    after = policy.decide("demo", source="manual", key=f"after-mark-{mark}", force=True)
    assert after.triggered, after.reason
    assert after.token is not None
    policy.release("demo", after.token, outcome="test: not started")

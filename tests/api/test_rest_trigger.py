"""An alert triggers a retune through Airflow's REST API (v2), with the official Python client
(`apache-airflow-client`), against a real api-server (`airflow standalone`, see
tests/airflow_server.py).

The client gets a JWT from `POST /auth/token` (SimpleAuthManager user `admin`), triggers
`retune_model` with an alert's conf, and the run must succeed with that conf and register a
version tagged `retune.trigger=alert`. Requests without a token, or with a bad one, are
refused; a conf outside the Params' schema is refused with the param named.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from airflow_server import ADMIN, CONFIG_N_TRIALS, airflow_server  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

ALERT_CONF = {"config": "demo", "window": "reference", "force": True, "n_trials": 3, "trigger": "alert"}
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


def test_alert_triggers_retune_through_rest_api(tmp_path: Path) -> None:
    import airflow_client.client as ac
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.api.task_instance_api import TaskInstanceApi
    from airflow_client.client.exceptions import ApiException
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    with airflow_server(tmp_path) as server:
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
                dag_runs.trigger_dag_run(
                    "retune_model", TriggerDAGRunPostBody(logical_date=None, conf={**ALERT_CONF, "n_trials": 0})
                )
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

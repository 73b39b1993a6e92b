"""The alert receiver in a real ``airflow api-server`` (nothing else runs: creating a run needs
only the api-server and the metadata DB), started by the test on a free loopback port with a
temporary AIRFLOW_HOME and SQLite, the DAGs serialized with ``airflow dags reserialize``.

Alertmanager and Grafana payloads each create one ``retune_model`` run; a bad token creates
none; ten identical Alertmanager posts at once (two api-server workers) create exactly one
(a post that finds the winner's decision before its run exists is answered 503, retry).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procs import stop_group  # type: ignore[import-not-found]
from retune_alert_samples import PLUGINS, ROOT, TOKEN, alertmanager_payload, grafana_payload, write_config

pytestmark = pytest.mark.slow

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _retune_runs(db: Path) -> dict[str, dict]:
    """The ``retune_model`` runs in the metadata DB: run id to ``{"conf", "run_type", "state"}``."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run_id, conf, run_type, state FROM dag_run WHERE dag_id = 'retune_model'").fetchall()
    return {r[0]: {"conf": json.loads(r[1]) if isinstance(r[1], str) else r[1], "run_type": r[2], "state": r[3]} for r in rows}


def test_alerts_create_retune_runs_in_a_real_api_server(tmp_path: Path, policy: Any) -> None:
    home, state, configs = tmp_path / "airflow", tmp_path / "state", tmp_path / "configs"
    configs.mkdir()
    write_config(configs, "demo", "demo-demand")  # Alertmanager: label model=demo-demand
    write_config(configs, "shop", "shop-sales")  # Grafana: label retune_config=shop
    write_config(configs, "burst", "burst-model")  # the burst
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # as production; tests/conftest.py sets False
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "2",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "RETUNE_ALERT_TOKEN": TOKEN,
        "RETUNE_STATE_DIR": str(state),
        "RETUNE_CONFIG_DIR": str(configs),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    for name in (
        "AIRFLOW__CORE__UNIT_TEST_MODE",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "MLFLOW_TRACKING_URI",
        "RETUNE_OPTUNA_STORAGE",
        "RETUNE_POLICY_DB",
    ):
        env.pop(name, None)
    for cmd in (["db", "migrate"], ["dags", "reserialize"]):
        out = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, check=False, timeout=300)
        assert out.returncode == 0, f"airflow {' '.join(cmd)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    db = home / "airflow.db"
    assert _retune_runs(db) == {}

    base = f"http://127.0.0.1:{port}/retune"
    log_path = tmp_path / "api-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, health = _request(f"{base}/health")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, f"api-server exited:\n{log_path.read_text(errors='replace')[-4000:]}"
            assert time.monotonic() < deadline, f"api-server not up in 120 s:\n{log_path.read_text(errors='replace')[-4000:]}"
            time.sleep(1)
        assert health == {"status": "ok", "token_configured": True, "policy_available": True}

        # retune_model is paused (as DAGs are at creation): 503 before the policy, no run
        status, body = _request(f"{base}/alerts/alertmanager", alertmanager_payload())
        assert status == 503 and "retune_model is paused" in body["detail"], body
        assert _retune_runs(db) == {}
        out = subprocess.run(
            [AIRFLOW, "dags", "unpause", "retune_model"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert out.returncode == 0, out.stderr[-2000:]

        # Alertmanager: a firing alert for model demo-demand, and a resolved one
        status, body = _request(f"{base}/alerts/alertmanager", alertmanager_payload())
        assert status == 202, body
        fired, resolved = body["results"]
        assert (fired["config"], fired["triggered"]) == ("demo", True), fired
        assert (resolved["triggered"], resolved["dag_run_id"]) == (False, None)

        # Grafana: a firing alert naming the config shop
        status, body = _request(f"{base}/alerts/grafana", grafana_payload())
        assert status == 202, body
        [grafana] = body["results"]
        assert (grafana["config"], grafana["triggered"]) == ("shop", True), grafana

        # a bad token: 401, no run
        other = alertmanager_payload(labels={"alertname": "ModelErrorHigh", "model": "burst-model"})
        assert _request(f"{base}/alerts/alertmanager", other, token="not-the-token")[0] == 401
        assert _request(f"{base}/alerts/alertmanager", other, token=None)[0] == 401
        runs = _retune_runs(db)
        assert set(runs) == {fired["dag_run_id"], grafana["dag_run_id"]}

        # the burst: ten identical posts at once
        answers: list[tuple[int, Any]] = []
        sent: list[float] = []
        barrier = threading.Barrier(10)
        lock = threading.Lock()

        def post() -> None:
            barrier.wait()
            with lock:
                sent.append(time.monotonic())
            answer = _request(f"{base}/alerts/alertmanager", other)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=post) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert max(sent) - min(sent) < 1.0
        # a post that found the winner's decision before its run was created is told to retry
        assert {s for s, _ in answers} <= {202, 503}, answers
        assert all("does not exist yet" in b["results"][0]["reason"] for s, b in answers if s == 503), answers
        results = [b["results"][0] for _, b in answers]
        winners = [r for r in results if r["triggered"]]
        assert len(winners) == 1, results
        assert sum(not r["triggered"] and r["dag_run_id"] is None for r in results) == 9, results
        status, body = _request(f"{base}/alerts/alertmanager", other)  # a retry, once the run exists
        assert status == 202 and "duplicate" in body["results"][0]["reason"], body

        runs = _retune_runs(db)
        assert set(runs) == {fired["dag_run_id"], grafana["dag_run_id"], winners[0]["dag_run_id"]}
        for run_id, config, source in (
            (fired["dag_run_id"], "demo", "alertmanager"),
            (grafana["dag_run_id"], "shop", "grafana"),
            (winners[0]["dag_run_id"], "burst", "alertmanager"),
        ):
            run = runs[run_id]
            assert (run["run_type"], run["state"]) == ("manual", "queued")
            conf = run["conf"]
            assert (conf["trigger"], conf["config"], conf["force"], conf["window"]) == ("alert", config, False, "latest")
            assert conf["alert"]["source"] == source
            assert conf["idempotency_key"].startswith(f"alert:{config}:")
            assert policy_holds(policy, state, config, conf["policy_token"])
        assert TOKEN not in log_path.read_text(errors="replace")
    finally:
        stop_group(proc)


def policy_holds(policy: Any, state: Path, config: str, token: str) -> bool:
    """Whether the run's policy token holds the model's lock in the api-server's policy DB."""
    import dataclasses

    from retune.settings import get_settings

    settings = dataclasses.replace(get_settings(), policy_db=f"sqlite:///{state / 'policy.db'}")
    return bool(policy.holds(config, token, settings=settings))

"""Both DAGs under a real scheduler: `airflow standalone` (LocalExecutor, SQLite) on a free
loopback port, started and stopped by the test.

The data ends now and the config's drift cron fires every minute, so the scheduler's own
hourly `monitor_drift` run finds drift in the newest window and triggers `retune_model`,
which the scheduler then runs to a registered champion.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from procs import stop_group  # type: ignore[import-not-found]
from tests_e2e_helpers import ROOT, write_config  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as resp:
            body = json.loads(resp.read())
    except OSError:
        return False
    return all(body.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler", "dag_processor"))


def _runs(env: dict[str, str], dag_id: str) -> list[dict]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "list-runs", dag_id, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in out.stdout.splitlines():  # log lines may come before the JSON
        if line.startswith("["):
            try:
                return list(json.loads(line))
            except json.JSONDecodeError:
                continue
    return []


def test_scheduler_runs_monitor_then_triggered_retune(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from retune import demo_data

    days = 150
    start = (datetime.now(UTC) - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    state, configs = tmp_path / "state", tmp_path / "configs"
    configs.mkdir()
    folder = state / "data" / "demo"
    folder.mkdir(parents=True)
    demo_data.generate(days=days, rows_per_day=40, seed=1, start=start).to_csv(folder / "demand.csv", index=False)
    ref_end = start + timedelta(days=56)
    write_config(
        configs,
        "demo",
        {
            "data": {"reference": {"start": start.date().isoformat(), "end": ref_end.date().isoformat()}},
            "drift": {"schedule": "* * * * *"},
            "tuning": {"n_trials": 4, "pruner": {"type": "median", "args": {"n_startup_trials": 2}}},
        },
    )
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "RETUNE_STATE_DIR": str(state),
        "RETUNE_CONFIG_DIR": str(configs),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(port):
            assert proc.poll() is None, f"airflow standalone exited: {(tmp_path / 'standalone.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "airflow standalone did not become healthy in 180 s"
            time.sleep(3)
        deadline = time.monotonic() + 300
        retunes: list[dict] = []
        while time.monotonic() < deadline:
            retunes = _runs(env, "retune_model")
            if any(r["state"] in ("success", "failed") for r in retunes):
                break
            time.sleep(10)
        monitors = _runs(env, "monitor_drift")
        assert any(m["state"] == "success" and m["run_id"].startswith("scheduled__") for m in monitors), monitors
        assert [r["state"] for r in retunes] == ["success"], retunes
    finally:
        stop_group(proc)
        log.close()

    cl = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}", registry_uri=f"sqlite:///{state / 'mlflow.db'}")
    champion = cl.get_model_version_by_alias("demo-demand", "champion")
    assert champion.tags["retune.trigger"] == "drift"
    assert champion.tags["airflow.run_id"] == retunes[0]["run_id"]

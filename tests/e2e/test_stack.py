"""The production topology without Docker (scripts/stack.py): PostgreSQL databases made for
this test, an MLflow tracking server on PostgreSQL, Airflow api-server, scheduler,
dag-processor and triggerer on free loopback ports.

A `retune_model` run under the real scheduler with K=2 mapped trial workers writing one
Optuna study on PostgreSQL: the MLflow server then holds the parent run with every child run
and the registered version, and `models:/NAME@champion` loads through the server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests_e2e_helpers import ROOT, write_config  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_TRIALS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stack_env(stack_dir: Path) -> dict[str, str]:
    env = {}
    for line in (stack_dir / "env.sh").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        import shlex

        env[key] = shlex.split(value)[0] if value else ""
    return env


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, check=False
    )


def _runs(env: dict[str, str], dag_id: str) -> list[dict]:
    out = _airflow(env, "dags", "list-runs", dag_id, "-o", "json")
    for line in out.stdout.splitlines():
        if line.startswith("["):
            try:
                return list(json.loads(line))
            except json.JSONDecodeError:
                continue
    return []


def test_retune_on_the_stack_with_two_mapped_workers(tmp_path: Path) -> None:
    import mlflow
    import optuna
    import psycopg2
    from mlflow import MlflowClient

    from retune import demo_data

    try:
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    stack_dir, configs = tmp_path / "stack", tmp_path / "configs"
    configs.mkdir()
    demo_data.write(stack_dir / "state" / "data" / "demo", days=70, rows_per_day=60)
    write_config(
        configs,
        "demo",
        {
            "data": {"reference": {"start": "2025-01-01", "end": "2025-03-01"}},
            "tuning": {"n_trials": N_TRIALS, "n_workers": 2, "pruner": {"type": "median", "args": {"n_startup_trials": 2}}},
        },
    )
    env = {
        **os.environ,
        "RETUNE_STACK_DIR": str(stack_dir),
        "RETUNE_STACK_DB_PREFIX": f"rt_{uuid.uuid4().hex[:8]}",
        "RETUNE_STACK_AIRFLOW_PORT": str(_free_port()),
        "RETUNE_STACK_MLFLOW_PORT": str(_free_port()),
        "RETUNE_CONFIG_DIR": str(configs),
    }
    for key in (
        "AIRFLOW_HOME",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "MLFLOW_TRACKING_URI",
        "RETUNE_STATE_DIR",
    ):
        env.pop(key, None)
    stack = [sys.executable, str(ROOT / "scripts" / "stack.py")]
    up = subprocess.run([*stack, "up"], env=env, capture_output=True, text=True, timeout=400, check=False)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert "Retune stack is up" in up.stdout
        senv = {**env, **_stack_env(stack_dir)}
        deadline = time.monotonic() + 120
        while _airflow(senv, "dags", "unpause", "retune_model").returncode != 0:
            assert time.monotonic() < deadline, "retune_model was never parsed by the dag-processor"
            time.sleep(3)
        conf = {"config": "demo", "window": "reference", "force": True, "trigger": "manual", "n_workers": 2}
        trig = _airflow(senv, "dags", "trigger", "retune_model", "--conf", json.dumps(conf))
        assert trig.returncode == 0, trig.stderr[-2000:]
        deadline = time.monotonic() + 400
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = _runs(senv, "retune_model")
            if runs and runs[0]["state"] in ("success", "failed"):
                break
            time.sleep(5)
        logs = sorted((stack_dir / "airflow" / "logs").rglob("*.log"))
        detail = "\n".join(p.read_text(errors="replace")[-1500:] for p in logs if "tune" in str(p))[-4000:]
        assert runs, "no retune_model run"
        assert runs[0]["state"] == "success", detail

        tracking = senv["MLFLOW_TRACKING_URI"]
        assert tracking.startswith("http://127.0.0.1:")
        cl = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        champion = cl.get_model_version_by_alias("demo-demand", "champion")
        parent_id = champion.tags["retune.parent_run_id"]
        parent = cl.get_run(parent_id)
        assert parent.data.params["n_workers"] == "2"
        children = cl.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
        study = optuna.load_study(study_name=champion.tags["retune.study"], storage=senv["RETUNE_OPTUNA_STORAGE"])
        assert len(children) == len(study.trials), "every trial is a child run of the one parent run"
        done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(done) >= N_TRIALS
        assert {t.user_attrs.get("worker") for t in study.trials} == {0, 1}, "both mapped workers wrote trials to the study"
        assert {c.data.tags["retune.worker"] for c in children} == {"0", "1"}

        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(tracking)  # earlier tests may have pointed the registry elsewhere
        model = mlflow.pyfunc.load_model("models:/demo-demand@champion")
        sample = demo_data.generate(days=1, rows_per_day=5, seed=9).drop(columns=["ts", "demand"])
        assert len(model.predict(sample)) == 5
    finally:
        down = subprocess.run([*stack, "down", "--drop"], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stderr

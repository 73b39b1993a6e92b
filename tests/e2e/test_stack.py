"""The production topology without Docker (scripts/stack.py): PostgreSQL databases made for
this test, an MLflow tracking server on PostgreSQL, Airflow api-server, scheduler,
dag-processor and triggerer on free loopback ports, with the CeleryExecutor as
docker-compose.yaml runs it: an `airflow celery worker` on the machine's Redis (keys under this
stack's own prefix, deleted by `down --drop`), task results in the Airflow metadata database.

A `retune_model` run under the real scheduler with K=2 mapped trial workers writing one
Optuna study on PostgreSQL: every task went through Redis to the stack's Celery worker, the
MLflow server then holds the parent run with every child run and the registered version, and
`models:/NAME@champion` loads through the server. The LocalExecutor (`RETUNE_STACK_EXECUTOR=local`)
is what `airflow standalone` runs in tests/airflow_server.py (tests/e2e/test_scheduler.py,
tests/api, tests/ui).
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
from procs import group_members  # type: ignore[import-not-found]
from services import REDIS_URL, require_redis  # type: ignore[import-not-found]
from tests_e2e_helpers import ROOT, write_config  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

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
    """The DAG's runs, read from the stack's Airflow metadata database.

    One query, not ``airflow dags list-runs``: each CLI call is a Python process importing
    Airflow (about 2 s of CPU), and polling with it every few seconds took a core from the run
    being watched.
    """
    import psycopg2

    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://", 1)
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("select run_id, state from dag_run where dag_id = %s order by id", (dag_id,))
        rows = cur.fetchall()
    conn.close()
    return [{"run_id": run_id, "state": state} for run_id, state in rows]


def _task_instances(env: dict[str, str], run_id: str) -> list[dict]:
    """The run's task instances: task, map index, state, try and Celery task id."""
    import psycopg2

    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://", 1)
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            "select task_id, map_index, state, try_number, external_executor_id from task_instance "
            "where dag_id = 'retune_model' and run_id = %s",
            (run_id,),
        )
        rows = cur.fetchall()
    conn.close()
    keys = ("task_id", "map_index", "state", "try_number", "celery_id")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _redis_keys(prefix: str) -> list[bytes]:
    import redis

    return list(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).scan_iter(match=f"{prefix}:*"))


def _parsed(env: dict[str, str], dag_id: str) -> bool:
    """Whether the dag-processor has serialized ``dag_id`` (so the CLI can unpause it)."""
    import psycopg2

    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://", 1)
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('serialized_dag') is not null")
        if not cur.fetchone()[0]:
            return False
        cur.execute("select 1 from serialized_dag where dag_id = %s limit 1", (dag_id,))
        found = cur.fetchone() is not None
    conn.close()
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The no-Docker stack on its own databases and ports, up for the module's tests."""
    import psycopg2

    from retune import demo_data

    try:
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    require_redis("Redis (the Celery broker)")
    tmp_path = tmp_path_factory.mktemp("stack")
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
    prefix = f"rt_{uuid.uuid4().hex[:8]}"  # the databases and the Redis keys
    env = {
        **os.environ,
        "RETUNE_STACK_DIR": str(stack_dir),
        "RETUNE_STACK_DB_PREFIX": prefix,
        "RETUNE_STACK_AIRFLOW_PORT": str(_free_port()),
        "RETUNE_STACK_MLFLOW_PORT": str(_free_port()),
        "RETUNE_STACK_WORKER_LOG_PORT": str(_free_port()),
        "RETUNE_STACK_EXECUTOR": "celery",  # docker-compose.yaml's executor, whatever stack-up's default
        "RETUNE_STACK_REDIS": REDIS_URL,
        "RETUNE_CONFIG_DIR": str(configs),
        # A task whose process died with the scheduler is noticed in 20 s, not 5 min, and the new
        # scheduler resets the dead one's orphaned tasks every 15 s instead of every 300 s (it
        # checks once at start-up, while the killed scheduler still looks alive): this alone was
        # ~5 of the test's 6 minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    }
    for key in (
        "AIRFLOW_HOME",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "MLFLOW_TRACKING_URI",
        "RETUNE_STATE_DIR",
    ):
        env.pop(key, None)
    script = [sys.executable, str(ROOT / "scripts" / "stack.py")]
    up = subprocess.run([*script, "up"], env=env, capture_output=True, text=True, timeout=400, check=False)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert "Retune stack is up" in up.stdout
        senv = {**env, **_stack_env(stack_dir)}
        assert senv["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert senv["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + senv["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        deadline = time.monotonic() + 120
        while not _parsed(senv, "retune_model"):
            assert time.monotonic() < deadline, "retune_model was never parsed by the dag-processor"
            time.sleep(1)
        unpaused = _airflow(senv, "dags", "unpause", "retune_model")
        assert unpaused.returncode == 0, unpaused.stderr[-2000:]
        yield {"env": env, "senv": senv, "dir": stack_dir, "script": script, "prefix": prefix}
    finally:
        groups = {p.stem: int(p.read_text()) for p in (stack_dir / "pids").glob("*.pid")}
        down = subprocess.run([*script, "down", "--drop"], env=env, capture_output=True, text=True, timeout=180, check=False)
        assert down.returncode == 0, down.stderr
        members = {name: group_members(pgid) for name, pgid in groups.items()}
        left = {name: pids for name, pids in members.items() if pids}
        assert not left, f"processes of the stack still running after stack down: {left}"
        assert "celery-worker" in groups, "the stack ran a Celery worker"
        assert not _redis_keys(prefix), "down --drop leaves none of the stack's Redis keys"


def _maps(pid: int) -> str:
    """A live process's memory map (empty if it has exited)."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def _trigger_and_wait(senv: dict[str, str], conf: dict, *, timeout: float = 400, during=None) -> dict:  # noqa: ANN001
    before = {r["run_id"] for r in _runs(senv, "retune_model")}
    trig = _airflow(senv, "dags", "trigger", "retune_model", "--conf", json.dumps(conf))
    assert trig.returncode == 0, trig.stderr[-2000:]
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        mine = [r for r in _runs(senv, "retune_model") if r["run_id"] not in before]
        if mine:
            run = mine[0]
            if during is not None and run["state"] == "running":
                during = during(run)
            if run["state"] in ("success", "failed"):
                break
        time.sleep(1)
    return run


def _task_log_tail(stack_dir: Path, run_id: str) -> str:
    logs = sorted((stack_dir / "airflow" / "logs").rglob("*.log"))
    return "\n".join(p.read_text(errors="replace")[-1200:] for p in logs if run_id in str(p))[-5000:]


def test_retune_on_the_stack_with_two_mapped_workers(stack: dict) -> None:
    import mlflow
    import optuna
    from mlflow import MlflowClient

    from retune import demo_data

    senv = stack["senv"]
    conf = {"config": "demo", "window": "reference", "force": True, "trigger": "manual", "n_workers": 2}
    run = _trigger_and_wait(senv, conf)
    assert run, "no retune_model run"
    assert run["state"] == "success", _task_log_tail(stack["dir"], run["run_id"])

    # Every task that ran went through Redis to the stack's Celery worker: it has a Celery task
    # id, and the worker logged receiving it (retune_ok, an EmptyOperator, is never executed).
    tis = _task_instances(senv, run["run_id"])
    ran = [ti for ti in tis if ti["task_id"] != "retune.retune_ok"]
    assert {(ti["task_id"], ti["map_index"]) for ti in ran} >= {("retune.tune", 0), ("retune.tune", 1)}
    assert all(ti["state"] == "success" and ti["celery_id"] for ti in ran), ran
    worker_log = (stack["dir"] / "logs" / "celery-worker.log").read_text(errors="replace")
    assert f"{stack['prefix']}@" in worker_log and " ready." in worker_log
    unseen = [ti for ti in ran if f"execute_workload[{ti['celery_id']}] received" not in worker_log]
    assert not unseen, f"tasks the Celery worker never received: {unseen}"
    # The worker imported Retune's libraries before forking its pool (retune_celery.CELERY_CONFIG's
    # imports): its processes have scikit-learn's and pandas' compiled modules mapped, so the
    # task processes they fork start with them.
    worker_pgid = int((stack["dir"] / "pids" / "celery-worker.pid").read_text())  # the main process
    preloaded = {pid for pid in group_members(worker_pgid) if "/sklearn/" in (m := _maps(pid)) and "/pandas/" in m}
    assert worker_pgid in preloaded, f"the Celery worker's main process did not import retune.preload: {preloaded}"
    assert len(preloaded) > 1, "nor did the pool processes it forked"

    tracking = senv["MLFLOW_TRACKING_URI"]
    assert tracking.startswith("http://127.0.0.1:")
    cl = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    champion = cl.get_model_version_by_alias("demo-demand", "champion")
    assert champion.tags["airflow.run_id"] == run["run_id"]
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


def test_scheduler_restarted_mid_run_the_run_completes(stack: dict) -> None:
    """The scheduler SIGKILLed while `tune` runs, then started again by `stack.py up`.

    With the CeleryExecutor the task runs in the worker, not under the scheduler: it goes on,
    and the new scheduler adopts it by its Celery task id (no retry). (With the LocalExecutor
    the task died with the scheduler and was retried once the new scheduler reset it.)
    """
    import signal

    from mlflow import MlflowClient

    senv, stack_dir = stack["senv"], stack["dir"]
    pid_file = stack_dir / "pids" / "scheduler.pid"
    restarted: list[str] = []
    tune_when_killed: list[dict] = []

    def restart_once(run: dict):  # noqa: ANN202
        tune_logs = list((stack_dir / "airflow" / "logs").rglob(f"*{run['run_id']}*/task_id=retune.tune/*/*.log"))
        if not tune_logs:
            return restart_once
        # its log can exist while the task is still queued (the worker has it, not yet running):
        # kill the scheduler only once the task runs
        tune_now = [ti for ti in _task_instances(senv, run["run_id"]) if ti["task_id"] == "retune.tune"]
        if [ti["state"] for ti in tune_now] != ["running"]:
            return restart_once
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the scheduler's whole process group
        tune_when_killed.extend(tune_now)
        time.sleep(2)
        up = subprocess.run([*stack["script"], "up"], env=stack["env"], capture_output=True, text=True, timeout=300, check=False)
        assert up.returncode == 0, up.stderr[-2000:]
        restarted.append(run["run_id"])
        return None

    conf = {"config": "demo", "window": "reference", "force": True, "trigger": "manual", "n_workers": 1, "n_trials": 8}
    run = _trigger_and_wait(senv, conf, timeout=500, during=restart_once)
    assert restarted == [run["run_id"]], "the scheduler was killed while the run was tuning"
    assert [ti["state"] for ti in tune_when_killed] == ["running"], tune_when_killed
    assert run["state"] == "success", _task_log_tail(stack_dir, run["run_id"])
    tune = [ti for ti in _task_instances(senv, run["run_id"]) if ti["task_id"] == "retune.tune"]
    assert [(ti["state"], ti["try_number"]) for ti in tune] == [("success", 1)], "the worker kept the task: no retry"
    tracking = senv["MLFLOW_TRACKING_URI"]
    cl = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    mine = cl.search_model_versions(f"name = 'demo-demand' and tags.`airflow.run_id` = '{run['run_id']}'")
    assert len(mine) == 1, "one version for the run, however often its tasks ran"

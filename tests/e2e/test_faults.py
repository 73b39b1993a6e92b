"""Faults a retune must survive without making production worse.

- The MLflow server down during a retune: the task fails, its retry succeeds once the server
  is back, and there is still exactly one model version (registration is keyed by the retune).
- A finished retune cleared and run again: no second registration, champion unchanged.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from procs import stop_group  # type: ignore[import-not-found]
from tests_e2e_helpers import fresh_dags, write_config  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

SMALL = {
    "data": {"reference": {"start": "2025-01-01", "end": "2025-02-20"}},
    "tuning": {"n_trials": 4, "pruner": {"type": "median", "args": {"n_startup_trials": 2}}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """An MLflow tracking server on SQLite, started and stopped by the test."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            (self.root / "artifacts").as_uri(),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None


def test_mlflow_down_during_a_retune_then_back_registers_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from retune import demo_data, pipeline, registry

    server = MlflowServer(tmp_path, _free_port())
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs", "demo", SMALL)
    demo_data.write(tmp_path / "state" / "data" / "demo", days=60, rows_per_day=40)
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server.start()
    try:
        ctx = pipeline.prepare("demo", window_kind="reference", key="retune_model/fault-1")
        pipeline.warm_start(ctx)
        outcome = pipeline.tune(ctx)
        checked = pipeline.validate(ctx, outcome)
        server.stop()
        with pytest.raises(Exception, match=r"(?i)connect|refused|max retries"):
            pipeline.register(ctx, checked, outcome)  # the task fails while MLflow is down
        server.start()
        first = pipeline.register(ctx, checked, outcome)  # Airflow's retry
        again = pipeline.register(ctx, checked, outcome)  # and one more, as a cleared rerun would
        cl = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
        versions = cl.search_model_versions("name = 'demo-demand'")
        assert [v.version for v in versions] == [first["version"]], "exactly one version for the retune"
        assert again["created"] is False
        assert registry.get_alias(cl, "demo-demand", registry.CHAMPION).version == first["version"]
    finally:
        server.stop()


def test_a_finished_retune_cleared_and_rerun_registers_nothing_new(airflow_db: None, retune_env: dict[str, Path]) -> None:
    from retune import demo_data, policy, registry, tracking
    from retune.settings import get_settings

    demo_data.write(retune_env["state"] / "data" / "demo", days=60, rows_per_day=40)
    write_config(retune_env["configs"], "demo", SMALL)
    conf = {"config": "demo", "window": "reference", "force": True, "trigger": "bootstrap"}
    when = datetime(2025, 3, 1, tzinfo=UTC)
    first = fresh_dags()["retune_model"].test(logical_date=when, run_after=when, run_conf=conf)
    assert first.state == "success"
    cl = tracking.client(get_settings())
    before = [v.version for v in cl.search_model_versions("name = 'demo-demand'")]
    assert len(before) == 1
    rerun = fresh_dags()["retune_model"].test(logical_date=when, run_after=when, run_conf=conf)
    assert rerun.run_id == first.run_id, "the same run, cleared and run again"
    assert rerun.state == "success"
    assert [v.version for v in cl.search_model_versions("name = 'demo-demand'")] == before
    assert registry.get_alias(cl, "demo-demand", registry.CHAMPION).version == before[0]
    decisions = [d for d in policy.history("demo") if d["idempotency_key"] == f"retune_model/{first.run_id}"]
    assert len(decisions) == 2, "both attempts were decided and recorded"
    assert all(d["outcome"] is not None for d in decisions), "and both gave the lock back"


def test_a_failed_retune_closes_its_parent_run_and_a_rerun_reopens_it(retune_env: dict[str, Path]) -> None:
    from retune import demo_data, pipeline, policy, registry, tracking
    from retune.settings import get_settings

    demo_data.write(retune_env["state"] / "data" / "demo", days=60, rows_per_day=40)
    write_config(retune_env["configs"], "demo", SMALL)
    key = "retune_model/failed-then-rerun"
    decision = policy.decide("demo", source="manual", key=key)
    assert decision.triggered
    ctx = pipeline.prepare("demo", window_kind="reference", key=key)
    cl = tracking.client(get_settings())
    assert cl.get_run(ctx["parent_run_id"]).info.status == "RUNNING"

    # The retune fails after its parent run was opened (say, the study's task gave up):
    # release_lock runs finish() with nothing registered.
    outcome = pipeline.finish("demo", str(decision.token), registered=None, parent_run_id=ctx["parent_run_id"])
    assert outcome.startswith("ended without registering")
    run = cl.get_run(ctx["parent_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["retune.outcome"].startswith("failed")
    assert registry.get_alias(cl, "demo-demand", registry.CHAMPION) is None, "nothing promoted"
    assert policy.decide("demo", source="manual", key="retune_model/next").triggered, "the lock was given back"

    # Cleared and run again: the same parent run is reopened and ends FINISHED with a version.
    again = pipeline.prepare("demo", window_kind="reference", key=key)
    assert again["parent_run_id"] == ctx["parent_run_id"]
    assert cl.get_run(ctx["parent_run_id"]).info.status == "RUNNING"
    pipeline.warm_start(again)
    study = pipeline.tune(again)
    registered = pipeline.register(again, pipeline.validate(again, study), study)
    assert cl.get_run(ctx["parent_run_id"]).info.status == "FINISHED"
    # finish() after a registration leaves the run as register() ended it.
    pipeline.finish("demo", None, registered=registered, parent_run_id=ctx["parent_run_id"])
    assert cl.get_run(ctx["parent_run_id"]).info.status == "FINISHED"


def test_one_models_broken_feed_does_not_hold_up_another_models_retune(airflow_db: None, retune_env: dict[str, Path]) -> None:
    """Two configs due in one monitor run; one's data file is gone. The other's drift still
    reaches the policy and triggers its retune (retunes_to_trigger waited for every check
    to succeed, so one broken feed stopped every model's retunes). The run ends failed at
    all_checks_ok, and the failed check names its config."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    from retune import demo_data

    demo_data.write(retune_env["state"] / "data" / "demo", days=200, rows_per_day=40)
    fixed = {**SMALL, "drift": {"reference": "fixed"}}
    write_config(retune_env["configs"], "demo", fixed)
    write_config(retune_env["configs"], "shop", {**fixed, "data": {**fixed["data"], "production": {"path": "gone/*.csv"}}})

    def retune_confs() -> list[dict]:
        with settings.Session() as session:
            return [dict(r.conf) for r in session.scalars(select(DagRun).where(DagRun.dag_id == "retune_model")).all()]

    before = retune_confs()
    run = fresh_dags()["monitor_drift"].test(run_conf={"window_end": "2025-05-29"})
    states = {(ti.task_id, ti.rendered_map_index or ti.map_index): ti.state for ti in run.get_task_instances()}
    new = [c for c in retune_confs() if c not in before]

    assert states[("check_drift", "shop")] == "failed", states
    assert states[("check_drift", "demo")] == "success", states
    assert states[("retunes_to_trigger", -1)] == "success", states
    assert [c["config"] for c in new] == ["demo"] and new[0]["trigger"] == "drift"
    assert states[("all_checks_ok", -1)] == "upstream_failed", states
    assert run.state == "failed"


def test_a_failed_retune_run_ends_failed_and_gives_the_lock_back(airflow_db: None, retune_env: dict[str, Path]) -> None:
    """release_lock (all_done) succeeds however the retune ended, and as the run's only leaf it
    made every failed retune run green in the UI (and no on-failure alert ever fired). The
    retune_ok leaf fails with the retune; release_lock still gives the lock back."""
    from retune import demo_data, policy

    demo_data.write(retune_env["state"] / "data" / "demo", days=60, rows_per_day=40)
    write_config(retune_env["configs"], "demo", SMALL)
    run = fresh_dags()["retune_model"].test(run_conf={"config": "demo", "window_end": "2030-01-01", "force": True})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["retune.load_data"] == "failed", states  # the window is empty
    assert states["retune.register"] == "upstream_failed", states
    assert states["retune.release_lock"] == "success", states
    assert states["retune.retune_ok"] == "upstream_failed", states
    assert run.state == "failed", states
    last = policy.history("demo")[0]  # newest first
    assert last["triggered"] and last["outcome"] is not None, "the lock was given back"
    assert policy.decide("demo", source="manual", key="after-the-failed-run").triggered


def test_an_alert_run_whose_drift_gate_fails_gives_its_decision_back(airflow_db: None, retune_env: dict[str, Path]) -> None:
    """An alert's run whose drift gate fails (no data file): the gate renewed the conf's
    token and pushed none, so release_lock released nothing and, having succeeded, kept the
    retune_listener away too; the model stayed locked for lock_ttl and the alert's resend was
    a duplicate. release_lock now cancels the conf's decision: lock free, the resend triggers."""
    import retune_listener  # type: ignore[import-not-found]

    from retune import policy

    write_config(retune_env["configs"], "demo", SMALL)  # no data written: the drift check fails
    key = "alert:demo:c6d3c1a4d0b5f3e2:2025-06-01T10:00:00Z"
    decided = policy.decide("demo", source="alert", key=key)
    conf = {
        "config": "demo",
        "trigger": "alert",
        "force": False,
        "window": "latest",
        "policy_token": decided.token,
        "idempotency_key": key,
    }
    run = fresh_dags()["retune_model"].test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["retune.drift_gate"] == "failed", states
    assert states["retune.release_lock"] == "success", states
    assert run.state == "failed"
    assert policy.current_lock("demo") is None, "the lock was given back"
    row = next(r for r in policy.history("demo") if r["token"] == decided.token)
    assert row["triggered"] is False and row["outcome"].startswith("cancelled: the drift gate failed"), row
    assert retune_listener.abandoned_lock("retune_model", run.run_id, conf) is None, "release_lock did it"
    assert policy.decide("demo", source="alert", key=key).triggered, "the alert's resend triggers"


@pytest.mark.postgres
def test_a_load_stuck_behind_a_table_lock_times_out_and_gives_the_lock_back(
    airflow_db: None, retune_env: dict[str, Path]
) -> None:
    """Another job holds an exclusive lock on the production table (an ALTER TABLE, a VACUUM
    FULL). load_data's read waits; its execution_timeout stops it while the lock is still held
    (psycopg2 used to wait inside libpq, where the timeout's signal is handled only once the
    query returns), release_lock gives the model's lock back, and nothing is registered."""
    import threading
    from datetime import timedelta

    import psycopg2
    import sqlalchemy
    import yaml
    from pg import temp_database  # type: ignore[import-not-found]

    from retune import demo_data, policy, tracking
    from retune.settings import get_settings

    with temp_database() as url:
        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
        demo_data.generate(days=60, rows_per_day=40, seed=1).to_sql("demand", engine, index=False)
        engine.dispose()
        path = write_config(retune_env["configs"], "demo", SMALL)
        raw = yaml.safe_load(path.read_text())
        raw["data"]["production"] = {"sql": {"table": "demand", "dsn": url}}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))

        dag = fresh_dags()["retune_model"]
        load = dag.get_task("retune.load_data")
        load.execution_timeout, load.retries = timedelta(seconds=5), 0
        holder = psycopg2.connect(url)
        holder.cursor().execute("LOCK TABLE demand IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(300, holder.rollback)  # bounds the old behaviour: slow, not hung
        release.start()
        try:
            started = time.monotonic()
            run = dag.test(run_conf={"config": "demo", "window": "reference", "force": True})
            took = time.monotonic() - started
            with holder.cursor() as cur:  # the lock was held throughout
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'demand'::regclass AND mode = 'AccessExclusiveLock' AND granted"
                )
                assert cur.fetchone()[0] == 1
        finally:
            release.cancel()
            holder.rollback()
            holder.close()

        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert states["retune.load_data"] == "failed", states
        assert states["retune.release_lock"] == "success", states
        assert run.state == "failed", states
        assert took < 240, f"the run took {took:.0f} s: the read waited for the lock"
        last = policy.history("demo")[0]
        assert last["triggered"] and last["outcome"] is not None, "the lock was given back"
        cl = tracking.client(get_settings())
        assert cl.search_model_versions("name = 'demo-demand'") == [], "nothing registered"

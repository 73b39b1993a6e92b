"""End-to-end runs of both DAGs with dag.test() on the embedded default (SQLite everywhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests_e2e_helpers import fresh_dags, write_config  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

SMALL = {
    "data": {"reference": {"start": "2025-01-01", "end": "2025-02-26"}},
    "tuning": {"n_trials": 6, "n_workers": 2, "pruner": {"type": "median", "args": {"n_startup_trials": 2}}},
}


def _queued_retunes() -> list[Any]:
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    with settings.Session() as session:
        return list(session.scalars(select(DagRun).where(DagRun.dag_id == "retune_model", DagRun.state == "queued")).all())


def _client() -> Any:
    from retune import tracking
    from retune.settings import get_settings

    return tracking.client(get_settings())


def _recorded_windows(config: str) -> list[Any]:
    """The windows the policy's hysteresis counts (``retune_windows``)."""
    import sqlalchemy as sa

    from retune import policy
    from retune.settings import get_settings

    engine, _, windows, _ = policy._tables(get_settings().policy_db)
    with engine.connect() as conn:
        return list(conn.execute(sa.select(windows.c.window_end).where(windows.c.config == config)).scalars())


def _versions(cl: Any, name: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        return sorted(v.version for v in cl.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return []


def test_monitor_triggers_warm_started_retune_that_promotes(airflow_db: None, retune_env: dict[str, Path]) -> None:
    from optuna import load_study

    from retune import demo_data, registry
    from retune.config import TuningConfig
    from retune.settings import get_settings
    from retune.storage import open_storage

    demo_data.write(retune_env["state"] / "data" / "demo", days=200, rows_per_day=60)
    write_config(retune_env["configs"], "demo", SMALL)
    cl = _client()

    # 1. First model, trained on the reference period: cold start, becomes champion.
    dr = fresh_dags()["retune_model"].test(
        run_conf={"config": "demo", "window": "reference", "force": True, "trigger": "bootstrap"}
    )
    assert dr.state == "success"
    v1 = registry.get_alias(cl, "demo-demand", "champion")
    assert v1 is not None and v1.version == 1
    parent_id = v1.tags["retune.parent_run_id"]
    children = cl.search_runs(
        [cl.get_run(parent_id).info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert len(children) == 6, "every trial is a child run of the parent run"
    states = {c.data.tags["optuna.trial_state"] for c in children}
    assert states <= {"COMPLETE", "PRUNED", "FAIL"}
    assert cl.get_run(parent_id).data.tags["retune.warm_start"] == "cold"

    # 2. A window in the same regime: no drift, nothing triggered.
    dr = fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-03-20"})
    assert dr.state == "success"
    assert _queued_retunes() == []

    # 3. After the regime change: drift, a retune run is triggered with the drift summary.
    dr = fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-05-29"})
    assert dr.state == "success"
    queued = _queued_retunes()
    assert len(queued) == 1
    conf = queued[0].conf
    assert conf["trigger"] == "drift" and conf["config"] == "demo"
    assert conf["drift"]["summary"]["drift_detected"] is True
    assert _recorded_windows("demo") == [], "a manual monitor run's look does not count toward hysteresis"

    run = fresh_dags()["retune_model"].test(logical_date=queued[0].logical_date, run_conf=conf)
    assert run.state == "success"
    v2 = registry.get_alias(cl, "demo-demand", "champion")
    assert v2 is not None and v2.version == 2, "the retuned model is the new champion"
    assert registry.get_alias(cl, "demo-demand", "previous_champion").version == 1
    tags = v2.tags
    assert tags["retune.trigger"] == "drift"
    assert float(tags["retune.drift_share"]) >= 0.25
    assert tags["airflow.dag_id"] == "retune_model" and tags["airflow.run_id"] == run.run_id
    assert len(tags["retune.data_digest"]) == 64
    # Warm start: the champion's params and the previous study's best were enqueued and re-scored.
    # Two mapped workers on the embedded default: the study lives in the journal file, not SQLite.
    from retune.storage import journal_path

    assert journal_path(get_settings()).exists()
    study = load_study(study_name=tags["retune.study"], storage=open_storage(get_settings(), TuningConfig(), n_workers=2))
    assert {t.user_attrs.get("worker") for t in study.trials} <= {0, 1}
    seeds = [t for t in study.trials if "warm_start" in t.user_attrs]
    assert {t.user_attrs["warm_start"] for t in seeds} >= {"champion"}
    assert all(t.state.is_finished() for t in seeds)
    champion_params = json.loads(v1.tags["retune.params"])
    assert any(t.params == champion_params for t in seeds)
    # The trigger policy decided the drift retune, recorded why, and got its lock back.
    from retune import policy

    rows = policy.history("demo")
    drift_rows = [r for r in rows if r["source"] == "drift"]
    assert len(drift_rows) == 1
    assert drift_rows[0]["triggered"] is True
    assert drift_rows[0]["idempotency_key"] == conf["idempotency_key"]
    assert drift_rows[0]["outcome"] == "registered v2, promoted"
    assert not policy.holds("demo", conf["policy_token"])
    parent = cl.get_run(tags["retune.parent_run_id"])
    assert parent.data.tags["retune.warm_start"] == "warm"
    assert parent.data.metrics["challenger_mae"] < parent.data.metrics["champion_mae"]


def test_manual_retune_without_drift_is_skipped_and_registers_nothing(airflow_db: None, retune_env: dict[str, Path]) -> None:
    from retune import demo_data, registry

    demo_data.write(retune_env["state"] / "data" / "demo", days=100, rows_per_day=40)
    write_config(retune_env["configs"], "demo", SMALL)
    cl = _client()
    assert fresh_dags()["retune_model"].test(run_conf={"config": "demo", "window": "reference", "force": True}).state == "success"
    before = _versions(cl, "demo-demand")

    dr = fresh_dags()["retune_model"].test(run_conf={"config": "demo", "window_end": "2025-03-20", "force": False})
    assert dr.state == "success"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states["retune.drift_gate"] == "success"
    assert states["retune.register"] == "skipped"
    assert _recorded_windows("demo") == [], "a retune's own drift gate records no hysteresis window"
    assert _versions(cl, "demo-demand") == before
    assert registry.get_alias(cl, "demo-demand", "champion").version == 1


def _return_value(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow import settings
    from airflow.models.xcom import XComModel

    with settings.Session() as session:
        row = session.execute(
            XComModel.get_many(key="return_value", run_id=run_id, dag_ids=dag_id, task_ids=task_id).with_only_columns(
                XComModel.value
            )
        ).first()
    assert row is not None, f"no return value of {task_id}"
    return json.loads(row.value) if isinstance(row.value, str) else row.value


def test_a_latest_retune_without_window_end_trains_on_the_window_ending_when_it_was_triggered(
    airflow_db: None, retune_env: dict[str, Path]
) -> None:
    """Not on 'now' at each task: a cleared run (same run_after) reads the same window again,
    instead of new data under the old study, parent run and version."""
    from datetime import UTC, datetime, timedelta

    from retune import demo_data
    from retune.config import parse_timestamp

    days = 90
    start = (datetime.now(UTC) - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    folder = retune_env["state"] / "data" / "demo"
    folder.mkdir(parents=True)
    demo_data.generate(days=days, rows_per_day=30, seed=3, start=start).to_csv(folder / "demand.csv", index=False)
    reference = {"start": start.date().isoformat(), "end": (start + timedelta(days=40)).date().isoformat()}
    write_config(retune_env["configs"], "demo", {"data": {"reference": reference}, "tuning": {"n_trials": 2}})

    run = fresh_dags()["retune_model"].test(run_conf={"config": "demo", "window": "latest", "force": True})
    assert run.state == "success"
    window = _return_value("retune_model", run.run_id, "retune.load_data")["window"]
    assert parse_timestamp(window["end"]) == run.run_after


def test_a_monitor_run_with_no_config_to_check_succeeds_and_triggers_nothing(
    airflow_db: None, retune_env: dict[str, Path]
) -> None:
    """Most hourly runs have no config due: with retunes_to_trigger on all_done_min_one_success
    and the all_checks_ok leaf, an empty expansion must still end the run as success."""
    before = _queued_retunes()
    run = fresh_dags()["monitor_drift"].test(run_conf={})  # the config folder is empty
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["due_configs"] == "success"
    assert _queued_retunes() == before


def test_two_monitor_runs_of_one_window_start_one_retune(airflow_db: None, retune_env: dict[str, Path]) -> None:
    """A second monitor run of a window whose retune has not ended (or the trigger task's own
    retry) triggers the same decision again; the run is named after its token, so
    trigger_retune finds it and no second retune of the window is queued."""
    from retune import demo_data, policy

    demo_data.write(retune_env["state"] / "data" / "demo", days=200, rows_per_day=40)
    write_config(retune_env["configs"], "demo", {**SMALL, "drift": {"reference": "fixed"}})
    before = {r.run_id for r in _queued_retunes()}
    first = fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-05-29"})
    second = fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-05-29"})
    assert first.state == second.state == "success"
    queued = [r for r in _queued_retunes() if r.run_id not in before]
    assert len(queued) == 1, [r.run_id for r in queued]
    token = queued[0].conf["policy_token"]
    assert queued[0].run_id == f"drift__demo__{token}"
    states = {ti.task_id: ti.state for ti in second.get_task_instances()}
    assert states["trigger_retune"] == "skipped", states  # the run exists: not started twice
    assert policy.holds("demo", token)


def test_a_monitor_run_with_retune_model_paused_fails_and_decides_nothing(airflow_db: None, retune_env: dict[str, Path]) -> None:
    """A run of a paused retune_model stays queued while its policy lock runs out (6 h), and
    every retune of the model meanwhile is refused as "already running". The monitor now
    decides nothing, takes no lock and fails naming the paused DAG."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    from retune import demo_data, policy

    demo_data.write(retune_env["state"] / "data" / "demo", days=200, rows_per_day=40)
    write_config(retune_env["configs"], "demo", {**SMALL, "drift": {"reference": "fixed"}})
    # a window without drift: dag.test writes every DAG of the folder to the metadata DB
    assert fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-03-20"}).state == "success"
    with settings.Session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "retune_model").values(is_paused=True))
        session.commit()
    try:
        before = {r.run_id for r in _queued_retunes()}
        run = fresh_dags()["monitor_drift"].test(run_conf={"config": "demo", "window_end": "2025-05-29"})
    finally:
        with settings.Session() as session:
            session.execute(update(DagModel).where(DagModel.dag_id == "retune_model").values(is_paused=False))
            session.commit()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["retunes_to_trigger"] == "failed", states
    assert run.state == "failed"
    assert policy.history("demo") == [], "nothing decided"
    assert policy.current_lock("demo") is None
    assert {r.run_id for r in _queued_retunes()} == before

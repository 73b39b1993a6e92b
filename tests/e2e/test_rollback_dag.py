"""End to end: two retunes promote two versions through retune.pipeline (the second one
through the paired bootstrap gate), then the rollback_model DAG runs with dag.test() and
moves champion back, recording who, when, why, from and to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests_e2e_helpers import fresh_dags, write_config  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

SMALL = {
    "data": {"reference": {"start": "2025-01-01", "end": "2025-02-20"}},
    "model": {"fixed_params": {"max_iter": 40}},
    "tuning": {"n_trials": 2, "n_workers": 1, "pruner": {"type": "none", "args": {}}},
    "validation": {"max_latency_ms_per_1k": None},  # a loaded test machine is no latency benchmark
}


def _retune(key: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from retune import pipeline

    ctx = pipeline.prepare("demo", key=key, **kwargs)
    pipeline.warm_start(ctx)
    outcome = pipeline.tune(ctx)
    checked = pipeline.validate(ctx, outcome)
    return checked, pipeline.register(ctx, checked, outcome)


def test_rollback_dag_restores_the_previous_champion(airflow_db: None, retune_env: dict[str, Path]) -> None:
    from retune import demo_data, registry, tracking
    from retune.settings import get_settings

    demo_data.write(retune_env["state"] / "data" / "demo", days=150, rows_per_day=25, seed=3)
    write_config(retune_env["configs"], "demo", SMALL)

    _, first = _retune("e2e-rollback-1", window_kind="reference", trigger="bootstrap")
    assert first["promoted"] and first["champion_after"] == 1, first["reason"]
    # after the regime change of day 120 the stale champion is clearly worse on the new holdout
    checked, second = _retune("e2e-rollback-2", window_end="2025-05-29", trigger="drift")
    assert second["promoted"] and second["champion_before"] == 1 and second["champion_after"] == 2, second["reason"]
    sig = next(g for g in checked["gates"] if g["name"] == "significant_improvement")
    assert sig["passed"] and sig["data"]["lower_bound"] > 0 and sig["data"]["resamples"] == 1000
    assert checked["bootstrap"]["share_not_better"] < 0.05
    cl = tracking.client(get_settings())
    parent = cl.get_model_version("demo-demand", "2").tags["retune.parent_run_id"]
    logged = json.loads(Path(cl.download_artifacts(parent, "validation/gates.json")).read_text())
    assert logged["bootstrap"]["lower_bound"] == checked["bootstrap"]["lower_bound"]
    promoted_by = registry.alias_history(cl, "demo-demand")[-2]
    assert promoted_by["to"] == "2" and "lower bound" in promoted_by["why"] and promoted_by["key"] == "e2e-rollback-2"

    dr = fresh_dags()["rollback_model"].test(run_conf={"config": "demo", "reason": "v2 over-forecasts weekends"})
    assert dr.state == "success"
    aliases = {k: str(v) for k, v in cl.get_registered_model("demo-demand").aliases.items()}
    assert aliases["champion"] == "1" and aliases["previous_champion"] == "2"
    move = registry.alias_history(cl, "demo-demand")[-2]
    assert (move["alias"], move["from"], move["to"], move["action"]) == ("champion", "2", "1", "rollback")
    assert move["who"].startswith(f"airflow:rollback_model/{dr.run_id}") and move["why"] == "v2 over-forecasts weekends"
    assert move["key"] == f"rollback_model/{dr.run_id}"
    on_v1 = [
        (e["from"], e["to"], e["action"]) for e in registry.alias_history(cl, "demo-demand", "1") if e["alias"] == "champion"
    ]
    assert on_v1 == [(None, "1", "promote"), ("1", "2", "promote"), ("2", "1", "rollback")], "version tags too"
    assert registry.get_alias(cl, "demo-demand", "champion").version == 1


def _rollback_tries(dag: Any, conf: dict[str, str]) -> tuple[str, int]:
    """Run rollback_model (retries 1 s apart) and return the run's state and the task's tries."""
    from datetime import timedelta

    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    for t in dag.tasks:
        t.retry_delay = timedelta(seconds=1)
    dr = dag.test(run_conf=conf)
    with settings.Session() as session:
        ti = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == "rollback_model", TaskInstance.run_id == dr.run_id)
        ).one()
        return dr.state, ti.try_number


@pytest.mark.parametrize(("config", "store"), [("nosuch", True), ("demo", True), ("demo", False)])
def test_rollback_dag_fails_at_once_when_retrying_cannot_help(
    airflow_db: None, retune_env: dict[str, Path], config: str, store: bool
) -> None:
    """An unknown config (ConfigError), a model with no champion (nothing to roll back) or a
    state folder with no MLflow store (a wrong RETUNE_STATE_DIR) was retried twice, 30 s
    apart, before the run failed with the same error."""
    write_config(retune_env["configs"], "demo", SMALL)  # no model registered: no champion
    if store:  # an MLflow store with no model in it
        from retune import tracking
        from retune.settings import get_settings

        tracking.client(get_settings()).search_registered_models()
    state, tries = _rollback_tries(fresh_dags()["rollback_model"], {"config": config, "reason": "e2e"})
    assert (state, tries) == ("failed", 1)


def test_rollback_dag_retries_when_the_registry_is_down(
    airflow_db: None, retune_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from retune import registry
    from retune.errors import RegistryUnavailableError

    def down(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RegistryUnavailableError("demo-demand version 1 could not be fetched from the registry: 503")

    monkeypatch.setattr(registry, "rollback_model", down)
    write_config(retune_env["configs"], "demo", SMALL)
    state, tries = _rollback_tries(fresh_dags()["rollback_model"], {"config": "demo", "reason": "e2e"})
    assert (state, tries) == ("failed", 3)  # retries: 2

"""
### monitor_drift

Checks production data for drift against each monitored model's reference data with
Evidently, and triggers `retune_model` for every model whose drift share crosses its
threshold.

**Runs** hourly; each model config (`include/configs/*.yaml`) is checked when its own
`drift.schedule` cron fires inside the run's hour (default daily), or since the previous
successful run after a scheduler gap. A manual run checks every config, or only the one
named in **config**; its drift goes to the trigger policy like the schedule's, but its
windows do not count toward the policy's hysteresis (consecutive scheduled windows).

**Params**
- `config`: check only this model config (empty: every config).
- `window_end`: end of the production window, ISO date or datetime (empty: the end of the
  data interval, or now for a manual run).

**Triggers** `retune_model` with `trigger=drift` and the drift summary in the run conf. The
drift summary (JSON) and, for a drifted window (the config's `drift.report`), Evidently's
report (HTML) are in the MLflow experiment `retune/<config>/monitoring`. While `retune_model` is paused, a run that finds drift decides
nothing and fails at `retunes_to_trigger`, naming the paused DAG: a queued run of a paused
DAG would hold the model's policy lock until it runs out.

**One model's failed check** (its data missing, too small, unreadable) does not hold up the
others: their drift still goes to the trigger policy. The run ends failed, at the task
`all_checks_ok`, and the failed `check_drift` map index names the config.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

RUN_EVERY = pendulum.duration(hours=1)
# A task that runs longer than one schedule interval fails (and is retried): a read stuck
# behind a table lock or a hung connection must not hold the hourly runs up for ever.
TASK_TIMEOUT = RUN_EVERY


def _trigger_kwargs(conf: dict) -> dict:
    """``trigger_retune``'s arguments for one retune conf: the run id carries the policy token."""
    return {"conf": conf, "trigger_run_id": f"drift__{conf['config']}__{conf['policy_token']}"}


@dag(
    dag_id="monitor_drift",
    schedule=RUN_EVERY,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retune", "monitoring", "drift"],
    default_args={
        "owner": "retune",
        "retries": 2,
        "retry_delay": pendulum.duration(minutes=2),
        "execution_timeout": TASK_TIMEOUT,
    },
    params={
        "config": Param(
            None,
            type=["null", "string"],
            title="Model config",
            description=(
                "Check only this config: <name>.yaml in the config folder (RETUNE_CONFIG_DIR, "
                "default include/configs); empty: every config."
            ),
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$(?!\n)",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$(?!\n)",
            title="Window end",
            description=(
                "End of the production window: ISO date or datetime, e.g. 2025-05-29 (UTC if no offset); "
                "empty: the end of the data interval, or now."
            ),
        ),
    },
)
def monitor_drift() -> None:
    # The standard provider's operators are the one import beyond airflow.sdk; they are kept
    # out of the module's top so parsing the file stays cheap when the DAG is not built.
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    @task
    def due_configs() -> list[str]:
        """The configs to check in this run."""
        from retune.schedule import check_interval
        from retune.schedule import due_configs as due

        ctx = get_current_context()
        params = ctx["params"]
        dag_run = ctx["dag_run"]
        manual = str(dag_run.run_type).lower().endswith("manual")
        # after a scheduler gap, reach back to the last successful run: no cron time unchecked
        prev = None if manual else ctx.get("prev_data_interval_end_success")
        previous = pendulum.instance(prev) if prev else None  # a lazy proxy in the context: a real datetime
        start, end = check_interval(
            ctx.get("data_interval_start"), ctx.get("data_interval_end"), every=RUN_EVERY, previous_end=previous
        )
        names = due(only=params.get("config"), start=start, end=end, every=manual)
        print(f"configs to check: {names}" + ("" if manual or end is None else f" (cron times in ({start}, {end}])"))
        return names

    @task(map_index_template="{{ task.op_kwargs['config_name'] }}")
    def check_drift(config_name: str) -> dict:
        """Evidently drift check of one model's newest production window."""
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

        from retune.data import connection_lookup
        from retune.errors import ConfigError, DataError
        from retune.pipeline import check_drift as run_check

        ctx = get_current_context()
        end = ctx["params"].get("window_end") or ctx.get("data_interval_end") or pendulum.now("UTC")
        try:
            # a config's conn_id: Airflow's connections (metadata DB, secrets backend, environment)
            with connection_lookup(Connection.get, missing=AirflowNotFoundException):
                return run_check(
                    config_name,
                    window_end=str(end),
                    run_tags={"airflow.dag_id": ctx["dag"].dag_id, "airflow.run_id": ctx["run_id"]},
                    # hysteresis counts the schedule's windows, not a person's look
                    record=not str(ctx["dag_run"].run_type).lower().endswith("manual"),
                )
        except (ConfigError, DataError) as exc:  # bad input: retrying cannot fix it
            raise AirflowFailException(str(exc)) from exc

    # all checks done, at least one succeeded: one model's failed check (its feed broken)
    # must not keep every other model's drift from its retune
    @task(trigger_rule="all_done_min_one_success")
    def retunes_to_trigger(results: list[dict]) -> list[dict]:
        """Put each drifted model to the trigger policy; confs for the retunes it lets through."""
        from airflow.sdk.exceptions import AirflowFailException

        from retune.pipeline import plan_retunes

        ctx = get_current_context()
        source = "schedule" if str(ctx["dag_run"].run_type).lower().endswith("scheduled") else "drift"
        results = list(results)
        drifted = [r["config"] for r in results if r["drift_detected"]]
        # a run of a paused DAG stays queued while its policy lock runs out, and every request
        # meanwhile is refused as "already running": decide nothing (as the alert receiver does)
        if drifted and ctx["ti"].get_dag("retune_model").is_paused:
            raise AirflowFailException(
                f"drift in {drifted}, but retune_model is paused: no retune decided, no lock taken; "
                "unpause retune_model (the next monitor run decides again)"
            )
        confs = plan_retunes(results, source=source)
        print(
            f"{sum(r['drift_detected'] for r in results)} of {len(results)} model(s) drifted; triggering {[c['config'] for c in confs]}"
        )
        return confs

    checks = check_drift.expand(config_name=due_configs())
    confs = retunes_to_trigger(checks)
    # a leaf that a failed check leaves upstream_failed: the run shows red, and says which
    checks >> EmptyOperator(task_id="all_checks_ok")
    # the run is named after its policy token: a decision triggered again (this task's retry,
    # another monitor run of the same window) finds its run there and starts no second one
    TriggerDagRunOperator.partial(
        task_id="trigger_retune",
        trigger_dag_id="retune_model",
        wait_for_completion=False,
        skip_when_already_exists=True,
    ).expand_kwargs(confs.map(_trigger_kwargs))


monitor_drift()

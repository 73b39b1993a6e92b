"""
### retune_model

Retunes one monitored model: loads and checks the newest data, warm-starts a pruned Optuna
study from the champion's and the previous study's best params, validates the winner in
staging against the current champion and registers it in the MLflow Model Registry
(alias `challenger`; `champion` moves only when every gate passes).

**Triggered** by `monitor_drift` when drift crosses the threshold (`trigger=drift`, with the
drift summary), by hand from this form (`trigger=manual`), or by an alert.

**Params** (the trigger form; the REST API takes the same keys in the run conf)
- `config`: the model config, `<config>.yaml` in `RETUNE_CONFIG_DIR` (default
  `include/configs`); lowercase letters, digits, `-`, `_`. A free string, not a drop-down:
  listing the config folder would be file I/O at parse time. An unknown name fails the
  run in its first tasks (`drift_gate` or `load_data`), naming the file it looked for.
- `window`: `latest` trains on the newest `data.train_window` before `window_end`;
  `reference` trains on the config's reference period (the first model).
- `window_end`: end of the training window, ISO date or datetime (empty: when the run was triggered, so a cleared run reads the same window).
- `force`: retune even when the drift gate finds no drift.
- Tuning budget (empty: the config's): `n_trials` (1-1000), `timeout` (10-86400 s),
  `pruner`, and `n_workers` (1-16), the parallel trial workers (mapped `tune` tasks) on the
  one study; on PostgreSQL they can run on different Airflow workers. A worker that dies
  mid-trial loses only that trial: it is marked failed and retried (RDB storage heartbeats).
- Set by automation: `trigger` (`manual`, `drift`, `schedule`, `alert`, `bootstrap`) and
  `drift` (the drift summary from `monitor_drift`).

Values outside these ranges, choices or patterns are refused when the run is created (form
or REST API, HTTP 400 naming the param); a date that does not exist (2025-02-30) fits the
pattern and fails the run's first task, naming `window_end`.

**Timeouts**: a task that runs over 2 h fails and is retried (a trial worker: 25 h, the
longest study plus an hour), so a read stuck behind a table lock cannot hold the model's
retune, and this DAG's one active run, for ever; `release_lock` still gives the lock back.

Each retune is one MLflow parent run in experiment `retune/<config>` with one child run per
trial; the study is `retune-<model>-<dag run>` in the Optuna storage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task, task_group

PRUNERS = ["median", "percentile", "successive_halving", "hyperband", "wilcoxon", "none"]
# A task that runs longer fails (and is retried), so a read stuck behind a table lock or a
# hung connection cannot hold the model's retune, and the DAG's one active run, for ever.
TASK_TIMEOUT = pendulum.duration(hours=2)
# A trial worker: the longest study a run may ask for (the `timeout` Param's and
# tuning.timeout's 24 h) plus an hour for the trials in flight when it passes.
TUNE_TIMEOUT = pendulum.duration(hours=25)


def _call(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    """Call the library from a task: a config's ``conn_id`` resolves through Airflow's
    connections, and bad input (a config or data error) fails the task at once, since
    retrying cannot fix it."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from retune.data import connection_lookup
    from retune.errors import ConfigError, DataError

    try:
        with connection_lookup(Connection.get, missing=AirflowNotFoundException):
            return fn(*args, **kwargs)
    except (ConfigError, DataError) as exc:
        raise AirflowFailException(str(exc)) from exc


def _lineage() -> dict:
    ctx = get_current_context()
    return {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]}


def _window_end() -> str:
    """The run's ``window_end``; empty: when the run was asked for (its ``run_after``), not
    now, so a cleared run, or a gate and a load minutes apart, read the same window."""
    ctx = get_current_context()
    return ctx["params"]["window_end"] or ctx["dag_run"].run_after.isoformat()


@dag(
    dag_id="retune_model",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retune", "tuning", "registry"],
    default_args={
        "owner": "retune",
        "retries": 2,
        "retry_delay": pendulum.duration(seconds=30),
        "execution_timeout": TASK_TIMEOUT,
    },
    params={
        # The form shows the params without a section under "Run Parameters", open; a section
        # is a folded accordion item (one open at a time), so only the automation's are in one.
        # The config name is a free string on purpose: listing the config folder for an enum
        # would be file I/O at parse time. A name with no config fails the run's first tasks.
        "config": Param(
            "demo",
            type="string",
            title="Model config",
            description=(
                "Name of the model config: the file <name>.yaml in the config folder "
                "(RETUNE_CONFIG_DIR, default include/configs), e.g. demo. "
                "Lowercase letters, digits, '-' and '_'."
            ),
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$(?!\n)",
            minLength=1,
            maxLength=63,
        ),
        "window": Param(
            "latest",
            type="string",
            enum=["latest", "reference"],
            values_display={
                "latest": "Latest: the newest data.train_window before Window end",
                "reference": "Reference: the config's reference period (first model)",
            },
            title="Training window",
            description="The data the retune trains, validates and holds out on.",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$(?!\n)",
            title="Window end",
            description="End of a 'latest' window: ISO date or datetime, e.g. 2025-05-29 or 2025-05-29T12:00:00+00:00 (UTC if no offset); empty: when the run was triggered (a cleared run reads the same window).",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Force retune",
            description="Retune even if the drift check finds no drift in the window (a 'reference' window skips the check).",
        ),
        "n_trials": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=1000,
            title="Trials",
            description="Optuna trials in the study, 1 to 1000; empty: the config's tuning.n_trials.",
        ),
        "timeout": Param(
            None,
            type=["null", "integer"],
            minimum=10,
            maximum=86400,
            title="Timeout (seconds)",
            description="Wall-clock limit of the study, 10 to 86400 s (24 h); empty: the config's tuning.timeout.",
        ),
        "pruner": Param(
            None,
            type=["null", "string"],
            enum=[None, *PRUNERS],
            values_display={
                None: "Config default (tuning.pruner)",
                "median": "Median",
                "percentile": "Percentile",
                "successive_halving": "Successive halving",
                "hyperband": "Hyperband",
                "wilcoxon": "Wilcoxon",
                "none": "No pruning",
            },
            title="Pruner",
            description="Stops unpromising trials early; empty: the config's tuning.pruner (with its args).",
        ),
        "n_workers": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=16,
            title="Trial workers",
            description="Parallel trial workers (mapped tune tasks) on the one study, 1 to 16; empty: the config's tuning.n_workers.",
        ),
        "trigger": Param(
            "manual",
            type="string",
            enum=["manual", "drift", "schedule", "alert", "bootstrap"],
            values_display={
                "manual": "Manual (this form)",
                "drift": "Drift (monitor_drift)",
                "schedule": "Schedule",
                "alert": "Alert (alert receiver or REST API)",
                "bootstrap": "Bootstrap (first model)",
            },
            title="Trigger",
            description="What started the retune; recorded on the MLflow run and the model version (tag retune.trigger).",
            section="Set by automation",
        ),
        "drift": Param(
            None,
            type=["null", "object"],
            title="Drift summary",
            description="The drift result that triggered the retune; set by monitor_drift, leave empty by hand.",
            section="Set by automation",
        ),
    },
)
def retune_model() -> None:
    # The standard provider's operator is the one import beyond airflow.sdk; kept out of the
    # module's top so parsing the file stays cheap when the DAG is not built.
    from airflow.providers.standard.operators.empty import EmptyOperator

    @task_group(group_id="retune")
    def retune() -> None:
        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def drift_gate() -> bool:
            """Trigger policy, then drift gate: skip when another retune runs, in cooldown, duplicate, or no drift."""
            from retune.pipeline import admit

            ctx = get_current_context()
            p = ctx["params"]
            lineage = _lineage()
            decision = _call(
                admit,
                p["config"],
                conf=dict(ctx["dag_run"].conf or {}),
                run_key=f"{lineage['dag_id']}/{lineage['run_id']}",
                window_kind=p["window"],
                window_end=_window_end(),
                force=p["force"],
                trigger=p["trigger"],
                drift=p["drift"],
                # an attempt killed after deciding left its decision holding the lock: take it
                retry=ctx["ti"].try_number > 1,
            )
            print(decision["reason"])
            # the lock, also for the plugin retune_listener when the run is marked failed by hand
            ctx["ti"].xcom_push(key="policy_token", value=decision["token"])
            ctx["ti"].xcom_push(key="policy_config", value=p["config"])
            return bool(decision["retune"])

        @task
        def load_data() -> dict:
            """Load and check the training window; open the MLflow parent run."""
            from retune.pipeline import prepare

            ctx = get_current_context()
            p = ctx["params"]
            lineage = _lineage()
            token = ctx["ti"].xcom_pull(task_ids="retune.drift_gate", key="policy_token")
            return _call(
                prepare,
                p["config"],
                window_end=_window_end(),
                window_kind=p["window"],
                n_trials=p["n_trials"],
                timeout=p["timeout"],
                pruner=p["pruner"],
                n_workers=p["n_workers"],
                trigger=p["trigger"],
                drift=p["drift"],
                key=f"{lineage['dag_id']}/{lineage['run_id']}",
                lineage=lineage,
                policy_token=token,  # kept by the trial workers while trials finish
            )

        @task
        def warm_start(run: dict) -> dict:
            """Enqueue the champion's and the previous study's best params."""
            from retune.pipeline import warm_start as seed

            return seed(run)

        @task
        def workers(run: dict, seeds: dict) -> list[int]:
            """One index per parallel trial worker."""
            return list(range(int(run["n_workers"])))

        @task(map_index_template="worker {{ task.op_kwargs['worker'] }}", execution_timeout=TUNE_TIMEOUT)
        def tune(run: dict, worker: int) -> dict:
            """A trial worker on the shared study; each trial is a child run of the parent run."""
            from retune.pipeline import tune_worker

            return _call(tune_worker, run, worker)

        @task
        def study_summary(run: dict, ran: list[dict]) -> dict:
            """Summarize the study once every worker is done; plots and metrics to MLflow."""
            from retune.pipeline import summarize_study

            print(f"workers: {list(ran)}")
            return summarize_study(run)

        @task
        def validate(run: dict, outcome: dict) -> dict:
            """Refit the winner, compare with the champion on the same holdout, staging check, gates."""
            from retune.pipeline import validate as check

            return _call(check, run, outcome)

        @task
        def register(run: dict, checked: dict, outcome: dict) -> dict:
            """Register the challenger; promote it to champion only if every gate passed."""
            from retune.pipeline import register as reg

            return reg(run, checked, outcome)

        @task(trigger_rule="all_done")
        def release_lock() -> str:
            """Give the model's trigger-policy lock back, however the retune ended; a failed retune's parent run ends FAILED."""
            from retune.pipeline import finish

            ctx = get_current_context()
            token = ctx["ti"].xcom_pull(task_ids="retune.drift_gate", key="policy_token")
            registered = ctx["ti"].xcom_pull(task_ids="retune.register")
            run = ctx["ti"].xcom_pull(task_ids="retune.load_data") or {}
            outcome = finish(
                ctx["params"]["config"],
                token,
                registered=registered,
                parent_run_id=run.get("parent_run_id"),
                study_name=run.get("study_name"),  # a failed retune's trials left RUNNING are failed
                # a gate that failed pushed nothing: the conf's decision admitted no retune
                conf_token=(ctx["dag_run"].conf or {}).get("policy_token"),
                gate_ran=ctx["ti"].xcom_pull(task_ids="retune.drift_gate", key="policy_config") is not None,
            )
            print(outcome)
            return outcome

        gate = drift_gate()
        run = load_data()
        gate >> run
        ran = tune.partial(run=run).expand(worker=workers(run, warm_start(run)))
        outcome = study_summary(run, ran)
        checked = validate(run, outcome)
        released = release_lock()
        registered = register(run, checked, outcome)
        # the lock goes back once every task that uses it is done: also after all tune
        # workers, or one failed worker would hand it back while the others still tune
        [gate, ran, registered] >> released
        # release_lock succeeds however the retune ended; as the only leaf it turned every
        # failed retune's run green. This leaf fails (upstream_failed) when the retune did,
        # and is skipped, leaving the run green, when the drift gate stopped it.
        registered >> EmptyOperator(task_id="retune_ok")

    retune()


retune_model()

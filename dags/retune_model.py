"""
### retune_model

Retunes one monitored model: loads and checks the newest data, warm-starts a pruned Optuna
study from the champion's and the previous study's best params, validates the winner in
staging against the current champion and registers it in the MLflow Model Registry
(alias `challenger`; `champion` moves only when every gate passes).

**Triggered** by `monitor_drift` when drift crosses the threshold (`trigger=drift`, with the
drift summary), by hand from this form (`trigger=manual`), or by an alert.

**Params**
- `config`: the model config (`include/configs/<config>.yaml`).
- `window`: `latest` trains on the newest `data.train_window` before `window_end`;
  `reference` trains on the config's reference period (the first model).
- `window_end`: end of the training window, ISO date or datetime (empty: now).
- `n_trials`, `timeout`, `pruner`: override the config's tuning budget (empty: the config's).
- `n_workers`: parallel trial workers (mapped `tune` tasks) on the one study; on PostgreSQL
  they can run on different Airflow workers. A worker that dies mid-trial loses only that
  trial: it is marked failed and retried (RDB storage heartbeats).
- `force`: retune even when the drift gate finds no drift.

Each retune is one MLflow parent run in experiment `retune/<config>` with one child run per
trial; the study is `retune-<model>-<dag run>` in the Optuna storage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task, task_group

PRUNERS = ["median", "percentile", "successive_halving", "hyperband", "wilcoxon", "none"]


def _lineage() -> dict:
    ctx = get_current_context()
    return {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]}


@dag(
    dag_id="retune_model",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retune", "tuning", "registry"],
    default_args={"owner": "retune", "retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "config": Param(
            "demo",
            type="string",
            title="Model config",
            description="Name of a config in include/configs.",
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        ),
        "window": Param("latest", type="string", enum=["latest", "reference"], title="Training window"),
        "window_end": Param(None, type=["null", "string"], title="Window end", description="ISO date or datetime; empty: now."),
        "n_trials": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=1000,
            title="Trials",
            description="Empty: the config's tuning.n_trials.",
        ),
        "timeout": Param(
            None,
            type=["null", "integer"],
            minimum=10,
            maximum=86400,
            title="Timeout (s)",
            description="Empty: the config's tuning.timeout.",
        ),
        "n_workers": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=16,
            title="Trial workers",
            description="Parallel trial workers on one study (mapped tasks); empty: the config's tuning.n_workers.",
        ),
        "pruner": Param(
            None, type=["null", "string"], enum=[None, *PRUNERS], title="Pruner", description="Empty: the config's tuning.pruner."
        ),
        "force": Param(False, type="boolean", title="Force", description="Retune even if no drift is found."),
        "trigger": Param("manual", type="string", enum=["manual", "drift", "schedule", "alert", "bootstrap"], title="Trigger"),
        "drift": Param(None, type=["null", "object"], title="Drift summary", description="Set by monitor_drift."),
    },
)
def retune_model() -> None:
    @task_group(group_id="retune")
    def retune() -> None:
        @task.short_circuit
        def drift_gate() -> bool:
            """Skip the retune when there is no drift, unless forced or training the first model."""
            from retune.pipeline import should_retune

            p = get_current_context()["params"]
            if p["window"] == "reference":
                return True
            decision = should_retune(p["config"], window_end=p["window_end"], drift=p["drift"], force=p["force"])
            print(decision["reason"])
            return bool(decision["retune"])

        @task
        def load_data() -> dict:
            """Load and check the training window; open the MLflow parent run."""
            from retune.pipeline import prepare

            ctx = get_current_context()
            p = ctx["params"]
            lineage = _lineage()
            return prepare(
                p["config"],
                window_end=p["window_end"],
                window_kind=p["window"],
                n_trials=p["n_trials"],
                timeout=p["timeout"],
                pruner=p["pruner"],
                n_workers=p["n_workers"],
                trigger=p["trigger"],
                drift=p["drift"],
                key=f"{lineage['dag_id']}/{lineage['run_id']}",
                lineage=lineage,
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

        @task(map_index_template="worker {{ task.op_kwargs['worker'] }}")
        def tune(run: dict, worker: int) -> dict:
            """A trial worker on the shared study; each trial is a child run of the parent run."""
            from retune.pipeline import tune_worker

            return tune_worker(run, worker)

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

            return check(run, outcome)

        @task
        def register(run: dict, checked: dict, outcome: dict) -> dict:
            """Register the challenger; promote it to champion only if every gate passed."""
            from retune.pipeline import register as reg

            return reg(run, checked, outcome)

        run = load_data()
        drift_gate() >> run
        ran = tune.partial(run=run).expand(worker=workers(run, warm_start(run)))
        outcome = study_summary(run, ran)
        checked = validate(run, outcome)
        register(run, checked, outcome)

    retune()


retune_model()

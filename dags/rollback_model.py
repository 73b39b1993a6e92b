"""
### rollback_model

Undoes a promotion in one step: moves the `champion` alias of a model back to
`previous_champion`, and `previous_champion` to the version that was champion, so a second
run undoes the first.

The target version is loaded from the MLflow Model Registry and must predict its input
example first; if it does not load or predict, nothing moves and the run fails with the
reason. Every move is recorded in the alias history (who: `airflow:rollback_model/<run_id>`,
when, why, from and to version): the registered model's tag `retune.alias_history`, the
versions' tags of the same name, and `retune.last_alias_move`. A retried task never rolls
back twice (the run is the idempotency key).

**Params**
- `config`: the model config, `<config>.yaml` in `RETUNE_CONFIG_DIR` (default
  `include/configs`); lowercase letters, digits, `-`, `_`.
- `reason`: why, recorded in the alias history.

The same from a shell: `python -m retune rollback --config <config> --why "<reason>"`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

# A task that runs longer fails (and is retried): a read stuck behind a table lock or a hung
# connection must not hold the DAG's run for ever.
TASK_TIMEOUT = pendulum.duration(hours=2)


@dag(
    dag_id="rollback_model",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retune", "registry", "rollback"],
    default_args={
        "owner": "retune",
        "retries": 2,
        "retry_delay": pendulum.duration(seconds=30),
        "execution_timeout": TASK_TIMEOUT,
    },
    params={
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
        "reason": Param(
            "",
            type="string",
            title="Reason",
            description="Why the champion is rolled back; recorded in the alias history.",
            maxLength=300,
        ),
    },
)
def rollback_model() -> None:
    @task
    def rollback() -> dict:
        """Move champion back to previous_champion after checking that version loads and predicts.

        Fails at once, without retries, when retrying cannot help: an unknown or invalid
        config, nothing to roll back to, or a champion that moved meanwhile. A registry that
        cannot be reached is retried.
        """
        from airflow.sdk.exceptions import AirflowFailException

        from retune.errors import ChampionChangedError, ConfigError, NothingToRollBackError
        from retune.registry import rollback_model as roll_back

        ctx = get_current_context()
        params = ctx["params"]
        run = f"{ctx['dag'].dag_id}/{ctx['run_id']}"
        user = getattr(ctx["dag_run"], "triggering_user_name", None)
        who = f"airflow:{run}" + (f" ({user})" if user else "")
        try:
            result = roll_back(params["config"], who=who, why=params["reason"] or "rollback from Airflow", key=run)
        except (ConfigError, NothingToRollBackError, ChampionChangedError) as exc:
            raise AirflowFailException(str(exc)) from exc
        print(
            f"{result['model_name']}: champion {result['champion_before']} -> {result['champion_after']}"
            + (" (already done by an earlier try)" if result["repeated"] else "")
        )
        return result

    rollback()


rollback_model()

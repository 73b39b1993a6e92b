"""DAG integrity: the DAG files import cleanly, follow the house rules and touch no database,
connection or variable while they are parsed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pendulum
import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
ALLOWED_TOP_LEVEL = {"airflow.sdk", "pendulum", "__future__"}
EXPECTED_DAGS = {"monitor_drift", "retune_model", "rollback_model"}


@pytest.fixture(scope="module")
def parse_log() -> dict:
    """Parse the DAG folder once, counting SQL statements and connection/variable lookups."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []
    lookups: list[str] = []

    def on_sql(conn, cursor, statement, *args):  # noqa: ANN001, ARG001
        statements.append(statement)

    patched = []
    for owner, name in ((Variable, "get"), (Connection, "get"), (BaseHook, "get_connection")):
        original = getattr(owner, name)

        def spy(*args, _name=f"{owner.__name__}.{name}", **kwargs):  # noqa: ANN002, ANN003
            lookups.append(_name)
            raise AssertionError(f"{_name} called while parsing DAGs")

        setattr(owner, name, staticmethod(spy) if isinstance(owner.__dict__.get(name), staticmethod) else spy)
        patched.append((owner, name, original))
    event.listen(Engine, "before_cursor_execute", on_sql)
    try:
        bag = DagBag(dag_folder=str(DAGS_DIR))
    finally:
        event.remove(Engine, "before_cursor_execute", on_sql)
        for owner, name, original in patched:
            setattr(owner, name, original)
    return {"bag": bag, "statements": statements, "lookups": lookups}


def test_no_import_errors(parse_log: dict) -> None:
    errors = parse_log["bag"].import_errors
    assert not errors, "DAG import errors:\n" + "\n".join(f"{path}: {err}" for path, err in errors.items())


def test_expected_dags_present(parse_log: dict) -> None:
    assert set(parse_log["bag"].dags) == EXPECTED_DAGS


def test_no_db_query_or_lookup_while_parsing(parse_log: dict) -> None:
    assert parse_log["statements"] == [], f"SQL run while parsing: {parse_log['statements'][:5]}"
    assert parse_log["lookups"] == [], f"connection/variable lookups while parsing: {parse_log['lookups']}"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_rules(parse_log: dict, dag_id: str) -> None:
    dag = parse_log["bag"].dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.catchup is False, f"{dag_id}: catchup must be False"
    assert dag.doc_md and dag_id in dag.doc_md, f"{dag_id}: doc_md must be the module docstring naming the DAG"
    assert dag.start_date is not None and dag.start_date.tzinfo is not None, f"{dag_id}: start_date must be fixed and aware"
    assert dag.start_date.utcoffset() == pendulum.duration(0), f"{dag_id}: start_date must be UTC"
    for task in dag.tasks:
        retries = getattr(task, "retries", None)
        assert retries is not None and retries >= 2, f"{dag_id}.{task.task_id}: retries is {retries!r}, want >= 2"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_every_task_has_an_execution_timeout(parse_log: dict, dag_id: str) -> None:
    """No task may hold its DAG's one active run for ever (a read behind a table lock: see
    tests/e2e/test_faults.py). A trial worker may run the longest study a run or a config
    can ask for, plus an hour for the trials in flight when it passes."""
    from retune.config import TuningConfig

    dag = parse_log["bag"].dags[dag_id]
    longest_study = max(
        int(dag.params.get_param("timeout").schema["maximum"]) if "timeout" in dag.params else 0,
        next(m.le for m in TuningConfig.model_fields["timeout"].metadata if hasattr(m, "le")),
    )
    for task in dag.tasks:
        limit = task.execution_timeout
        assert limit is not None, f"{dag_id}.{task.task_id} has no execution_timeout"
        if task.task_id == "retune.tune":
            assert limit >= pendulum.duration(seconds=longest_study, hours=1), f"{task.task_id}: {limit}"
        else:
            assert limit <= pendulum.duration(hours=2), f"{dag_id}.{task.task_id}: {limit}"


def test_retune_model_shape(parse_log: dict) -> None:
    dag = parse_log["bag"].dags["retune_model"]
    assert dag.max_active_runs == 1
    ids = {t.task_id for t in dag.tasks}
    assert {
        "retune.drift_gate",
        "retune.load_data",
        "retune.warm_start",
        "retune.workers",
        "retune.tune",
        "retune.study_summary",
        "retune.validate",
        "retune.register",
    } <= ids
    assert {"config", "n_trials", "timeout", "pruner", "force", "n_workers"} <= set(dag.params.keys())
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.task_dict["retune.tune"], MappedOperator), "trial workers are mapped tasks"


def test_retune_model_always_ends_with_release_lock(parse_log: dict) -> None:
    """However a retune ends (skipped, failed, registered), release_lock runs: it gives the policy
    lock back and closes a failed retune's MLflow parent run. all_done looks at direct upstream
    tasks only: it must list every tune worker, or one failed worker (study_summary, validate
    and register then upstream_failed at once) let it give the lock back while others tuned."""
    dag = parse_log["bag"].dags["retune_model"]
    release = dag.task_dict["retune.release_lock"]
    assert str(release.trigger_rule) in ("all_done", "TriggerRule.ALL_DONE"), release.trigger_rule
    assert {"retune.drift_gate", "retune.tune", "retune.register"} <= release.upstream_task_ids
    upstream = release.get_flat_relative_ids(upstream=True)
    every_other = {t.task_id for t in dag.tasks} - {release.task_id, "retune.retune_ok"}
    assert upstream == every_other, f"release_lock must wait for every task; not upstream: {every_other - upstream}"


def test_a_failed_retune_fails_its_run(parse_log: dict) -> None:
    """release_lock succeeds whatever happened: were it the only leaf, every failed retune run
    would be green. retune_ok (all_success after register) is the leaf that fails with it."""
    dag = parse_log["bag"].dags["retune_model"]
    leaves = {t.task_id for t in dag.leaves}
    assert leaves == {"retune.release_lock", "retune.retune_ok"}, leaves
    ok = dag.task_dict["retune.retune_ok"]
    assert ok.upstream_task_ids == {"retune.register"}
    assert str(ok.trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS"), ok.trigger_rule


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_top_level_imports_are_light(path: Path) -> None:
    tree = ast.parse(path.read_text())
    stdlib = set(sys.stdlib_module_names)
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            ok = name in ALLOWED_TOP_LEVEL or name.split(".")[0] in stdlib
            assert ok, f"{path.name}:{node.lineno}: top-level import of {name!r}; import it inside the task"


@pytest.mark.parametrize(
    ("dag_id", "param", "good", "bad"),
    [
        (dag_id, "config", ["demo", "bike-sharing_2"], ["demo\n", "Demo", "../demo", ""])
        for dag_id in ("monitor_drift", "retune_model", "rollback_model")
    ]
    + [
        (dag_id, "window_end", ["2025-05-29", "2025-05-29T12:00:00+00:00", "2025-05-29 12:00Z"], ["2025-05-29\n", "29.05.2025"])
        for dag_id in ("monitor_drift", "retune_model")
    ],
)
def test_params_refuse_what_the_pipeline_would(parse_log: dict, dag_id: str, param: str, good: list, bad: list) -> None:
    """The Params refuse a value when the run is created (form, REST 400), not in its first
    task: JSON Schema patterns are matched with Python's re.search, where a bare ``$`` also
    matches before a trailing newline."""
    from airflow.sdk.definitions.param import Param, ParamValidationError

    schema = parse_log["bag"].dags[dag_id].params.get_param(param).schema
    for value in good:
        assert Param(None, **schema).resolve(value) == value
    for value in bad:
        with pytest.raises(ParamValidationError):
            Param(None, **schema).resolve(value)

"""Real drift from PostgreSQL: bike sharing in a table, 2011 as reference, a 2012 window as production.

The rows live only in the test's own database: production is a table (``sql.table`` with a
``dsn`` from a variable), the reference a query through an Airflow connection id
(``AIRFLOW_CONN_RETUNE_BIKES_PG``). A champion is bootstrapped on 2011, the drift check finds
the 2012 drift, the monitor DAG queues a retune with ``trigger=drift``, and the retune reads
the SQL source and registers version 2.

The monitor DAG's drift check reads the same reference through the connection stored in
Airflow's metadata DB (no environment variable then), as a user who adds it under
Admin > Connections would have it.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_e2e_helpers import fresh_dags  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_DSN = os.environ.get("RETUNE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
NAME = "bikes-pg"

CONFIG = """
name: bikes-pg
task: regression
target: cnt
data:
  production:
    sql: {table: public.bikes, dsn: "${RETUNE_TEST_BIKES_DSN}", chunk_rows: 5000}
  reference:
    start: "2011-01-01"
    end: "2012-01-01"
    sql:
      query: "SELECT * FROM bikes WHERE ts >= %(start)s AND ts < %(end)s"
      conn_id: retune_bikes_pg
  time_column: ts
  window: 14d
  train_window: 60d
  holdout_fraction: 0.2
features:
  exclude: [instant, casual, registered, dteday]
model:
  family: hist_gradient_boosting
  fixed_params: {max_iter: 100}
  search_space:
    learning_rate: {type: log_float, low: 0.03, high: 0.3}
    max_leaf_nodes: {type: int, low: 8, high: 64, log: true}
    min_samples_leaf: {type: int, low: 5, high: 60}
metric: {name: mae}
drift: {drift_share: 0.3}
tuning:
  n_trials: 6
  pruner: {type: median, args: {n_startup_trials: 2}}
  seed: 3
validation: {min_improvement: 0.01}
registry: {model_name: bikes-pg}
"""

_PG_TYPES = {"int64": "bigint", "float64": "double precision", "object": "text", "datetime64[ns, UTC]": "timestamptz"}


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh database (``retune_test_<random>``) on the test server, dropped afterwards."""
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extensions import make_dsn

    try:
        admin = psycopg2.connect(ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = f"PostgreSQL is unreachable at {ADMIN_DSN!r}: {' '.join(str(exc).split())}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    admin.autocommit = True
    name = f"retune_test_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_dsn(ADMIN_DSN, dbname=name)
        finally:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


def _write_table(dsn: str, df: Any, table: str) -> None:
    """Create ``table`` from the frame's dtypes and COPY the rows in."""
    import psycopg2
    from psycopg2 import sql

    columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_PG_TYPES[str(t)])) for c, t in df.dtypes.items()]
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), sql.SQL(", ").join(columns)))
        cur.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(sql.Identifier(table)), buffer)
    conn.close()


def _retune(config: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from retune import pipeline

    ctx = pipeline.prepare(config, **kwargs)
    pipeline.warm_start(ctx)
    outcome = pipeline.tune(ctx)
    checked = pipeline.validate(ctx, outcome)
    return ctx, pipeline.register(ctx, checked, outcome)


def _queued_retunes() -> dict[str, dict[str, Any]]:
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    with settings.Session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "retune_model", DagRun.state == "queued")).all()
        return {r.run_id: dict(r.conf or {}) for r in runs}


@contextlib.contextmanager
def _airflow_connection(conn_id: str, params: dict[str, str]) -> Iterator[None]:
    """A postgres connection stored in the metadata DB (as Admin > Connections does), removed after."""
    from airflow import settings
    from airflow.models.connection import Connection
    from sqlalchemy import delete

    conn = Connection(
        conn_id=conn_id,
        conn_type="postgres",
        host=params.get("host", "127.0.0.1"),
        port=int(params.get("port", "5432")),
        login=params["user"],
        schema=params["dbname"],
    )
    with settings.Session() as session:
        session.add(conn)
        session.commit()
    try:
        yield
    finally:
        with settings.Session() as session:
            session.execute(delete(Connection).where(Connection.conn_id == conn_id))
            session.commit()


def _delete_runs(run_ids: list[str]) -> None:
    """Remove the runs this test queued, so other tests in the session see none of them."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import delete

    with settings.Session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == "retune_model", DagRun.run_id.in_(run_ids)))
        session.commit()


def test_drift_in_a_postgres_table_triggers_a_retune(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datasets: Path, pg_dsn: str
) -> None:
    import pandas as pd
    from psycopg2.extensions import parse_dsn

    from retune import pipeline, registry, tracking
    from retune.settings import get_settings

    raw = pd.read_csv(datasets / "bike_sharing" / "hour.csv")
    raw["ts"] = pd.to_datetime(raw["dteday"], utc=True) + pd.to_timedelta(raw["hr"], unit="h")
    _write_table(pg_dsn, raw.sample(frac=1.0, random_state=0), "bikes")  # shuffled: the source must order rows

    params = parse_dsn(pg_dsn)
    uri = f"postgres://{params['user']}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{params['dbname']}"
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / f"{NAME}.yaml").write_text(CONFIG)
    monkeypatch.setenv("RETUNE_TEST_BIKES_DSN", pg_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_BIKES_PG", uri)
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RETUNE_OPTUNA_STORAGE", raising=False)

    # 1. The first champion, trained on 2011 read through the reference query (conn_id).
    ctx, stale = _retune(NAME, window_kind="reference", trigger="bootstrap", key="bootstrap")
    assert ctx["rows"]["total"] == int((raw["ts"] < "2012-01-01").sum())
    assert stale["promoted"] and stale["version"] == 1

    # 2. A 2012 window of the production table drifts from the 2011 training data.
    drift = pipeline.check_drift(NAME, window_end="2012-06-01")
    assert drift["drift_detected"], drift["summary"]
    assert "yr" in {c["column"] for c in drift["summary"]["drifted_columns"]}
    gate = pipeline.should_retune(NAME, window_end="2012-06-01", drift=drift, force=False)
    assert gate["retune"] and gate["reason"] == "drift detected"

    # 3. The monitor DAG on the same config queues a retune_model run with trigger=drift; its
    #    drift check reads the reference through the connection stored in Airflow, not the env.
    monkeypatch.delenv("AIRFLOW_CONN_RETUNE_BIKES_PG")
    before = _queued_retunes()
    try:
        with _airflow_connection("retune_bikes_pg", params):
            dr = fresh_dags()["monitor_drift"].test(run_conf={"config": NAME, "window_end": "2012-06-01"})
    finally:
        new_runs = {run_id: c for run_id, c in _queued_retunes().items() if run_id not in before}
        _delete_runs(list(new_runs))
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_BIKES_PG", uri)
    assert dr.state == "success"
    queued = [c for c in new_runs.values() if c.get("config") == NAME]
    assert len(queued) == 1, queued
    conf = queued[0]
    assert conf["trigger"] == "drift" and conf["force"] is False
    assert conf["drift"]["summary"]["drift_detected"] is True

    # 4. The retune it asks for reads the newest 60 days from the table and registers version 2.
    ctx, new = _retune(NAME, window_end=conf["window_end"], trigger=conf["trigger"], drift=conf["drift"], key="drift-2012-06")
    end = pd.Timestamp(conf["window_end"])
    assert ctx["rows"]["total"] == int(((raw["ts"] >= end - pd.Timedelta(days=60)) & (raw["ts"] < end)).sum())
    assert new["version"] == 2 and new["champion_before"] == 1
    assert new["promoted"], new["reason"]
    cl = tracking.client(get_settings())
    v2 = registry.get_alias(cl, NAME, registry.CHAMPION)
    assert v2 is not None and v2.version == 2 and v2.tags["retune.trigger"] == "drift"

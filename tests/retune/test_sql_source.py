"""retune.data.SqlSource and the ``sql`` config section, on a real PostgreSQL.

Every test that touches the server gets its own database (``retune_test_<random>``), created
and dropped by the ``pg`` fixture. Without a server the tests skip with the reason, except
under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retune.config import load_config, redact_dsn
from retune.data import SqlSource, Window, conn_id_dsn, load_window, make_source
from retune.errors import ConfigError, DataError

ADMIN_DSN = os.environ.get("RETUNE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PASSWORD = "Sup3r-s3cret-pw"  # trust auth ignores it; it must never show in an error
T0 = datetime(2025, 1, 1, tzinfo=UTC)
N_ROWS = 48  # one row an hour for two days


@dataclass(frozen=True)
class Pg:
    """A private test database."""

    host: str
    port: str
    user: str
    dbname: str

    def dsn(self, password: str | None = None) -> str:
        """``key=value`` DSN, optionally with a password."""
        extra = f" password={password}" if password else ""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}{extra}"

    def uri(self, scheme: str = "postgresql", password: str | None = None) -> str:
        """URI DSN, optionally with a password."""
        auth = f"{self.user}:{password}" if password else self.user
        return f"{scheme}://{auth}@{self.host}:{self.port}/{self.dbname}"

    def execute(self, statement: Any, params: Any = None) -> None:
        """Run one statement and commit."""
        import psycopg2

        with psycopg2.connect(self.dsn()) as conn, conn.cursor() as cur:
            cur.execute(statement, params)
        conn.close()


def _admin_connect() -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = f"PostgreSQL is unreachable at {ADMIN_DSN!r}: {' '.join(str(exc).split())}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    conn.autocommit = True
    return conn


@pytest.fixture
def pg() -> Iterator[Pg]:
    """A fresh database on the test server, dropped afterwards."""
    from psycopg2 import sql
    from psycopg2.extensions import parse_dsn

    admin = _admin_connect()
    name = f"retune_test_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            params = parse_dsn(ADMIN_DSN)
            yield Pg(
                host=params.get("host", "127.0.0.1"),
                port=params.get("port", "5432"),
                user=params.get("user", "postgres"),
                dbname=name,
            )
        finally:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


@pytest.fixture
def events(pg: Pg) -> Pg:
    """Table ``events`` (one row an hour from T0, ``id`` 0..47) and ``app.events`` (a copy)."""
    pg.execute(
        """
        CREATE TABLE events (id integer, ts timestamptz, x double precision, amount numeric(10, 2), cat text);
        INSERT INTO events
            SELECT i, %(t0)s::timestamptz + make_interval(hours => i), i * 0.5, i * 1.25, CASE WHEN i %% 2 = 0 THEN 'even' ELSE 'odd' END
            FROM generate_series(%(n)s - 1, 0, -1) AS i;  -- inserted newest first: the reader must sort
        CREATE SCHEMA app;
        CREATE TABLE app.events AS SELECT * FROM events;
        """,
        {"t0": T0, "n": N_ROWS},
    )
    return pg


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


# --------------------------------------------------------------------------- config


def sql_config(demo_dict: dict[str, Any], production: dict[str, Any], **reference: Any) -> dict[str, Any]:
    demo_dict["data"]["production"] = production
    demo_dict["data"]["reference"].update(reference)
    return demo_dict


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, f"the error does not name the file: {message}"
    return message


def test_sql_table_config_loads(demo_dict: dict[str, Any], write_yaml: Callable[..., Path]) -> None:
    prod = {"sql": {"table": "public.bikes", "dsn": "${RETUNE_DATA_DSN}", "chunk_rows": 1000}}
    ref = {
        "sql": {
            "query": "SELECT * FROM ref WHERE ts >= %(start)s AND ts < %(end)s AND note NOT LIKE 'x%%'",
            "conn_id": "retune_data",
        }
    }
    cfg = load_config(write_yaml(sql_config(demo_dict, prod, **ref)))

    assert cfg.data.production.path is None
    assert cfg.data.production.sql is not None and cfg.data.production.sql.table == "public.bikes"
    assert cfg.data.production.sql.chunk_rows == 1000
    assert cfg.data.reference.sql is not None and cfg.data.reference.sql.conn_id == "retune_data"


def test_reference_may_still_omit_its_source(demo_dict: dict[str, Any], write_yaml: Callable[..., Path]) -> None:
    cfg = load_config(write_yaml(sql_config(demo_dict, {"sql": {"table": "bikes", "conn_id": "retune_data"}})))
    assert cfg.data.reference.path is None and cfg.data.reference.sql is None


@pytest.mark.parametrize(
    ("production", "field", "fragment"),
    [
        ({"path": "x.csv", "sql": {"table": "t", "dsn": "d"}}, "data.production: ", "not both"),
        ({}, "data.production: ", "give path"),
        ({"sql": {"dsn": "d"}}, "data.production.sql: ", "exactly one of table or query"),
        (
            {"sql": {"table": "t", "query": "SELECT * FROM t WHERE ts >= %(start)s AND ts < %(end)s", "dsn": "d"}},
            "data.production.sql: ",
            "exactly one of table or query",
        ),
        ({"sql": {"query": "SELECT * FROM t", "dsn": "d"}}, "data.production.sql.query: ", "%(start)s and %(end)s"),
        (
            {"sql": {"query": "SELECT * FROM t WHERE ts >= %(start)s", "dsn": "d"}},
            "data.production.sql.query: ",
            "missing %(end)s",
        ),
        (
            {"sql": {"query": "SELECT * FROM t WHERE a LIKE 'x%' AND ts >= %(start)s AND ts < %(end)s", "dsn": "d"}},
            "data.production.sql.query: ",
            "write a literal % as %%",
        ),
        ({"sql": {"table": "1bikes", "dsn": "d"}}, "data.production.sql.table: ", "not a valid table name"),
        ({"sql": {"table": "a.b.c", "dsn": "d"}}, "data.production.sql.table: ", "not a valid table name"),
        ({"sql": {"table": "t"}}, "data.production.sql: ", "exactly one of dsn or conn_id"),
        ({"sql": {"table": "t", "dsn": "d", "conn_id": "c"}}, "data.production.sql: ", "exactly one of dsn or conn_id"),
        ({"sql": {"table": "t", "conn_id": "retune-data"}}, "data.production.sql.conn_id: ", "not a usable connection id"),
        ({"sql": {"table": "t", "dsn": "d", "chunk_rows": 0}}, "data.production.sql.chunk_rows: ", "greater than or equal to 1"),
        ({"sql": {"table": "t", "dsn": "d"}, "format": "csv"}, "data.production: ", "apply to files"),
        ({"sql": {"table": "t", "dsn": "d", "user": "x"}}, "data.production.sql.user: ", "Extra inputs"),
    ],
)
def test_bad_sql_source_names_the_field(
    demo_dict: dict[str, Any], write_yaml: Callable[..., Path], production: dict[str, Any], field: str, fragment: str
) -> None:
    message = config_error(write_yaml(sql_config(demo_dict, production)))
    assert field in message and fragment in message, message


def test_reference_with_both_path_and_sql_is_refused(demo_dict: dict[str, Any], write_yaml: Callable[..., Path]) -> None:
    message = config_error(write_yaml(sql_config(demo_dict, {"path": "x.csv"}, path="r.csv", sql={"table": "r", "dsn": "d"})))
    assert "data.reference: " in message and "not both" in message


def test_injection_in_table_name_is_refused(demo_dict: dict[str, Any], write_yaml: Callable[..., Path]) -> None:
    for table in ("bikes; DROP TABLE bikes", 'bikes" --', "bikes\n", "public.bikes WHERE 1=1"):
        message = config_error(write_yaml(sql_config(demo_dict, {"sql": {"table": table, "dsn": "d"}})))
        assert "data.production.sql.table: " in message and "not a valid table name" in message
    with pytest.raises(ConfigError, match="sql.table"):
        SqlSource(time_column="ts", table="bikes; DROP TABLE bikes", dsn="d")


def test_time_column_of_a_sql_source_must_be_an_identifier(make_cfg: Callable[..., Any]) -> None:
    cfg = make_cfg({"data": {"production!": {"sql": {"table": "bikes", "dsn": "d"}}, "time_column": "ts); DROP TABLE x; --"}})
    with pytest.raises(ConfigError, match=r"data\.time_column: .* not a valid SQL column name"):
        make_source(cfg.data.production, cfg)


def test_snapshot_and_errors_hide_the_password(make_cfg: Callable[..., Any]) -> None:
    cfg = make_cfg({"data": {"production!": {"sql": {"table": "bikes", "dsn": f"postgresql://retune:{PASSWORD}@db/data"}}}})
    snap = cfg.snapshot()
    assert snap["data"]["production"]["sql"]["dsn"] == "postgresql://retune:***@db/data"
    assert PASSWORD not in str(snap)
    assert cfg.data.production.sql.dsn.endswith(f"{PASSWORD}@db/data")  # the model itself keeps it for connecting
    assert redact_dsn(f"host=db password='{PASSWORD} x' user=u") == "host=db password=*** user=u"


def test_unset_dsn_variable_is_a_config_error(make_cfg: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETUNE_TEST_UNSET_DSN", raising=False)
    cfg = make_cfg({"data": {"production!": {"sql": {"table": "bikes", "dsn": "${RETUNE_TEST_UNSET_DSN}"}}}})
    with pytest.raises(ConfigError, match=r"data\.production\.sql\.dsn: variable RETUNE_TEST_UNSET_DSN is not set"):
        make_source(cfg.data.production, cfg)


def test_dsn_variable_expands_once(make_cfg: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETUNE_TEST_DSN", "host=db user=u password=pa$word")  # a $ in the value is not a variable
    cfg = make_cfg({"data": {"production!": {"sql": {"table": "bikes", "dsn": "${RETUNE_TEST_DSN} dbname=${DB}"}}}})
    source = make_source(cfg.data.production, cfg, {"DB": "data"})
    assert isinstance(source, SqlSource)
    assert source.dsn() == "host=db user=u password=pa$word dbname=data"


# --------------------------------------------------------------------------- reading windows


def ids(df: pd.DataFrame) -> list[int]:
    return [int(i) for i in df["id"]]


@pytest.mark.postgres
def test_reads_exactly_the_rows_in_the_half_open_window(events: Pg) -> None:
    source = SqlSource(time_column="ts", table="events", dsn=events.dsn())
    df = source.read(at(10), at(20))

    assert ids(df) == list(range(10, 20))  # the row at start is in, the row at end is out
    assert isinstance(df["ts"].dtype, pd.DatetimeTZDtype) and str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].is_monotonic_increasing
    assert df["x"].dtype == "float64" and df["id"].dtype == "int64"
    assert df["amount"].dtype == "float64", "numeric columns arrive as floats, not Decimal"
    assert df["amount"].tolist() == [i * 1.25 for i in range(10, 20)]
    assert list(df.columns) == ["id", "ts", "x", "amount", "cat"]
    # A bound between two rows: nothing on either side leaks in.
    assert ids(source.read(at(10) + timedelta(minutes=1), at(11) + timedelta(minutes=1))) == [11]
    assert source.describe() == "postgresql table events"


@pytest.mark.postgres
def test_open_bounds(events: Pg) -> None:
    source = SqlSource(time_column="ts", table="app.events", dsn=events.dsn())

    assert ids(source.read(None, at(3))) == [0, 1, 2]
    assert ids(source.read(at(45), None)) == [45, 46, 47]
    assert ids(source.read(None, None)) == list(range(N_ROWS))
    assert source.describe() == "postgresql table app.events"


@pytest.mark.postgres
def test_statement_binds_the_bounds_and_quotes_identifiers(events: Pg) -> None:
    import psycopg2

    source = SqlSource(time_column="ts", table="app.events", dsn=events.dsn())
    stmt, params = source.statement(at(1), None)
    with psycopg2.connect(events.dsn()) as conn:
        text = stmt.as_string(conn)
    conn.close()
    assert text == 'SELECT * FROM "app"."events" WHERE "ts" >= %(start)s ORDER BY "ts"'
    assert params == {"start": at(1)}


@pytest.mark.postgres
def test_small_chunks_give_the_same_frame_as_one_chunk(events: Pg) -> None:
    one = SqlSource(time_column="ts", table="events", dsn=events.dsn(), chunk_rows=100_000).read(at(3), at(40))
    many = SqlSource(time_column="ts", table="events", dsn=events.dsn(), chunk_rows=5).read(at(3), at(40))

    assert len(one) == 37
    pd.testing.assert_frame_equal(one, many)


@pytest.mark.postgres
def test_a_chunk_of_only_nulls_keeps_numeric_columns_numeric(pg: Pg) -> None:
    pg.execute(
        "CREATE TABLE t (ts timestamptz, v integer);"
        "INSERT INTO t SELECT %(t0)s::timestamptz + make_interval(hours => i), CASE WHEN i < 4 THEN i END FROM generate_series(0, 7) i",
        {"t0": T0},
    )
    df = SqlSource(time_column="ts", table="t", dsn=pg.dsn(), chunk_rows=4).read(None, None)
    assert df["v"].dtype == "float64" and df["v"].isna().sum() == 4


@pytest.mark.postgres
def test_a_numeric_column_with_no_value_in_the_window_stays_numeric(pg: Pg) -> None:
    """A sensor down for the whole window: the column came back as objects and check_frame
    refused a declared numerical feature, so the drift check failed exactly when it should
    report the feature missing (a file source reads such a column as float)."""
    pg.execute(
        "CREATE TABLE t (ts timestamptz, v integer, w double precision, n numeric(6, 2), s text);"
        "INSERT INTO t SELECT %(t0)s::timestamptz + make_interval(hours => i), NULL, NULL, NULL, NULL FROM generate_series(0, 3) i",
        {"t0": T0},
    )
    df = SqlSource(time_column="ts", table="t", dsn=pg.dsn()).read(None, None)
    assert {c: str(df[c].dtype) for c in ("v", "w", "n")} == {"v": "float64", "w": "float64", "n": "float64"}
    assert df["s"].dtype == object and df[["v", "w", "n"]].isna().all().all()


@pytest.mark.postgres
def test_naive_timestamp_column_counts_as_utc(pg: Pg) -> None:
    pg.execute(
        "SET TIME ZONE 'Europe/Berlin';"  # the reader's session, not the writer's, decides
        "CREATE TABLE t (ts timestamp, v integer);"
        "INSERT INTO t VALUES ('2025-01-01 00:00', 0), ('2025-01-01 01:00', 1), ('2025-01-01 02:00', 2)"
    )
    df = SqlSource(time_column="ts", table="t", dsn=pg.dsn()).read(at(1), at(2))
    assert df["v"].tolist() == [1]
    assert df["ts"].tolist() == [pd.Timestamp("2025-01-01 01:00", tz="UTC")]


@pytest.mark.postgres
def test_empty_window_has_the_columns_and_no_rows(events: Pg) -> None:
    df = SqlSource(time_column="ts", table="events", dsn=events.dsn()).read(at(100), at(200))
    assert df.empty and list(df.columns) == ["id", "ts", "x", "amount", "cat"]


@pytest.mark.postgres
def test_query_source_binds_start_and_end(events: Pg) -> None:
    query = "SELECT id, ts, x FROM events WHERE ts >= %(start)s AND ts < %(end)s AND cat LIKE 'ev%%'"
    source = SqlSource(time_column="ts", query=query, dsn=events.dsn(), chunk_rows=2)

    assert ids(source.read(at(10), at(20))) == [10, 12, 14, 16, 18]  # sorted although the query has no ORDER BY
    assert ids(source.read(None, at(4))) == [0, 2]  # open sides are bound as -infinity / infinity
    assert ids(source.read(at(44), None)) == [44, 46]
    assert source.describe().startswith("postgresql query 'SELECT id, ts, x FROM events")


@pytest.mark.postgres
def test_a_query_with_its_own_bounds_still_reads_the_window(events: Pg, caplog: pytest.LogCaptureFixture) -> None:
    """A query written with BETWEEN keeps the row at the window's end: consecutive windows
    both counted it (in the drift check and the training data). Rows outside [start, end)
    are dropped, with a warning that says how to bound the query."""
    query = "SELECT id, ts FROM events WHERE ts BETWEEN %(start)s AND %(end)s"
    source = SqlSource(time_column="ts", query=query, dsn=events.dsn())
    with caplog.at_level("WARNING", logger="retune.data"):
        first, second = source.read(at(0), at(3)), source.read(at(3), at(6))
    assert ids(first) == [0, 1, 2] and ids(second) == [3, 4, 5], "the row at 3 h belongs to the second window only"
    assert "returned 1 row(s) outside" in caplog.text and "< %(end)s" in caplog.text


@pytest.mark.postgres
def test_query_source_is_read_only(events: Pg) -> None:
    query = "WITH gone AS (DELETE FROM events RETURNING *) SELECT * FROM gone WHERE ts >= %(start)s AND ts < %(end)s"
    with pytest.raises(DataError, match="query failed"):
        SqlSource(time_column="ts", query=query, dsn=events.dsn()).read(None, None)
    assert len(SqlSource(time_column="ts", table="events", dsn=events.dsn()).read(None, None)) == N_ROWS


class _Alarm(Exception):
    """What the test's SIGALRM handler raises, as Airflow's execution_timeout raises AirflowTaskTimeout."""


def _raise_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def _retune_backends(pg: Pg) -> int:
    """Backends of Retune's reader on the test database (a fresh connection: pg_stat_activity
    is a snapshot per transaction)."""
    import psycopg2

    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'retune' AND datname = current_database()")
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


@pytest.mark.postgres
def test_a_read_behind_a_table_lock_stops_at_a_timeout_and_cancels_its_statement(events: Pg) -> None:
    """A warehouse job holds an exclusive lock on the table. Airflow's execution_timeout (a
    SIGALRM handler that raises) used to be handled only when the query returned, that is when
    the lock went: the read now stops at the alarm, and the server drops its statement."""
    import signal
    import threading
    import time

    import psycopg2
    from psycopg2 import extensions

    holder = psycopg2.connect(events.dsn())
    holder.cursor().execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(20, holder.rollback)  # bounds the old behaviour's wait: fail, not hang
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    try:
        release.start()
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(_Alarm):
            SqlSource(time_column="ts", table="events", dsn=events.dsn()).read(None, None)
        waited = time.monotonic() - started
        assert waited < 10, f"the alarm was handled after {waited:.1f} s, once the lock went"
        assert extensions.get_wait_callback() is None, "psycopg2's wait callback is put back"
        deadline = time.monotonic() + 10
        while (left := _retune_backends(events)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == 0, "the reader's statement still waits on the server"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        release.cancel()
        holder.rollback()
        holder.close()
    assert ids(SqlSource(time_column="ts", table="events", dsn=events.dsn()).read(None, None)) == list(range(N_ROWS))


@pytest.mark.postgres
def test_load_window_reads_a_sql_config(events: Pg, make_cfg: Callable[..., Any], tmp_path: Path) -> None:
    cfg = make_cfg(
        {
            "data": {
                "production!": {"sql": {"table": "events", "dsn": "${PG_TEST_DSN}", "chunk_rows": 7}},
                "min_rows": 5,
            },
            "target": "x",
            "features": {"numerical!": ["amount"], "categorical!": ["cat"]},
        },
        source_file=str(tmp_path / "demo.yaml"),
    )
    df, feats = load_window(cfg, Window("production", at(5), at(25)), variables={"PG_TEST_DSN": events.dsn()})
    assert ids(df) == list(range(5, 25))
    assert feats.numerical == ["amount"] and feats.categorical == ["cat"]


# --------------------------------------------------------------------------- connections and secrets


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_conn_id_resolves_from_the_airflow_environment_variable(events: Pg, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_TEST_DATA", events.uri(scheme, password=PASSWORD))
    assert conn_id_dsn("retune_test_data").startswith("postgresql://")

    source = SqlSource(time_column="ts", table="events", conn_id="retune_test_data")
    assert ids(source.read(at(0), at(2))) == [0, 1]
    assert source.describe() == "postgresql table events (conn_id retune_test_data)"


@pytest.mark.postgres
def test_conn_id_in_airflow_json_form(events: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    value = {"conn_type": "postgres", "host": events.host, "port": int(events.port), "login": events.user}
    value |= {"password": PASSWORD, "schema": events.dbname, "extra": {"sslmode": "disable", "cursor": "dictcursor"}}
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_TEST_JSON", json.dumps(value))
    assert ids(SqlSource(time_column="ts", table="events", conn_id="retune_test_json").read(at(0), at(1))) == [0]


def test_missing_conn_id_variable_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RETUNE_NOWHERE", raising=False)
    with pytest.raises(DataError, match=r"conn_id 'retune_nowhere'.*AIRFLOW_CONN_RETUNE_NOWHERE"):
        SqlSource(time_column="ts", table="events", conn_id="retune_nowhere").read(None, None)


@pytest.mark.postgres
def test_conn_id_from_a_connection_lookup_before_the_environment(events: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``connection_lookup`` (Airflow's ``Connection.get``, in the DAGs) the lookup wins
    over AIRFLOW_CONN_<ID>; an id it does not know (it raises ``missing``) still resolves from
    the environment."""
    from types import SimpleNamespace

    from retune.data import connection_lookup

    class NotFound(Exception):
        pass

    stored = SimpleNamespace(
        conn_type="postgres",
        host=events.host,
        port=int(events.port),
        login=events.user,
        password=PASSWORD,
        schema=events.dbname,
        extra='{"sslmode": "disable", "cursor": "dictcursor"}',
    )
    asked: list[str] = []

    def get(conn_id: str) -> SimpleNamespace:
        asked.append(conn_id)
        if conn_id != "retune_in_airflow":
            raise NotFound(conn_id)
        return stored

    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_IN_AIRFLOW", "postgres://nobody@127.0.0.1:1/nowhere")  # shadowed
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_ENV_ONLY", events.uri("postgres", password=PASSWORD))
    monkeypatch.delenv("AIRFLOW_CONN_RETUNE_NONE", raising=False)
    with connection_lookup(get, missing=NotFound):
        assert ids(SqlSource(time_column="ts", table="events", conn_id="retune_in_airflow").read(at(0), at(2))) == [0, 1]
        assert ids(SqlSource(time_column="ts", table="events", conn_id="retune_env_only").read(at(0), at(1))) == [0]
        with pytest.raises(DataError, match=r"conn_id 'retune_none'.*not an Airflow connection.*AIRFLOW_CONN_RETUNE_NONE"):
            conn_id_dsn("retune_none")
    assert asked == ["retune_in_airflow", "retune_env_only", "retune_none"]
    assert conn_id_dsn("retune_in_airflow") == "postgresql://nobody@127.0.0.1:1/nowhere", "outside the block: the environment"


def test_a_looked_up_connection_of_another_kind_is_refused() -> None:
    from retune.data import connection_lookup

    mysql = {"conn_type": "mysql", "host": "h", "login": "u", "password": PASSWORD, "schema": "db"}
    with (
        connection_lookup(lambda _: mysql),
        pytest.raises(DataError, match="Airflow connection 'shop' is not a PostgreSQL") as info,
    ):
        conn_id_dsn("shop")
    assert PASSWORD not in str(info.value)


def test_conn_id_of_another_database_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_MYSQL", f"mysql://u:{PASSWORD}@h/db")
    with pytest.raises(DataError, match="not a PostgreSQL connection") as info:
        conn_id_dsn("retune_mysql")
    assert PASSWORD not in str(info.value)


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["uri", "keywords"])
def test_errors_never_contain_the_password(events: Pg, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = events.uri(password=PASSWORD) if form == "uri" else events.dsn(password=PASSWORD)
    # A missing table: the server answers, the query fails.
    with pytest.raises(DataError) as info:
        SqlSource(time_column="ts", table="no_such_table", dsn=dsn).read(None, None)
    assert "no_such_table" in str(info.value) and PASSWORD not in str(info.value)
    # A database that does not exist: the connection fails.
    bad_db = dsn.replace(events.dbname, f"{events.dbname}_missing")
    with pytest.raises(DataError, match="cannot connect") as info:
        SqlSource(time_column="ts", table="events", dsn=bad_db).read(None, None)
    assert PASSWORD not in str(info.value)
    # A malformed DSN that libpq quotes back, password and all, in its error.
    with pytest.raises(DataError, match="cannot connect") as info:
        SqlSource(time_column="ts", table="events", dsn=f"postgresql://u:{PASSWORD}@[h/db").read(None, None)
    assert "IPv6" in str(info.value) and "u:***@" in str(info.value) and PASSWORD not in str(info.value)
    # The same through conn_id.
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_TEST_SECRET", bad_db.replace("postgresql://", "postgres://"))
    if form == "uri":
        with pytest.raises(DataError, match="cannot connect") as info:
            SqlSource(time_column="ts", table="events", conn_id="retune_test_secret").read(None, None)
        assert PASSWORD not in str(info.value) and "conn_id retune_test_secret" in str(info.value)


def test_a_password_libpq_cannot_parse_is_not_quoted_back() -> None:
    """An un-encoded % in a URI password: libpq refuses the DSN and quotes the token, password
    and all; the parsed password is unknown then, so it is masked as written."""
    with pytest.raises(DataError, match="cannot connect") as info:
        SqlSource(time_column="ts", table="events", dsn="postgresql://reviewer:pa%zzss@127.0.0.1/db").read(None, None)
    assert "pa%zzss" not in str(info.value) and "***" in str(info.value)


def test_sslpassword_is_masked_too() -> None:
    assert redact_dsn("host=h user=u sslpassword=keypass123 password=pw") == "host=h user=u sslpassword=*** password=***"
    assert (
        redact_dsn("postgresql://u@h/db?sslmode=require&sslpassword=kp2") == "postgresql://u@h/db?sslmode=require&sslpassword=***"
    )


def test_a_connection_uri_keeps_only_the_query_keys_libpq_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow reads a URI's query as the connection's extra, so the DAGs connected while
    `retune check --data` handed libpq `cursor=...` and failed ("invalid URI query parameter")."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_RETUNE_QUERY", "postgres://u:pw@h:5432/db?sslmode=disable&cursor=realdictcursor&connect_timeout=5"
    )
    assert conn_id_dsn("retune_query") == "postgresql://u:pw@h:5432/db?sslmode=disable&connect_timeout=5"
    monkeypatch.setenv("AIRFLOW_CONN_RETUNE_QUERY", "postgres://u:pw@h:5432/db?cursor=realdictcursor")
    assert conn_id_dsn("retune_query") == "postgresql://u:pw@h:5432/db"


@pytest.mark.postgres
def test_reading_logs_no_password(events: Pg, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="retune")
    SqlSource(time_column="ts", table="events", dsn=events.uri(password=PASSWORD)).read(at(0), at(3))
    assert "postgresql table events" in caplog.text
    assert PASSWORD not in caplog.text

"""Reading and checking data windows.

A :class:`DataSource` returns the rows whose time column falls in ``[start, end)``:
:class:`FileSource` from CSV or Parquet files, :class:`SqlSource` from a PostgreSQL table
or query (the bounds always bound parameters).
:func:`load_window` reads a window and refuses bad data with a :class:`~retune.errors.DataError`
that names the source and the column: a missing column, a wrong dtype, an empty window,
NaN or inf in the target, a constant (regression) or single-class target. Windows are
addressed by their bounds, so tasks pass the bounds and a content digest between them,
never the rows.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=3, tz="UTC"), "y": [1.0, 2.0, 3.0]})
    >>> len(frame_digest(df))
    64
"""

from __future__ import annotations

import abc
import glob
import hashlib
import json
import logging
import os
import string
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retune.config import SQL_IDENTIFIER, RetuneConfig, SourceConfig, check_drift_columns, dsn_secrets, redact_dsn, resolve_path
from retune.config import _expand as expand_variables
from retune.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class DataSource(abc.ABC):
    """Where a window of rows comes from."""

    @abc.abstractmethod
    def read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """Rows whose time column is in ``[start, end)`` (an open side when ``None``)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short text naming the source, for errors and lineage."""


class FileSource(DataSource):
    """CSV or Parquet files matched by a path or glob.

    Args:
        pattern: An absolute path or glob.
        time_column: The column that orders rows in time.
        fmt: ``"csv"``, ``"parquet"`` or ``"auto"`` (by file extension).
        read_options: Extra keyword arguments for the pandas reader.
    """

    def __init__(self, pattern: str, *, time_column: str, fmt: str = "auto", read_options: dict[str, Any] | None = None):
        self.pattern = pattern
        self.time_column = time_column
        self.fmt = fmt
        self.read_options = dict(read_options or {})

    def describe(self) -> str:
        return self.pattern

    def files(self) -> list[str]:
        """The matching files, sorted.

        Raises:
            DataError: If nothing matches.
        """
        files = sorted(glob.glob(self.pattern)) if glob.has_magic(self.pattern) else [self.pattern]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise DataError(f"{self.pattern}: no data file found")
        return files

    def _read_file(self, path: str) -> pd.DataFrame:
        import pandas as pd

        fmt = self.fmt
        if fmt == "auto":
            fmt = "parquet" if path.endswith((".parquet", ".pq")) else "csv"
        try:
            if fmt == "parquet":
                return _decimals_as_float(pd.read_parquet(path, **self.read_options))
            return pd.read_csv(path, **self.read_options)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None

    def read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        import pandas as pd

        frames = [self._read_file(f) for f in self.files()]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        df = parse_time_column(df, self.time_column, self.describe())
        return in_window(df, self.time_column, start, end).sort_values(self.time_column, kind="stable").reset_index(drop=True)


def in_window(df: pd.DataFrame, column: str, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """The rows whose ``column`` lies in ``[start, end)`` (an open side: no bound)."""
    import pandas as pd

    mask = pd.Series(True, index=df.index)
    if start is not None:
        mask &= df[column] >= pd.Timestamp(start)
    if end is not None:
        mask &= df[column] < pd.Timestamp(end)
    return df if bool(mask.all()) else df.loc[mask]


def parse_time_column(df: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """Parse the time column to UTC timestamps.

    Raises:
        DataError: If the column is missing or cannot be parsed.
    """
    import pandas as pd

    if column not in df.columns:
        raise DataError(f"{where}: missing time column {column!r} (columns: {list(df.columns)})")
    if not isinstance(df[column].dtype, pd.DatetimeTZDtype):
        try:
            parsed = pd.to_datetime(df[column], utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: time column {column!r} cannot be parsed as timestamps: {exc}") from None
        df = df.assign(**{column: parsed})
    else:
        df = df.assign(**{column: df[column].dt.tz_convert("UTC")})
    return df


def order_by_time(df: pd.DataFrame, column: str, *, ties: Literal["stable", "content"] = "stable") -> pd.DataFrame:
    """Rows in time order; rows with the same timestamp are kept, in the order they came
    (``"stable"``) or ordered by their content (``"content"``: the same rows give the same
    frame whatever order a source returned them in).

    Args:
        df: Rows with a parsed time column.
        column: The time column.
        ties: How rows with the same timestamp are ordered.

    Returns:
        The ordered rows with a fresh index.
    """
    import numpy as np

    if ties == "stable" or not df[column].duplicated().any():
        return df.sort_values(column, kind="stable").reset_index(drop=True)
    content = _row_hashes(df)
    times = df[column].to_numpy(dtype="datetime64[ns]").view("int64")
    times = np.where(df[column].isna().to_numpy(), np.iinfo(np.int64).max, times)  # NaT last, as sort_values
    return df.iloc[np.lexsort((content, times))].reset_index(drop=True)


_AIRFLOW_SCHEMES = {"postgres": "postgresql", "postgresql": "postgresql"}
_LIBPQ_EXTRAS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "options",
    "application_name",
    "target_session_attrs",
}


_CONNECTION_FIELDS = ("conn_type", "host", "port", "login", "password", "schema", "extra")
_CONNECTION_LOOKUP: ContextVar[tuple[Callable[[str], Any], tuple[type[BaseException], ...]] | None] = ContextVar(
    "retune_connection_lookup", default=None
)


@contextmanager
def connection_lookup(
    get: Callable[[str], Any], *, missing: type[BaseException] | tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Resolve ``conn_id`` with ``get`` inside the block, before the environment.

    The DAGs pass Airflow's own lookup, ``connection_lookup(Connection.get,
    missing=AirflowNotFoundException)``, so a connection stored in the metadata DB or a secrets
    backend works as well as ``AIRFLOW_CONN_<ID>``; the library itself never imports Airflow.

    Args:
        get: Returns the connection ``conn_id``: an object with Airflow's connection attributes
            (``conn_type``, ``host``, ``port``, ``login``, ``password``, ``schema``, ``extra``) or
            a dict of them; ``None`` when there is none.
        missing: What ``get`` raises for an unknown id (then the environment is read).

    Yields:
        Nothing; the lookup applies to this context (the task) until the block ends.
    """
    token = _CONNECTION_LOOKUP.set((get, missing if isinstance(missing, tuple) else (missing,)))
    try:
        yield
    finally:
        _CONNECTION_LOOKUP.reset(token)


def _looked_up(conn_id: str) -> dict[str, Any] | None:
    lookup = _CONNECTION_LOOKUP.get()
    if lookup is None:
        return None
    get, missing = lookup
    try:
        found = get(conn_id)
    except missing:
        return None
    if found is None or isinstance(found, dict):
        return found
    return {k: getattr(found, k, None) for k in _CONNECTION_FIELDS}


def conn_id_dsn(conn_id: str) -> str:
    """The DSN of an Airflow connection, without importing Airflow.

    Inside :func:`connection_lookup` (every Retune task in Airflow) the lookup is asked first:
    Airflow's connections from the metadata DB, secrets backends and the environment.
    Otherwise, and when it knows no such connection, Retune reads ``AIRFLOW_CONN_<CONN_ID>``
    (upper case) as Airflow does: a connection in URI form
    (``postgres://user:password@host:5432/db?sslmode=require``) or as JSON (``{"conn_type":
    "postgres", "host": ..., "login": ..., "password": ..., "schema": ..., "port": ...}``).
    Its ``postgres://`` scheme becomes ``postgresql://``.

    Args:
        conn_id: The connection id, for example ``"retune_data"``.

    Returns:
        A libpq DSN (URI or ``key=value`` form).

    Raises:
        DataError: If there is no such connection or it is not a PostgreSQL connection; the
            message names the conn_id and where it was found, never the password.
    """
    found = _looked_up(conn_id)
    if found is not None:
        return _fields_dsn(conn_id, f"Airflow connection {conn_id!r}", found)
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(var, "").strip()
    if not value:
        where = "not an Airflow connection and " if _CONNECTION_LOOKUP.get() is not None else ""
        raise DataError(
            f"conn_id {conn_id!r}: no connection found ({where}no environment variable {var}); add it in Airflow "
            f"(Admin > Connections, type postgres) or set {var} (Airflow's URI form, e.g. postgres://user:password@host:5432/dbname)"
        )
    if value.startswith("{"):
        return _json_conn_dsn(conn_id, var, value)
    scheme, sep, rest = value.partition("://")
    target = _AIRFLOW_SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        kind = scheme if sep else "not a URI"
        raise DataError(f"conn_id {conn_id!r}: {var} is not a PostgreSQL connection ({kind}); use postgres://...")
    return f"{target}://{_libpq_query(rest)}"


def _libpq_query(rest: str) -> str:
    """A connection URI's part after ``scheme://`` with only the query keys libpq takes
    (:data:`_LIBPQ_EXTRAS`), as Airflow's own lookup keeps them (it reads the query as the
    connection's extra): ``cursor=realdictcursor`` and such are Airflow's, libpq refuses them."""
    from urllib.parse import parse_qsl, urlencode

    base, sep, query = rest.partition("?")
    if not sep:
        return rest
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k in _LIBPQ_EXTRAS]
    return f"{base}?{urlencode(kept)}" if kept else base


def _json_conn_dsn(conn_id: str, var: str, value: str) -> str:
    try:
        conn = json.loads(value)
    except json.JSONDecodeError:
        raise DataError(f"conn_id {conn_id!r}: {var} is neither a URI nor valid JSON") from None
    return _fields_dsn(conn_id, var, conn)


def _fields_dsn(conn_id: str, var: str, conn: Any) -> str:
    """The DSN of a connection given by Airflow's fields (``conn_type``, ``host``, ``login``, ...)."""
    from psycopg2.extensions import make_dsn

    if not isinstance(conn, dict) or str(conn.get("conn_type", "postgres")).lower() not in _AIRFLOW_SCHEMES:
        raise DataError(f"conn_id {conn_id!r}: {var} is not a PostgreSQL connection")
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except json.JSONDecodeError:
            raise DataError(f"conn_id {conn_id!r}: the extra of {var} is not valid JSON") from None
    if not isinstance(extra, dict):
        extra = {}
    parts = {
        "host": conn.get("host"),
        "port": conn.get("port"),
        "user": conn.get("login"),
        "password": conn.get("password"),
        "dbname": conn.get("schema"),
        **{k: v for k, v in extra.items() if k in _LIBPQ_EXTRAS},
    }
    return str(make_dsn(**{k: str(v) for k, v in parts.items() if v not in (None, "")}))


def _dsn_password(dsn: str) -> str | None:
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    try:
        password = parse_dsn(dsn).get("password")
    except ProgrammingError:
        return None
    return password or None


def _decimals_as_float(df: pd.DataFrame) -> pd.DataFrame:
    """Parquet ``decimal`` columns (exports from Spark, dbt or a database) as float64, as the
    SQL source reads ``numeric``: pandas gives them as objects, which made them categories
    (or refused a declared numerical column)."""
    import pandas as pd

    decimal = [c for c in df.columns if df[c].dtype == object and pd.api.types.infer_dtype(df[c], skipna=True) == "decimal"]
    return df.astype(dict.fromkeys(decimal, "float64")) if decimal else df


class SqlSource(DataSource):
    """A PostgreSQL table or query, read with psycopg2 through a server-side cursor.

    The window bounds are always bound parameters, never text in the statement. A table is
    read with ``SELECT * FROM <table> WHERE <time> >= %(start)s AND <time> < %(end)s ORDER BY
    <time>`` (an open side drops its condition), built with :mod:`psycopg2.sql` identifiers.
    A query gets ``start`` and ``end`` as its ``%(start)s`` and ``%(end)s`` parameters; an
    open side is bound as ``'-infinity'`` or ``'infinity'``; rows it returns outside
    ``[start, end)`` (``BETWEEN`` keeps the end) are dropped, with a warning. The session runs read-only in
    UTC, so a ``timestamp`` column without a zone counts as UTC (as in files); ``numeric``
    columns arrive as floats.

    Args:
        time_column: The column that orders rows in time.
        table: ``table`` or ``schema.table``.
        query: A query with ``%(start)s`` and ``%(end)s`` placeholders (instead of ``table``).
        dsn: A libpq DSN or URI.
        conn_id: An Airflow connection id read from ``AIRFLOW_CONN_<CONN_ID>`` (instead of ``dsn``).
        chunk_rows: Rows per ``fetchmany``.

    Raises:
        ConfigError: If the arguments do not describe exactly one statement and one
            connection, or a name is not a plain identifier.
    """

    def __init__(
        self,
        *,
        time_column: str,
        table: str | None = None,
        query: str | None = None,
        dsn: str | None = None,
        conn_id: str | None = None,
        chunk_rows: int = 50_000,
    ):
        if (table is None) == (query is None):
            raise ConfigError("sql: give exactly one of table or query")
        if (dsn is None) == (conn_id is None):
            raise ConfigError("sql: give exactly one of dsn or conn_id")
        if table is not None and not SQL_IDENTIFIER.match(table):
            raise ConfigError(f"sql.table: {table!r} is not a valid table name (table or schema.table)")
        if not SQL_IDENTIFIER.match(time_column) or "." in time_column:
            raise ConfigError(f"data.time_column: {time_column!r} is not a valid SQL column name for a sql source")
        if query is not None and not ("%(start)s" in query and "%(end)s" in query):
            raise ConfigError("sql.query: the query must contain the placeholders %(start)s and %(end)s")
        if chunk_rows < 1:
            raise ConfigError(f"sql.chunk_rows: must be at least 1, got {chunk_rows}")
        self.time_column = time_column
        self.table = table
        self.query = query
        self.conn_id = conn_id
        self.chunk_rows = chunk_rows
        self._dsn = dsn

    def describe(self) -> str:
        what = f"table {self.table}" if self.table else f"query {' '.join((self.query or '').split())[:80]!r}"
        via = f" (conn_id {self.conn_id})" if self.conn_id else ""
        return f"postgresql {what}{via}"

    def dsn(self) -> str:
        """The connection string: the given DSN or the one of ``conn_id``.

        Raises:
            DataError: If the ``conn_id`` variable is missing or not a PostgreSQL connection.
        """
        if self.conn_id is not None:
            return conn_id_dsn(self.conn_id)
        assert self._dsn is not None
        return self._dsn

    def statement(self, start: datetime | None, end: datetime | None) -> tuple[Any, dict[str, Any]]:
        """The statement and its parameters for the window ``[start, end)``.

        Returns:
            A :class:`psycopg2.sql.Composed` (table) or the query text, and the parameters.
        """
        from psycopg2 import sql

        if self.query is not None:
            return self.query, {
                "start": start if start is not None else "-infinity",
                "end": end if end is not None else "infinity",
            }
        assert self.table is not None
        column = sql.Identifier(self.time_column)
        conditions: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if start is not None:
            conditions.append(sql.SQL("{} >= %(start)s").format(column))
            params["start"] = start
        if end is not None:
            conditions.append(sql.SQL("{} < %(end)s").format(column))
            params["end"] = end
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        stmt = sql.SQL("SELECT * FROM {table}{where} ORDER BY {column}").format(
            table=sql.Identifier(*self.table.split(".")), where=where, column=column
        )
        return stmt, params

    def _fail(self, what: str, exc: Exception, dsn: str) -> DataError:
        text = " ".join(str(exc).split())
        # the parsed password, and as written: a DSN libpq cannot parse is quoted by its token
        for secret in sorted({_dsn_password(dsn) or "", *dsn_secrets(dsn)} - {""}, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = redact_dsn(text.replace(dsn, redact_dsn(dsn)))
        return DataError(f"{self.describe()}: {what}: {text}")

    def read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The rows of ``[start, end)``, ordered by time.

        A signal handler's exception (Airflow's ``execution_timeout``) stops the read even
        while PostgreSQL waits, say on a table lock: see :func:`interruptible`.
        """
        dsn = self.dsn()
        stmt, params = self.statement(start, end)
        log.info("reading %s for [%s, %s) in chunks of %d rows", self.describe(), start, end, self.chunk_rows)
        with interruptible():
            return self._read(dsn, stmt, params, start, end)

    def _read(self, dsn: str, stmt: Any, params: dict[str, Any], start: datetime | None, end: datetime | None) -> pd.DataFrame:
        import pandas as pd
        import psycopg2
        from psycopg2 import extensions

        try:
            conn = psycopg2.connect(
                dsn, application_name="retune", **({} if "connect_timeout" in dsn else {"connect_timeout": 15})
            )
        except psycopg2.Error as exc:
            raise self._fail("cannot connect", exc, dsn) from None
        frames: list[pd.DataFrame] = []
        try:
            as_float = extensions.new_type(extensions.DECIMAL.values, "RETUNE_NUMERIC_AS_FLOAT", _numeric_as_float)
            extensions.register_type(as_float, conn)
            conn.set_session(readonly=True)
            with conn.cursor() as setup:
                setup.execute("SET TIME ZONE 'UTC'")
            with conn.cursor(name=f"retune_{uuid.uuid4().hex}") as cur:
                cur.execute(stmt, params)
                columns: list[str] | None = None
                numeric: set[str] = set()
                while True:
                    rows = cur.fetchmany(self.chunk_rows)
                    if columns is None:
                        columns = [c.name for c in cur.description or []]
                        numeric = {c.name for c in cur.description or [] if c.type_code in _NUMERIC_OIDS}
                    if not rows:
                        break
                    frames.append(pd.DataFrame.from_records(rows, columns=columns, coerce_float=True))
        except psycopg2.Error as exc:
            raise self._fail("query failed", exc, dsn) from None
        finally:
            conn.close()
        if frames:
            df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            df = df.infer_objects()  # a chunk of only NULLs leaves an object column behind
        else:
            df = pd.DataFrame({c: pd.Series(dtype=object) for c in columns or []})
        # a numeric column with no value in the window (a sensor down all day) is still numeric:
        # from the column's type, as a file source's empty column reads as float
        df = df.astype({c: "float64" for c in numeric if c in df.columns and df[c].dtype == object and df[c].isna().all()})
        df = parse_time_column(df, self.time_column, self.describe())
        if self.query is not None:  # a query's own bounds may differ (BETWEEN keeps the end): [start, end) here
            kept = in_window(df, self.time_column, start, end)
            if len(kept) < len(df):
                log.warning(
                    "%s returned %d row(s) outside [%s, %s): dropped (bound it with >= %%(start)s AND < %%(end)s)",
                    self.describe(),
                    len(df) - len(kept),
                    start,
                    end,
                )
            df = kept
        # PostgreSQL's ORDER BY leaves rows with the same timestamp in any order (a parallel
        # scan, a vacuum): order those by content, or a re-read would change the digest.
        return order_by_time(df, self.time_column, ties="content")


@contextmanager
def interruptible() -> Iterator[None]:
    """Let an exception from a signal handler stop a psycopg2 call that waits on the server.

    psycopg2 otherwise waits inside libpq, where Python runs no signal handler until the
    call returns: Airflow's ``execution_timeout`` (a ``SIGALRM`` handler that raises) could
    not stop a read queued behind a table lock (measured: a 2 s alarm was handled only once
    the lock went, after 8 s). Inside this block psycopg2 waits in Python
    (:func:`psycopg2.extensions.set_wait_callback` with :func:`_wait_select`), and an
    exception raised while waiting asks the server to cancel the statement before it
    propagates. The callback is global to the process, as psycopg2 has it, and is put back
    on leaving: use it around one reader's own connection, not beside other threads' queries.
    """
    from psycopg2 import extensions

    previous = extensions.get_wait_callback()
    extensions.set_wait_callback(_wait_select)
    try:
        yield
    finally:
        extensions.set_wait_callback(previous)


def _wait_select(conn: Any) -> None:
    """psycopg2's ``extras.wait_select``, which cancels only on ``KeyboardInterrupt``, for
    any exception: the server stops the statement, and psycopg2 then closes the connection."""
    import select

    from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE

    while True:
        try:
            state = conn.poll()
            if state == POLL_OK:
                return
            if state == POLL_READ:
                select.select([conn.fileno()], [], [])
            elif state == POLL_WRITE:
                select.select([], [conn.fileno()], [])
            else:
                raise conn.OperationalError(f"bad state from poll: {state}")
        except BaseException:
            with suppress(Exception):
                conn.cancel()
            raise


_NUMERIC_OIDS = frozenset({20, 21, 23, 700, 701, 1700})
"""PostgreSQL type OIDs of int8, int2, int4, float4, float8 and numeric."""


def _numeric_as_float(value: str | None, cursor: Any) -> float | None:
    return None if value is None else float(value)


def make_source(
    spec: SourceConfig, cfg: RetuneConfig, variables: dict[str, str] | None = None, *, field: str = "data.production"
) -> DataSource:
    """Build the data source a config section describes: files (``path``) or SQL (``sql``).

    Args:
        spec: The ``data.production`` or ``data.reference`` section.
        cfg: The whole config (for the time column and the config's folder).
        variables: Extra variables for ``${...}`` in paths and DSNs.
        field: The section's name in errors.

    Returns:
        A data source.

    Raises:
        ConfigError: If the section has neither ``path`` nor ``sql``, the time column is not
            a plain SQL name for a SQL source, or a DSN uses a variable that is not set.
    """
    where = cfg.source_file or "<config>"
    if spec.sql is not None:
        sql_spec = spec.sql
        dsn = None
        if sql_spec.dsn is not None:
            known = {**os.environ, **(variables or {})}
            unset = [v for v in string.Template(sql_spec.dsn).get_identifiers() if v not in known]
            if unset:
                raise ConfigError(f"{where}: {field}.sql.dsn: variable {', '.join(unset)} is not set (write a literal $ as $$)")
            dsn = expand_variables(sql_spec.dsn, variables or {}).strip()
            if not dsn:
                raise ConfigError(f"{where}: {field}.sql.dsn: the DSN is empty after expanding variables")
        try:
            return SqlSource(
                time_column=cfg.data.time_column,
                table=sql_spec.table,
                query=sql_spec.query,
                dsn=dsn,
                conn_id=sql_spec.conn_id,
                chunk_rows=sql_spec.chunk_rows,
            )
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(f"{where}: {message if message.startswith('data.') else f'{field}.{message}'}") from None
    if spec.path is None:
        raise ConfigError(f"{where}: {field}: give path or sql")
    base = Path(cfg.source_file).parent if cfg.source_file else Path.cwd()
    return FileSource(
        resolve_path(spec.path, base=base, variables=variables),
        time_column=cfg.data.time_column,
        fmt=spec.format,
        read_options=spec.read_options,
    )


@dataclass(frozen=True)
class FeatureSet:
    """The feature columns with their declared types."""

    numerical: list[str]
    categorical: list[str]

    @property
    def columns(self) -> list[str]:
        """All feature columns, numerical first."""
        return [*self.numerical, *self.categorical]


_TIME_KINDS = frozenset({"datetime64", "datetime", "date", "timedelta64", "timedelta", "time", "period"})
"""What :func:`pandas.api.types.infer_dtype` says of dates, times and durations (also of
``datetime.date`` objects in an object column, as a SQL ``date`` column arrives)."""

_ISO_TEXT = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
"""An ISO date or datetime written as text (``2025-03-01``, ``2025-03-01T12:00:00+00:00``):
how a CSV file holds a date column other than the time column, which it reads as text."""


def _timelike(values: pd.Series) -> bool:
    """Whether a column holds dates, times or durations, as values or as ISO text.

    Text is judged on its first 1,000 values that are not missing: all of them must be ISO
    dates or datetimes (a store code or a year alone is not).
    """
    import pandas as pd

    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in _TIME_KINDS:
        return True
    if kind != "string":
        return False
    sample = values.dropna().head(1000).astype(str)
    return bool(len(sample)) and bool(sample.str.fullmatch(_ISO_TEXT).all())


def resolve_features(cfg: RetuneConfig, df: pd.DataFrame, *, where: str | None = None) -> FeatureSet:
    """The feature columns of a config; with only ``exclude`` given, typed by pandas dtype.

    Args:
        cfg: The model config.
        df: A window, used only when the config does not list numerical features.
        where: Names the window in errors (default: the config file).

    Returns:
        The feature set.

    Raises:
        DataError: If inferred features would include a date, time or duration column other
            than the time column (also one a CSV file holds as ISO text, e.g. ``2025-03-01``):
            each timestamp would be a category never seen in the
            reference (every window drifted, the model learned nothing from it). The message
            names the columns and asks for them in ``features.exclude``.
        ConfigError: If the ``drift`` section does not fit the inferred features (a method
            that cannot test a column's type, settings for a column that is no feature): the
            check loading does for declared features, naming the field and the column.
    """
    import pandas as pd

    feats = cfg.features
    if feats.numerical is not None:
        return FeatureSet(list(feats.numerical), list(feats.categorical))
    skip = {cfg.target, cfg.data.time_column, *feats.exclude, *feats.categorical}
    numerical = [
        c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    categorical = list(feats.categorical) + [c for c in df.columns if c not in skip and c not in numerical]
    timelike = [c for c in categorical if c not in feats.categorical and _timelike(df[c])]
    if timelike:
        raise DataError(
            f"{where or cfg.source_file or '<config>'}: column(s) {timelike} hold dates or times, which cannot be features "
            "(features.numerical is unset, so every column but features.exclude is one); "
            "add them to features.exclude, or declare features.numerical and features.categorical"
        )
    try:
        check_drift_columns(cfg.drift, numerical=numerical, categorical=categorical)
    except ValueError as exc:
        raise ConfigError(
            f"{cfg.source_file or '<config>'}: {exc} (features inferred from {where or 'the data'}: "
            f"numerical {numerical}, categorical {categorical})"
        ) from None
    return FeatureSet(numerical, categorical)


def check_frame(
    df: pd.DataFrame, cfg: RetuneConfig, features: FeatureSet, *, where: str, need_target: bool = True
) -> pd.DataFrame:
    """Check a window against the config and return it cleaned.

    Checks: rows present (at least ``data.min_rows``), every feature and the target present,
    numerical features numeric, target without NaN or inf, two classes or more
    (classification) or not constant (regression). Inf in a numerical feature is treated as
    missing (NaN), which every model family handles; numerical features become float64
    (pd.NA of a nullable dtype becomes NaN); categorical features become text labels
    (:func:`category_labels`).

    Args:
        df: The window.
        cfg: The model config.
        features: The feature set.
        where: Names the window in errors, e.g. ``"production window [a, b) of path"``.
        need_target: Whether the target column is required.

    Returns:
        The window with numerical features as float64 (inf as NaN) and categorical features
        as text labels.

    Raises:
        DataError: Naming the window and the column.
    """
    import numpy as np
    import pandas as pd

    if df.empty:
        raise DataError(f"{where}: the window is empty (0 rows)")
    if len(df) < cfg.data.min_rows:
        raise DataError(f"{where}: only {len(df)} rows, data.min_rows is {cfg.data.min_rows}")
    needed = features.columns + ([cfg.target] if need_target else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} (columns: {list(df.columns)})")
    for col in features.numerical:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise DataError(f"{where}: column {col!r} is declared numerical but has dtype {df[col].dtype}")
    out = df.copy()
    for col in features.numerical:
        # float64 always: inf is missing (NaN); pd.NA of nullable dtypes (Parquet) is NaN, which every
        # model takes; and the logged model's signature says double, so a later gap is no schema error
        values = out[col].to_numpy(dtype=float, na_value=np.nan)
        out[col] = np.where(np.isinf(values), np.nan, values)
    for col in features.categorical:
        out[col] = category_labels(out[col])
    if need_target:
        y = out[cfg.target]
        n_nan = int(y.isna().sum())
        if n_nan:
            raise DataError(f"{where}: target column {cfg.target!r} has {n_nan} NaN value(s)")
        if cfg.task == "regression":
            if not pd.api.types.is_numeric_dtype(y):
                raise DataError(f"{where}: target column {cfg.target!r} must be numeric for regression, has dtype {y.dtype}")
            if np.isinf(y.to_numpy(dtype=float)).any():
                raise DataError(f"{where}: target column {cfg.target!r} has inf values")
            if y.nunique() < 2:
                raise DataError(
                    f"{where}: target column {cfg.target!r} is constant ({y.iloc[0]!r}); a regression model needs it to vary"
                )
        elif y.nunique() < 2:
            raise DataError(f"{where}: target column {cfg.target!r} has a single class ({y.iloc[0]!r}); a classifier needs two")
    return out


def category_labels(values: pd.Series) -> pd.Series:
    """A categorical column as text labels, missing values as ``None``.

    Integer codes read as floats (a column with a missing value: ``3.0``) get the labels
    of the integers (``"3"``), so a category does not depend on whether a window has gaps.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        known = numbers[~np.isnan(numbers)]
        if np.all(np.isfinite(known)) and np.all(known == np.round(known)) and np.all(np.abs(known) < 2**53):
            values = values.astype("Int64")
    return values.astype("string").astype(object).where(values.notna(), None)


def frame_digest(df: pd.DataFrame) -> str:
    """A SHA-256 over the full content of a frame: column names, dtypes and every value.

    Args:
        df: The frame.

    Returns:
        A 64-character hex digest.
    """

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(_row_hashes(df).tobytes())
    return h.hexdigest()


def _row_hashes(df: pd.DataFrame) -> Any:
    """One 64-bit hash per row (pandas'); cells pandas cannot hash (lists and dicts from JSON
    or array columns of a SQL source) by their text."""
    import pandas as pd

    try:
        return pd.util.hash_pandas_object(df, index=False).to_numpy()
    except TypeError:
        return pd.util.hash_pandas_object(df.astype(str), index=False).to_numpy()


@dataclass(frozen=True)
class Window:
    """A time window ``[start, end)`` of one source."""

    kind: Literal["reference", "production"]
    start: datetime | None
    end: datetime | None

    def label(self) -> str:
        """``"production [2024-05-01, 2024-05-08)"``."""
        s = self.start.isoformat() if self.start else "-inf"
        e = self.end.isoformat() if self.end else "+inf"
        return f"{self.kind} [{s}, {e})"

    def to_json(self) -> dict[str, Any]:
        """A small JSON value for XCom."""
        return {
            "kind": self.kind,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Window:
        """The inverse of :meth:`to_json`."""
        from retune.config import parse_timestamp

        return cls(
            kind=value["kind"],
            start=parse_timestamp(value["start"]) if value.get("start") else None,
            end=parse_timestamp(value["end"]) if value.get("end") else None,
        )


def load_window(
    cfg: RetuneConfig,
    window: Window,
    *,
    variables: dict[str, str] | None = None,
    features: FeatureSet | None = None,
    need_target: bool = True,
) -> tuple[pd.DataFrame, FeatureSet]:
    """Read a window of the reference or production source and check it.

    Args:
        cfg: The model config.
        window: Which source and bounds.
        variables: Extra variables for ``${...}`` in paths.
        features: The feature set to check against (default: resolved from the window).
        need_target: Whether the target must be present.

    Returns:
        The checked rows, ordered by time, and the feature set.

    Raises:
        DataError: If the data is unusable; the message names the source and column.
    """
    spec: SourceConfig
    ref = cfg.data.reference
    if window.kind == "reference" and (ref.path is not None or ref.sql is not None):
        spec, field = ref, "data.reference"
    else:
        spec, field = cfg.data.production, "data.production"
    source = make_source(spec, cfg, variables, field=field)
    df = source.read(window.start, window.end)
    where = f"{window.label()} of {source.describe()}"
    feats = features or resolve_features(cfg, df, where=where)
    return check_frame(df, cfg, feats, where=where, need_target=need_target), feats


@dataclass(frozen=True)
class RetuneSplit:
    """A time-ordered split of a retune's data: tuning (train + validation) and holdout."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def tuning(self) -> pd.DataFrame:
        """Train and validation together: what the winner is refit on."""
        import pandas as pd

        return pd.concat([self.train, self.valid], ignore_index=True)


def split_for_retune(df: pd.DataFrame, cfg: RetuneConfig, features: FeatureSet | None = None) -> RetuneSplit:
    """Split a time-ordered window: the newest ``holdout_fraction`` is the staging holdout,
    the newest ``validation_fraction`` of the rest scores trials, the oldest part trains. A
    cut between rows of the same time moves back to that time's first row, so each time's
    rows are in one part.

    Args:
        df: The window, in time order.
        cfg: The model config.
        features: The window's feature set, as :func:`load_window` returned it (default:
            resolved again from ``df``, which repeats its checks).

    Raises:
        DataError: If a part would have fewer than 10 rows, the train part has no value in a
            numerical feature, or (classification) a part has only one class (the validation
            and holdout parts could not score or compare the models).
    """
    n = len(df)
    n_rest = n - int(round(n * cfg.data.holdout_fraction))
    n_train = n_rest - int(round(n_rest * cfg.data.validation_fraction))
    if cfg.data.time_column in df.columns:  # rows of one time stay on one side of each cut
        times = df[cfg.data.time_column].to_numpy()
        n_rest, n_train = _time_boundary(times, n_rest), _time_boundary(times, n_train)
    n_hold, n_valid = n - n_rest, n_rest - n_train
    if min(n_hold, n_valid, n_train) < 10:
        raise DataError(
            f"retune window has {n} rows: too few to split into train ({n_train}), "
            f"validation ({n_valid}) and holdout ({n_hold}); widen data.train_window"
        )
    train = df.iloc[:n_train]
    part = f"retune window: the train part (the oldest {n_train} of {n} rows"
    if cfg.data.time_column in df.columns:
        part += f", up to {train[cfg.data.time_column].iloc[-1]}"
    part += ")"
    numerical = (features or resolve_features(cfg, df)).numerical
    empty = [c for c in numerical if c in train.columns and train[c].isna().all()]
    if empty:
        raise DataError(f"{part} has no value in numerical feature(s) {empty}: a model cannot learn from them")
    if cfg.task == "classification" and cfg.target in train.columns and train[cfg.target].nunique() < 2:
        raise DataError(f"{part} has a single class in target column {cfg.target!r}; a classifier needs two")
    if cfg.task == "classification" and cfg.target in df.columns:
        _check_scored_classes(df, cfg, n_train, n_rest)
    return RetuneSplit(
        train=df.iloc[:n_train].reset_index(drop=True),
        valid=df.iloc[n_train:n_rest].reset_index(drop=True),
        holdout=df.iloc[n_rest:].reset_index(drop=True),
    )


def _time_boundary(times: Any, cut: int) -> int:
    """``cut`` moved back to the first row of its time: with many rows per timestamp (a daily
    or hourly batch), a cut by count put one day's rows in both the tuning data and the
    holdout the gates score on. ``times`` is sorted."""
    import numpy as np

    if 0 < cut < len(times) and times[cut] == times[cut - 1]:
        return int(np.searchsorted(times, times[cut], side="left"))
    return cut


def _check_scored_classes(df: pd.DataFrame, cfg: RetuneConfig, n_train: int, n_rest: int) -> None:
    """Refuse a validation or holdout part with a single class, naming the part and the
    window's classes it lacks: the trials' metric and the challenger's comparison with the
    champion would be undefined (``roc_auc`` NaN) or meaningless. A part that lacks some
    classes but has two or more is scored on the classes it has (logged).

    Raises:
        DataError: If the validation or holdout part has a single class.
    """
    n = len(df)
    classes = df[cfg.target].dropna().unique().tolist()
    parts = (
        ("validation", df.iloc[n_train:n_rest], f"rows {n_train + 1} to {n_rest} of {n}"),
        ("holdout", df.iloc[n_rest:], f"the newest {n - n_rest} of {n} rows"),
    )
    for name, rows, which in parts:
        present = set(rows[cfg.target].dropna().unique().tolist())
        missing = sorted((c for c in classes if c not in present), key=str)
        if not missing:
            continue
        where = f"retune window: the {name} part ({which}"
        if cfg.data.time_column in rows.columns:
            where += f", from {rows[cfg.data.time_column].iloc[0]}"
        where += ")"
        if len(present) < 2:
            raise DataError(
                f"{where} has a single class ({next(iter(present))!r}) in target column {cfg.target!r}, "
                f"without the window's classes {missing}: the models cannot be scored or compared on it; "
                "widen data.train_window or raise data.holdout_fraction / data.validation_fraction"
            )
        log.warning("%s has no rows of class(es) %s in target column %r: scored on the others", where, missing, cfg.target)

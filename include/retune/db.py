"""Retune's own small tables (trigger decisions, meta-learning records): one way to open them.

Example:
    >>> engine = make_engine("sqlite://")
    >>> engine.dialect.name
    'sqlite'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa


CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL connection attempt may take (libpq ``connect_timeout``)."""

LOCK_TIMEOUT_S = 30
"""Seconds a PostgreSQL statement may wait for a lock (``lock_timeout``), as SQLite's busy timeout."""


def make_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for ``url``; on SQLite in WAL mode with a 30 s busy timeout, so that
    concurrent writers (parallel tasks, a burst of alerts) wait instead of failing.

    Args:
        url: A SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg2://...``).

    On PostgreSQL a connection attempt gives up after :data:`CONNECT_TIMEOUT_S` unless the URL
    sets its own ``connect_timeout``: without it libpq waits for the OS's TCP timeout (minutes)
    on a server that drops packets, and ``retune status`` or an alert hung with it. A statement
    waiting for a lock gives up after :data:`LOCK_TIMEOUT_S` (``OperationalError``, its
    transaction rolled back) unless the URL's ``options`` set a ``lock_timeout``: psycopg2 waits
    inside libpq, where neither Airflow's ``execution_timeout`` nor Ctrl-C reaches it, so a
    statement queued behind another session's lock on these tables (a migration, a
    ``VACUUM FULL``, a transaction left open) hung the task, the alert receiver or the
    scheduler's listener for as long as that lock was held.

    Returns:
        The engine (connections are checked before use).
    """
    import sqlalchemy as sa

    connect_args: dict[str, Any] = {}
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        raw = parsed.query.get("options", "")  # connect_args replace the URL's: keep them
        options = " ".join(raw) if isinstance(raw, tuple) else raw
        if "lock_timeout" not in options:
            connect_args["options"] = f"{options} -c lock_timeout={LOCK_TIMEOUT_S * 1000}".strip()
    engine = sa.create_engine(url, pool_pre_ping=True, future=True, connect_args=connect_args)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (SQLAlchemy's spelling, also MLflow's), else ``None``.

    Example:
        >>> sqlite_file("sqlite:////srv/state/mlflow.db"), sqlite_file("sqlite://"), sqlite_file("http://h:5000")
        (PosixPath('/srv/state/mlflow.db'), None, None)
    """
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None

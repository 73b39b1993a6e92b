"""Retune's own small tables (trigger decisions, meta-learning records): one way to open them.

Example:
    >>> engine = make_engine("sqlite://")
    >>> engine.dialect.name
    'sqlite'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa


def make_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for ``url``; on SQLite in WAL mode with a 30 s busy timeout, so that
    concurrent writers (parallel tasks, a burst of alerts) wait instead of failing.

    Args:
        url: A SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg2://...``).

    Returns:
        The engine (connections are checked before use).
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url, pool_pre_ping=True, future=True)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine

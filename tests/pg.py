"""A throwaway PostgreSQL database per test, on the machine's server (127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN_DSN = os.environ.get("RETUNE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _connect(dsn: str):  # noqa: ANN202
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    return conn


@contextmanager
def temp_database(prefix: str = "retune_test") -> Iterator[str]:
    """Create a database, yield its SQLAlchemy URL, drop it afterwards.

    Skips (or fails when ``CI=true``) if PostgreSQL cannot be reached.
    """
    import psycopg2

    try:
        admin = _connect(PG_ADMIN_DSN)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and unreachable at {PG_ADMIN_DSN}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def age_trial(url: str, trial_id: int, *, start: bool = False, heartbeat: bool = False) -> None:
    """Move an Optuna trial's start and/or last heartbeat an hour into the past.

    Args:
        url: SQLAlchemy URL of the Optuna storage.
        trial_id: The trial.
        start: Age ``datetime_start``.
        heartbeat: Age its heartbeat.
    """
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        if start:
            conn.execute(
                sqlalchemy.text("UPDATE trials SET datetime_start = datetime_start - interval '1 hour' WHERE trial_id = :t"),
                {"t": trial_id},
            )
        if heartbeat:
            conn.execute(
                sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour' WHERE trial_id = :t"),
                {"t": trial_id},
            )
    engine.dispose()

"""retune.db: how Retune opens its own tables' database."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from retune import db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose server completes TCP handshakes (the kernel's backlog) and never answers:
    what a PostgreSQL behind a stuck proxy or a dropped route looks like to libpq."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def _connect_in_thread(url: str, wait_s: float) -> BaseException | None | str:
    """Connect through make_engine in a thread; what it raised, None, or 'hung'."""
    outcome: list[BaseException | None] = []

    def go() -> None:
        try:
            with db.make_engine(url).connect():
                outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (the test inspects it)
            outcome.append(exc)

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(wait_s)
    return outcome[0] if outcome else "hung"


def test_a_postgresql_server_that_never_answers_fails_the_connection(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a connect_timeout libpq waited on such a server until the OS gave up (minutes):
    `retune status` and the alert receiver hung with it."""
    import sqlalchemy as sa

    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 2, raising=False)
    got = _connect_in_thread(f"postgresql+psycopg2://u@127.0.0.1:{silent_server}/x", wait_s=30)
    assert isinstance(got, sa.exc.OperationalError), got
    assert "timeout" in str(got).lower(), got


def test_the_urls_own_connect_timeout_wins(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 3600)  # would hang the test if it were used
    got = _connect_in_thread(f"postgresql+psycopg2://u@127.0.0.1:{silent_server}/x?connect_timeout=2", wait_s=30)
    assert isinstance(got, sa.exc.OperationalError), got


@pytest.mark.postgres
def test_a_live_postgresql_connects_with_the_timeout_set() -> None:
    from pg import temp_database  # type: ignore[import-not-found]

    with temp_database("retune_db_timeout") as url:
        engine = db.make_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("show server_version").scalar()
            dsn = conn.connection.dbapi_connection.get_dsn_parameters()  # type: ignore[union-attr]
        engine.dispose()
    assert dsn["connect_timeout"] == str(db.CONNECT_TIMEOUT_S)


@pytest.mark.postgres
def test_a_statement_behind_a_held_lock_fails_after_the_lock_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session holds an exclusive lock on the policy's decisions table (a migration,
    a VACUUM FULL): a decision fails after the lock timeout, leaves no lock row and no
    decision behind, and the same request triggers once the table is free. Without the
    timeout it waited as long as the lock was held (here: until the test's safety timer
    gave the lock back, 20 s, and then decided)."""
    import time

    import psycopg2
    import sqlalchemy as sa
    from pg import temp_database  # type: ignore[import-not-found]

    from retune import policy

    monkeypatch.setattr(db, "LOCK_TIMEOUT_S", 1)
    with temp_database("retune_db_lock") as url:
        engine_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        monkeypatch.setenv("RETUNE_POLICY_DB", engine_url)
        monkeypatch.setenv("RETUNE_CONFIG_DIR", str(ROOT / "include" / "configs"))
        monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path))
        policy._make_tables.cache_clear()
        try:
            warm = policy.decide("demo", source="alert", key="warm-up", force=True)  # creates the tables
            assert warm.triggered and warm.token is not None
            policy.release("demo", warm.token, outcome="test")
            holder = psycopg2.connect(url)
            holder.cursor().execute("LOCK TABLE retune_decisions IN ACCESS EXCLUSIVE MODE")
            release = threading.Timer(20, holder.rollback)  # bounds the old behaviour's wait: fail, not hang
            release.start()
            try:
                start = time.monotonic()
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    policy.decide("demo", source="alert", key="alert:locked", force=True)
                waited = time.monotonic() - start
            finally:
                release.cancel()
                holder.rollback()
                holder.close()
            assert waited < 10, f"waited {waited:.1f} s for a 1 s lock timeout"
            assert policy.current_lock("demo") is None, "no lock left by the failed decision"
            assert [d["idempotency_key"] for d in policy.history("demo")] == ["warm-up"]
            assert policy.decide("demo", source="alert", key="alert:locked", force=True).triggered, "the resend triggers"
        finally:
            policy._make_tables.cache_clear()


@pytest.mark.postgres
def test_the_urls_own_options_are_kept_and_its_own_lock_timeout_wins() -> None:
    from pg import temp_database  # type: ignore[import-not-found]

    def shown(url: str) -> tuple[str, str]:
        engine = db.make_engine(url)
        try:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql("show lock_timeout").scalar()), str(
                    conn.exec_driver_sql("show search_path").scalar()
                )
        finally:
            engine.dispose()

    with temp_database("retune_db_options") as url:
        base = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        assert shown(base)[0] == f"{db.LOCK_TIMEOUT_S}s"
        assert shown(f"{base}?options=-c%20search_path%3Dretune") == (f"{db.LOCK_TIMEOUT_S}s", "retune")
        assert shown(f"{base}?options=-c%20lock_timeout%3D5s")[0] == "5s"

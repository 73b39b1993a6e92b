"""retune.db: how Retune opens its own tables' database."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from retune import db


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

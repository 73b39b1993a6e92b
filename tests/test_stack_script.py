"""scripts/stack.py: the per-service database URLs built from the admin DSN (RETUNE_STACK_PG).

They were built by cutting the DSN at its last '/', which lost the query (``?sslmode=require``),
kept a ``postgres://`` scheme SQLAlchemy does not know, and made garbage of a keyword DSN.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from stack import _db_url, _server  # type: ignore[import-not-found]

PG_ADMIN_DSN = os.environ.get("RETUNE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SOCKET = Path("/var/run/postgresql/.s.PGSQL.5432")


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        (
            "postgresql://postgres:s3cret@db.example.com:5433/postgres?sslmode=require&connect_timeout=10",
            "postgresql+psycopg2://postgres:s3cret@db.example.com:5433/retune_optuna?connect_timeout=10&sslmode=require",
        ),
        ("postgres://postgres@127.0.0.1/postgres", "postgresql+psycopg2://postgres@127.0.0.1/retune_optuna"),
        (
            "host=/var/run/postgresql user=postgres dbname=postgres",
            "postgresql+psycopg2://postgres@/retune_optuna?host=%2Fvar%2Frun%2Fpostgresql",
        ),
        (
            "host=/var/run/postgresql port=5433 user=postgres",
            "postgresql+psycopg2://postgres@/retune_optuna?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
        ),
    ],
)
def test_db_url_keeps_the_server_login_and_options_of_any_admin_dsn(admin: str, expected: str) -> None:
    url = _db_url(admin, "retune_optuna")
    assert url == expected
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"
    assert parsed.database == "retune_optuna"


def test_the_server_is_printed_without_the_login() -> None:
    assert _server("postgresql://postgres:s3cret@db.example.com:5433/postgres") == "db.example.com:5433"
    assert _server("host=/var/run/postgresql user=postgres") == "/var/run/postgresql:5432"


def _connect_and_show(url: str) -> dict[str, str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    "select current_database(), current_setting('application_name'), coalesce(host(inet_server_addr()), 'socket')"
                )
            ).one()
    finally:
        engine.dispose()
    return {"database": row[0], "application_name": row[1], "via": row[2]}


def _server_up() -> None:
    import psycopg2

    try:
        psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")


@pytest.mark.postgres
def test_the_built_urls_connect_with_the_admin_dsns_options() -> None:
    """On the real server: the options reach the connection, whatever form the DSN has."""
    _server_up()
    base = make_url(PG_ADMIN_DSN)
    url_form = base.set(query={"application_name": "retune-stack-test"}).render_as_string(hide_password=False)
    seen = _connect_and_show(_db_url(url_form, "postgres"))
    assert seen == {"database": "postgres", "application_name": "retune-stack-test", "via": base.host}

    postgres_scheme = url_form.replace("postgresql://", "postgres://", 1)
    assert _connect_and_show(_db_url(postgres_scheme, "postgres"))["application_name"] == "retune-stack-test"

    if SOCKET.exists():
        keywords = f"host={SOCKET.parent} user={base.username or 'postgres'} dbname=postgres application_name=sock"
        assert _connect_and_show(_db_url(keywords, "postgres")) == {
            "database": "postgres",
            "application_name": "sock",
            "via": "socket",
        }


@pytest.mark.postgres
def test_sslmode_require_reaches_the_connection() -> None:
    """The old URL dropped ?sslmode=require: the services connected without TLS, silently."""
    import psycopg2
    import sqlalchemy
    from sqlalchemy.exc import OperationalError

    _server_up()
    with psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5) as admin, admin.cursor() as cur:
        cur.execute("show ssl")
        server_tls = cur.fetchone()[0] == "on"
    admin.close()
    url = _db_url(make_url(PG_ADMIN_DSN).set(query={"sslmode": "require"}).render_as_string(hide_password=False), "postgres")
    engine = sqlalchemy.create_engine(url)
    try:
        if not server_tls:
            with pytest.raises(OperationalError, match="SSL"), engine.connect():
                pass
            return
        with engine.connect() as conn:
            ssl_in_use = conn.execute(sqlalchemy.text("select ssl from pg_stat_ssl where pid = pg_backend_pid()")).scalar()
        assert ssl_in_use is True
    finally:
        engine.dispose()


def test_env_sh_is_never_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """env.sh (the JWT secret, the alert token, the admin DSN) was written with the umask's mode
    (644 as a rule) and only then chmod 600: readable by anyone in between. Each write now goes
    to a file already 600, a new one or an existing one with a wider mode alike."""
    from stack import write_private  # type: ignore[import-not-found]

    modes: list[int] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    old_umask = os.umask(0)  # the loosest umask: a plain create would give 666
    try:
        fresh = tmp_path / "env.sh"
        write_private(fresh, "export AIRFLOW__API_AUTH__JWT_SECRET=s3cret\n")
        widened = tmp_path / "old-env.sh"
        widened.write_text("old\n")
        widened.chmod(0o644)
        write_private(widened, "export RETUNE_ALERT_TOKEN=t0ken\n" * 2000)
    finally:
        os.umask(old_umask)
    assert modes and set(modes) == {0o600}, [oct(m) for m in modes]
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and stat.S_IMODE(widened.stat().st_mode) == 0o600
    assert fresh.read_text() == "export AIRFLOW__API_AUTH__JWT_SECRET=s3cret\n"
    assert widened.read_text() == "export RETUNE_ALERT_TOKEN=t0ken\n" * 2000


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://admin:s3cret@db.example.com:5433/postgres?sslmode=require",
            "postgresql://admin:***@db.example.com:5433/postgres?sslmode=require",
        ),
        (
            "host=db.example.com user=admin password=s3cret dbname=postgres",
            "host=db.example.com user=admin password=*** dbname=postgres",
        ),
        ("redis://:s3cret@cache.example.com:6380/2", "redis://:***@cache.example.com:6380/2"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_dsns_are_shown_without_their_password(dsn: str, shown: str) -> None:
    from psycopg2.extensions import parse_dsn
    from stack import _redact  # type: ignore[import-not-found]

    if "://" in dsn:
        assert _redact(dsn) == shown
    else:  # keywords, in any order
        assert parse_dsn(_redact(dsn)) == parse_dsn(shown)
    assert "s3cret" not in _redact(dsn)


@pytest.mark.postgres
def test_stack_up_errors_do_not_print_the_admin_password() -> None:
    """A PostgreSQL that refuses the login: the message named the admin DSN, password and all."""
    from psycopg2.extensions import make_dsn, parse_dsn
    from stack import _ensure_postgres  # type: ignore[import-not-found]

    _server_up()
    params = {**parse_dsn(PG_ADMIN_DSN), "user": "no_such_role_retune", "password": "s3cret-admin-pw"}
    with pytest.raises(SystemExit) as refused:
        _ensure_postgres(make_dsn(**params))
    message = str(refused.value)
    assert "refused the connection" in message and "no_such_role_retune" in message and "password=***" in message
    assert "s3cret-admin-pw" not in message


def test_an_unreachable_broker_is_named_without_its_password() -> None:
    """The Celery broker on a closed port: stack-up stops before starting anything, naming it
    (no password) and the way to run without Redis."""
    import socket

    from stack import _cfg, _ensure_redis  # type: ignore[import-not-found]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    cfg = {**_cfg(), "redis": f"redis://:s3cret-redis-pw@127.0.0.1:{port}/0"}
    with pytest.raises(SystemExit) as refused:
        _ensure_redis(cfg)
    message = str(refused.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "RETUNE_STACK_EXECUTOR=local" in message
    assert "s3cret-redis-pw" not in message


def test_a_service_that_exited_during_stack_up_is_seen(tmp_path: Path) -> None:
    """A service that exits while stack-up waits for it is stack-up's own child: a zombie until
    reaped, which os.kill(pid, 0) still finds. stack-up took it for alive, waited its whole
    240 s and said 'not healthy' (a Celery worker that could not import its executor, seen
    here). Real processes: one that exited unreaped, one still running, and a pid file left by
    another stack-up."""
    import subprocess
    import sys
    import time

    from stack import _alive, _exited  # type: ignore[import-not-found]

    (tmp_path / "pids").mkdir()
    quitter = subprocess.Popen([sys.executable, "-c", "pass"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name, proc in (("quitter", quitter), ("sleeper", sleeper)):
            (tmp_path / "pids" / f"{name}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while "State:\tZ" not in Path(f"/proc/{quitter.pid}/status").read_text():  # exited, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _alive(tmp_path / "pids" / "quitter.pid") == quitter.pid, "the trap: a zombie answers kill(pid, 0)"
        started = {"quitter": quitter, "sleeper": sleeper}
        assert _exited("quitter", started, tmp_path)
        assert not _exited("sleeper", started, tmp_path)
        # a service this stack-up did not start: its pid file, read as before
        (tmp_path / "pids" / "other.pid").write_text(str(quitter.pid))
        quitter.wait()  # reaped: the pid is gone
        assert _exited("other", started, tmp_path)
        assert not _exited("sleeper", {}, tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
        quitter.wait()

"""The production topology on this machine, without Docker: ``make stack-up`` / ``make stack-down``.

Starts, on loopback ports:

- PostgreSQL: the server already running on 127.0.0.1:5432 (started from Debian's packages
  with ``pg_ctlcluster`` when none runs), with one database each for Airflow, MLflow and Optuna;
- the MLflow tracking server on PostgreSQL, serving artifacts from ``$RETUNE_STACK_DIR/mlartifacts``;
- Airflow's api-server, scheduler, dag-processor and triggerer on PostgreSQL, with the
  CeleryExecutor and an ``airflow celery worker`` as in docker-compose.yaml (broker: the Redis at
  ``RETUNE_STACK_REDIS``, every key prefixed ``<RETUNE_STACK_DB_PREFIX>:``; result backend: the
  Airflow metadata database), or with the LocalExecutor and no worker
  (``RETUNE_STACK_EXECUTOR=local``, which needs no Redis).

Waits until every health endpoint answers, then prints the URLs and the login, and writes
``$RETUNE_STACK_DIR/env.sh`` (``source`` it to use the ``airflow`` CLI or Retune against the stack;
it also holds the ``RETUNE_STACK_*`` settings, so ``down`` and ``status`` in that shell find the
stack that was started).

``down`` stops the services whose pid files are in ``$RETUNE_STACK_DIR/pids``. With none there
(a stack started with another ``RETUNE_STACK_DIR``, or its pid files removed), it probes the
health endpoints as ``status`` does, and exits 1 if anything still answers (``--drop`` drops
nothing then). ``down --drop`` also drops the databases and deletes the stack's Redis keys
(``<prefix>:*``, nothing else in that Redis database).

Settings (environment): ``RETUNE_STACK_DIR`` (``.stack``), ``RETUNE_STACK_PG``
(``postgresql://postgres@127.0.0.1:5432/postgres``, an admin connection), ``RETUNE_STACK_DB_PREFIX``
(``retune``; it also prefixes the stack's Redis keys), ``RETUNE_STACK_AIRFLOW_PORT`` (8080),
``RETUNE_STACK_MLFLOW_PORT`` (5000), ``RETUNE_STACK_EXECUTOR`` (``celery``, or ``local``),
``RETUNE_STACK_REDIS`` (``redis://127.0.0.1:6379/0``, the Celery broker),
``RETUNE_STACK_WORKER_LOG_PORT`` (8793, where the Celery worker, or the LocalExecutor's
scheduler, serves the task logs),
``RETUNE_CONFIG_DIR`` (``include/configs``). The database passwords are whatever the admin DSN
carries (the local server uses trust auth); the Airflow JWT secret is generated per stack and kept
in ``env.sh`` (created with mode 600), never in code; errors print the DSNs without their password.

Usage: ``python scripts/stack.py up|down [--drop]|status``
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from procs import stop_group  # scripts/procs.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# In start order; ``down`` stops them in reverse (the Celery worker first). ``up`` starts the
# worker only with the CeleryExecutor; ``down`` stops whatever has a pid file.
SERVICES = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "celery-worker")
EXECUTORS = {"celery": "CeleryExecutor", "local": "LocalExecutor"}
# The LocalExecutor forks its workers, and each task process from one of them, from a
# forkserver that imported Retune's libraries once (include/retune/preload.py): a task then
# skips 3-5 s of imports (~10 s on a slow core). Airflow 3.3's own options; make airflow-ui and
# the test servers (tests/airflow_server.py) use the same.
FORKSERVER_ENV = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "airflow.executors.local_executor,airflow.sdk.execution_time.task_runner,retune.preload",
}
# The CeleryExecutor's counterpart (as docker-compose.yaml): the Celery worker imports them
# before it forks its pool (plugins/retune_celery.py).
CELERY_CONFIG_OPTIONS = "retune_celery.CELERY_CONFIG"


def _cfg() -> dict[str, str]:
    stack = Path(os.environ.get("RETUNE_STACK_DIR", ROOT / ".stack")).resolve()
    return {
        "dir": str(stack),
        "pg": os.environ.get("RETUNE_STACK_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        "prefix": os.environ.get("RETUNE_STACK_DB_PREFIX", "retune"),
        "airflow_port": os.environ.get("RETUNE_STACK_AIRFLOW_PORT", "8080"),
        "mlflow_port": os.environ.get("RETUNE_STACK_MLFLOW_PORT", "5000"),
        "config_dir": os.environ.get("RETUNE_CONFIG_DIR", str(ROOT / "include" / "configs")),
        "executor": os.environ.get("RETUNE_STACK_EXECUTOR", "celery").strip().lower(),
        "redis": os.environ.get("RETUNE_STACK_REDIS", "redis://127.0.0.1:6379/0"),
        "worker_log_port": os.environ.get("RETUNE_STACK_WORKER_LOG_PORT", "8793"),
    }


def _celery(cfg: dict[str, str]) -> bool:
    return cfg["executor"] == "celery"


def _services(cfg: dict[str, str]) -> tuple[str, ...]:
    """The services ``up`` starts: the Celery worker only with the CeleryExecutor."""
    return SERVICES if _celery(cfg) else tuple(s for s in SERVICES if s != "celery-worker")


def _key_prefix(cfg: dict[str, str]) -> str:
    """The prefix of every Redis key (and pub/sub channel) the stack's Celery uses: two stacks
    on one Redis database (a developer's and a test's) never see each other's tasks."""
    return f"{cfg['prefix']}:"


def _redact(dsn: str) -> str:
    """A PostgreSQL DSN (URL or keywords) or a Redis URL with its password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import make_dsn, parse_dsn

    try:
        params = parse_dsn(dsn)
    except ProgrammingError:
        return "(a DSN that does not parse)"
    if "password" in params:
        params["password"] = "***"
    return str(make_dsn(**params))


def _db_url(admin: str, name: str, driver: str = "postgresql+psycopg2") -> str:
    """The SQLAlchemy URL of database ``name`` on the admin DSN's server, with its login and options.

    Args:
        admin: A libpq connection string: a URL (``postgresql://`` or ``postgres://``, with
            query options such as ``?sslmode=require``) or keywords
            (``host=/var/run/postgresql user=postgres dbname=postgres``).
        name: The database.
        driver: The SQLAlchemy drivername.

    Returns:
        The URL, password included (it goes into the services' environment, as the DSN did).
    """
    from psycopg2.extensions import parse_dsn
    from sqlalchemy.engine import URL

    params = parse_dsn(admin)
    params.pop("dbname", None)
    user, password, host, port = (params.pop(key, None) for key in ("user", "password", "host", "port"))
    if host and host.startswith("/"):  # a socket folder is no URL host: libpq takes it as an option
        params["host"] = host
        host = None
        if port:
            params["port"], port = port, None
    url = URL.create(
        driver,
        username=user,
        password=password,
        host=host,
        port=int(port) if port else None,
        database=name,
        query=dict(sorted(params.items())),
    )
    return url.render_as_string(hide_password=False)


def _server(admin: str) -> str:
    """Where the admin DSN's server is (``host:port`` or the socket folder), without its login."""
    from psycopg2.extensions import parse_dsn

    dsn = parse_dsn(admin)
    return f"{dsn.get('host') or '/var/run/postgresql'}:{dsn.get('port') or 5432}"


def _server_listens(admin: str) -> bool:
    """Whether something accepts TCP connections at the DSN's host and port (a Unix socket
    path as host: whether the socket file exists)."""
    from psycopg2.extensions import parse_dsn

    dsn = parse_dsn(admin)
    host, port = dsn.get("host") or "/var/run/postgresql", int(dsn.get("port") or 5432)
    if host.startswith("/"):
        return Path(host, f".s.PGSQL.{port}").exists()
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return False
    return True


def _ensure_postgres(admin: str) -> None:
    import psycopg2

    try:
        psycopg2.connect(admin, connect_timeout=3).close()
        return
    except psycopg2.OperationalError as exc:
        if _server_listens(admin):  # up, but refused us (password, role, database): say so
            raise SystemExit(
                f"PostgreSQL at {_redact(admin)} is running but refused the connection: {str(exc).strip()}"
            ) from None
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").is_dir() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        raise SystemExit(f"PostgreSQL is not reachable at {_redact(admin)} and no Debian cluster to start; install postgresql")
    print(f"starting PostgreSQL {versions[-1].name} (pg_ctlcluster)")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", "start"], check=True)
    psycopg2.connect(admin, connect_timeout=10).close()


def _redis(cfg: dict[str, str]):  # noqa: ANN202 - redis.Redis, imported lazily
    import redis

    return redis.Redis.from_url(cfg["redis"], socket_connect_timeout=3, socket_timeout=10)


def _ensure_redis(cfg: dict[str, str]) -> None:
    """The Celery broker answers, or a SystemExit naming it (without its password)."""
    import redis

    try:
        _redis(cfg).ping()
    except (redis.RedisError, ValueError) as exc:
        raise SystemExit(
            f"Redis (the Celery broker, RETUNE_STACK_REDIS) is not reachable at {_redact(cfg['redis'])}: {exc}; "
            "start redis-server, or run the stack with RETUNE_STACK_EXECUTOR=local"
        ) from None


def _delete_redis_keys(cfg: dict[str, str]) -> int:
    """Delete the stack's Redis keys (``<prefix>:*``); how many there were."""
    import re

    client = _redis(cfg)
    pattern = re.sub(r"([\\*?\[\]])", r"\\\1", _key_prefix(cfg)) + "*"  # the prefix itself matched literally
    keys = list(client.scan_iter(match=pattern, count=500))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


def _databases(cfg: dict[str, str]) -> dict[str, str]:
    return {kind: f"{cfg['prefix']}_{kind}" for kind in ("airflow", "mlflow", "optuna")}


def _create_databases(cfg: dict[str, str]) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(cfg["pg"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in _databases(cfg).values():
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    conn.close()


def _drop_databases(cfg: dict[str, str]) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(cfg["pg"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in _databases(cfg).values():
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


def new_jwt_secret() -> str:
    """A new Airflow JWT secret: 64 random bytes (86 characters).

    Airflow signs with HS512 when the secret is a string, and PyJWT warns
    (``InsecureKeyLengthWarning``) for an HMAC key shorter than the hash, 64 bytes:
    ``token_urlsafe(32)`` gave 43.
    """
    return secrets.token_urlsafe(64)


# Redis redelivers a task not acknowledged within this many seconds to another worker. A trial
# worker may run 25 h (retune_model's TUNE_TIMEOUT); Celery's default is 24 h. As docker-compose.yaml.
VISIBILITY_TIMEOUT_S = "93600"


def stack_env(cfg: dict[str, str], jwt_secret: str, alert_token: str = "") -> dict[str, str]:
    """The environment every stack process (and a user's shell) uses."""
    stack = Path(cfg["dir"])
    dbs = _databases(cfg)
    port = cfg["airflow_port"]
    metadata = _db_url(cfg["pg"], dbs["airflow"], "postgresql+psycopg2")
    executor_env = (
        {  # as docker-compose.yaml: Redis the broker, the metadata database the result backend
            "AIRFLOW__CELERY__BROKER_URL": cfg["redis"],
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": _key_prefix(cfg),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT_S,
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
        }
        if _celery(cfg)
        else FORKSERVER_ENV  # the LocalExecutor: tasks forked from the preloaded forkserver
    )
    return {
        "AIRFLOW_HOME": str(stack / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[cfg["executor"]],
        **executor_env,
        # where the task logs are served from (the Celery worker, or the LocalExecutor's
        # scheduler): one port per stack, not every stack on Airflow's 8793
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": cfg["worker_log_port"],
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # as in docker-compose.yaml: unpause what you run
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "RETUNE_ALERT_TOKEN": alert_token,
        "RETUNE_MLFLOW_UI_URL": f"http://127.0.0.1:{cfg['mlflow_port']}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{cfg['mlflow_port']}",
        "RETUNE_OPTUNA_STORAGE": _db_url(cfg["pg"], dbs["optuna"], "postgresql+psycopg2"),
        "RETUNE_STATE_DIR": str(stack / "state"),
        "RETUNE_CONFIG_DIR": cfg["config_dir"],
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


def env_sh(cfg: dict[str, str], jwt_secret: str, alert_token: str = "") -> str:
    """``env.sh``: :func:`stack_env` and the ``RETUNE_STACK_*`` settings the stack was started
    with (a shell that sources it stops and probes that stack, not the defaults')."""
    settings = {
        "RETUNE_STACK_DIR": cfg["dir"],
        "RETUNE_STACK_PG": cfg["pg"],
        "RETUNE_STACK_DB_PREFIX": cfg["prefix"],
        "RETUNE_STACK_AIRFLOW_PORT": cfg["airflow_port"],
        "RETUNE_STACK_MLFLOW_PORT": cfg["mlflow_port"],
        "RETUNE_STACK_EXECUTOR": cfg["executor"],
        "RETUNE_STACK_REDIS": cfg["redis"],
        "RETUNE_STACK_WORKER_LOG_PORT": cfg["worker_log_port"],
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in {**stack_env(cfg, jwt_secret, alert_token), **settings}.items())


def _commands(cfg: dict[str, str]) -> dict[str, list[str]]:
    stack = Path(cfg["dir"])
    commands = {
        "mlflow": [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            _db_url(cfg["pg"], _databases(cfg)["mlflow"], "postgresql+psycopg2"),
            "--artifacts-destination",
            (stack / "mlartifacts").as_uri(),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            cfg["mlflow_port"],
            "--workers",
            "1",
        ],
        "api-server": [str(BIN / "airflow"), "api-server", "--port", cfg["airflow_port"], "--host", "127.0.0.1"],
        "scheduler": [str(BIN / "airflow"), "scheduler"],
        "dag-processor": [str(BIN / "airflow"), "dag-processor"],
        "triggerer": [str(BIN / "airflow"), "triggerer"],
        # compose's airflow-worker (`celery worker`); named after the stack, so its log and a
        # ping tell which stack's worker it is
        "celery-worker": [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{cfg['prefix']}@%h"],
    }
    return {name: commands[name] for name in _services(cfg)}


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read()
    except OSError:
        return None
    try:
        return dict(json.loads(body))
    except ValueError:
        return {"text": body.decode(errors="replace")}


def _worker_answers(cfg: dict[str, str]) -> bool:
    """Whether the stack's Celery worker answers a ping on its broker and key prefix (what
    compose's healthcheck asks with ``celery inspect ping``), without importing Airflow."""
    from celery import Celery

    app = Celery("retune-stack-ping", broker=cfg["redis"])
    app.conf.broker_transport_options = {"global_keyprefix": _key_prefix(cfg)}
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 0
    try:
        replies = app.control.ping(timeout=1.0, limit=1)
    except Exception:  # noqa: BLE001 - Redis down or refusing: the worker does not answer
        return False
    finally:
        app.close()
    return any(name.startswith(f"{cfg['prefix']}@") for reply in replies for name in reply)


def _healthy(cfg: dict[str, str]) -> dict[str, bool]:
    mlflow = _get_json(f"http://127.0.0.1:{cfg['mlflow_port']}/health") is not None
    health = _get_json(f"http://127.0.0.1:{cfg['airflow_port']}/api/v2/monitor/health") or {}
    out = {"mlflow": mlflow, "api-server": bool(health)}
    for key, name in (("scheduler", "scheduler"), ("dag_processor", "dag-processor"), ("triggerer", "triggerer")):
        out[name] = health.get(key, {}).get("status") == "healthy"
    out["metadatabase"] = health.get("metadatabase", {}).get("status") == "healthy"
    if _celery(cfg):
        out["celery-worker"] = _worker_answers(cfg)
    return out


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte on.

    ``Path.write_text`` then ``chmod(0o600)`` left the secrets readable by anyone (mode 644 under
    the usual umask) until the chmod; an existing file keeps its mode when opened, so it is
    narrowed before anything is written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _alive(pid_file: Path) -> int | None:
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def _exited(name: str, started: dict[str, subprocess.Popen], stack: Path) -> bool:  # type: ignore[type-arg]
    """Whether service ``name`` has exited: asked of its ``Popen`` when this process started it
    (an exited child is a zombie until reaped, and ``os.kill(pid, 0)`` still finds it), else of
    its pid file."""
    proc = started.get(name)
    if proc is not None:
        return proc.poll() is not None
    return _alive(stack / "pids" / f"{name}.pid") is None


def up(timeout: float = 240) -> int:
    """Start the stack and wait until it is healthy."""
    cfg = _cfg()
    if cfg["executor"] not in EXECUTORS:
        print(f"RETUNE_STACK_EXECUTOR={cfg['executor']!r}: expected one of {', '.join(EXECUTORS)}", file=sys.stderr)
        return 2
    stack = Path(cfg["dir"])
    (stack / "logs").mkdir(parents=True, exist_ok=True)
    (stack / "pids").mkdir(exist_ok=True)
    env_file = stack / "env.sh"
    jwt, alert = new_jwt_secret(), secrets.token_urlsafe(24)
    if env_file.exists():  # keep the secrets of an earlier stack-up
        for line in env_file.read_text().splitlines():
            if line.startswith("export AIRFLOW__API_AUTH__JWT_SECRET="):
                jwt = shlex.split(line.split("=", 1)[1])[0]
            if line.startswith("export RETUNE_ALERT_TOKEN="):
                alert = shlex.split(line.split("=", 1)[1])[0]
    _ensure_postgres(cfg["pg"])
    if _celery(cfg):
        _ensure_redis(cfg)
    _create_databases(cfg)
    env = {**os.environ, **stack_env(cfg, jwt, alert)}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    write_private(env_file, env_sh(cfg, jwt, alert))
    print("migrating the Airflow database ...")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    started: dict[str, subprocess.Popen] = {}  # type: ignore[type-arg]
    for name, cmd in _commands(cfg).items():
        pid_file = stack / "pids" / f"{name}.pid"
        if _alive(pid_file):
            continue
        with (stack / "logs" / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=stack)
        pid_file.write_text(str(proc.pid))
        started[name] = proc
    deadline = time.monotonic() + timeout
    state = _healthy(cfg)
    while not all(state.values()):
        if time.monotonic() > deadline:
            print(f"not healthy after {timeout:.0f} s: {state}; logs in {stack / 'logs'}; stopping", file=sys.stderr)
            down()
            return 1
        for name in _services(cfg):
            if _exited(name, started, stack):
                tail = (stack / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                print(f"{name} exited:\n{tail}\nstopping the rest", file=sys.stderr)
                down()
                return 1
        time.sleep(2)
        state = _healthy(cfg)
    password_file = stack / "airflow" / "simple_auth_manager_passwords.json.generated"
    executor = (
        f"CeleryExecutor; worker {cfg['prefix']}@{socket.gethostname()}, broker {_redact(cfg['redis'])} "
        f"(keys {_key_prefix(cfg)}*), results in {_databases(cfg)['airflow']}"
        if _celery(cfg)
        else "LocalExecutor (tasks run under the scheduler)"
    )
    password = json.loads(password_file.read_text()).get("admin", "?") if password_file.exists() else "?"
    print(
        f"\nRetune stack is up.\n"
        f"  Airflow UI/API : http://127.0.0.1:{cfg['airflow_port']}  (login admin / {password})\n"
        f"  MLflow         : http://127.0.0.1:{cfg['mlflow_port']}\n"
        f"  Alert webhook  : http://127.0.0.1:{cfg['airflow_port']}/retune/alerts/alertmanager (and /grafana); "
        f"Bearer token: $RETUNE_ALERT_TOKEN in env.sh\n"
        f"  PostgreSQL     : {', '.join(_databases(cfg).values())} on {_server(cfg['pg'])}\n"
        f"  executor       : {executor}\n"
        f"  environment    : source {env_file}\n"
    )
    return 0


def down(drop: bool = False) -> int:
    """Stop every stack process (and drop the databases with ``--drop``); 1 when no pid file
    was found and a service still answers on the stack's ports."""
    cfg = _cfg()
    stack = Path(cfg["dir"])
    if not any((stack / "pids" / f"{name}.pid").exists() for name in SERVICES):
        answering = [name for name, up in _healthy(cfg).items() if up and name != "metadatabase"]
        ports = f"Airflow {cfg['airflow_port']}, MLflow {cfg['mlflow_port']}"
        if answering:
            print(
                f"no pid files in {stack / 'pids'}, but {', '.join(answering)} still answer(s) on the stack's ports "
                f"({ports}): started with another RETUNE_STACK_DIR? `source` that stack's env.sh and run this "
                "again, or stop them by hand. Nothing was stopped" + (" or dropped" if drop else ""),
                file=sys.stderr,
            )
            return 1
        print(f"no pid files in {stack / 'pids'}, and nothing answers on the stack's ports ({ports})")
    for name in reversed(SERVICES):
        pid_file = stack / "pids" / f"{name}.pid"
        if not pid_file.exists():
            continue
        pgid = int(pid_file.read_text())  # each service leads its own session: pid == process group
        # The whole group, even when its leader is gone: a scheduler's executor workers can
        # outlive the scheduler, and waiting for the leader alone left them running.
        killed = stop_group(pgid, timeout=15)  # nothing to do when the group is already gone
        if killed:
            print(f"{name}: {len(killed)} process(es) still running 15 s after SIGTERM; killed them")
        pid_file.unlink(missing_ok=True)
    if drop:
        _drop_databases(cfg)
        print("dropped databases " + ", ".join(_databases(cfg).values()))
        import redis

        try:
            deleted = _delete_redis_keys(cfg)
        except (redis.RedisError, ValueError) as exc:
            print(f"Redis at {_redact(cfg['redis'])} not reachable ({exc}): its {_key_prefix(cfg)}* keys, if any, are left")
        else:
            print(f"deleted {deleted} Redis key(s) {_key_prefix(cfg)}* at {_redact(cfg['redis'])}")
    print("Retune stack is down.")
    return 0


def status() -> int:
    """Print which services answer."""
    state = _healthy(_cfg())
    print(json.dumps(state, indent=2))
    return 0 if all(state.values()) else 1


def main(argv: list[str]) -> int:
    """Entry point."""
    if not argv or argv[0] not in ("up", "down", "status"):
        print(__doc__)
        return 2
    if argv[0] == "up":
        return up()
    if argv[0] == "down":
        return down(drop="--drop" in argv[1:])
    return status()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``make stack-down`` (scripts/stack.py down) when it finds no pid files: it says so and,
while something still answers on the stack's ports (or its Celery worker on the stack's Redis
key prefix), exits 1 instead of "Retune stack is down."; and env.sh carries the RETUNE_STACK_*
settings, so a shell that sourced it stops that stack. Real processes, a real HTTP server on
loopback ports and a real Celery worker on the machine's Redis; no Airflow or MLflow needed."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from services import REDIS_URL, require_redis  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "stack.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Health(BaseHTTPRequestHandler):
    """Answers ``/health`` as an MLflow server does."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"OK"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def mlflow_like() -> Iterator[int]:
    """A server still answering MLflow's health endpoint: the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _env(**stack: str) -> dict[str, str]:
    """No RETUNE_STACK_* of the caller's; a prefix of its own, so no developer's stack (its
    Celery worker answers on the default prefix) is taken for this one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETUNE_STACK_")}
    return {**env, "RETUNE_STACK_DB_PREFIX": f"rt_{uuid.uuid4().hex[:8]}", "RETUNE_STACK_REDIS": REDIS_URL, **stack}


def _down(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "down", *args], env=env, capture_output=True, text=True, timeout=60)


def test_down_without_pid_files_while_a_service_answers_exits_1(tmp_path: Path, mlflow_like: int) -> None:
    """A stack started with another RETUNE_STACK_DIR: down found no pid files, stopped nothing
    and printed "Retune stack is down." with exit code 0 while its services kept running."""
    env = _env(
        RETUNE_STACK_DIR=str(tmp_path / "other"),
        RETUNE_STACK_MLFLOW_PORT=str(mlflow_like),
        RETUNE_STACK_AIRFLOW_PORT=str(_free_port()),
    )
    done = _down(env, "--drop")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no pid files in {tmp_path / 'other' / 'pids'}" in done.stderr
    assert "mlflow still answer(s)" in done.stderr and f"MLflow {mlflow_like}" in done.stderr
    assert "Nothing was stopped or dropped" in done.stderr
    assert "Retune stack is down" not in done.stdout


def test_down_without_pid_files_and_nothing_answering_says_so(tmp_path: Path) -> None:
    env = _env(
        RETUNE_STACK_DIR=str(tmp_path / "none"),
        RETUNE_STACK_MLFLOW_PORT=str(_free_port()),
        RETUNE_STACK_AIRFLOW_PORT=str(_free_port()),
    )
    done = _down(env)
    assert done.returncode == 0, done.stderr
    assert "no pid files" in done.stdout and "nothing answers" in done.stdout and "Retune stack is down." in done.stdout


def test_a_shell_that_sourced_env_sh_stops_the_stack_it_names(tmp_path: Path, mlflow_like: int) -> None:
    """env.sh lacked RETUNE_STACK_*: a shell that sourced it ran down against the defaults
    (.stack, ports 8080/5000), not the stack it was started with."""
    spec = importlib.util.spec_from_file_location("retune_stack", SCRIPT)
    assert spec is not None and spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    airflow_port = str(_free_port())
    cfg = {
        "dir": str(tmp_path / "mine stack"),
        "pg": "postgresql://postgres@127.0.0.1:5432/postgres",
        "prefix": "rt_x",
        "airflow_port": airflow_port,
        "mlflow_port": str(mlflow_like),
        "config_dir": str(tmp_path / "configs"),
        "executor": "local",
        "redis": "redis://127.0.0.1:6399/3",
        "worker_log_port": "18793",
    }
    env_file = tmp_path / "env.sh"
    env_file.write_text(stack.env_sh(cfg, "jwt", "token"))
    # a shell with none of the settings: only what it sourced
    probe = f"source {shlex.quote(str(env_file))} && {sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    seen = json.loads(subprocess.run(["bash", "-c", probe], env=_env(), capture_output=True, text=True, check=True).stdout)
    assert seen["RETUNE_STACK_DIR"] == str(tmp_path / "mine stack")
    assert (seen["RETUNE_STACK_MLFLOW_PORT"], seen["RETUNE_STACK_AIRFLOW_PORT"]) == (str(mlflow_like), airflow_port)
    assert seen["RETUNE_STACK_DB_PREFIX"] == "rt_x" and seen["RETUNE_STACK_PG"] == cfg["pg"]
    assert (seen["RETUNE_STACK_EXECUTOR"], seen["RETUNE_STACK_REDIS"]) == ("local", "redis://127.0.0.1:6399/3")
    assert seen["RETUNE_STACK_WORKER_LOG_PORT"] == "18793" and seen["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert seen["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt"
    done = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(env_file))} && {sys.executable} {SCRIPT} down"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and f"no pid files in {tmp_path / 'mine stack' / 'pids'}" in done.stderr, done.stderr


CELERY_APP = """
import os

from celery import Celery

app = Celery("retune-stack-down-test", broker=os.environ["BROKER"])
app.conf.broker_transport_options = {"global_keyprefix": os.environ["KEY_PREFIX"]}
"""


@pytest.mark.redis
def test_down_without_pid_files_while_the_celery_worker_answers_exits_1(tmp_path: Path) -> None:
    """A stack's Celery worker (named <prefix>@host, on the <prefix>: Redis keys) still running:
    down with no pid files names it and exits 1; another stack's prefix does not see it."""
    import redis
    from procs import stop_group  # type: ignore[import-not-found]

    require_redis()
    prefix = f"rt_{uuid.uuid4().hex[:8]}"
    (tmp_path / "stackdown_app.py").write_text(CELERY_APP)
    worker_env = {**os.environ, "BROKER": REDIS_URL, "KEY_PREFIX": f"{prefix}:"}
    celery = Path(sys.executable).parent / "celery"
    worker = subprocess.Popen(
        [str(celery), "-A", "stackdown_app", "worker", "-n", f"{prefix}@%h", "-c", "1", "--without-mingle", "--without-gossip"],
        cwd=tmp_path,
        env=worker_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ports = {"RETUNE_STACK_MLFLOW_PORT": str(_free_port()), "RETUNE_STACK_AIRFLOW_PORT": str(_free_port())}
        env = _env(RETUNE_STACK_DIR=str(tmp_path / "other"), RETUNE_STACK_DB_PREFIX=prefix, **ports)
        deadline = time.monotonic() + 60
        while True:
            done = _down(env, "--drop")
            if done.returncode == 1 or time.monotonic() > deadline:
                break
            time.sleep(1)  # the worker is still starting
        assert done.returncode == 1, done.stdout + done.stderr
        assert "celery-worker still answer(s)" in done.stderr and "Nothing was stopped or dropped" in done.stderr
        elsewhere = _down(_env(RETUNE_STACK_DIR=str(tmp_path / "none"), **ports))
        assert elsewhere.returncode == 0 and "nothing answers" in elsewhere.stdout, elsewhere.stderr
    finally:
        stop_group(worker, timeout=15)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)

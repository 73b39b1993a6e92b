"""The Docker topology (docker-compose.yaml, Dockerfile, .env.example, the PostgreSQL init script).

No Docker engine runs here or in CI, so the files are checked by parsing them: PyYAML for the
compose file (its merge keys are resolved as Compose resolves them), regular expressions for the
rest. The one test that runs ``docker compose config`` is skipped when no Compose v2 is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
INIT_SCRIPT = ROOT / "docker" / "postgres-init" / "01-databases.sh"

IMAGE = "retune-airflow:latest"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# The long-running Airflow services: they start only after airflow-init has succeeded.
AIRFLOW_DAEMONS = AIRFLOW_SERVICES - {"airflow-init"}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "mlflow"}

# The contract shared with the no-Docker stack: exact values, or a pattern where a password
# (a `${VAR:-default}` reference) is part of the value.
PW = r"\$\{(?P<var>[A-Z_]+)(:-[^}]*)?\}"
CONTRACT = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": re.compile(rf"postgresql\+psycopg2://airflow:{PW}@postgres(:5432)?/airflow"),
    "AIRFLOW__CELERY__RESULT_BACKEND": re.compile(rf"db\+postgresql\+psycopg2://airflow:{PW}@postgres(:5432)?/airflow"),
    "AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "RETUNE_OPTUNA_STORAGE": re.compile(rf"postgresql\+psycopg2://optuna:{PW}@postgres:5432/optuna"),
    "RETUNE_STATE_DIR": "/opt/airflow/state",
    "RETUNE_CONFIG_DIR": "/opt/airflow/include/configs",
}

# `${VAR}`, `${VAR:-default}`, `${VAR:?error}` ...; `$${...}` is Compose's escape for a literal `$`.
VAR_REF = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
BARE_VAR = re.compile(r"(?<!\$)\$(?![${])[A-Za-z_]")
WHOLE_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}")
URL_CREDENTIALS = re.compile(r"://(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def scalars(node: Any) -> list[str]:
    """Every string in a parsed YAML document, keys and values (comments are not in it)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in scalars(k) + scalars(v)]
    if isinstance(node, list):
        return [s for item in node for s in scalars(item)]
    return [node] if isinstance(node, str) else []


def as_mapping(env: dict[str, Any] | list[str] | None) -> dict[str, str]:
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in (env or {}).items()}


def healthcheck_command(name: str) -> str:
    test = services()[name]["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def command_text(name: str) -> str:
    command = services()[name].get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def compose_vars() -> dict[str, set[str]]:
    """Each variable Compose interpolates, with the defaults it is given."""
    found: dict[str, set[str]] = {}
    for text in scalars(compose()):
        for ref in VAR_REF.finditer(text):
            defaults = found.setdefault(ref["name"], set())
            if ref["op"] in (":-", "-"):
                defaults.add(ref["arg"])
    return found


def dockerfile_from() -> str:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions, "Dockerfile is empty"
    return instructions[0]


def requirement_pin(path: Path, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)\s*$", path.read_text(), re.MULTILINE | re.IGNORECASE)
    assert match, f"{path.name} does not pin {name}"
    return match[1]


# --- the anchor and the service set -----------------------------------------------------------


def test_service_set() -> None:
    assert set(services()) == SERVICES


def test_airflow_common_anchor_holds_the_shared_settings() -> None:
    assert re.search(r"^x-airflow-common:\s*&airflow-common\s*$", COMPOSE.read_text(), re.MULTILINE)
    common = compose()["x-airflow-common"]
    assert common["image"] == IMAGE
    assert common["build"]["context"] == "."
    assert common["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    for key in ("environment", "volumes", "user", "depends_on"):
        assert common.get(key), f"x-airflow-common has no {key}"
    assert str(common["user"]).endswith(":0"), "Airflow containers run with group 0"


def test_anchor_is_merged_into_every_airflow_service() -> None:
    """`<<: *airflow-common` in each airflow-* service, and the merged result has its settings."""
    document = yaml.compose(COMPOSE.read_text())
    top = {key.value: value for key, value in document.value}
    anchor = top["x-airflow-common"]
    merged_into = set()
    for key, service in top["services"].value:
        for item_key, item_value in service.value:
            if item_key.tag == "tag:yaml.org,2002:merge" and item_value is anchor:
                merged_into.add(key.value)
    assert merged_into == AIRFLOW_SERVICES

    common_env = as_mapping(compose()["x-airflow-common"]["environment"])
    for name in AIRFLOW_SERVICES:
        service = services()[name]
        assert service["image"] == IMAGE, name
        assert service["build"]["context"] == ".", name
        env = as_mapping(service["environment"])
        missing = {k for k, v in common_env.items() if env.get(k) != v}
        assert not missing, f"{name}: the common environment is not merged: {sorted(missing)}"


def test_mlflow_runs_from_the_same_image() -> None:
    mlflow = services()["mlflow"]
    assert mlflow["image"] == IMAGE
    assert mlflow["build"] == compose()["x-airflow-common"]["build"]


# --- healthchecks and start order -------------------------------------------------------------

HEALTHCHECKS = {
    "postgres": r"\bpg_isready\b",
    "redis": r"\bredis-cli ping\b",
    "airflow-apiserver": r"\bcurl\b.*localhost:8080/api/v2/monitor/health\b",
    "airflow-scheduler": r'airflow jobs check --job-type SchedulerJob --hostname "\$\$\{HOSTNAME\}"',
    "airflow-dag-processor": r'airflow jobs check --job-type DagProcessorJob --hostname "\$\$\{HOSTNAME\}"',
    "airflow-triggerer": r'airflow jobs check --job-type TriggererJob --hostname "\$\$\{HOSTNAME\}"',
    "airflow-worker": r'celery --app airflow\.providers\.celery\.executors\.celery_executor\.app inspect ping -d "celery@\$\$\{HOSTNAME\}"',
    "mlflow": r"\bcurl\b.*localhost:5000/health\b",
}


def test_every_service_but_init_has_a_healthcheck() -> None:
    assert set(HEALTHCHECKS) == SERVICES - {"airflow-init"}
    for name in SERVICES - {"airflow-init"}:
        test = services()[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck test"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"


@pytest.mark.parametrize("name", sorted(HEALTHCHECKS))
def test_healthcheck_command(name: str) -> None:
    assert re.search(HEALTHCHECKS[name], healthcheck_command(name)), healthcheck_command(name)


@pytest.mark.parametrize("name", sorted(AIRFLOW_DAEMONS))
def test_airflow_services_wait_for_init_postgres_and_redis(name: str) -> None:
    depends = services()[name]["depends_on"]
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_init_and_mlflow_start_order() -> None:
    init = services()["airflow-init"]
    assert "airflow-init" not in init["depends_on"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services()["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_airflow_init_migrates_and_creates_the_admin() -> None:
    init = services()["airflow-init"]
    script = command_text("airflow-init")
    assert "airflow db migrate" in script
    assert "airflow users create" in script and "--role Admin" in script
    assert "set -e" in script, "a failed step must fail airflow-init"
    env = as_mapping(init["environment"])
    assert {"_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD"} <= set(env)
    assert init.get("restart", "no") == "no"


def test_api_server() -> None:
    apiserver = services()["airflow-apiserver"]
    assert command_text("airflow-apiserver") == "api-server"
    assert any(str(port).endswith("8080:8080") for port in apiserver["ports"])


def test_worker_is_celery_and_scalable() -> None:
    worker = services()["airflow-worker"]
    assert command_text("airflow-worker") == "celery worker"
    assert "container_name" not in worker, "a container_name keeps `--scale airflow-worker=N` from working"
    assert "ports" not in worker, "a published port keeps `--scale airflow-worker=N` from working"


def test_no_fixed_container_names() -> None:
    assert not [name for name, service in services().items() if "container_name" in service]


# --- mounts, volumes, environment -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_airflow_mounts(name: str) -> None:
    volumes = services()[name]["volumes"]
    for folder in ("dags", "plugins", "include"):
        assert f"./{folder}:/opt/airflow/{folder}" in volumes, f"{name}: ./{folder} is not mounted"
    targets = {volume.split(":")[1]: volume.split(":")[0] for volume in volumes}
    state = targets.get("/opt/airflow/state")
    assert state in compose()["volumes"], f"{name}: RETUNE_STATE_DIR is not on a named volume"


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_environment_contract(name: str) -> None:
    env = as_mapping(services()[name]["environment"])
    for variable, expected in CONTRACT.items():
        assert variable in env, f"{name}: {variable} is not set"
        if isinstance(expected, re.Pattern):
            assert expected.fullmatch(env[variable]), f"{name}: {variable}={env[variable]}"
        else:
            assert env[variable] == expected, f"{name}: {variable}={env[variable]}"


def test_database_passwords_come_from_their_own_variables() -> None:
    env = as_mapping(compose()["x-airflow-common"]["environment"])
    airflow_conn = CONTRACT["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    optuna = CONTRACT["RETUNE_OPTUNA_STORAGE"]
    assert isinstance(airflow_conn, re.Pattern) and isinstance(optuna, re.Pattern)
    airflow_match = airflow_conn.fullmatch(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    optuna_match = optuna.fullmatch(env["RETUNE_OPTUNA_STORAGE"])
    assert airflow_match and optuna_match
    assert airflow_match["var"] == "AIRFLOW_DB_PASSWORD"
    assert optuna_match["var"] == "OPTUNA_DB_PASSWORD"


def test_mlflow_server() -> None:
    mlflow = services()["mlflow"]
    command = command_text("mlflow")
    assert re.search(r"\bmlflow server\b", command)
    assert re.search(rf"--backend-store-uri postgresql\+psycopg2://mlflow:{PW}@postgres:5432/mlflow\b", command)
    match = re.search(rf"postgresql\+psycopg2://mlflow:{PW}@", command)
    assert match and match["var"] == "MLFLOW_DB_PASSWORD"
    assert "--serve-artifacts" in command
    assert re.search(r"--artifacts-destination /mlartifacts\b", command)
    assert re.search(r"--host 0\.0\.0\.0\b", command)
    assert re.search(r"--port 5000\b", command)
    artifacts = [volume for volume in mlflow["volumes"] if volume.split(":")[1] == "/mlartifacts"]
    assert artifacts and artifacts[0].split(":")[0] in compose()["volumes"], "/mlartifacts is not a named volume"
    assert any(str(port).endswith("5000:5000") for port in mlflow["ports"])


def test_postgres_runs_the_init_script() -> None:
    postgres = services()["postgres"]
    assert postgres["image"] == "postgres:16"
    assert any(
        volume.split(":")[0] == "./docker/postgres-init" and volume.split(":")[1] == "/docker-entrypoint-initdb.d"
        for volume in postgres["volumes"]
    )
    env = as_mapping(postgres["environment"])
    for variable in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "OPTUNA_DB_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{variable}(:-[^}}]*)?\}}", env.get(variable, "")), f"postgres: {variable}"


def test_redis() -> None:
    assert services()["redis"]["image"].startswith("redis:7")


# --- the init script --------------------------------------------------------------------------


def test_init_script_creates_databases_and_users() -> None:
    script = INIT_SCRIPT.read_text()
    assert script.startswith("#!/usr/bin/env bash") or script.startswith("#!/bin/bash")
    assert "ON_ERROR_STOP=1" in script
    assert re.search(r"CREATE USER :\"name\" WITH LOGIN PASSWORD :'password'", script)
    assert re.search(r'CREATE DATABASE :"name" OWNER :"name"', script)
    for name in ("airflow", "mlflow", "optuna"):
        call = re.search(rf'^create_user_and_database {name} "\$\{{(?P<var>\w+)(:-)?\}}"$', script, re.MULTILINE)
        assert call, f"the init script does not create the {name} database and user"
        assert call["var"] == f"{name.upper()}_DB_PASSWORD"


def test_init_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run([bash, "-n", str(INIT_SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


# --- secrets and variables --------------------------------------------------------------------


def test_no_pip_additional_requirements() -> None:
    for path in (COMPOSE, DOCKERFILE, ENV_EXAMPLE):
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in path.read_text(), path.name


def test_no_literal_passwords() -> None:
    """Credentials are `${VAR:-default}` references, never literals."""
    for text in scalars(compose()):
        for credentials in URL_CREDENTIALS.finditer(text):
            password = credentials["password"]
            assert password == "" or WHOLE_REF.fullmatch(password), f"literal password in {text!r}"
        for password in re.findall(r"--password[= ]+\"?([^\s\"]+)", text):
            assert password.startswith("$"), f"literal password in {text!r}"
    for name, service in {"x-airflow-common": compose()["x-airflow-common"], **services()}.items():
        for variable, value in as_mapping(service.get("environment")).items():
            if SECRET_NAME.search(variable):
                assert WHOLE_REF.fullmatch(value), f"{name}: {variable} is a literal, not a ${{...}} reference"


def test_every_variable_is_in_env_example() -> None:
    used = set(compose_vars())
    listed = set(env_example())
    assert used, "the compose file reads no variable"
    assert not used - listed, f"missing from .env.example: {sorted(used - listed)}"
    assert not listed - used, f"in .env.example but not read by the compose file: {sorted(listed - used)}"
    required = {
        "POSTGRES_PASSWORD",
        "AIRFLOW_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "OPTUNA_DB_PASSWORD",
        "_AIRFLOW_WWW_USER_USERNAME",
        "_AIRFLOW_WWW_USER_PASSWORD",
        "AIRFLOW_UID",
    }
    assert required <= listed


def test_no_bare_variables() -> None:
    """`$VAR` would be interpolated by Compose too; the file uses `${VAR}` or the `$$` escape."""
    for text in scalars(compose()):
        assert not BARE_VAR.search(text), f"bare $VARIABLE (write ${{VAR}} or $$VAR): {text!r}"


def test_defaults_are_consistent_and_marked_local_only() -> None:
    for name, defaults in compose_vars().items():
        assert len(defaults) <= 1, f"{name} has different defaults: {sorted(defaults)}"
    lines = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    for line in lines:
        if re.search(r"(?<!\$)\$\{\w+:?-", line):
            assert "local use only" in line, f"a default not marked 'local use only': {line.strip()}"


def test_header_names_the_variables_and_warns() -> None:
    text = COMPOSE.read_text()
    header = text[: text.index("\nx-")]
    assert "NOT for production as is" in header
    assert ".env" in header
    for name in compose_vars():
        assert name in header, f"the header does not name {name}"


def test_jwt_secrets_are_long_enough_for_hs512() -> None:
    """Airflow signs its JWTs with HS512 for a string secret; PyJWT warns for a key under 64
    bytes. The advice (token_urlsafe(32): 43 characters), the local default and the stack's
    generated secret were all shorter."""
    import warnings

    import jwt

    stack = _stack_module()
    local_default = compose_vars()["AIRFLOW_JWT_SECRET"]
    assert len(local_default) == 1
    [default] = local_default
    assert "local-only" in default
    secrets = {"compose default": default, ".env.example": env_example()["AIRFLOW_JWT_SECRET"], "stack": stack.new_jwt_secret()}
    advice = re.search(r"Make each with: .*token_urlsafe\((\d+)\)", ENV_EXAMPLE.read_text())
    assert advice and int(advice[1]) >= 64, "the advice in .env.example"
    for where, secret in secrets.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", jwt.warnings.InsecureKeyLengthWarning)
            token = jwt.encode({"sub": "retune"}, secret, algorithm="HS512")
        assert jwt.decode(token, secret, algorithms=["HS512"]) == {"sub": "retune"}, where
    assert stack.new_jwt_secret() != stack.new_jwt_secret()


# --- the image --------------------------------------------------------------------------------


def test_dockerfile_base_image_matches_the_airflow_pin() -> None:
    match = re.fullmatch(r"FROM apache/airflow:(?P<version>\d+\.\d+\.\d+)(-python(?P<python>\d+\.\d+))?", dockerfile_from())
    assert match, f"the Dockerfile must start FROM apache/airflow:<version>: {dockerfile_from()!r}"
    assert match["version"] == "3.3.2"
    assert match["version"] == requirement_pin(ROOT / "requirements.txt", "apache-airflow")
    assert match["version"] == requirement_pin(ROOT / "constraints.txt", "apache-airflow")
    assert match["python"] == "3.11"


def test_dockerfile_installs_the_pins_and_the_project() -> None:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    install = re.search(r"pip install [^\n]*-r \S*requirements\.txt [^\n]*-c \S*constraints\.txt", text)
    assert install, "the Dockerfile must `pip install -r requirements.txt -c constraints.txt`"
    assert re.search(r"pip install [^\n]*--no-deps \S*/opt/retune\b", text)
    copied = " ".join(re.findall(r"^COPY .*$", text, re.MULTILINE))
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "README.md", "include"):
        assert needed in copied, f"the Dockerfile does not copy {needed}"


def test_the_image_records_the_commit_it_was_built_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """.git is not in the build context and the library is installed as a package, so models
    trained in the image were tagged retune.git_commit "unknown". The commit comes in as a
    build arg and stays in the image's environment, which retune.tracking.git_commit reads first."""
    text = DOCKERFILE.read_text()
    assert ".git" in (ROOT / ".dockerignore").read_text().split(), "the premise: no .git in the image"
    arg = re.search(r"^ARG RETUNE_GIT_COMMIT(=\S*)?$", text, re.MULTILINE)
    env = re.search(r"^ENV RETUNE_GIT_COMMIT=\$\{RETUNE_GIT_COMMIT\}$", text, re.MULTILINE)
    assert arg and env and arg.start() < env.start()
    install = text.index("--no-deps /opt/retune")
    assert arg.start() > install, "after the installs: a new commit must not rebuild their layers"
    args = compose()["x-retune-build"]["args"]
    assert re.fullmatch(r"\$\{RETUNE_GIT_COMMIT(:-[^}]*)?\}", args["RETUNE_GIT_COMMIT"])
    assert env_example()["RETUNE_GIT_COMMIT"] == "", "empty in .env: the shell's value is passed at build time"
    assert "RETUNE_GIT_COMMIT=$(git rev-parse HEAD) docker compose" in (ROOT / "README.md").read_text()

    from retune.tracking import git_commit

    monkeypatch.setenv("RETUNE_GIT_COMMIT", "0123abc")
    assert git_commit() == "0123abc"


# --- Compose itself, where it is installed ----------------------------------------------------


def compose_v2() -> list[str] | None:
    """`docker compose` (the v2 plugin) or a v2 `docker-compose`; None when neither is installed."""
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if docker_compose := shutil.which("docker-compose"):
        candidates.append([docker_compose])
    for command in candidates:
        try:
            result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0 and re.search(r"version v?2\.", result.stdout):
            return command
    return None


def test_docker_compose_config(tmp_path: Path) -> None:
    """Compose v2 itself accepts the file with an .env made from .env.example.

    Runs `config --format json` (a superset of `config -q`) and reads its output, so that a
    failure shows even through a wrapper that drops the exit code.
    """
    command = compose_v2()
    if command is None:
        pytest.skip("no Docker Compose v2 (`docker compose` plugin or v2 `docker-compose`) is installed")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yaml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    # Only what Compose needs to run: a variable from this environment would override .env.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_CONFIG") if key in os.environ}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yaml", "config", "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == SERVICES
    example = env_example()
    apiserver = resolved["services"]["airflow-apiserver"]["environment"]
    assert apiserver["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:{example['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow"
    )
    assert resolved["services"]["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"


def _module_from(path: Path, name: str) -> Any:
    """Execute a file that is no package module (a script, a DAG file) as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stack_module() -> Any:
    return _module_from(ROOT / "scripts" / "stack.py", "retune_stack")


SHARED_WITH_STACK = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "MLFLOW_TRACKING_URI",
    "RETUNE_OPTUNA_STORAGE",
    "RETUNE_STATE_DIR",
    "RETUNE_CONFIG_DIR",
)


def _stack_cfg(**overrides: str) -> dict[str, str]:
    """A scripts/stack.py configuration (what its _cfg reads from the environment)."""
    cfg = {
        "dir": "/tmp/x",
        "pg": "postgresql://postgres@127.0.0.1:5432/postgres",
        "prefix": "retune",
        "airflow_port": "8080",
        "mlflow_port": "5000",
        "config_dir": "/c",
        "executor": "celery",
        "redis": "redis://127.0.0.1:6379/0",
        "worker_log_port": "8793",
    }
    return {**cfg, **overrides}


def test_compose_and_no_docker_stack_share_the_environment() -> None:
    stack = _stack_module()
    stack_env = stack.stack_env(_stack_cfg(), "secret")
    compose_env = as_mapping(compose()["x-airflow-common"]["environment"])
    for name in SHARED_WITH_STACK:
        assert name in stack_env, f"scripts/stack.py does not set {name}"
        assert name in compose_env, f"docker-compose.yaml does not set {name}"
    # Both use the psycopg2 driver for every PostgreSQL URL (SQLAlchemy 2.1 defaults to psycopg 3).
    for env in (stack_env, compose_env):
        for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "RETUNE_OPTUNA_STORAGE"):
            assert env[name].startswith("postgresql+psycopg2://"), (name, env[name])


def test_the_stack_runs_compose_s_executor_by_default() -> None:
    """make stack-up ran the LocalExecutor while compose runs the CeleryExecutor, so CI never
    ran compose's executor. Its default (and tests/e2e/test_stack.py) is now compose's: the
    CeleryExecutor, Redis the broker, the Airflow metadata database the result backend (db+ and
    the same URL, as compose writes it), and a `celery worker` beside the other services."""
    stack = _stack_module()
    compose_env = as_mapping(compose()["x-airflow-common"]["environment"])
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RETUNE_STACK_EXECUTOR", raising=False)
        assert stack._cfg()["executor"] == "celery"
    env = stack.stack_env(_stack_cfg(), "secret")
    assert env["AIRFLOW__CORE__EXECUTOR"] == compose_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for each in (env, compose_env):
        assert each["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + each["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert compose_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    # the stack's own: its Redis keys under its database prefix, so stacks sharing a Redis
    # database (a developer's and a test's) never take each other's tasks
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "retune:"
    # Redis would hand a trial worker still running (up to retune_model's TUNE_TIMEOUT, 25 h)
    # to a second Celery worker after the visibility timeout (Celery's default: 24 h)
    tune_timeout = _tune_timeout_s()
    for each in (env, compose_env):
        assert int(each["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) > tune_timeout
    commands = stack._commands(_stack_cfg())
    assert " ".join(commands["celery-worker"][1:3]) == "celery worker" == command_text("airflow-worker")
    # both Celery workers import Retune's libraries before forking their pools (plugins/retune_celery.py)
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == compose_env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "retune_celery.CELERY_CONFIG"


def _tune_timeout_s() -> float:
    """retune_model's TUNE_TIMEOUT, read from the DAG file (its top imports only pendulum and the SDK)."""
    return float(_module_from(ROOT / "dags" / "retune_model.py", "_retune_model_dag").TUNE_TIMEOUT.total_seconds())


def test_the_stack_s_local_executor_needs_no_worker_or_redis() -> None:
    stack = _stack_module()
    env = stack.stack_env(_stack_cfg(executor="local"), "secret")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not [name for name in env if name.startswith(("AIRFLOW__CELERY", "AIRFLOW__CELERY_"))]
    assert "celery-worker" not in stack._commands(_stack_cfg(executor="local"))
    # its scheduler forks the LocalExecutor's workers (and so every task) from a preloaded forkserver
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert "retune.preload" in env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"].split(",")


def test_compose_and_no_docker_stack_run_the_same_commands() -> None:
    stack = _stack_module()
    cfg = _stack_cfg(pg="postgresql://p@h:5432/postgres", prefix="r", airflow_port="1", mlflow_port="2")
    commands = {name: " ".join(cmd[1:3]) for name, cmd in stack._commands(cfg).items()}
    assert commands["mlflow"].startswith("server --backend-store-uri")
    assert "--serve-artifacts" in " ".join(stack._commands(cfg)["mlflow"])
    for service, airflow_command in (
        ("airflow-apiserver", "api-server"),
        ("airflow-scheduler", "scheduler"),
        ("airflow-dag-processor", "dag-processor"),
        ("airflow-triggerer", "triggerer"),
        ("airflow-worker", "celery-worker"),
    ):
        assert command_text(service) in commands[airflow_command], service
    assert "server" in command_text("mlflow")
    assert "--serve-artifacts" in command_text("mlflow")


@pytest.mark.postgres
def test_stack_up_names_a_refused_login_instead_of_starting_a_running_server() -> None:
    """A PostgreSQL that is up but refuses the login (a wrong password or role) was taken for
    one that is not running: stack-up ran pg_ctlcluster start, which failed and hid the cause."""
    from pg import temp_database  # type: ignore[import-not-found]
    from psycopg2.extensions import make_dsn

    stack = _stack_module()
    with temp_database("retune_stack_login") as url:  # skips, or fails when CI=true, without a server
        stack._ensure_postgres(url)  # up, login fine: nothing to do
        with pytest.raises(SystemExit, match=r"running but refused the connection: .*no_such_role_retune"):
            stack._ensure_postgres(make_dsn(url, user="no_such_role_retune"))

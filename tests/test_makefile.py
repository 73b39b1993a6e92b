"""The Makefile's demo environment: the embedded default whatever the calling shell holds, and
no `rm -rf` on a path that make would split at a space."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what `source .stack/env.sh` exports that points at the production topology's services
STACK_ENV = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://postgres@127.0.0.1:5432/retune_airflow",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8793/execution/",
    "AIRFLOW__API__PORT": "8793",
    "RETUNE_OPTUNA_STORAGE": "postgresql+psycopg2://postgres@127.0.0.1:5432/retune_optuna",
    "RETUNE_POLICY_DB": "postgresql+psycopg2://postgres@127.0.0.1:5432/retune_optuna",
    "RETUNE_ARTIFACT_ROOT": "s3://bucket/stack",
    "RETUNE_CONFIG_DIR": "/srv/stack/configs",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5055",
    "RETUNE_STATE_DIR": "/srv/stack/state",
    "AIRFLOW_HOME": "/srv/stack/airflow",
}


def _demo_env(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``env`` under the Makefile's DEMO_ENV (a probe target defined on the command line)."""
    probe = "retune-demo-env-probe: ; @$(DEMO_ENV) env"
    return subprocess.run(
        ["make", "-s", "-f", str(cwd / "Makefile"), "--eval", probe, "retune-demo-env-probe"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_demo_ignores_a_shell_that_sourced_the_stack() -> None:
    """A shell that sourced .stack/env.sh (as the README shows) ran `make demo` against the
    stack's PostgreSQL (Airflow DB, Optuna, policy), so its runs and studies outlived
    `rm -rf .demo` and the stack's scheduler could pick them up."""
    done = _demo_env(ROOT, {**os.environ, **STACK_ENV})
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    demo = str(ROOT / ".demo")
    assert seen["RETUNE_STATE_DIR"] == demo and seen["AIRFLOW_HOME"] == f"{demo}/airflow"
    assert seen["MLFLOW_TRACKING_URI"] == f"sqlite:///{demo}/mlflow.db"
    leaked = {k for k in STACK_ENV if k in seen and seen[k] == STACK_ENV[k]}
    assert not leaked, f"the stack's settings reach the demo: {sorted(leaked)}"


def test_a_checkout_path_with_a_space_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """`rm -rf $(DEMO)` in "<dir>/my project" removed "<dir>/my" (another folder) and then
    failed; make is now refused at once, naming the path."""
    checkout = tmp_path / "my project"
    checkout.mkdir()
    (tmp_path / "my").mkdir()  # the neighbour the unquoted rm would have removed
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "constraints.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, checkout / name)
    done = subprocess.run(["make", "-n", "demo"], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "path has a space" in done.stderr and str(checkout) in done.stderr
    assert (tmp_path / "my").is_dir()


def test_make_airflow_ui_preloads_the_forkserver_as_the_stack_does() -> None:
    """`make airflow-ui` (airflow standalone, LocalExecutor) starts its scheduler with the same
    forkserver settings as the LocalExecutor stack and the test servers (scripts/stack.py)."""
    from stack import FORKSERVER_ENV  # type: ignore[import-not-found]

    probe = "retune-forkserver-probe: ; @env -i $(FORKSERVER_ENV) env"
    done = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "--eval", probe, "retune-forkserver-probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert seen == FORKSERVER_ENV
    assert "retune.preload" in FORKSERVER_ENV["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"].split(",")
    recipe = subprocess.run(
        ["make", "-n", "-f", str(ROOT / "Makefile"), "airflow-ui"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=" in recipe.stdout and "airflow standalone" in recipe.stdout

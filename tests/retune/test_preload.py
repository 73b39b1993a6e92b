"""retune.preload: what the LocalExecutor's forkserver imports before it forks workers and tasks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What each retune_model / monitor_drift task imports inside its function (pipeline.py and the
# modules it calls): a task forked from the preloaded forkserver finds these imported.
TASK_IMPORTS = ("pandas", "numpy", "sklearn.ensemble", "mlflow", "mlflow.sklearn", "optuna", "evidently", "retune.pipeline")


def _import_in_fresh_process(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_preload_imports_the_task_libraries_freezes_the_gc_and_no_airflow() -> None:
    seen = _import_in_fresh_process(
        "import gc, json, sys\n"
        f"before = {{m: m in sys.modules for m in {TASK_IMPORTS!r}}}\n"
        "import retune.preload as p\n"
        "print(json.dumps({'before': before, 'after': {m: m in sys.modules for m in list(p.MODULES) + "
        f"list({TASK_IMPORTS!r})}}, 'frozen': gc.get_freeze_count(), "
        "'airflow': sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))}))"
    )
    assert not any(seen["before"].values()), "a bare interpreter had them already: the test would prove nothing"
    missing = [m for m, there in seen["after"].items() if not there]
    assert not missing, f"not imported by retune.preload: {missing}"
    # gc.freeze(): a collection in a forked task skips (and so does not copy) the preloaded objects
    assert seen["frozen"] > 100_000
    # include/retune imports no Airflow: the forkserver imports Airflow's own modules itself
    assert seen["airflow"] == []


def test_the_other_retune_modules_do_not_import_preload() -> None:
    """Only the forkserver pays for retune.preload: importing the package, the pipeline or the
    CLI must not pull it (and its 3-10 s of imports) in."""
    seen = _import_in_fresh_process(
        "import json, sys\nimport retune, retune.pipeline, retune.cli, retune.settings\n"
        "print(json.dumps({'preload': 'retune.preload' in sys.modules, 'evidently': 'evidently' in sys.modules}))"
    )
    assert seen == {"preload": False, "evidently": False}


def test_a_library_that_fails_to_import_is_skipped_not_raised(tmp_path) -> None:  # noqa: ANN001
    """Python's forkserver ignores only an ImportError of a preload module; any other error
    there would stop it, and with it the LocalExecutor's workers (a Celery worker would not
    start). A broken library is logged and skipped; the rest is still imported."""
    (tmp_path / "optuna").mkdir()
    (tmp_path / "optuna" / "__init__.py").write_text("raise RuntimeError('broken optuna build')\n")
    code = (
        "import json, sys, gc, logging, io\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "buf = io.StringIO(); logging.basicConfig(stream=buf, level=logging.WARNING)\n"
        "import retune.preload\n"
        "print(json.dumps({'pandas': 'pandas' in sys.modules, 'sklearn': 'sklearn.ensemble' in sys.modules, "
        "'frozen': gc.get_freeze_count(), 'log': buf.getvalue()}))"
    )
    seen = _import_in_fresh_process(code)
    assert seen["pandas"] and seen["sklearn"], "the other libraries are still preloaded"
    assert seen["frozen"] > 0
    assert "optuna not preloaded (RuntimeError: broken optuna build)" in seen["log"], seen["log"]

"""plugins/retune_celery.py: the Celery settings of a CeleryExecutor deployment (not a plugin)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_the_celery_config_is_airflow_s_default_plus_the_preload() -> None:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    cfg = importlib.import_module("retune_celery").CELERY_CONFIG
    assert cfg["imports"] == ("retune.preload",)
    assert {k: v for k, v in cfg.items() if k != "imports"} == DEFAULT_CELERY_CONFIG
    assert "imports" not in DEFAULT_CELERY_CONFIG, "Airflow's own imports would be replaced"


def test_the_plugin_manager_skips_it(tmp_path: Path) -> None:
    """It is on sys.path through the plugins folder, but Airflow's plugin loader must not import
    it in every component as a would-be plugin (plugins/.airflowignore). Airflow's own loader,
    in a fresh process on this plugins folder."""
    code = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "print(json.dumps({'celery_config': 'retune_celery' in sys.modules, "
        "'plugins': sorted(p['name'] for p in plugins_manager.get_plugin_info()), "
        "'errors': plugins_manager.get_import_errors()}))"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["errors"] == {}
    assert {"retune_alerts", "retune_links", "retune_listener"} <= set(seen["plugins"]), seen["plugins"]
    assert seen["celery_config"] is False

"""Fixtures for the plugin tests: the plugin modules, private Retune state, the alert token, a
recorder in place of the metadata DB for run creation, and the trigger policy (never mocked)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from retune_alert_samples import PLUGINS, TOKEN, write_config

if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))


@pytest.fixture(scope="session")
def alerts() -> ModuleType:
    """``plugins/retune_alerts.py`` as a module."""
    return importlib.import_module("retune_alerts")


@pytest.fixture(scope="session")
def links() -> ModuleType:
    """``plugins/retune_links.py`` as a module."""
    return importlib.import_module("retune_links")


@pytest.fixture
def retune_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private state and configs: ``demo`` (model ``demo-demand``) and ``shop`` (``shop-sales``)."""
    state, configs = tmp_path / "state", tmp_path / "configs"
    configs.mkdir()
    write_config(configs, "demo", "demo-demand")
    write_config(configs, "shop", "shop-sales")
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    for name in ("RETUNE_POLICY_DB", "RETUNE_OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return {"state": state, "configs": configs}


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The api-server's alert token."""
    monkeypatch.setenv("RETUNE_ALERT_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(alerts: ModuleType) -> Any:
    from fastapi.testclient import TestClient

    with TestClient(alerts.app) as c:
        yield c


@pytest.fixture
def created_runs(alerts: ModuleType, links: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records the runs the receiver creates instead of writing them to a metadata DB, and
    answers which run carries a policy token from that record
    (``tests/plugins/test_plugin_metadata_db.py`` runs the real one)."""
    created: list[dict[str, Any]] = []

    def create(*, run_id: str, conf: dict[str, Any], note: str) -> str:
        created.append({"run_id": run_id, "conf": conf, "note": note})
        return run_id

    monkeypatch.setattr(alerts, "create_retune_run", create)
    monkeypatch.setattr(alerts, "retune_dag_problem", lambda: None)
    monkeypatch.setattr(links, "retune_run_carries", lambda token: any(r["conf"]["policy_token"] == token for r in created))
    return created


@pytest.fixture
def policy() -> ModuleType:
    """The trigger policy, ``retune.policy``; the test fails (never skips) when it is missing."""
    try:
        module = importlib.import_module("retune.policy")
        module.decide  # noqa: B018 (the contract: decide and Decision)
        module.Decision  # noqa: B018
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"retune.policy with decide() and Decision is missing ({exc}): the alert receiver "
            "triggers retunes only through it (include/retune/policy.py)",
            pytrace=False,
        )
    return module

"""Shared fixtures of the retune unit tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO_YAML = REPO / "include" / "configs" / "demo.yaml"


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """BLAS/OpenMP oversubscription makes tiny fits 100x slower on small machines."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def demo_raw() -> dict[str, Any]:
    """The demo config as a plain dict (never mutate it: use ``demo_dict``)."""
    return yaml.safe_load(DEMO_YAML.read_text())


@pytest.fixture
def demo_dict(demo_raw: dict[str, Any]) -> dict[str, Any]:
    """A fresh, mutable copy of the demo config."""
    return copy.deepcopy(demo_raw)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write a config dict as ``<tmp>/configs/<name>.yaml`` and return the path."""

    def write(data: dict[str, Any], name: str = "demo", folder: Path | None = None) -> Path:
        target = folder or tmp_path / "configs"
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def make_cfg(demo_raw: dict[str, Any]) -> Callable[..., Any]:
    """Build a validated RetuneConfig from the demo config with nested overrides.

    ``make_cfg({"data": {"min_rows": 5}}, source_file=...)`` merges dicts recursively;
    a ``None`` value removes the key and a key ending in ``!`` replaces the whole value.
    """
    from retune.config import RetuneConfig

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in over.items():
            if key.endswith("!"):
                out[key[:-1]] = copy.deepcopy(value)
            elif value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    def build(overrides: dict[str, Any] | None = None, *, source_file: str | None = None) -> Any:
        data = merge(demo_raw, overrides or {})
        if source_file is not None:
            data["source_file"] = source_file
        return RetuneConfig.model_validate(data)

    return build


@pytest.fixture
def classification_overrides() -> dict[str, Any]:
    """Overrides that turn the demo config into a binary classification config."""
    return {
        "task": "classification",
        "target": "label",
        "metric": {"name": "accuracy"},
        "model": {
            "family": "hist_gradient_boosting",
            "fixed_params": {"max_iter": 20},
            "search_space!": {"learning_rate": {"type": "log_float", "low": 0.01, "high": 0.3}},
        },
        "registry": {"model_name": "demo-clf"},
    }


@pytest.fixture
def restore_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo ``mlflow.set_tracking_uri``/``set_registry_uri`` made by a test (process globals)."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)


@pytest.fixture
def register_retune() -> Callable[..., dict[str, Any]]:
    """``pipeline.register`` for a retune whose study and validation are given: a parent run in
    ``experiment`` (or ``parent_run_id``: a rerun of the same retune), a fixed production window,
    a one-trial study outcome."""

    def register(
        cl: Any,
        experiment: str,
        config: str,
        key: str,
        validation: dict[str, Any],
        *,
        best_params: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> dict[str, Any]:
        from retune import pipeline

        parent = parent_run_id or cl.create_run(cl.get_experiment_by_name(experiment).experiment_id).info.run_id
        ctx = {
            "config": config,
            "key": key,
            "trigger": "manual",
            "window": {"kind": "production", "start": "2025-01-01T00:00:00+00:00", "end": "2025-01-29T00:00:00+00:00"},
            "rows": {"total": 200},
            "study_name": f"retune-{key}",
            "parent_run_id": parent,
            "data_digest": "0" * 64,
        }
        outcome = {
            "study_name": ctx["study_name"],
            "n_complete": 1,
            "n_pruned": 0,
            "n_failed": 0,
            "stop_reason": "trial budget reached",
            "best_trial": 0,
            "best_params": best_params or {},
        }
        return pipeline.register(ctx, validation, outcome)

    return register

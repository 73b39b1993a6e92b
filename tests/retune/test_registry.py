"""retune.registry against a real MLflow registry (SQLite in a temp folder)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from retune import registry

MODEL = "unit-demand"


@pytest.fixture(scope="module")
def mlflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    """A client on a fresh SQLite tracking/registry store and the URI of one logged sklearn model."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    import numpy as np
    from sklearn.linear_model import LinearRegression

    tmp: Path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        cl = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp_id = cl.create_experiment("registry-tests", artifact_location=(tmp / "artifacts").as_uri())
        model = LinearRegression().fit(np.arange(10.0).reshape(-1, 1), np.arange(10.0) * 2)
        with mlflow.start_run(experiment_id=exp_id):
            info = mlflow.sklearn.log_model(model, name="model")
        yield cl, info.model_uri
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


def versions(cl, name: str) -> list[str]:
    return sorted(str(v.version) for v in cl.search_model_versions(f"name = '{name}'"))


def aliases(cl, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in cl.get_registered_model(name).aliases.items()}


def test_register_is_idempotent_by_key_and_promote_moves_aliases(mlflow_env) -> None:
    cl, uri = mlflow_env

    v1, created = registry.register(cl, MODEL, uri, key="retune-1", tags={"retune.params": json.dumps({"alpha": 1.0})})
    assert created is True
    assert versions(cl, MODEL) == [str(v1.version)]
    assert aliases(cl, MODEL) == {"challenger": str(v1.version)}  # registered, not yet champion
    assert cl.get_model_version(MODEL, str(v1.version)).tags[registry.KEY_TAG] == "retune-1"

    again, created = registry.register(cl, MODEL, uri, key="retune-1", tags={"other": "x"})
    assert created is False
    assert str(again.version) == str(v1.version)
    assert versions(cl, MODEL) == [str(v1.version)]  # no second version for a rerun

    assert registry.promote(cl, MODEL, str(v1.version)) is None  # no previous champion
    assert aliases(cl, MODEL) == {"challenger": str(v1.version), "champion": str(v1.version)}
    assert registry.champion_params(cl, MODEL) == {"alpha": 1.0}

    v2, created = registry.register(cl, MODEL, uri, key="retune-2", tags={"retune.params": json.dumps({"alpha": 2.0})})
    assert created is True and str(v2.version) != str(v1.version)
    assert versions(cl, MODEL) == sorted([str(v1.version), str(v2.version)])
    assert aliases(cl, MODEL) == {"challenger": str(v2.version), "champion": str(v1.version)}

    previous = registry.promote(cl, MODEL, str(v2.version))
    assert str(previous) == str(v1.version)
    assert aliases(cl, MODEL) == {
        "challenger": str(v2.version),
        "champion": str(v2.version),
        "previous_champion": str(v1.version),
    }
    assert registry.champion_params(cl, MODEL) == {"alpha": 2.0}
    assert str(registry.find_by_key(cl, MODEL, "retune-2").version) == str(v2.version)


def test_lookups_on_a_missing_model(mlflow_env) -> None:
    cl, _ = mlflow_env
    assert registry.get_alias(cl, "no-such-model", registry.CHAMPION) is None
    assert registry.champion_params(cl, "no-such-model") is None
    assert registry.find_by_key(cl, "no-such-model", "k") is None


def test_champion_without_params_tag(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-no-params"
    version, _ = registry.register(cl, name, uri, key="k1", tags={})
    registry.promote(cl, name, str(version.version))
    assert registry.get_alias(cl, name, registry.CHAMPION) is not None
    assert registry.champion_params(cl, name) is None


def test_keys_are_per_model(mlflow_env) -> None:
    cl, uri = mlflow_env
    a, created_a = registry.register(cl, "unit-model-a", uri, key="same-key", tags={})
    b, created_b = registry.register(cl, "unit-model-b", uri, key="same-key", tags={})
    assert created_a and created_b
    assert versions(cl, "unit-model-a") == [str(a.version)] and versions(cl, "unit-model-b") == [str(b.version)]


def test_promoting_the_champion_again_changes_nothing(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-repromote"
    v1, _ = registry.register(cl, name, uri, key="a", tags={})
    v2, _ = registry.register(cl, name, uri, key="b", tags={})
    registry.promote(cl, name, str(v1.version))
    registry.promote(cl, name, str(v2.version))
    before = aliases(cl, name)
    assert registry.promote(cl, name, str(v2.version)) is None
    assert aliases(cl, name) == before


def test_a_retried_register_still_promotes_a_version_that_passed(
    mlflow_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw, register_retune
) -> None:
    import yaml

    cl, uri = mlflow_env
    name = "unit-retry"
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "demo.yaml").write_text(yaml.safe_dump({**demo_raw, "registry": {"model_name": name}}))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cl.tracking_uri)
    validation = {
        "model_uri": uri,
        "params": {"learning_rate": 0.1},
        "challenger": {"mae": 1.0, "latency_ms_per_1k": 1.0},
        "champion": None,
        "champion_version": None,
        "gates": [{"name": "staging_load", "passed": True, "detail": "predictions match"}],
    }
    # the first attempt registered the version, then the worker died before promoting it
    version, _ = registry.register(cl, name, uri, key="retune-42", tags={})
    result = register_retune(cl, "registry-tests", "demo", "retune-42", validation, best_params={"learning_rate": 0.1})

    assert result["created"] is False and str(result["version"]) == str(version.version)
    assert str(result["champion_after"]) == str(version.version)


def test_register_refuses_a_key_that_cannot_be_matched_safely(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-quoted-key"
    with pytest.raises(ValueError, match="retune key"):
        registry.register(cl, name, uri, key="manual__it's", tags={})
    assert len(versions(cl, name)) == 0


# --------------------------------------------------------------------------- alias history


def test_promote_records_who_when_why_from_and_to(mlflow_env) -> None:
    from datetime import UTC, datetime, timedelta

    cl, uri = mlflow_env
    name = "unit-history"
    v1, _ = registry.register(cl, name, uri, key="h1", tags={})
    v2, _ = registry.register(cl, name, uri, key="h2", tags={})
    v3, _ = registry.register(cl, name, uri, key="h3", tags={})
    s1, s2, s3 = str(v1.version), str(v2.version), str(v3.version)
    registry.promote(cl, name, s1, who="airflow:retune_model/run-1", why="first model", key="h1")
    registry.promote(cl, name, s2, who="airflow:retune_model/run-2", why="mae 10 -> 8", key="h2")
    registry.promote(cl, name, s3, why="by hand")

    history = registry.alias_history(cl, name)
    moves = [(e["alias"], e["from"], e["to"]) for e in history]
    assert moves == [
        ("champion", None, s1),
        ("champion", s1, s2),
        ("previous_champion", None, s1),
        ("champion", s2, s3),
        ("previous_champion", s1, s2),
    ]
    assert [e["who"] for e in history[:3]] == ["airflow:retune_model/run-1"] + ["airflow:retune_model/run-2"] * 2
    assert history[1]["why"] == "mae 10 -> 8" and history[1]["action"] == "promote" and history[1]["key"] == "h2"
    assert history[-1]["who"].startswith("python:") and history[-1]["why"] == "by hand"
    for e in history:
        when = datetime.fromisoformat(e["when"])
        assert when.tzinfo is not None and abs(datetime.now(UTC) - when) < timedelta(minutes=5)

    # the same moves on the versions they touched (model-version tags)
    assert [(e["alias"], e["from"], e["to"]) for e in registry.alias_history(cl, name, s1)] == [
        ("champion", None, s1),
        ("champion", s1, s2),
        ("previous_champion", None, s1),
        ("previous_champion", s1, s2),
    ]
    assert [(e["alias"], e["to"]) for e in registry.alias_history(cl, name, s3)] == [("champion", s3)]
    raw = cl.get_model_version(name, s2).tags[registry.HISTORY_TAG]
    assert isinstance(json.loads(raw), list)
    # and an MLflow-visible line for the newest champion move
    tags = cl.get_registered_model(name).tags
    assert tags[registry.LAST_MOVE_TAG].endswith(f"promote: champion {s2} -> {s3} by {history[-1]['who']}: by hand")
    assert json.loads(tags[registry.HISTORY_TAG]) == history


def test_repromoting_the_champion_records_nothing(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-history-noop"
    v1, _ = registry.register(cl, name, uri, key="n1", tags={})
    registry.promote(cl, name, str(v1.version), who="t", why="w")
    registry.promote(cl, name, str(v1.version), who="t", why="again")
    assert len(registry.alias_history(cl, name)) == 1


def test_a_retried_move_with_the_same_key_is_recorded_once(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-history-dedupe"
    v1, _ = registry.register(cl, name, uri, key="d1", tags={})
    registry.promote(cl, name, str(v1.version), who="t", why="w", key="d1")
    entry = registry.alias_history(cl, name)[0]
    registry.record_moves(cl, name, [dict(entry)])  # a retry after the aliases moved
    assert registry.alias_history(cl, name) == [entry]


def test_history_keeps_the_newest_100_entries_within_the_tag_limit(mlflow_env) -> None:
    cl, uri = mlflow_env
    name = "unit-history-cap"
    v1, _ = registry.register(cl, name, uri, key="c1", tags={})
    v2, _ = registry.register(cl, name, uri, key="c2", tags={})
    s1, s2 = str(v1.version), str(v2.version)
    entries = [
        {"alias": "champion", "from": s1, "to": s2, "who": "t", "when": f"2025-01-01T{i // 60:02d}:{i % 60:02d}:00+00:00"}
        | {"why": str(i), "action": "promote", "key": None}
        for i in range(150)
    ]
    registry.record_moves(cl, name, entries)
    model_tag = cl.get_registered_model(name).tags[registry.HISTORY_TAG]
    kept = registry.alias_history(cl, name)
    assert len(model_tag) <= registry.MODEL_TAG_MAX_CHARS, "fits PostgreSQL's VARCHAR(5000) of registered-model tags"
    assert 0 < len(kept) <= registry.HISTORY_LIMIT and kept[-1]["why"] == "149", "the newest are kept, oldest dropped"
    assert [e["why"] for e in kept] == [str(i) for i in range(150 - len(kept), 150)]
    per_version = registry.alias_history(cl, name, s2)  # version tags are TEXT: the full 100
    assert len(per_version) == registry.HISTORY_LIMIT and per_version[0]["why"] == "50"
    assert registry.alias_history(cl, "no-such-model") == []


def test_an_unreachable_registry_is_never_read_as_no_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that could not be asked raises; only "not there" means no champion, no
    history, not registered.
    Otherwise a blip would let a challenger skip the comparison with the champion, a retried
    registration add a second version, or a history write drop every earlier move."""
    import socket

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    down = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}", registry_uri=f"http://127.0.0.1:{port}")
    for call in (
        lambda: registry.get_alias(down, "m", registry.CHAMPION),
        lambda: registry.alias_history(down, "m"),
        lambda: registry.find_by_key(down, "m", "retune-1"),
    ):
        with pytest.raises(MlflowException, match="failed with exception"):
            call()


def test_a_missing_model_or_alias_is_none(mlflow_env) -> None:
    cl, uri = mlflow_env
    assert registry.get_alias(cl, "never-registered", registry.CHAMPION) is None
    assert registry.alias_history(cl, "never-registered") == []
    assert registry.find_by_key(cl, "never-registered", "k") is None
    v1, _ = registry.register(cl, "no-champion-yet", uri, key="nc-1", tags={})
    assert registry.get_alias(cl, "no-champion-yet", registry.CHAMPION) is None
    assert str(registry.get_alias(cl, "no-champion-yet", registry.CHALLENGER).version) == str(v1.version)


def _logged_version(cl, name: str) -> tuple[str, Path]:
    """Log and register a fresh sklearn model; return its version and the folder of its files."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.arange(10.0).reshape(-1, 1), np.arange(10.0) * 3)
    exp_id = cl.get_experiment_by_name("registry-tests").experiment_id
    with mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(model, name="model")
    version, _ = registry.register(cl, name, info.model_uri, key=f"{name}-1", tags={})
    folder = Path(mlflow.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    assert (folder / "MLmodel").exists()
    return str(version.version), folder


def test_load_sklearn_tells_a_failed_fetch_from_a_broken_model(mlflow_env) -> None:
    """A fetch that fails is RegistryUnavailableError (retry, never "the champion is broken");
    files that are there but do not unpickle are a plain RegistryError."""
    import numpy as np

    from retune.errors import RegistryError, RegistryUnavailableError

    cl, _ = mlflow_env
    version, folder = _logged_version(cl, "load-me")
    model = registry.load_sklearn(cl, "load-me", version)
    assert np.allclose(model.predict(np.array([[2.0]])), [6.0])

    pickles = [p for p in folder.glob("model.*")]  # model.skops (MLflow 3's default) or model.pkl
    assert pickles, f"no serialized model under {folder}"
    kept = pickles[0].read_bytes()
    pickles[0].write_bytes(b"not a pickle")
    with pytest.raises(RegistryError, match="load-me version .* does not load") as broken:
        registry.load_sklearn(cl, "load-me", version)
    assert not isinstance(broken.value, RegistryUnavailableError)
    pickles[0].write_bytes(kept)

    moved = folder.with_name(folder.name + "-gone")
    folder.rename(moved)
    try:
        with pytest.raises(RegistryUnavailableError, match="load-me version .* could not be fetched"):
            registry.load_sklearn(cl, "load-me", version)
    finally:
        moved.rename(folder)
    assert np.allclose(registry.load_sklearn(cl, "load-me", version).predict(np.array([[1.0]])), [3.0])


def test_load_sklearn_from_a_registry_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from mlflow import MlflowClient

    from retune.errors import RegistryUnavailableError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    down = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}", registry_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(RegistryUnavailableError, match="m version 1 could not be fetched"):
        registry.load_sklearn(down, "m", 1)

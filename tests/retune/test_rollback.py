"""Promotion safety: one-step rollback (library and CLI) and versions that do not load.

One MLflow store (SQLite in a temp state folder) serves the module; each test uses its own
registered model. The CLI runs as ``python -m retune rollback`` with RETUNE_STATE_DIR and
RETUNE_CONFIG_DIR pointing at that state.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from retune import registry
from retune.errors import NothingToRollBackError, RegistryError

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Store:
    state: Path
    configs: Path
    log_model: Callable[..., str]
    write_config: Callable[[str, str], None]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, demo_raw: dict[str, Any]) -> Iterator[Store]:
    """The embedded default (RETUNE_STATE_DIR) with an experiment to log small models into."""
    import numpy as np
    import pandas as pd

    tmp = tmp_path_factory.mktemp("rollback")
    state, configs = tmp / "state", tmp / "configs"
    configs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETUNE_STATE_DIR", str(state))
        mp.setenv("RETUNE_CONFIG_DIR", str(configs))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from retune import tracking
        from retune.settings import get_settings

        settings = get_settings()
        cl = tracking.client(settings)
        exp_id = tracking.ensure_experiment(cl, "rollback-tests", settings)
        X = pd.DataFrame({"x": np.arange(20.0)})

        def log_model(slope: float = 2.0) -> str:
            import mlflow
            from sklearn.linear_model import LinearRegression

            tracking.client(settings)  # the fluent API logs to this store
            model = LinearRegression().fit(X, X["x"] * slope)
            with mlflow.start_run(experiment_id=exp_id):
                # explicit requirements: no inference subprocess, ~50 ms a model
                info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3), pip_requirements=["scikit-learn"])
            return str(info.model_uri)

        def write_config(config: str, model_name: str) -> None:
            raw = {**demo_raw, "name": config, "registry": {"model_name": model_name}}
            (configs / f"{config}.yaml").write_text(yaml.safe_dump(raw))

        yield Store(state, configs, log_model, write_config)


@pytest.fixture
def cl(store: Store, monkeypatch: pytest.MonkeyPatch) -> Any:
    from retune import tracking
    from retune.settings import get_settings

    monkeypatch.setenv("RETUNE_STATE_DIR", str(store.state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(store.configs))
    return tracking.client(get_settings())


def corrupt(model_uri: str) -> None:
    """Overwrite the serialized model of a logged model with garbage (the MLmodel file stays)."""
    import mlflow

    folder = Path(mlflow.get_logged_model(model_uri.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    files = [p for p in folder.iterdir() if p.name.startswith("model.")]
    assert files, list(folder.iterdir())
    for p in files:
        p.write_bytes(b"not a model")


def two_champions(cl: Any, store: Store, name: str) -> tuple[str, str, list[str]]:
    """v1 promoted, then v2 promoted: champion v2, previous_champion v1."""
    uris = [store.log_model(1.0), store.log_model(3.0)]
    v1, _ = registry.register(cl, name, uris[0], key=f"{name}-1", tags={})
    v2, _ = registry.register(cl, name, uris[1], key=f"{name}-2", tags={})
    registry.promote(cl, name, str(v1.version), who="airflow:retune_model/r1", why="first")
    registry.promote(cl, name, str(v2.version), who="airflow:retune_model/r2", why="better")
    return str(v1.version), str(v2.version), uris


def aliases(cl: Any, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in cl.get_registered_model(name).aliases.items()}


def test_rollback_moves_champion_back_and_a_second_one_undoes_it(cl, store: Store) -> None:
    name = "rb-twice"
    s1, s2, _ = two_champions(cl, store, name)
    assert aliases(cl, name) == {"challenger": s2, "champion": s2, "previous_champion": s1}

    first = registry.rollback(cl, name, who="cli:ana", why="v2 over-forecasts")
    assert first["champion_before"] == s2 and first["champion_after"] == s1 and first["previous_champion_after"] == s2
    assert first["repeated"] is False
    assert aliases(cl, name) == {"challenger": s2, "champion": s1, "previous_champion": s2}

    second = registry.rollback(cl, name, who="cli:bo", why="it was fine after all")
    assert second["champion_after"] == s2
    assert aliases(cl, name) == {"challenger": s2, "champion": s2, "previous_champion": s1}, "two rollbacks restore"

    history = registry.alias_history(cl, name)
    rollbacks = [(e["alias"], e["from"], e["to"], e["who"], e["why"]) for e in history if e["action"] == "rollback"]
    assert rollbacks == [
        ("champion", s2, s1, "cli:ana", "v2 over-forecasts"),
        ("previous_champion", s1, s2, "cli:ana", "v2 over-forecasts"),
        ("champion", s1, s2, "cli:bo", "it was fine after all"),
        ("previous_champion", s2, s1, "cli:bo", "it was fine after all"),
    ]
    assert all(e["when"] for e in history)
    assert sum(e["action"] == "rollback" for e in registry.alias_history(cl, name, s1)) == 4  # on both versions
    assert f"rollback: champion {s1} -> {s2} by cli:bo" in cl.get_registered_model(name).tags[registry.LAST_MOVE_TAG]


def test_rollback_is_refused_when_the_target_does_not_load(cl, store: Store) -> None:
    name = "rb-broken"
    s1, s2, uris = two_champions(cl, store, name)
    before = (aliases(cl, name), registry.alias_history(cl, name))
    corrupt(uris[0])  # previous_champion's artifact

    with pytest.raises(RegistryError, match=rf"{name} version {s1} does not load"):
        registry.rollback(cl, name, who="cli:ana", why="try")
    assert (aliases(cl, name), registry.alias_history(cl, name)) == before, "champion and history unchanged"
    assert aliases(cl, name)["champion"] == s2
    with pytest.raises(RegistryError, match="does not load"):
        registry.check_loads(cl, name, s1)
    assert registry.check_loads(cl, name, s2) == 3  # the champion's input example


def test_rollback_needs_a_champion_and_a_previous_one(cl, store: Store) -> None:
    name = "rb-single"
    with pytest.raises(NothingToRollBackError, match="no champion"):
        registry.rollback(cl, name, who="t", why="w")
    v1, _ = registry.register(cl, name, store.log_model(), key="single-1", tags={})
    with pytest.raises(NothingToRollBackError, match="no champion"):
        registry.rollback(cl, name, who="t", why="w")
    registry.promote(cl, name, str(v1.version))
    with pytest.raises(NothingToRollBackError, match="no previous_champion"):
        registry.rollback(cl, name, who="t", why="w")
    assert aliases(cl, name)["champion"] == str(v1.version)


def test_a_retried_rollback_with_the_same_key_does_not_roll_back_twice(cl, store: Store) -> None:
    name = "rb-retry"
    s1, s2, _ = two_champions(cl, store, name)
    done = registry.rollback(cl, name, who="airflow:rollback_model/run-1", why="w", key="rollback_model/run-1")
    again = registry.rollback(cl, name, who="airflow:rollback_model/run-1", why="w", key="rollback_model/run-1")
    assert done["champion_after"] == again["champion_after"] == s1 and again["repeated"] is True
    assert aliases(cl, name)["champion"] == s1
    assert sum(e["action"] == "rollback" for e in registry.alias_history(cl, name)) == 2, "recorded once"

    # interrupted after moving champion only: the retry completes the rollback
    cl.set_registered_model_tag(
        name, registry.ROLLBACK_TAG, json.dumps({"key": "k2", "from": s1, "to": s2, "when": "2025-01-01T00:00:00+00:00"})
    )
    cl.set_registered_model_alias(name, registry.CHAMPION, s2)
    finished = registry.rollback(cl, name, who="airflow:rollback_model/run-2", why="w", key="k2")
    assert finished["repeated"] is True
    assert aliases(cl, name) == {"challenger": s2, "champion": s2, "previous_champion": s1}
    assert registry.alias_history(cl, name)[-2]["key"] == "k2"


def test_a_retried_rollback_never_undoes_a_promotion_made_between_attempts(cl, store: Store) -> None:
    """Rollback k1 moved champion v2 -> v1; then a retune promoted v3; then k1 ran again (the
    task is retried after its first attempt lost its answer). It must report the rollback it
    did, not roll v3 back. A rollback whose first attempt never moved anything, retried
    after the champion changed, is refused."""
    from retune.errors import ChampionChangedError

    name = "rb-between"
    s1, _, _ = two_champions(cl, store, name)
    registry.rollback(cl, name, who="airflow:rollback_model/k1", why="w", key="k1")
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    registry.promote(cl, name, str(v3.version), who="airflow:retune_model/r3", why="better", key="r3")
    moves = len(registry.alias_history(cl, name))
    again = registry.rollback(cl, name, who="airflow:rollback_model/k1", why="w", key="k1")
    assert again["repeated"] is True and again["champion_after"] == s1 and again["champion_now"] == str(v3.version)
    assert aliases(cl, name)["champion"] == str(v3.version), "the promotion made after the rollback stands"
    assert len(registry.alias_history(cl, name)) == moves

    # a first attempt that wrote its plan and died before moving anything; the champion changes
    cl.set_registered_model_tag(
        name,
        registry.ROLLBACK_TAG,
        json.dumps({"key": "k2", "from": str(v3.version), "to": s1, "when": "2025-01-01T00:00:00+00:00"}),
    )
    v4, _ = registry.register(cl, name, store.log_model(5.0), key=f"{name}-4", tags={})
    registry.promote(cl, name, str(v4.version), who="t", why="even better", key="r4")
    with pytest.raises(ChampionChangedError, match=rf"rollback k2 was to move champion {v3.version} -> {s1}"):
        registry.rollback(cl, name, who="airflow:rollback_model/k2", why="w", key="k2")
    assert aliases(cl, name)["champion"] == str(v4.version)


def test_a_rollback_refuses_when_a_retune_promotes_while_it_checks_the_target(
    cl, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback read champion v2 and previous_champion v1, then loaded v1 (seconds with
    remote artifacts); meanwhile a retune promoted v3 over v2. Moving on would set champion
    v1 and previous_champion v2: v3, the newest champion, would be neither, and the history
    would record 2 -> 1. The rollback re-reads both aliases after the check and writes nothing."""
    from retune.errors import ChampionChangedError

    name = "rb-race-check"
    s1, s2, _ = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    check_loads = registry.check_loads

    def slow_check(*args: Any, **kwargs: Any) -> int:
        rows = check_loads(*args, **kwargs)
        registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="gates passed", key="r3", expected_champion=s2)
        return rows

    monkeypatch.setattr(registry, "check_loads", slow_check)
    with pytest.raises(ChampionChangedError, match=rf"versions {s2} and {s1} when the rollback began, {s3} and {s2} after"):
        registry.rollback(cl, name, who="cli:ops", why="v2 bad", key="rb-race-check-1")
    assert aliases(cl, name) == {"challenger": s3, "champion": s3, "previous_champion": s2}, "the promotion stands"
    last = registry.alias_history(cl, name)[-2:]
    assert [(e["alias"], e["from"], e["to"], e["action"]) for e in last] == [
        ("champion", s2, s3, "promote"),
        ("previous_champion", s1, s2, "promote"),
    ], "no rollback recorded"
    assert registry.ROLLBACK_TAG not in cl.get_registered_model(name).tags, "no rollback plan written"


def test_a_version_that_cannot_load_is_never_promoted(cl, store: Store, register_retune) -> None:
    """The staging check (a fresh process) refuses a challenger whose artifact is corrupted;
    the staging gate fails and register leaves the champion where it was."""
    import numpy as np
    import pandas as pd

    from retune.config import RetuneConfig
    from retune.metrics import get_metric
    from retune.validation import apply_gates, gates_json, paired_bootstrap, staging_check

    name = "rb-unloadable"
    store.write_config("unload", name)
    good = store.log_model(2.0)
    v1, _ = registry.register(cl, name, good, key="unload-1", tags={})
    registry.promote(cl, name, str(v1.version), who="t", why="first")
    bad = store.log_model(2.0)
    corrupt(bad)

    staging = staging_check(bad, pd.DataFrame({"x": [1.0, 2.0]}), tracking_uri=cl.tracking_uri, timeout=120)
    assert staging["ok"] is False and "failed to load or predict" in staging["error"]

    cfg = RetuneConfig.model_validate(yaml.safe_load((store.configs / "unload.yaml").read_text()))
    metric = get_metric("mae", "regression")
    y = np.linspace(0, 10, 200)
    boot = paired_bootstrap(metric, y, y + 3.0, y + 0.1, seed=1)  # far better: only loading can stop it
    gates = apply_gates(
        cfg,
        metric,
        challenger={"mae": boot.challenger, "latency_ms_per_1k": 1.0},
        champion={"mae": boot.champion, "latency_ms_per_1k": 1.0},
        staging=staging,
        predictions_match=False,
        bootstrap=boot,
    )
    assert [g.name for g in gates if not g.passed] == ["staging_load"]

    validation = {
        "model_uri": bad,
        "params": {},
        "challenger": {"mae": boot.challenger, "latency_ms_per_1k": 1.0},
        "champion": {"mae": boot.champion, "latency_ms_per_1k": 1.0},
        "champion_version": str(v1.version),
        "bootstrap": boot.to_json(),
        "gates": gates_json(gates),
    }
    result = register_retune(cl, "rollback-tests", "unload", "unload-2", validation)
    assert result["promoted"] is False and "staging_load" in result["reason"]
    assert str(result["champion_after"]) == str(v1.version) == aliases(cl, name)["champion"]
    assert aliases(cl, name)["challenger"] == str(result["version"])
    assert [e["to"] for e in registry.alias_history(cl, name)] == [str(v1.version)], "no move recorded"


def test_a_rollback_during_a_retune_keeps_its_challenger_from_promoting(cl, store: Store, register_retune) -> None:
    """The retune validated its challenger against v2; v2 was rolled back to v1 before the
    retune registered: the challenger is registered but v1 stays champion. A retune that
    validated against v1 promotes as usual."""
    name = "rb-race"
    store.write_config("race", name)
    s1, s2, _ = two_champions(cl, store, name)
    stale = _validated_against(store, s2)
    registry.rollback(cl, name, who="cli:ana", why="v2 over-forecasts")
    result = register_retune(cl, "rollback-tests", "race", "race-1", stale)
    assert result["promoted"] is False and str(result["champion_after"]) == s1
    assert "champion changed during the retune" in result["reason"] and f"validated against version {s2}" in result["reason"]
    assert aliases(cl, name) == {"challenger": str(result["version"]), "champion": s1, "previous_champion": s2}
    assert registry.alias_history(cl, name)[-1]["action"] == "rollback", "no move after the rollback"
    tag = cl.get_model_version(name, str(result["version"])).tags["retune.gate_reason"]
    assert "champion changed" in tag

    fresh = register_retune(cl, "rollback-tests", "race", "race-2", _validated_against(store, s1))
    assert fresh["promoted"] is True and aliases(cl, name)["champion"] == str(fresh["version"])


def test_a_retried_register_does_not_undo_a_rollback_made_after_its_promotion(cl, store: Store, register_retune) -> None:
    """The retune promoted v3 over v2; a person rolled back to v2; then the register task ran
    again (an Airflow retry or a cleared run, same key). It finds v3 already registered and
    was validated against v2, which is champion again: without the history check it would
    promote v3 a second time and silently undo the rollback."""
    name = "rb-retry-register"
    store.write_config("retry-register", name)
    s1, s2, _ = two_champions(cl, store, name)
    validation = _validated_against(store, s2)
    first = register_retune(cl, "rollback-tests", "retry-register", "rr-1", validation)
    v3 = str(first["version"])
    assert first["promoted"] is True and aliases(cl, name)["champion"] == v3
    registry.rollback(cl, name, who="cli:ana", why="v3 over-forecasts")
    assert aliases(cl, name)["champion"] == s2
    moves = len(registry.alias_history(cl, name))

    retried = register_retune(cl, "rollback-tests", "retry-register", "rr-1", validation)
    assert str(retried["version"]) == v3 and retried["created"] is False
    assert retried["promoted"] is False and "already promoted by rr-1" in retried["reason"]
    assert aliases(cl, name)["champion"] == s2, "the rollback stands"
    assert len(registry.alias_history(cl, name)) == moves, "no move recorded"


def test_a_promotion_aged_out_of_the_model_history_is_not_made_again(cl, store: Store) -> None:
    """The registered model's history tag is capped at 5,000 characters: after a few dozen
    moves the entry of the retune that promoted v3 is gone from it. Its register task,
    cleared once the champion is back on v2 (the version it validated against), must still
    see from v3's own history that it promoted v3 and not undo the rollback."""
    from retune.errors import ChampionChangedError

    name = "rb-aged-out"
    s1, s2, _ = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="gates passed", key="r3", expected_champion=s2)
    registry.rollback(cl, name, who="cli:ana", why="v3 over-forecasts")
    later = [  # later moves between v1 and v2 that push r3's entry out of the model's tag
        registry._entry(registry.CHAMPION, s1, s2, who="cli:bo", why="x" * 200, action="rollback", key=None, when=f"{i}")
        for i in range(30)
    ]
    registry.record_moves(cl, name, later)
    assert not any(e["key"] == "r3" for e in registry.alias_history(cl, name)), "aged out of the model history"
    assert any(e["key"] == "r3" for e in registry.alias_history(cl, name, s3)), "still in v3's own history"
    assert aliases(cl, name)["champion"] == s2

    with pytest.raises(ChampionChangedError, match=f"version {s3} was already promoted by r3"):
        registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="gates passed", key="r3", expected_champion=s2)
    assert aliases(cl, name) == {"challenger": s3, "champion": s2, "previous_champion": s3}, "the rollback stands"


def test_a_retried_rollback_aged_out_of_the_model_history_is_still_known_as_done(cl, store: Store) -> None:
    """Rollback k1 moved champion v2 -> v1, a retune promoted v3, and enough moves followed to
    push k1's entries out of the model's capped history. k1 retried must still report the
    rollback it did (from v1's own history), not fail as "never moved", and write nothing."""
    name = "rb-aged-retry"
    s1, s2, _ = two_champions(cl, store, name)
    registry.rollback(cl, name, who="airflow:rollback_model/k1", why="w", key="k1")
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="better", key="r3")
    later = [
        registry._entry(registry.PREVIOUS, s2, s3, who="cli:bo", why="x" * 200, action="manual", key=None, when=f"{i}")
        for i in range(30)
    ]
    registry.record_moves(cl, name, later)
    assert not any(e["key"] == "k1" for e in registry.alias_history(cl, name)), "aged out of the model history"
    tags_before = cl.get_registered_model(name).tags

    again = registry.rollback(cl, name, who="airflow:rollback_model/k1", why="w", key="k1")
    assert again["repeated"] is True and again["champion_after"] == s1 and again["champion_now"] == s3
    assert aliases(cl, name)["champion"] == s3, "the promotion made after the rollback stands"
    tags_after = cl.get_registered_model(name).tags
    assert tags_after[registry.HISTORY_TAG] == tags_before[registry.HISTORY_TAG], "nothing recorded again"
    assert tags_after[registry.LAST_MOVE_TAG] == tags_before[registry.LAST_MOVE_TAG]


def _validated_against(store: Store, champion: str) -> dict[str, Any]:
    """A challenger that passed every gate against ``champion``."""
    return {
        "model_uri": store.log_model(2.0),
        "params": {},
        "challenger": {"mae": 1.0, "latency_ms_per_1k": 1.0},
        "champion": {"mae": 2.0, "latency_ms_per_1k": 1.0},
        "champion_version": champion,
        "gates": [{"name": "beats_champion", "passed": True, "detail": "mae 1.0 < 2.0"}],
    }


def _fail_history_write_once(monkeypatch: pytest.MonkeyPatch, method: str = "set_registered_model_tag") -> None:
    """The first ``retune.alias_history`` write by ``method`` fails (HTTP 503 in production)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    write = getattr(MlflowClient, method)
    failing = [True]

    def flaky(self: Any, *args: Any) -> None:
        if registry.HISTORY_TAG in args and failing:
            failing.clear()
            raise MlflowException("503 Service Unavailable", error_code="TEMPORARILY_UNAVAILABLE")
        write(self, *args)

    monkeypatch.setattr(MlflowClient, method, flaky)


def test_a_promotion_whose_history_write_failed_is_recorded_by_the_retry(
    cl, store: Store, register_retune, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register task moved champion v2 -> v3, then MLflow failed the history write. Its
    retry found v3 champion already: it skipped promotion, so the move was never recorded and
    the run reported "not promoted"; and with nothing in the history, the task cleared after
    a person rolled back to v2 promoted v3 again. Now the retry records the moves (the first
    attempt's who, why and when, once) and reports the promotion; the cleared task is refused."""
    from mlflow.exceptions import MlflowException

    name = "rb-half-promoted"
    store.write_config("half", name)
    s1, s2, _ = two_champions(cl, store, name)
    validation = _validated_against(store, s2)
    _fail_history_write_once(monkeypatch)
    with pytest.raises(MlflowException, match="503"):
        register_retune(cl, "rollback-tests", "half", "half-1", validation)
    v3 = aliases(cl, name)["champion"]
    assert v3 not in (s1, s2) and aliases(cl, name)["previous_champion"] == s2, "the aliases moved"
    assert not any(e["key"] == "half-1" for e in registry.alias_history(cl, name)), "the move is not recorded"

    retried = register_retune(cl, "rollback-tests", "half", "half-1", validation)
    assert retried["promoted"] is True and str(retried["version"]) == v3
    assert str(retried["champion_before"]) == s2 and str(retried["champion_after"]) == v3
    mine = [(e["alias"], e["from"], e["to"], e["action"]) for e in registry.alias_history(cl, name) if e["key"] == "half-1"]
    assert mine == [("champion", s2, v3, "promote"), ("previous_champion", s1, s2, "promote")]
    assert [e["key"] for e in registry.alias_history(cl, name, v3)] == ["half-1"]
    assert f"promote: champion {s2} -> {v3}" in cl.get_registered_model(name).tags[registry.LAST_MOVE_TAG]
    register_retune(cl, "rollback-tests", "half", "half-1", validation)
    assert len([e for e in registry.alias_history(cl, name) if e["key"] == "half-1"]) == 2, "recorded once"

    registry.rollback(cl, name, who="cli:ana", why="v3 over-forecasts")
    cleared = register_retune(cl, "rollback-tests", "half", "half-1", validation)
    assert cleared["promoted"] is False and "already promoted by half-1" in cleared["reason"]
    assert aliases(cl, name) == {"challenger": v3, "champion": s2, "previous_champion": v3}, "the rollback stands"


def test_a_retry_completes_the_versions_history_a_failed_write_left_out(
    cl, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registered model's history was written, the versions' was not: the retry found the
    moves in the model's tag and wrote nothing, so the versions never had them (and the
    promote-twice guard reads the version's)."""
    from mlflow.exceptions import MlflowException

    name = "rb-half-versions"
    s1, s2, _ = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    _fail_history_write_once(monkeypatch, "set_model_version_tag")
    with pytest.raises(MlflowException, match="503"):
        registry.promote(cl, name, s3, who="t", why="w", key="r3", expected_champion=s2)
    assert [e["key"] for e in registry.alias_history(cl, name)[-2:]] == ["r3", "r3"]
    assert registry.alias_history(cl, name, s3) == []

    registry.promote(cl, name, s3, who="t", why="w", key="r3", expected_champion=s2)
    assert [(e["alias"], e["from"], e["to"]) for e in registry.alias_history(cl, name, s3)] == [("champion", s2, s3)]
    assert [(e["alias"], e["to"]) for e in registry.alias_history(cl, name, s1) if e["key"] == "r3"] == [
        ("previous_champion", s2)
    ]
    assert len([e for e in registry.alias_history(cl, name) if e["key"] == "r3"]) == 2, "the model's recorded once"


def test_a_rollback_before_the_retry_of_a_half_recorded_promotion_stands(
    cl, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promotion moved the aliases but its history write failed; a person rolled back
    before the task's retry. The version's plan and its history (champion moved away from
    it) tell the retry it promoted already: it must not promote again."""
    from mlflow.exceptions import MlflowException

    from retune.errors import ChampionChangedError

    name = "rb-half-then-rollback"
    _, s2, _ = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    _fail_history_write_once(monkeypatch)
    with pytest.raises(MlflowException, match="503"):
        registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="gates passed", key="r3", expected_champion=s2)
    registry.rollback(cl, name, who="cli:ana", why="v3 over-forecasts")
    with pytest.raises(ChampionChangedError, match=f"version {s3} was already promoted by r3"):
        registry.promote(cl, name, s3, who="airflow:retune_model/r3", why="gates passed", key="r3", expected_champion=s2)
    assert aliases(cl, name) == {"challenger": s3, "champion": s2, "previous_champion": s3}, "the rollback stands"


def test_a_promotion_that_moved_only_previous_champion_is_recorded_as_it_was(
    cl, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt moved previous_champion to the champion (v2) and died before moving
    champion. The retry must record previous_champion v1 -> v2, not v2 -> v2."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = "rb-half-aliases"
    s1, s2, _ = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, store.log_model(4.0), key=f"{name}-3", tags={})
    s3 = str(v3.version)
    move = MlflowClient.set_registered_model_alias
    failing = [True]

    def flaky(self: Any, model: str, alias: str, version: Any) -> None:
        if alias == registry.CHAMPION and failing:
            failing.clear()
            raise MlflowException("503 Service Unavailable", error_code="TEMPORARILY_UNAVAILABLE")
        move(self, model, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    with pytest.raises(MlflowException, match="503"):
        registry.promote(cl, name, s3, who="t", why="w", key="r3", expected_champion=s2)
    assert aliases(cl, name) == {"challenger": s3, "champion": s2, "previous_champion": s2}
    assert registry.promote(cl, name, s3, who="t", why="w", key="r3", expected_champion=s2) == s2
    assert aliases(cl, name) == {"challenger": s3, "champion": s3, "previous_champion": s2}
    assert [(e["alias"], e["from"], e["to"]) for e in registry.alias_history(cl, name)[-2:]] == [
        ("champion", s2, s3),
        ("previous_champion", s1, s2),
    ]


def test_a_rerun_of_a_register_that_promoted_reports_the_promotion(cl, store: Store, register_retune, tmp_path: Path) -> None:
    """The register task promoted v3 over v2, then ran again with the same key (retried after
    a later step failed, or cleared): it reported "not promoted", champion 3 -> 3, set the
    parent run's retune.promoted to false and the policy outcome to "champion kept". It
    reports the promotion it made, also for a version promoted before the promotion tag."""
    from retune import pipeline

    name = "rb-rerun-report"
    store.write_config("rerun", name)
    _, s2, _ = two_champions(cl, store, name)
    validation = _validated_against(store, s2)
    parent = cl.create_run(cl.get_experiment_by_name("rollback-tests").experiment_id).info.run_id
    first = register_retune(cl, "rollback-tests", "rerun", "rerun-1", validation, parent_run_id=parent)
    v3 = str(first["version"])
    assert first["promoted"] is True and str(first["champion_before"]) == s2

    again = register_retune(cl, "rollback-tests", "rerun", "rerun-1", validation, parent_run_id=parent)
    assert {k: again[k] for k in ("version", "promoted", "champion_before", "champion_after")} == {
        k: first[k] for k in ("version", "promoted", "champion_before", "champion_after")
    }
    assert cl.get_run(parent).data.tags["retune.promoted"] == "true"
    summary = Path(cl.download_artifacts(parent, "summary.md", str(tmp_path))).read_text()
    assert f"champion {s2} -> {v3}" in summary
    assert pipeline.finish("rerun", None, registered=again) == f"registered v{v3}, promoted"
    assert len([e for e in registry.alias_history(cl, name) if e["key"] == "rerun-1"]) == 2, "nothing recorded twice"

    cl.delete_model_version_tag(name, v3, registry.PROMOTION_TAG)  # promoted before the tag existed
    legacy = register_retune(cl, "rollback-tests", "rerun", "rerun-1", validation, parent_run_id=parent)
    assert legacy["promoted"] is True and str(legacy["champion_before"]) == s2
    assert aliases(cl, name)["champion"] == v3


def test_promote_checks_the_expected_champion(cl, store: Store) -> None:
    from retune.errors import ChampionChangedError

    name = "rb-expected"
    s1, s2, uris = two_champions(cl, store, name)
    v3, _ = registry.register(cl, name, uris[0], key=f"{name}-3", tags={})
    with pytest.raises(
        ChampionChangedError, match=rf"champion is version {s2} but version {v3.version} was validated against version {s1}"
    ):
        registry.promote(cl, name, str(v3.version), expected_champion=s1)
    with pytest.raises(ChampionChangedError, match="validated against version None"):
        registry.promote(cl, name, str(v3.version), expected_champion=None)
    assert aliases(cl, name)["champion"] == s2
    assert registry.promote(cl, name, str(v3.version), expected_champion=int(s2)) == s2
    assert aliases(cl, name)["champion"] == str(v3.version)


def _cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RETUNE_STATE_DIR": str(store.state),
        "RETUNE_CONFIG_DIR": str(store.configs),
        "PYTHONPATH": str(ROOT / "include"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "retune", "rollback", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_cli_rollback(cl, store: Store) -> None:
    name = "rb-cli"
    store.write_config("clidemo", name)
    s1, s2, _ = two_champions(cl, store, name)

    proc = _cli(store, "--config", "clidemo", "--why", "bad forecasts since Monday")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["champion_before"] == s2 and result["champion_after"] == s1
    assert aliases(cl, name) == {"challenger": s2, "champion": s1, "previous_champion": s2}
    last = registry.alias_history(cl, name)[-2]
    assert (last["alias"], last["from"], last["to"]) == ("champion", s2, s1)
    assert last["who"] == f"cli:{getpass.getuser()}" and last["why"] == "bad forecasts since Monday"


def test_cli_rollback_refusals(cl, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    from retune import cli

    name = "rb-cli-single"
    store.write_config("clisingle", name)
    v1, _ = registry.register(cl, name, store.log_model(), key="clisingle-1", tags={})
    registry.promote(cl, name, str(v1.version))

    assert cli.main(["rollback", "--config", "clisingle"]) == 1
    assert "refused" in capsys.readouterr().err and aliases(cl, name)["champion"] == str(v1.version)
    assert cli.main(["rollback", "--config", "no-such-config"]) == 1
    assert "no-such-config.yaml" in capsys.readouterr().err
    assert cli.main(["rollback", "--config", "../etc/passwd"]) == 1
    assert "not valid" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["rollback"])
    assert usage.value.code == 2

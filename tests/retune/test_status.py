"""``python -m retune status``: champion, challenger and why not promoted, the last champion move,
a running retune and the newest trigger decisions, on the embedded default (real SQLite stores)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from retune.cli import main


def _embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: Path | None = None) -> None:
    """The embedded default in ``tmp_path``: SQLite state in ``state`` (default ``state/``), configs in ``configs/``."""
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state or tmp_path / "state"))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(tmp_path / "configs"))
    for var in ("MLFLOW_TRACKING_URI", "RETUNE_POLICY_DB", "RETUNE_OPTUNA_STORAGE"):
        monkeypatch.delenv(var, raising=False)


def _logged_model(experiment: str) -> tuple[Any, str]:
    """An MLflow client on the current settings and the URI of a small logged model."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from retune import tracking
    from retune.settings import get_settings

    settings = get_settings()
    cl = tracking.client(settings)
    X = pd.DataFrame({"x": np.arange(10.0)})
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(cl, experiment, settings)):
        uri = mlflow.sklearn.log_model(
            LinearRegression().fit(X, X["x"]), name="model", pip_requirements=["scikit-learn"]
        ).model_uri
    return cl, uri


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Any) -> dict[str, str]:
    """Config ``st`` (model ``st-model``): v1 then v2 promoted, v3 registered with failed gates."""
    from retune import registry

    _embedded(tmp_path, monkeypatch)
    write_yaml({**demo_raw, "name": "st", "registry": {"model_name": "st-model"}}, "st", tmp_path / "configs")
    cl, uri = _logged_model("status-tests")
    tags = {"retune.trigger": "drift", "retune.gates": "passed", "retune.holdout_mae": "2.5", "retune.train_start": "2025-05-01"}
    v1, _ = registry.register(cl, "st-model", uri, key="k1", tags=tags)
    v2, _ = registry.register(cl, "st-model", uri, key="k2", tags={**tags, "retune.holdout_mae": "2.1"})
    registry.promote(cl, "st-model", str(v1.version), who="airflow:retune_model/r1", why="first")
    registry.promote(cl, "st-model", str(v2.version), who="airflow:retune_model/r2", why="mae 2.5 -> 2.1")
    failed = {**tags, "retune.gates": "failed", "retune.gate_reason": "beats_champion: mae 2.3 not below 2.1"}
    v3, _ = registry.register(cl, "st-model", uri, key="k3", tags=failed)
    return {"v1": str(v1.version), "v2": str(v2.version), "v3": str(v3.version)}


def test_status_shows_aliases_lock_and_decisions(model: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from retune import policy
    from retune.status import model_status, render

    first = policy.decide("st", source="alert", key="alert:st:1")
    skipped = policy.decide("st", source="manual", key="manual:st:2", force=True)
    assert first.triggered and not skipped.triggered

    status = model_status("st")
    reg = status["registry"]
    assert (reg["champion"]["version"], reg["previous_champion"]["version"], reg["challenger"]["version"]) == (
        model["v2"],
        model["v1"],
        model["v3"],
    )
    assert reg["champion"]["holdout_mae"] == "2.1" and reg["challenger"]["gates"] == "failed"
    assert (reg["last_move"]["from"], reg["last_move"]["to"], reg["last_move"]["why"]) == (
        model["v1"],
        model["v2"],
        "mae 2.5 -> 2.1",
    )
    assert (
        status["lock"] is not None and status["lock"]["decision_id"] == first.decision_id and status["lock"]["source"] == "alert"
    )
    assert [d["id"] for d in status["decisions"]] == [skipped.decision_id, first.decision_id], "newest first"
    assert "already running" in status["decisions"][0]["reason"]

    text = render(status)
    assert f"champion           v{model['v2']}  (holdout_mae 2.1" in text
    assert "not promoted: beats_champion: mae 2.3 not below 2.1" in text
    assert "retune running: lock taken" in text and f"decision {first.decision_id}, alert" in text

    assert first.token is not None
    policy.release("st", first.token, outcome="registered v4, promoted")
    assert main(["status", "--config", "st", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["lock"] is None
    assert after["decisions"][1]["outcome"] == "registered v4, promoted"
    assert main(["status", "--config", "st"]) == 0
    assert "retune running: no (lock free)" in capsys.readouterr().out


def test_status_shows_a_covered_alert_as_covered(model: dict[str, str]) -> None:
    """Two alert series in one payload start one retune: status showed two TRIGGER lines."""
    from retune import policy
    from retune.status import model_status, render

    by = policy.decide("st", source="alert", key="alert:st:host-1")
    covered = policy.cover("st", "alert:st:host-2", by)
    status = model_status("st")
    assert [(d["id"], d["triggered"], d["covered"]) for d in status["decisions"]] == [
        (covered.decision_id, False, True),
        (by.decision_id, True, False),
    ]
    lines = [line for line in render(status).splitlines() if "alert " in line]
    assert [line.split()[2] for line in lines] == ["covered", "TRIGGER"], lines


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


def test_status_without_the_registry_still_shows_the_policy_quickly_and_exits_3(
    model: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow down: status waited ~4 minutes (MLflow's 7 HTTP retries with backoff) and then
    exited 0, as if all was read. It gives up after one retry (the user's
    MLFLOW_HTTP_REQUEST_* unset) and exits 3, partial; the variables are left as they were."""
    from retune import policy
    from retune.status import model_status

    decision = policy.decide("st", source="manual", key="manual:st:x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    started = time.monotonic()
    status = model_status("st")
    assert "registry" not in status and "Connection" in status["registry_error"]
    assert status["lock"] is not None and status["lock"]["decision_id"] == decision.decision_id
    assert main(["status", "--config", "st"]) == 3
    assert time.monotonic() - started < 30, "MLflow's default retries were used"
    assert "registry: unreachable" in capsys.readouterr().out
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_quick_http_keeps_the_users_mlflow_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from retune.status import quick_http

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with quick_http():
        assert (os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) == ("4", "10")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "4" and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_status_without_the_policy_database_still_shows_the_registry_and_exits_3(
    model: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy database unreachable: status died with a traceback and showed nothing. The
    policy part is replaced by its error, the registry part is printed, exit code 3."""
    monkeypatch.setenv("RETUNE_POLICY_DB", f"postgresql+psycopg2://postgres@127.0.0.1:{_closed_port()}/retune")
    assert main(["status", "--config", "st"]) == 3
    out = capsys.readouterr().out
    assert f"champion           v{model['v2']}" in out
    assert "policy: unreachable: OperationalError" in out and "retune running" not in out
    assert main(["status", "--config", "st", "--json"]) == 3
    found = json.loads(capsys.readouterr().out)
    assert found["registry"]["champion"]["version"] == model["v2"]
    assert "OperationalError" in found["policy_error"] and "lock" not in found and "decisions" not in found


@pytest.mark.postgres
def test_status_on_a_policy_database_without_tables_creates_none(
    model: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status is read-only, but reading the policy created its tables (CREATE TABLE on the
    production database). A database without them is read as no lock and no decisions."""
    import sqlalchemy as sa
    from pg import temp_database  # type: ignore[import-not-found]

    from retune import policy

    with temp_database("retune_status") as url:
        monkeypatch.setenv("RETUNE_POLICY_DB", url.replace("postgresql://", "postgresql+psycopg2://"))
        assert main(["status", "--config", "st", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert (found["lock"], found["decisions"]) == (None, [])
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == [], "status created tables"
        engine.dispose()
        decision = policy.decide("st", source="manual", key="manual:st:pg")  # a writer creates them
        assert main(["status", "--config", "st", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["decisions"][0]["id"] == decision.decision_id
        policy._make_tables.cache_clear()  # no engine kept on the dropped database


def test_status_of_an_unknown_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    assert main(["status", "--config", "nope"]) == 1
    assert "nope.yaml: config file does not exist" in capsys.readouterr().err


def test_status_on_a_state_folder_with_no_state_says_so_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], demo_raw: dict[str, Any], write_yaml: Any
) -> None:
    """RETUNE_STATE_DIR unset or mistyped: status printed 'champion -' and no decisions (an
    on-call engineer reads 'no champion') and exited 0, after creating empty mlflow.db and
    policy.db there. It is refused, naming the file, and nothing is created."""
    state = tmp_path / "typo"
    _embedded(tmp_path, monkeypatch, state)
    write_yaml({**demo_raw, "name": "st"}, "st", tmp_path / "configs")
    assert main(["status", "--config", "st"]) == 1
    err = capsys.readouterr().err
    assert f"{state / 'mlflow.db'} does not exist" in err and "RETUNE_STATE_DIR" in err
    assert not state.exists(), "status is read-only: it made the state folder while saying nothing was created"


def test_status_without_a_champion_says_why_the_challenger_was_not_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Any
) -> None:
    """A first model that failed its gates: no champion, and the reason is shown (it was
    shown only beside a champion). No decision yet: the policy part is empty, not created."""
    from retune import registry
    from retune.status import model_status, render

    _embedded(tmp_path, monkeypatch)
    write_yaml({**demo_raw, "name": "first", "registry": {"model_name": "first-model"}}, "first", tmp_path / "configs")
    cl, uri = _logged_model("status-first")
    failed = {"retune.gates": "failed", "retune.gate_reason": "max_latency_ms_per_1k: 80 ms over 50"}
    registry.register(cl, "first-model", uri, key="k1", tags=failed)
    status = model_status("first")
    assert status["registry"]["champion"] is None and (status["lock"], status["decisions"]) == (None, [])
    assert "not promoted: max_latency_ms_per_1k: 80 ms over 50" in render(status)
    assert not (tmp_path / "state" / "policy.db").exists()


def _two_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Any, name: str
) -> tuple[Any, Any, Any]:
    """Config ``name`` (model ``<name>-model``) on the embedded store, with v1 and then v2
    registered as passing their gates and promoted: v2 is champion and challenger."""
    from retune import registry

    _embedded(tmp_path, monkeypatch)
    model = f"{name}-model"
    write_yaml({**demo_raw, "name": name, "registry": {"model_name": model}}, name, tmp_path / "configs")
    cl, uri = _logged_model(f"status-{name}")
    passed = {"retune.gates": "passed", "retune.gate_reason": "all gates passed"}
    v1, _ = registry.register(cl, model, uri, key="k1", tags=passed)
    registry.promote(cl, model, str(v1.version), who="airflow:retune_model/r1", why="first")
    v2, _ = registry.register(cl, model, uri, key="k2", tags=passed)
    registry.promote(cl, model, str(v2.version), who="airflow:retune_model/r2", why="mae 2.5 -> 2.1")
    return cl, v1, v2


def test_a_challenger_promoted_then_rolled_back_is_shown_as_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Any
) -> None:
    """After a rollback the challenger (the version promoted, then rolled back) was shown as
    "not promoted: all gates passed". It is shown as rolled back, with the move; once a second
    rollback makes it champion again, neither line is shown."""
    import pandas as pd

    from retune import registry
    from retune.status import model_status, render

    cl, v1, v2 = _two_promoted(tmp_path, monkeypatch, demo_raw, write_yaml, "rb")
    sample = pd.DataFrame({"x": [1.0, 2.0]})
    registry.rollback(cl, "rb-model", who="cli:ana", why="bad forecasts", sample=sample)

    status = model_status("rb")
    reg = status["registry"]
    assert (reg["champion"]["version"], reg["challenger"]["version"]) == (str(v1.version), str(v2.version))
    left = reg["challenger_left_champion"]
    assert (left["action"], left["from"], left["to"], left["who"]) == ("rollback", str(v2.version), str(v1.version), "cli:ana")
    text = render(status)
    assert "not promoted" not in text
    assert (
        f"rolled back: v{v2.version} was champion until {left['when']} (rollback to v{v1.version} by cli:ana: bad forecasts)"
        in text
    )

    registry.rollback(cl, "rb-model", who="cli:ana", why="it was fine", sample=sample)
    again = model_status("rb")
    assert again["registry"]["champion"]["version"] == str(v2.version) and again["registry"]["challenger_left_champion"] is None
    assert "rolled back:" not in render(again) and "not promoted" not in render(again)


def test_a_challenger_a_later_promotion_replaced_is_shown_as_no_longer_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Any
) -> None:
    """The other way a promoted challenger stops serving: a promotion (not a rollback) moves
    champion to another version while challenger stays. It is "no longer champion", with that
    move, and not "not promoted: all gates passed"."""
    from retune import registry
    from retune.status import model_status, render

    cl, v1, v2 = _two_promoted(tmp_path, monkeypatch, demo_raw, write_yaml, "np")
    registry.promote(cl, "np-model", str(v1.version), who="cli:bo", why="v1 again, by hand")

    reg = model_status("np")["registry"]
    assert (reg["champion"]["version"], reg["challenger"]["version"]) == (str(v1.version), str(v2.version))
    left = reg["challenger_left_champion"]
    assert (left["action"], left["from"], left["to"], left["who"]) == ("promote", str(v2.version), str(v1.version), "cli:bo")
    text = render(model_status("np"))
    assert "not promoted" not in text and "rolled back" not in text
    assert (
        f"no longer champion: v{v2.version} was champion until {left['when']} (promote to v{v1.version} by cli:bo: v1 again, by hand)"
        in text
    )

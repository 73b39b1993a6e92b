"""``python -m retune rollback | tune-worker``: bad usage is exit code 2 with a message, and a
state folder with no Retune state is refused before anything is created in it (real SQLite
stores and a real prepared retune)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from retune.cli import main


def _configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], state: Path) -> None:
    """A small demo config in ``tmp_path/configs``; the embedded default in ``state``."""
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    raw = copy.deepcopy(demo_raw)
    raw["data"]["reference"]["end"] = "2025-02-15"
    raw["model"]["fixed_params"]["max_iter"] = 20
    raw["tuning"].update(n_trials=2, n_steps=2)
    (configs / "demo.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    for var in ("MLFLOW_TRACKING_URI", "RETUNE_POLICY_DB", "RETUNE_OPTUNA_STORAGE", "RETUNE_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("ctx", "said"),
    [
        ("notjson", "--ctx: not JSON"),
        ("[1, 2]", "--ctx: a JSON array, not the object"),
        ("{}", "--ctx: missing key(s) config, window, features, data_digest, experiment_id"),
        ('{"config": "demo"}', "--ctx: missing key(s) window, features"),
    ],
)
def test_tune_worker_with_a_ctx_that_is_not_a_prepared_retune_is_bad_usage(
    ctx: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ctx notjson` and `--ctx '{}'` ended in a raw traceback (JSONDecodeError, KeyError)
    with exit code 1, which means refused; the CLI documents 2 for bad usage."""
    assert main(["tune-worker", "--ctx", ctx]) == 2
    err = capsys.readouterr().err
    assert err.startswith("retune tune-worker: ") and said in err, err
    assert "Traceback" not in err


def test_tune_worker_runs_a_prepared_retune_and_refuses_a_state_folder_without_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    demo_raw: dict[str, Any],
    restore_mlflow_uris: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The context prepare returns passes the --ctx check and the worker runs. The same
    context with a mistyped RETUNE_STATE_DIR opened (and created) an empty mlflow.db; it is
    refused, naming the file, and no database is created."""
    from retune import demo_data, pipeline

    state = tmp_path / "state"
    _configs(tmp_path, monkeypatch, demo_raw, state)
    demo_data.write(state / "data" / "demo", days=60, rows_per_day=30)
    ctx = pipeline.prepare("demo", window_kind="reference", key="cli-worker")
    assert set(pipeline.WORKER_CTX_KEYS) <= set(ctx)
    assert main(["tune-worker", "--ctx", json.dumps(ctx), "--worker", "0"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["trials"] == 2

    typo = tmp_path / "typo"
    typo.mkdir()
    monkeypatch.setenv("RETUNE_STATE_DIR", str(typo))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri set it: another process has not
    assert main(["tune-worker", "--ctx", json.dumps(ctx)]) == 1
    err = capsys.readouterr().err
    assert f"refused: no Retune state here: {typo / 'mlflow.db'} does not exist" in err
    assert list(typo.iterdir()) == [], "nothing created"


def test_rollback_on_a_state_folder_with_no_state_is_refused_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`rollback` with a wrong or fresh RETUNE_STATE_DIR created the folder and a ~1 MB
    mlflow.db and said "no champion", as if the model had none. It says there is no Retune
    state there, as status does, and creates nothing."""
    typo = tmp_path / "typo"
    _configs(tmp_path, monkeypatch, demo_raw, typo)
    assert main(["rollback", "--config", "demo"]) == 1
    err = capsys.readouterr().err
    assert f"retune rollback: refused: no Retune state here: {typo / 'mlflow.db'} does not exist" in err
    assert "RETUNE_STATE_DIR" in err and "no champion" not in err
    assert not typo.exists(), "nothing created, not even the folder"

"""``python -m retune rollback | tune-worker``: bad usage is exit code 2 with a message, and a
state folder with no Retune state is refused before anything is created in it (real SQLite
stores and a real prepared retune)."""

from __future__ import annotations

import contextlib
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


def test_tune_worker_stopped_by_sigterm_fails_its_trial_and_exits_143(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], restore_mlflow_uris: None
) -> None:
    """A trial worker process told to stop (SIGTERM: a supervisor, ``kill``, a pod shut down)
    died at once, leaving its trial in flight and its MLflow child run RUNNING for ever on
    SQLite. Now the trial ends FAIL, its run FAILED, and the worker exits 143 saying why."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna
    from mlflow import MlflowClient

    from retune import demo_data, pipeline
    from retune.cli import TERMINATED

    state = tmp_path / "state"
    _configs(tmp_path, monkeypatch, demo_raw, state)
    demo_data.write(state / "data" / "demo", days=60, rows_per_day=30)
    ctx = pipeline.prepare("demo", window_kind="reference", key="cli-sigterm")
    ctx.update(n_trials=10_000, timeout=None)  # it would run for hours
    storage = f"sqlite:///{state / 'optuna.db'}"
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "retune", "tune-worker", "--ctx", json.dumps(ctx)],
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # three trials finished: a fourth is on its way
            assert proc.poll() is None, f"the worker exited {proc.returncode}"
            assert time.monotonic() < deadline, "the worker never got going"
            with contextlib.suppress(KeyError):
                study = optuna.load_study(study_name=ctx["study_name"], storage=storage)
                if sum(t.state.is_finished() for t in study.trials) >= 3:
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == TERMINATED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    said = log.read()
    assert "retune tune-worker: SIGTERM: the study stopped" in said, said[-2000:]
    trials = optuna.load_study(study_name=ctx["study_name"], storage=storage).trials
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    cl = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    # each trial's child run ended as the trial did: the one in flight FAIL / FAILED when the
    # signal came in its fit, else as it ended (its bookkeeping finishes first)
    as_run = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    ended = [(t.state.name, cl.get_run(t.user_attrs["mlflow_run_id"]).info.status) for t in trials]
    assert all(as_run[trial] == run for trial, run in ended), ended

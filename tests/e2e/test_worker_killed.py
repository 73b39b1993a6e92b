"""A trial worker killed with SIGKILL mid-study: its trial is marked failed and retried (RDB
heartbeats on PostgreSQL), the other worker finishes, and the study completes its budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg import temp_database  # type: ignore[import-not-found]
from tests_e2e_helpers import write_config  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_TRIALS = 10


def test_killed_worker_trial_is_retried_and_study_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from retune import demo_data, pipeline
    from retune.config import TuningConfig
    from retune.settings import get_settings
    from retune.storage import open_storage

    with temp_database("retune_kill") as url:
        state, configs = tmp_path / "state", tmp_path / "configs"
        configs.mkdir()
        monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
        monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
        monkeypatch.setenv("RETUNE_OPTUNA_STORAGE", url.replace("postgresql://", "postgresql+psycopg2://"))
        demo_data.write(state / "data" / "demo", days=70, rows_per_day=120)
        write_config(
            configs,
            "demo",
            {
                "data": {"reference": {"start": "2025-01-01", "end": "2025-03-01"}},
                "model": {"fixed_params": {"max_iter": 300}},
                "tuning": {
                    "n_trials": N_TRIALS,
                    "n_workers": 2,
                    "heartbeat_interval": 1,
                    "grace_period": 3,
                    "max_retry": 2,
                    "pruner": {"type": "none", "args": {}},
                },
            },
        )
        ctx = pipeline.prepare("demo", window_kind="reference", key="kill-test")
        pipeline.warm_start(ctx)
        cmd = [sys.executable, "-m", "retune", "tune-worker", "--ctx", json.dumps(ctx)]
        env = {**os.environ}
        victim = subprocess.Popen([*cmd, "--worker", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        storage = open_storage(get_settings(), TuningConfig(), n_workers=2)
        killed_trial = None
        deadline = time.monotonic() + 120
        while killed_trial is None and time.monotonic() < deadline:
            try:
                study = optuna.load_study(study_name=ctx["study_name"], storage=storage)
                running = [
                    t
                    for t in study.get_trials(deepcopy=False)
                    if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == 1
                ]
            except KeyError:  # study not created yet
                running = []
            if running:
                os.kill(victim.pid, signal.SIGKILL)
                killed_trial = running[0].number
            time.sleep(0.05)
        victim.wait(timeout=30)
        assert killed_trial is not None, "the worker never started a trial"
        survivor = subprocess.run([*cmd, "--worker", "0"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert survivor.returncode == 0, survivor.stderr[-3000:]

        study = optuna.load_study(study_name=ctx["study_name"], storage=storage)
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        assert by_number[killed_trial].state == TrialState.FAIL, "the killed worker's trial is marked failed"
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_trial]
        assert retries, "the failed trial was re-enqueued"
        assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retries[0].params == by_number[killed_trial].params
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(done) >= N_TRIALS, "the study still completes its budget"
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        outcome = pipeline.summarize_study(ctx)
        assert outcome["n_failed"] >= 1
        assert outcome["stop_reason"] == "trial budget reached"
        run_id = by_number[killed_trial].user_attrs["mlflow_run_id"]
        cl = MlflowClient(tracking_uri=get_settings().tracking_uri)
        assert cl.get_run(run_id).info.status == "FAILED"
        del storage

"""Fault: PostgreSQL (the Optuna storage) restarted mid-study. The trial worker either rides
it out or fails cleanly; run again, it resumes the same study and completes the budget, with
no trial left RUNNING.

The test starts its own PostgreSQL cluster (Debian's binaries, as the postgres user) on a
free loopback port, so restarting it disturbs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests_e2e_helpers import write_config  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_TRIALS = 10


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, check=False)


def test_postgres_restart_mid_study_then_rerun_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    from optuna.trial import TrialState

    from retune import demo_data, pipeline
    from retune.config import TuningConfig
    from retune.settings import get_settings
    from retune.storage import open_storage

    bindir = _pg_bin()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (Debian postgresql) are needed in CI")
        pytest.skip("no PostgreSQL server binaries to start a private cluster")
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="retune-pg-"))  # outside pytest's root-only tmp folder
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    init = _as_postgres(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    assert init.returncode == 0, init.stderr
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    start = _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w", "start")
    assert start.returncode == 0, start.stderr
    try:
        state, configs = tmp_path / "state", tmp_path / "configs"
        configs.mkdir()
        monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
        monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
        monkeypatch.setenv("RETUNE_OPTUNA_STORAGE", f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
        demo_data.write(state / "data" / "demo", days=70, rows_per_day=120)
        write_config(
            configs,
            "demo",
            {
                "data": {"reference": {"start": "2025-01-01", "end": "2025-03-01"}},
                "model": {"fixed_params": {"max_iter": 300}},
                "tuning": {
                    "n_trials": N_TRIALS,
                    "heartbeat_interval": 1,
                    "grace_period": 3,
                    "pruner": {"type": "none", "args": {}},
                },
            },
        )
        ctx = pipeline.prepare("demo", window_kind="reference", key="pg-restart")
        pipeline.warm_start(ctx)
        cmd = [sys.executable, "-m", "retune", "tune-worker", "--ctx", json.dumps(ctx), "--worker", "0"]
        worker = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        storage = open_storage(get_settings(), TuningConfig())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                study = optuna.load_study(study_name=ctx["study_name"], storage=storage)
                if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                    break
            except KeyError:
                pass
            time.sleep(0.2)
        restart = _as_postgres(
            str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"), "-m", "fast", "-w", "restart"
        )
        assert restart.returncode == 0, restart.stderr
        _, err = worker.communicate(timeout=600)
        first_rc = worker.returncode  # 0: rode it out; otherwise it failed cleanly with an error
        assert first_rc == 0 or b"Error" in err or b"error" in err
        rerun = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=600, check=False)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(get_settings(), TuningConfig()))
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(done) >= N_TRIALS, "the rerun completes the budget"
        assert len(done) <= N_TRIALS + 1, "finished trials were kept, not redone"
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        outcome = pipeline.summarize_study(ctx)
        assert outcome["stop_reason"] == "trial budget reached"
    finally:
        _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)

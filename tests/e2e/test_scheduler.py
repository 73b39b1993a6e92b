"""Both DAGs under a real scheduler: `airflow standalone` (LocalExecutor, SQLite) on a free
loopback port, started and stopped by the test (tests/airflow_server.py).

The data ends now and the config's drift cron fires every minute, so the scheduler's own
hourly `monitor_drift` run (once the DAG is unpaused) finds drift in the newest window and
triggers `retune_model`, which the scheduler then runs to a registered champion.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow_server import airflow_server  # type: ignore[import-not-found]
from procs import group_members  # type: ignore[import-not-found]
from tests_e2e_helpers import write_config  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

DAYS = 150


def _data_until_now(base: Path) -> tuple[Path, Path]:
    """Demo data whose newest day is today, and a config that checks drift every minute."""
    from retune import demo_data

    start = (datetime.now(UTC) - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    state, configs = base / "state", base / "configs"
    configs.mkdir(parents=True)
    folder = state / "data" / "demo"
    folder.mkdir(parents=True)
    demo_data.generate(days=DAYS, rows_per_day=40, seed=1, start=start).to_csv(folder / "demand.csv", index=False)
    ref_end = start + timedelta(days=56)
    write_config(
        configs,
        "demo",
        {
            "data": {"reference": {"start": start.date().isoformat(), "end": ref_end.date().isoformat()}},
            "drift": {"schedule": "* * * * *"},
            "tuning": {"n_trials": 4, "pruner": {"type": "median", "args": {"n_startup_trials": 2}}},
        },
    )
    return state, configs


def _preloaded_forkserver(pgid: int) -> dict:
    """The scheduler's forkserver in the server's process group: whether it has scikit-learn's
    and pandas' compiled modules mapped (imported by retune.preload), and its children (the
    LocalExecutor's workers, which fork every task)."""
    found = {}
    for pid in group_members(pgid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "multiprocessing.forkserver" not in cmdline:
                continue
            maps = Path(f"/proc/{pid}/maps").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        found = {"pid": pid, "sklearn": "/sklearn/" in maps, "pandas": "/pandas/" in maps, "children": children}
    return found


def test_scheduler_runs_monitor_then_triggered_retune(tmp_path: Path) -> None:
    with airflow_server(tmp_path, unpause=("retune_model", "monitor_drift"), state=_data_until_now) as server:
        deadline = time.monotonic() + 300
        while not (retunes := server.runs("retune_model")):
            server.check_alive()
            assert time.monotonic() < deadline, (
                f"no retune_model run in 300 s; monitor_drift runs: {server.runs('monitor_drift')}"
            )
            time.sleep(5)
        assert len(retunes) == 1, retunes
        retune = server.wait_for_run("retune_model", retunes[0]["dag_run_id"], timeout=300)
        monitors = server.runs("monitor_drift")
        cl = server.mlflow_client()
        assert server.proc is not None
        forkserver = _preloaded_forkserver(server.proc.pid)

    assert any(m["state"] == "success" and m["run_type"] == "scheduled" for m in monitors), monitors
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{tmp_path / 'state' / 'policy.db'}").connect() as conn:
        recorded = conn.execute(sa.text("select drift_detected from retune_windows where config = 'demo'")).scalars().all()
    assert recorded and all(recorded), "the scheduled check's window counts toward hysteresis"
    assert retune["conf"]["trigger"] == "drift" and retune["triggered_by"] == "operator", retune
    champion = cl.get_model_version_by_alias("demo-demand", "champion")
    assert champion.tags["retune.trigger"] == "drift"
    assert champion.tags["airflow.run_id"] == retune["dag_run_id"]
    # The LocalExecutor ran every task in a process forked from the forkserver that had imported
    # Retune's libraries (retune.preload), so no task paid for those imports again.
    assert forkserver, "no forkserver in airflow standalone's process group"
    assert forkserver["sklearn"] and forkserver["pandas"], forkserver
    assert forkserver["children"], "the LocalExecutor's workers are the forkserver's children"

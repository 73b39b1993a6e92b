"""The Retune demo: drift in production data sets off a retune that ends with a new champion.

Runs the real DAGs (``monitor_drift`` and ``retune_model``) with ``dag.test()`` on the
embedded default: SQLite for Airflow, MLflow and Optuna, all under ``$RETUNE_STATE_DIR``
(``.demo/`` from ``make demo``). Where a scheduler would start the ``retune_model`` run that
``monitor_drift`` triggered, the demo runs that same run (same conf) with ``dag.test()``.

Scenario (synthetic store demand, see ``retune.demo_data``):

1. the first model is trained on the reference period (cold start, becomes champion);
2. two production windows without drift: no retune;
3. a window after the first regime change: drift, retune, new champion;
4. a window after it in the same regime: no drift against the new champion's data;
5. a window after the second regime change: drift, a retune warm-started from the first.

Prints a summary table and writes it to ``$RETUNE_STATE_DIR/summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "demo"
STEPS: list[tuple[str, str]] = [
    ("bootstrap", "2025-02-26"),
    ("monitor", "2025-03-12"),
    ("monitor", "2025-04-09"),
    ("monitor", "2025-05-29"),
    ("monitor", "2025-06-19"),
    ("monitor", "2025-07-24"),
]


def _quiet() -> None:
    for name in ("alembic", "mlflow", "optuna", "airflow", "sqlalchemy", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _setup_airflow(state: Path) -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(state / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.utils import db

    db.initdb()


def _dags() -> dict[str, Any]:
    """Parse the DAGs afresh: a DAG object keeps the params of its last dag.test() run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.dags


def _triggered_runs(after: float) -> list[Any]:
    """retune_model runs that monitor_drift queued (a scheduler would start them)."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    with settings.Session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "retune_model", DagRun.state == "queued")).all()
        return [r for r in runs if r.queued_at is None or r.queued_at.timestamp() >= after - 1]


def _unpause(dag_id: str) -> None:
    """Unpause a DAG, as a person does in the UI: DAGs are paused at creation, and
    monitor_drift triggers no retune of a paused retune_model."""
    from airflow import settings
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    with settings.Session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))
        session.commit()


def _short_stop(reason: str | None) -> str | None:
    """``converged`` (early stopping), ``budget`` or ``timeout`` from a study's stop reason."""
    if not reason:
        return None
    return "converged" if reason.startswith("converged") else reason.split()[0].replace("trial", "budget")


def _retune_row(cl: Any, run_id: str) -> dict[str, Any]:
    runs = cl.search_runs(
        [e.experiment_id for e in cl.search_experiments() if e.name == f"retune/{CONFIG}"],
        filter_string=f"tags.`airflow.run_id` = '{run_id}'",
    )
    if not runs:
        return {}
    r = runs[0]
    m, t = r.data.metrics, r.data.tags
    return {
        "parent_run_id": r.info.run_id,
        "warm_start": t.get("retune.warm_start"),
        "mode": t.get("retune.mode"),
        "trials_complete": int(m.get("trials_complete", 0)),
        "trials_pruned": int(m.get("trials_pruned", 0)),
        "stop": _short_stop(t.get("retune.stop_reason")),
        "best_valid": m.get("best_valid_mae"),
        "holdout_challenger": m.get("challenger_mae"),
        "holdout_champion": m.get("champion_mae"),
        "version": t.get("retune.registered_version"),
        "promoted": t.get("retune.promoted") == "true",
    }


def main() -> int:
    """Run the scenario; exit non-zero if any DAG run fails."""
    state = Path(os.environ.setdefault("RETUNE_STATE_DIR", str(ROOT / ".demo"))).resolve()
    state.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RETUNE_CONFIG_DIR", str(ROOT / "include" / "configs"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _quiet()

    from retune import demo_data, registry, tracking
    from retune.settings import get_settings

    settings = get_settings()
    files = demo_data.write(state / "data" / "demo")
    print(f"demo data: {len(files)} files in {state / 'data' / 'demo'}")
    _setup_airflow(state)
    cl = tracking.client(settings)
    model = "demo-demand"

    def champion() -> str | None:
        v = registry.get_alias(cl, model, registry.CHAMPION)
        return v.version if v else None

    rows: list[dict[str, Any]] = []
    started = time.time()
    for kind, window_end in STEPS:
        before = champion()
        row: dict[str, Any] = {"window_end": window_end, "step": kind, "champion_before": before}
        if kind == "bootstrap":
            dr = _dags()["retune_model"].test(
                run_conf={"config": CONFIG, "window": "reference", "trigger": "bootstrap", "force": True}
            )
            if dr.state != "success":
                print(f"bootstrap retune failed: {dr.state}", file=sys.stderr)
                return 1
            _unpause("retune_model")  # dag.test wrote every DAG to the metadata DB, paused
            row.update({"drift_share": None, "action": "first model (cold start)", **_retune_row(cl, dr.run_id)})
        else:
            t0 = time.time()
            dr = _dags()["monitor_drift"].test(run_conf={"config": CONFIG, "window_end": window_end})
            if dr.state != "success":
                print(f"monitor run failed: {dr.state}", file=sys.stderr)
                return 1
            mon = cl.search_runs(
                [e.experiment_id for e in cl.search_experiments() if e.name == f"retune/{CONFIG}/monitoring"],
                filter_string=f"tags.`airflow.run_id` = '{dr.run_id}'",
            )
            row["drift_share"] = mon[0].data.metrics.get("drift_share") if mon else None
            triggered = _triggered_runs(t0)
            if not triggered:
                row["action"] = "no drift: no retune"
            for queued in triggered:
                run = _dags()["retune_model"].test(logical_date=queued.logical_date, run_conf=queued.conf)
                if run.state != "success":
                    print(f"retune failed: {run.state}", file=sys.stderr)
                    return 1
                info = _retune_row(cl, run.run_id)
                row.update(info)
                row["action"] = "drift: retune, " + ("promoted" if info.get("promoted") else "champion kept")
        row["champion_after"] = champion()
        rows.append(row)

    summary = {
        "config": CONFIG,
        "registered_model": model,
        "tracking_uri": settings.tracking_uri,
        "optuna_storage": settings.optuna_storage,
        "airflow_home": os.environ["AIRFLOW_HOME"],
        "seconds": round(time.time() - started, 1),
        "windows": rows,
    }
    (state / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_table(rows)
    print(f"\nMLflow tracking URI: {settings.tracking_uri}\nOptuna storage:      {settings.optuna_storage}")
    print(f"Summary JSON:        {state / 'summary.json'}  ({summary['seconds']} s)")
    print("Where the model stands (champion, challenger, decisions): make status")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    """The summary as a fixed-width table."""

    def fmt(v: Any, spec: str = "") -> str:
        if v is None or v == "":
            return "-"
        return format(v, spec) if spec else str(v)

    header = (
        f"{'window end':<11} {'drift':>5}  {'action':<32} {'mode':<8} {'trials c/p':>10} {'stopped':<9} {'best valid':>10} "
        f"{'holdout':>8} {'stale':>8} {'champion':>9} {'version':>7}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        trials = f"{r['trials_complete']}/{r['trials_pruned']}" if "trials_complete" in r else "-"
        champ = f"{fmt(r.get('champion_before'))}->{fmt(r.get('champion_after'))}"
        print(
            f"{r['window_end']:<11} {fmt(r.get('drift_share'), '.2f'):>5}  {r.get('action', ''):<32} {fmt(r.get('mode')):<8} "
            f"{trials:>10} {fmt(r.get('stop')):<9} {fmt(r.get('best_valid'), '.3f'):>10} {fmt(r.get('holdout_challenger'), '.3f'):>8} "
            f"{fmt(r.get('holdout_champion'), '.3f'):>8} {champ:>9} {fmt(r.get('version')):>7}"
        )


if __name__ == "__main__":
    sys.exit(main())

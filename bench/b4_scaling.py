"""B4 scaling: trials per minute on one PostgreSQL-backed study with K trial workers.

A scratch database on the PostgreSQL server (``RETUNE_BENCH_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) holds the Optuna study (RDB storage with
heartbeats, as in production); MLflow tracks to SQLite in a scratch state folder. For each
K (alternated, repeated) a fresh retune of the demo config is prepared with
:func:`retune.pipeline.prepare` and :func:`retune.pipeline.warm_start`, then K processes run
``python -m retune tune-worker --ctx ... --worker i`` on its one study, exactly what the
mapped ``tune`` tasks run. Throughput = finished trials / (last trial end - first trial
start) x 60; the workers' CPU seconds and the wall time including process start-up are kept
beside it. The database is dropped at the end.

Larger K on a bigger machine: ``python bench/b4_scaling.py --workers 1,2,4,8 --trials 96``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from common import ROOT, clock, log, median, plot_path, pyplot, quiet, ratio, table

PG_ADMIN_DSN = os.environ.get("RETUNE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _settings(quick: bool) -> dict[str, Any]:
    return {"workers": [1, 2], "repeats": 1, "trials": 12} if quick else {"workers": [1, 2], "repeats": 3, "trials": 32}


@contextlib.contextmanager
def temp_database(prefix: str = "retune_bench") -> Iterator[str]:
    """Create a database, yield its URL, drop it afterwards."""
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def environ(values: dict[str, str], drop: tuple[str, ...] = ()) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in [*values, *drop]}
    os.environ.update(values)
    for k in drop:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_config(configs: Path, name: str, trials: int, workers: int) -> None:
    """The demo config with its own model name (so no run warm-starts from another), no
    pruning (every trial costs the same) and a heavier model (trials dominate overheads)."""
    raw = yaml.safe_load((ROOT / "include" / "configs" / "demo.yaml").read_text())
    raw["name"] = name
    raw["registry"]["model_name"] = name
    raw["data"]["reference"] = {"start": "2025-01-01", "end": "2025-03-01"}
    raw["model"]["fixed_params"] = {"max_iter": 300}
    raw["tuning"].update({"n_trials": trials, "n_workers": workers, "timeout": None, "pruner": {"type": "none", "args": {}}})
    (configs / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def one_run(name: str, workers: int, env: dict[str, str]) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from retune import pipeline

    ctx = pipeline.prepare(name, window_kind="reference", key=f"bench-{name}", n_workers=workers)
    pipeline.warm_start(ctx)
    cmd = [sys.executable, "-m", "retune", "tune-worker", "--ctx", json.dumps(ctx)]
    with clock(children=True) as c:
        procs = [
            subprocess.Popen([*cmd, "--worker", str(i)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(workers)
        ]
        errors = [p.communicate()[1] for p in procs]
    failed = [e.decode(errors="replace")[-2000:] for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"tune-worker failed: {failed[0]}")
    study = optuna.load_study(study_name=ctx["study_name"], storage=os.environ["RETUNE_OPTUNA_STORAGE"])
    done = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    starts = [t.datetime_start for t in done if t.datetime_start]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds() for t in done if t.datetime_start and t.datetime_complete
    ]
    per_worker: dict[str, int] = {}
    for t in done:
        key = str(t.user_attrs.get("worker"))
        per_worker[key] = per_worker.get(key, 0) + 1
    return {
        "workers": workers,
        "trials": len(done),
        "trials_per_worker": per_worker,
        "study_span_s": span,
        "median_trial_s": median(durations),
        "concurrency": sum(durations) / span if span else None,  # trials running at once, on average
        "trials_per_minute": None if not span else len(done) / span * 60,
        "wall_s": c.wall,
        "trials_per_minute_wall": len(done) / c.wall * 60 if c.wall else None,
        "worker_cpu_s": c.cpu,
        "cpu_s_per_trial": c.cpu / len(done) if done else None,
    }


def measure(workers: list[int], repeats: int, trials: int) -> dict[str, Any]:
    quiet()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="retune-b4-") as tmp, temp_database() as url:
        from retune import demo_data

        state, configs = Path(tmp) / "state", Path(tmp) / "configs"
        configs.mkdir()
        demo_data.write(state / "data" / "demo", days=70, rows_per_day=150)
        values = {
            "RETUNE_STATE_DIR": str(state),
            "RETUNE_CONFIG_DIR": str(configs),
            "RETUNE_OPTUNA_STORAGE": url.replace("postgresql://", "postgresql+psycopg2://"),
        }
        with environ(values, drop=("MLFLOW_TRACKING_URI", "RETUNE_POLICY_DB", "RETUNE_ARTIFACT_ROOT")):
            env = {**os.environ}
            for rep in range(repeats):
                order = workers if rep % 2 == 0 else list(reversed(workers))
                for k in order:
                    name = f"b4-k{k}-r{rep}"
                    write_config(configs, name, trials, k)
                    log(f"B4 K={k} repeat {rep + 1}/{repeats} ({trials} trials)")
                    load0 = os.getloadavg()[0]
                    res = one_run(name, k, env)
                    res["repeat"] = rep
                    res["load_average_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                    runs.append(res)
                    log(
                        f"B4 K={k}: {res['trials_per_minute']:.1f} trials/min ({res['trials']} trials in {res['study_span_s']:.1f} s)"
                    )
    by_k = {
        k: {
            "trials_per_minute": median([r["trials_per_minute"] for r in runs if r["workers"] == k]),
            "trials_per_minute_wall": median([r["trials_per_minute_wall"] for r in runs if r["workers"] == k]),
            "cpu_s_per_trial": median([r["cpu_s_per_trial"] for r in runs if r["workers"] == k]),
            "median_trial_s": median([r["median_trial_s"] for r in runs if r["workers"] == k]),
            "concurrency": median([r["concurrency"] for r in runs if r["workers"] == k]),
        }
        for k in workers
    }
    return {"runs": runs, "by_workers": by_k}


REPEAT_COMMANDS = [
    "python bench/b4_scaling.py --workers 1,2,4,8 --trials 96   # this benchmark, larger K, on a bigger machine",
    "make stack-up && source .stack/env.sh && airflow dags trigger retune_model "
    '--conf \'{"config": "demo", "window": "reference", "force": true, "n_workers": 8, "n_trials": 96}\'   '
    "# mapped tune tasks on the LocalExecutor stack (PostgreSQL)",
    "docker compose up -d --build --scale airflow-worker=4, then trigger retune_model with the same conf   "
    "# trials spread over a Celery cluster",
]


def paired_ratios(runs: list[dict[str, Any]], k: int, key: str = "trials_per_minute") -> list[float]:
    """Per repeat, ``key`` of K = ``k`` over K = 1's in the same repeat (a repeat runs each K
    once, back to back, so a pair shares the machine's load at the time).

    Args:
        runs: The runs :func:`measure` returns (each has ``workers`` and ``repeat``).
        k: The K to compare with K = 1.
        key: The rate compared.

    Returns:
        One ratio per repeat with both runs.
    """
    by_repeat: dict[int, dict[int, float]] = {}
    for r in runs:
        if r.get(key) is not None:
            by_repeat.setdefault(r["repeat"], {})[r["workers"]] = r[key]
    return [v[k] / v[1] for _, v in sorted(by_repeat.items()) if k in v and 1 in v and v[1]]


def suspicious(value: float | None, k: int) -> bool:
    """A speed-up above K from K workers: more than linear, so the K=1 run was slowed by
    something else (or the K run sped up), not a property of Retune."""
    return value is not None and value > k


def _flag(over: float | None, per_repeat: list[float], k: int) -> str:
    """The table's warning for a speed-up above K (the median, or single repeats marked '!')."""
    above = sum(suspicious(x, k) for x in per_repeat)
    if suspicious(over, k):
        return f"SUSPICIOUS: median above {k}x"
    return f"suspicious: {above} of {len(per_repeat)} repeat(s) above {k}x (!)" if above else ""


def run(quick: bool, out: Path) -> dict[str, Any]:
    s = _settings(quick)
    try:
        res = measure(s["workers"], s["repeats"], s["trials"])
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: reported, not fatal
        import psycopg2

        if isinstance(exc, psycopg2.OperationalError):
            return {"skipped": f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}", "ratios": {}, "repeat_with": REPEAT_COMMANDS}
        raise
    k1 = res["by_workers"][1]["trials_per_minute"]
    k2 = res["by_workers"][2]["trials_per_minute"]
    t1 = res["by_workers"][1]["median_trial_s"]
    paired = {k: paired_ratios(res["runs"], k) for k in res["by_workers"]}
    paired_wall = {k: paired_ratios(res["runs"], k, "trials_per_minute_wall") for k in res["by_workers"]}
    over_k1 = {k: median(v) for k, v in paired.items()}
    rows = [
        [
            k,
            v["trials_per_minute"],
            v["trials_per_minute_wall"],
            v["concurrency"],
            ratio(v["median_trial_s"], t1),
            v["cpu_s_per_trial"],
            over_k1[k],
            ", ".join(f"{x:.2f}" + ("!" if suspicious(x, k) else "") for x in paired[k]),
            _flag(over_k1[k], paired[k], k),
        ]
        for k, v in res["by_workers"].items()
    ]
    result = {
        "settings": s,
        "targets": {"k2_over_k1": ">= 1.7"},
        "ratios": {
            "k2_over_k1": over_k1.get(2),
            "k2_over_k1_per_repeat": paired.get(2),
            "k2_over_k1_wall": median(paired_wall.get(2, [])),
            "k2_over_k1_suspicious": suspicious(over_k1.get(2), 2),
            "k2_over_k1_repeats_above_2": sum(suspicious(x, 2) for x in paired.get(2, [])),
            "k2_over_k1_median_of_medians": ratio(k2, k1),
        },
        "ratio_method": "median over repeats of the paired ratio (K=2 over K=1 in the same repeat)",
        **res,
        "repeat_with": REPEAT_COMMANDS,
        "note": (
            "trials are CPU-bound: on a 2-core machine K=2 can only reach 2x when nothing else runs; "
            "'trials at once' (sum of trial durations / study span) shows the workers overlap, "
            "'trial slowdown' (median trial duration over K=1's) shows how much CPU each got"
        ),
        "table": table(
            f"B4 scaling on one PostgreSQL study ({s['trials']} trials, medians of {s['repeats']}; "
            "'over K=1' pairs each repeat's K run with its K=1 run; above K is flagged as suspicious)",
            [
                "K",
                "trials/min (study)",
                "trials/min (incl. start-up)",
                "trials at once",
                "trial slowdown",
                "CPU s/trial",
                "over K=1 (median of paired)",
                "per repeat",
                "",
            ],
            rows,
        ),
    }
    print("B4: repeat with larger K:\n  " + "\n  ".join(REPEAT_COMMANDS))
    _plot(res, plot_path(out, "B4", quick))
    return result


def _plot(res: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ks = list(res["by_workers"])
    tpm = [res["by_workers"][k]["trials_per_minute"] or 0 for k in ks]
    ax.plot(ks, tpm, "o-", label="measured")
    ax.plot(ks, [tpm[0] * k for k in ks], ":", color="grey", label="linear")
    ax.set_xlabel("trial workers K")
    ax.set_ylabel("trials per minute")
    ax.set_xticks(ks)
    ax.legend(fontsize=8)
    ax.set_title("One PostgreSQL-backed study", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="comma-separated K values, e.g. 1,2,4,8")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    workers = sorted({int(k) for k in args.workers.split(",")} | {1})
    res = measure(workers, args.repeats, args.trials)
    for k, v in res["by_workers"].items():
        over = median(paired_ratios(res["runs"], k))
        flag = f" (suspicious: above {k}x)" if suspicious(over, k) else ""
        print(f"K={k}: {v['trials_per_minute']:.1f} trials/min, {over or 0:.2f}x K=1 (median of paired repeats){flag}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

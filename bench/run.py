"""Run Retune's benchmarks: ``python bench/run.py [--quick] [--only B1,B2]``.

- B1 retune efficiency on real drift (bike sharing, NOAA weather): cold vs pruned vs Retune's
  warm-started pruned study; warm-start modes, pruners, a short-horizon-bias guard;
- B2 drift check: Retune's detectors (default ``profiled``: cached, build + check, and as configured
  with its report on drift; opt-in ``evidently``) vs Evidently's ``DataDriftPreset`` vs scipy;
- B3 orchestration cost: DAG parse time vs ``import airflow.sdk``, per-task overhead under a
  real scheduler (``airflow standalone``, LocalExecutor);
- B4 scaling: trials per minute with K=1 and K=2 workers on one PostgreSQL-backed study;
- B5 outcome on real drift: prequential error of never / Retune / always-cold retuning.

Each prints a table. The results go to ``bench/results/latest.json`` (``--quick``:
``latest-quick.json``), a dated copy beside it and one PNG per benchmark. A benchmark that
cannot run (no datasets, no PostgreSQL) or fails is recorded with the reason; the run goes on
and exits 0: benchmarks never fail on a number.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, git_commit, git_dirty, log, machine, markdown_table, render_table, rnd, write_json  # noqa: E402

BENCHMARKS = {
    "B1": "b1_efficiency",
    "B2": "b2_drift",
    "B3": "b3_orchestration",
    "B4": "b4_scaling",
    "B5": "b5_outcome",
}


SEEDED = ("B1",)  # benchmarks that take --seeds


def parse_seeds(text: str) -> list[int]:
    """``"5-9"``, ``"5,7,9"`` or a mix (``"0-2,7"``) as a list of seeds.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not such a list (naming ``--seeds``).
    """
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected e.g. 5-9 or 5,6,7, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds


def select(only: str, seeds: list[int] | None) -> list[str]:
    """The benchmarks to run: those of ``--only``; without it every one, or with ``--seeds``
    only those that take seeds (``--seeds 5-9`` alone means "B1 on other seeds", not the
    hour-long suite).

    Raises:
        ValueError: An unknown benchmark, or ``--seeds`` with only benchmarks that take none.
    """
    chosen = [b.strip().upper() for b in only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"--only: unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    if not chosen:
        return list(SEEDED) if seeds else list(BENCHMARKS)
    if seeds and not set(chosen) & set(SEEDED):
        raise ValueError(f"--seeds applies to {', '.join(SEEDED)} only; --only {only} takes no seeds")
    return chosen


def run_one(name: str, quick: bool, out: Path, seeds: list[int] | None = None) -> dict:
    """One benchmark in this process (the child side of :func:`isolated`)."""
    t = time.perf_counter()
    try:
        module = importlib.import_module(BENCHMARKS[name])
        res = module.run(quick, out, seeds=seeds) if seeds and name in SEEDED else module.run(quick, out)
    except Exception as exc:  # noqa: BLE001 - a broken benchmark is reported, the others still run
        res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:], "ratios": {}}
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def isolated(name: str, quick: bool, out: Path, seeds: list[int] | None = None) -> dict:
    """One benchmark in a fresh process, so that no thread, cache or environment variable of
    one benchmark can reach another's clocks."""
    with tempfile.TemporaryDirectory(prefix="retune-bench-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", name, "--out", str(out), "--result", str(result)]
        if seeds:
            cmd += ["--seeds", ",".join(map(str, seeds))]
        proc = subprocess.run([*cmd, "--quick"] if quick else cmd, check=False)
        if result.exists():
            return dict(json.loads(result.read_text()))
        return {"error": f"benchmark process exited with {proc.returncode} and no result", "ratios": {}}


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind: temporary folders and started servers are cleaned up


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: all benchmarks in under 10 minutes")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. B1,B2")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default bench/results)")
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        help=f"{', '.join(SEEDED)}: other seeds than the default 0-4 (quick: 0), e.g. 5-9; alone it runs "
        f"only {', '.join(SEEDED)}; use with --out to keep bench/results/latest.json as it is",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        Path(args.result).write_text(json.dumps(rnd(run_one(args.child, args.quick, out, args.seeds), 6), default=str))
        return 0
    try:
        only = select(args.only, args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    started = datetime.now(UTC)
    results: dict[str, object] = {
        "quick": args.quick,
        "seeds": args.seeds,
        "started": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "uncommitted_changes": git_dirty(),
        "machine": machine(),
    }
    stem = "latest-quick" if args.quick else "latest"
    dated = f"{started.strftime('%Y-%m-%dT%H%M')}{'-quick' if args.quick else ''}"
    if set(only) != set(BENCHMARKS) and (out / f"{stem}.json").exists():
        # A subset updates its benchmarks in the latest results and keeps the others.
        previous = json.loads((out / f"{stem}.json").read_text())
        results = {**{k: v for k, v in previous.items() if k in BENCHMARKS}, **results}
    t0 = time.perf_counter()
    for name in only:
        log(f"{name} ({BENCHMARKS[name]}) {'quick' if args.quick else 'full'}")
        res = isolated(name, args.quick, out, args.seeds)
        if "error" in res:
            log(f"{name} failed: {res['error']}")
        res["run_started"] = started.isoformat(timespec="seconds")
        res["commit"] = results["commit"]
        res["uncommitted_changes"] = results["uncommitted_changes"]
        results[name] = res
        write_json(out / f"{stem}.json", results)  # after each benchmark: a stopped run keeps what it measured
        if "table" in res:
            print("\n" + render_table(res["table"]) + "\n", flush=True)
        for extra in res.get("extra_tables", []):
            print(render_table(extra) + "\n", flush=True)
        log(f"{name} done in {res.get('seconds')} s; ratios {rnd(res.get('ratios', {}), 3)}")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(out / f"{stem}.json", results)
    write_json(out / "history" / f"{dated}.json", results)
    dirty = " with uncommitted changes" if results["uncommitted_changes"] else ""
    seeded = f", seeds {','.join(map(str, args.seeds))} ({', '.join(SEEDED)})" if args.seeds else ""
    md = [
        f"Benchmarks ({'quick' if args.quick else 'full'}), {started.date()}, commit {str(results['commit'])[:10]}{dirty}{seeded}",
        "",
    ]
    for name in [b for b in BENCHMARKS if b in results]:
        res = results[name]
        if isinstance(res, dict) and "table" in res:
            md += [markdown_table(res["table"]), ""]
        for extra in res.get("extra_tables", []) if isinstance(res, dict) else []:
            md += [markdown_table(extra), ""]
    (out / f"{stem}.md").write_text("\n".join(md))
    print(f"\nresults: {out / (stem + '.json')} (and history/{dated}.json, {stem}.md); {results['seconds']} s in all")
    for name in [b for b in BENCHMARKS if b in results]:
        res = results[name]
        if isinstance(res, dict):
            status = res.get("error") or res.get("skipped") or "ok"
            print(f"  {name}: {status}; ratios {rnd(res.get('ratios', {}), 3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""B2 drift check: Retune's detectors (default ``profiled``, opt-in ``evidently``) vs the preset vs scipy.

Two synthetic cases with a known shift: 1,000,000 x 20 numerical columns and 200,000 x 50
mixed (30 numerical, 20 categorical, some missing values); quick: 60,000 x 20 and
20,000 x 50. The current window has 90% of the reference's rows.

Contenders, alternated in every repeat (CPU seconds of this process, median over repeats):

- ``retune profiled, cached profile`` ("ours"): the default ``drift.detector: profiled``
  (:class:`retune.profile.ProfiledDriftDetector`), its verdict, with the reference profile already cached
  (the reference window changes rarely); the digest that finds the profile is part of every
  check. ``retune profile build`` is the one-off cost;
- ``retune profiled, build + check``: the same detector new for every check, so each check
  digests, profiles and tests (what a monitor task, a fresh process, pays);
- ``evidently preset``: ``Report([DataDriftPreset()]).run(current, reference)``, Evidently's
  defaults (it infers the column types);
- ``scipy floor``: per column, the statistic Evidently's default picks, straight from scipy
  (``wasserstein_distance`` normed by the reference std; Jensen-Shannon of the frequencies);
- ``retune evidently (opt-in)``: the opt-in ``drift.detector: evidently``
  (:class:`retune.drift.EvidentlyDriftDetector`, declared types, no HTML), once per case;
- ``retune as configured by default``: :func:`retune.drift.detector_for` of the default
  config, new for the check, as a monitor task runs it: build + check, and Evidently's HTML
  report when the window drifted (``drift.report: on_drift``; the 1M x 20 case drifted, the
  mixed one did not), once per case.

Verdicts of ours are compared with the preset's per column and for the dataset (drift share
0.5, Evidently's default). Peak memory: the rise of the process's peak RSS during one call
(``/proc/self/clear_refs`` resets the peak first), or tracemalloc where that is unavailable.
"""

from __future__ import annotations

import ctypes
import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

from common import log, median, plot_path, pyplot, quiet, ratio, table

DRIFT_SHARE = 0.5


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"numeric_rows": 60_000, "mixed_rows": 20_000, "repeats": 2}
    return {"numeric_rows": 1_000_000, "mixed_rows": 200_000, "repeats": 3}


def make_numeric(n: int, seed: int = 0) -> tuple[Any, Any, list[str], list[str]]:
    """n x 20 numerical; columns c00-c10 shifted (c09 just above Evidently's threshold),
    c11 shifted just below it, c12-c19 unchanged."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    m = n - n // 10
    ref, cur = {}, {}
    draws = [
        lambda r, k, s: r.normal(s, 1.0, k),
        lambda r, k, s: r.exponential(1.0, k) + s,
        lambda r, k, s: r.uniform(0, 1, k) + s * 0.29,
        lambda r, k, s: r.lognormal(0, 0.5, k) * (1 + s * 0.5),
    ]
    shifts = [0.5, 0.4, 0.3, 0.3, 0.25, 0.2, 0.2, 0.3, 0.4, 0.13, 0.3, 0.07] + [0.0] * 8
    for j, s in enumerate(shifts):
        draw = draws[j % len(draws)]
        ref[f"c{j:02d}"] = draw(rng, n, 0.0)
        cur[f"c{j:02d}"] = draw(rng, m, s)
    names = list(ref)
    return pd.DataFrame(ref), pd.DataFrame(cur), names, []


def make_mixed(n: int, seed: int = 1) -> tuple[Any, Any, list[str], list[str]]:
    """n x 50: 30 numerical (x00-x09 shifted), 20 categorical of 3 to 40 levels (k00-k07
    remixed); 2% missing values in x20-x24 and k15-k19."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    m = n - n // 10
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    for j in range(30):
        s = 0.35 if j < 10 else 0.0
        ref[f"x{j:02d}"] = rng.normal(0, 1, n)
        cur[f"x{j:02d}"] = rng.normal(s, 1, m)
    for j in range(20):
        levels = 3 + (j * 37) % 38
        names = np.array([f"level_{i}" for i in range(levels)], dtype=object)
        p = rng.dirichlet(np.ones(levels))
        q = 0.6 * p + 0.4 * rng.dirichlet(np.ones(levels)) if j < 8 else p
        ref[f"k{j:02d}"] = names[rng.choice(levels, n, p=p)]
        cur[f"k{j:02d}"] = names[rng.choice(levels, m, p=q)]
    ref_df, cur_df = pd.DataFrame(ref), pd.DataFrame(cur)
    for df in (ref_df, cur_df):
        for col in [f"x{j}" for j in range(20, 25)] + [f"k{j}" for j in range(15, 20)]:
            df.loc[rng.random(len(df)) < 0.02, col] = None if col.startswith("k") else np.nan
    return ref_df, cur_df, [f"x{j:02d}" for j in range(30)], [f"k{j:02d}" for j in range(20)]


# --------------------------------------------------------------------------- contenders


def run_ours(detector: Any, ref: Any, cur: Any, num: list[str], cat: list[str]) -> dict[str, Any]:
    from retune.config import DriftConfig

    s = detector.detect(ref, cur, numerical=num, categorical=cat, policy=DriftConfig(drift_share=DRIFT_SHARE)).summary
    return {"columns": {c.column: (c.score, c.drifted, c.method) for c in s.columns}, "dataset": s.drift_detected}


def run_preset(ref: Any, cur: Any, num: list[str], cat: list[str]) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(cur[num + cat], ref[num + cat])
    cols: dict[str, Any] = {}
    share = None
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            method, value = cfg["method"], m["value"]
            drifted = value < cfg["threshold"] if "p_value" in method else value >= cfg["threshold"]
            cols[cfg["column"]] = (float(value), bool(drifted), method)
        elif cfg.get("type", "").endswith("DriftedColumnsCount"):
            share = m["value"]["share"]
    return {"columns": cols, "dataset": share is not None and share >= DRIFT_SHARE}


def run_floor(ref: Any, cur: Any, num: list[str], cat: list[str]) -> dict[str, Any]:
    """Per column, the statistic Evidently's default picks, computed with scipy directly."""
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    cols: dict[str, Any] = {}
    for name in num:
        r = ref[name].to_numpy(dtype=float)
        c = cur[name].to_numpy(dtype=float)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        score = stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
        cols[name] = (float(score), bool(score >= 0.1), "Wasserstein distance (normed)")
    for name in cat:
        rc = ref[name].value_counts(dropna=True)
        cc = cur[name].value_counts(dropna=True)
        keys = rc.index.union(cc.index)
        p = rc.reindex(keys, fill_value=0).to_numpy() / rc.sum()
        q = cc.reindex(keys, fill_value=0).to_numpy() / cc.sum()
        score = float(distance.jensenshannon(p, q))
        cols[name] = (score, bool(score >= 0.1), "Jensen-Shannon distance")
    drifted = sum(v[1] for v in cols.values())
    return {"columns": cols, "dataset": drifted / len(cols) >= DRIFT_SHARE}


def run_retune_evidently(ref: Any, cur: Any, num: list[str], cat: list[str]) -> dict[str, Any]:
    from retune.config import DriftConfig
    from retune.drift import EvidentlyDriftDetector

    s = (
        EvidentlyDriftDetector(report="never")
        .detect(ref, cur, numerical=num, categorical=cat, policy=DriftConfig(drift_share=DRIFT_SHARE))
        .summary
    )
    return {"columns": {c.column: (c.score, c.drifted, c.method) for c in s.columns}, "dataset": s.drift_detected}


def run_as_configured(ref: Any, cur: Any, num: list[str], cat: list[str]) -> dict[str, Any]:
    """The default config's detector, new for this check, with its report rule."""
    from retune.config import DriftConfig
    from retune.drift import detector_for

    policy = DriftConfig(drift_share=DRIFT_SHARE)
    result = detector_for(policy).detect(ref, cur, numerical=num, categorical=cat, policy=policy)
    s = result.summary
    return {
        "columns": {c.column: (c.score, c.drifted, c.method) for c in s.columns},
        "dataset": s.drift_detected,
        "report_chars": len(result.html or ""),
    }


# --------------------------------------------------------------------------- measuring


def _vm(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Any, *, memory: bool) -> tuple[Any, float, float, float | None]:
    """``(result, cpu_s, wall_s, peak_mib)``: peak is the rise of the peak RSS over the RSS before."""
    peak = None
    use_hwm = memory and _reset_peak()
    before = _vm("VmRSS") if use_hwm else None
    if memory and not use_hwm:
        tracemalloc.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out = fn()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if use_hwm:
        hwm = _vm("VmHWM")
        peak = None if hwm is None or before is None else (hwm - before) / 1024
    elif memory:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, cpu, wall, peak


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    cols = sorted(set(a["columns"]) & set(b["columns"]))
    same = [a["columns"][c][1] == b["columns"][c][1] for c in cols]
    diffs = [abs(a["columns"][c][0] - b["columns"][c][0]) for c in cols if a["columns"][c][2] == b["columns"][c][2]]
    return {
        "columns": len(cols),
        "verdict_agreement": sum(same) / len(cols) if cols else None,
        "disagreeing": [c for c, s in zip(cols, same, strict=True) if not s],
        "same_method_share": sum(a["columns"][c][2] == b["columns"][c][2] for c in cols) / len(cols) if cols else None,
        "max_abs_score_diff": max(diffs) if diffs else None,
        "dataset_verdict_match": a["dataset"] == b["dataset"],
    }


OURS = "retune profiled, cached profile"
OURS_BUILD = "retune profiled, build + check"
BUILD = "retune profile build"
EVIDENTLY = "retune evidently (opt-in)"
AS_CONFIGURED = "retune as configured by default"
PRESET = "evidently preset"
FLOOR = "scipy floor"


def _case(name: str, ref: Any, cur: Any, num: list[str], cat: list[str], repeats: int) -> dict[str, Any]:
    from retune.profile import ProfiledDriftDetector

    detector = ProfiledDriftDetector()
    _, build_cpu, build_wall, build_peak = measure(lambda: detector.profile(ref, numerical=num, categorical=cat), memory=True)
    contenders = {
        OURS: lambda: run_ours(detector, ref, cur, num, cat),
        OURS_BUILD: lambda: run_ours(ProfiledDriftDetector(), ref, cur, num, cat),
        PRESET: lambda: run_preset(ref, cur, num, cat),
        FLOOR: lambda: run_floor(ref, cur, num, cat),
    }
    names = list(contenders)
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in names}
    peaks: dict[str, float | None] = {}
    results: dict[str, Any] = {}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for label in order:
            out, cpu, wall, peak = measure(contenders[label], memory=rep == 0)
            times[label]["cpu"].append(cpu)
            times[label]["wall"].append(wall)
            if rep == 0:
                peaks[label], results[label] = peak, out
            log(f"B2 {name} repeat {rep + 1}/{repeats} {label}: {cpu:.2f} CPU s, {wall:.2f} s")
    once = {EVIDENTLY: run_retune_evidently, AS_CONFIGURED: run_as_configured}
    single: dict[str, tuple[float, float, float | None]] = {}
    for label, fn in once.items():
        out, cpu, wall, peak = measure(lambda fn=fn: fn(ref, cur, num, cat), memory=True)
        log(f"B2 {name} {label}: {cpu:.2f} CPU s")
        results[label], single[label] = out, (cpu, wall, peak)
    rows = {
        label: {
            "cpu_s": median(times[label]["cpu"]),
            "wall_s": median(times[label]["wall"]),
            "cpu_s_runs": times[label]["cpu"],
            "peak_mib": peaks[label],
        }
        for label in names
    }
    rows[BUILD] = {"cpu_s": build_cpu, "wall_s": build_wall, "cpu_s_runs": [build_cpu], "peak_mib": build_peak}
    for label, (cpu, wall, peak) in single.items():
        rows[label] = {"cpu_s": cpu, "wall_s": wall, "cpu_s_runs": [cpu], "peak_mib": peak}
    ours = results[OURS]
    return {
        "case": name,
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "numerical": len(num),
        "categorical": len(cat),
        "contenders": rows,
        "ours_vs_preset": agreement(ours, results[PRESET]),
        "ours_vs_floor": agreement(ours, results[FLOOR]),
        "ours_vs_retune_evidently": agreement(ours, results[EVIDENTLY]),
        "as_configured_report": bool(results[AS_CONFIGURED]["report_chars"]),
        "dataset_drifted": bool(ours["dataset"]),
        "ours_build_vs_preset": agreement(results[OURS_BUILD], results[PRESET]),
        "drifted_columns": {k: sum(v[1] for v in r["columns"].values()) for k, r in results.items()},
        "preset_over_ours": ratio(rows[PRESET]["cpu_s"], rows[OURS]["cpu_s"]),
        "ours_over_floor": ratio(rows[OURS]["cpu_s"], rows[FLOOR]["cpu_s"]),
        "preset_over_ours_build_check": ratio(rows[PRESET]["cpu_s"], rows[OURS_BUILD]["cpu_s"]),
        "ours_build_check_over_floor": ratio(rows[OURS_BUILD]["cpu_s"], rows[FLOOR]["cpu_s"]),
        "preset_over_evidently_detector": ratio(rows[PRESET]["cpu_s"], rows[EVIDENTLY]["cpu_s"]),
        "evidently_detector_over_floor": ratio(rows[EVIDENTLY]["cpu_s"], rows[FLOOR]["cpu_s"]),
        "preset_over_as_configured": ratio(rows[PRESET]["cpu_s"], rows[AS_CONFIGURED]["cpu_s"]),
    }


def run(quick: bool, out: Path) -> dict[str, Any]:
    """Both cases. ``ratios.preset_over_ours`` / ``ours_over_floor`` are the default
    ``drift.detector: profiled``'s verdict with a cached profile; ``*_build_check`` the same
    detector building its profile in every check; ``*_evidently_detector`` the opt-in
    ``drift.detector: evidently``; ``preset_over_as_configured`` the default config's whole
    check, HTML report on drift included. Each is the worst case: the smallest speed-up, the
    largest cost over the floor."""
    quiet()
    s = _settings(quick)
    cases = []
    for name, maker, n in (
        (f"{s['numeric_rows']:,} x 20 numerical", make_numeric, s["numeric_rows"]),
        (f"{s['mixed_rows']:,} x 50 mixed", make_mixed, s["mixed_rows"]),
    ):
        ref, cur, num, cat = maker(n)
        cases.append(_case(name, ref, cur, num, cat, s["repeats"]))
        del ref, cur
        gc.collect()
    agreement_all = [c["ours_vs_preset"] for c in cases]
    n_cols = sum(a["columns"] for a in agreement_all)
    agree = sum(a["verdict_agreement"] * a["columns"] for a in agreement_all) / n_cols if n_cols else None

    def worst(key: str, pick: Any) -> float | None:
        return pick((c[key] for c in cases if c[key]), default=None)

    speedups = ("preset_over_ours", "preset_over_ours_build_check", "preset_over_evidently_detector", "preset_over_as_configured")
    costs = ("ours_over_floor", "ours_build_check_over_floor", "evidently_detector_over_floor")
    ratios: dict[str, Any] = {k: worst(k, min) for k in speedups} | {k: worst(k, max) for k in costs}
    ratios["per_case"] = {c["case"]: {k: c[k] for k in (*speedups, *costs)} for c in cases}
    rows = []
    for c in cases:
        for label, v in c["contenders"].items():
            vs_floor = ratio(v["cpu_s"], c["contenders"][FLOOR]["cpu_s"]) if label != BUILD else None
            vs_preset = ratio(c["contenders"][PRESET]["cpu_s"], v["cpu_s"]) if label != BUILD else None
            rows.append(
                [
                    c["case"],
                    label,
                    v["cpu_s"],
                    v["wall_s"],
                    v["peak_mib"],
                    vs_preset,
                    vs_floor,
                    c["drifted_columns"].get(label, ""),
                ]
            )
    result = {
        "settings": s,
        "targets": {"preset_over_ours": ">= 10", "ours_over_floor": "<= 1.5", "verdict_agreement": ">= 0.99"},
        "ours": "the default drift.detector: profiled (its verdict), with a cached reference profile",
        "ratios": ratios,
        "verdict_agreement": agree,
        "dataset_verdict_match": all(a["dataset_verdict_match"] for a in agreement_all),
        "cases": cases,
        "table": table(
            "B2 drift check (median CPU s over repeats). 'Ours' is the default drift.detector: profiled; "
            "'as configured by default' adds Evidently's HTML report when the window drifted (report: on_drift). "
            "Ratios use the smallest speed-up and the largest cost over the floor",
            ["case", "contender", "CPU s", "wall s", "peak MiB", "preset / this", "this / floor", "drifted cols"],
            rows,
        ),
    }
    _plot(cases, plot_path(out, "B2", quick))
    return result


def _plot(cases: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    labels = [OURS, OURS_BUILD, FLOOR, PRESET, EVIDENTLY, AS_CONFIGURED]
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.2), squeeze=False)
    for ax, c in zip(axes[0], cases, strict=True):
        vals = [c["contenders"][k]["cpu_s"] or 0 for k in labels]
        ax.barh(labels, vals, color=["tab:green", "tab:olive", "tab:grey", "tab:red", "tab:orange", "tab:blue"])
        ax.set_xscale("log")
        ax.set_xlabel("CPU seconds per check (log)")
        verdict = {True: "drifted", False: "no drift", None: "?"}[c.get("dataset_drifted")]
        ax.set_title(f"{c['case']} ({verdict})", fontsize=9)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

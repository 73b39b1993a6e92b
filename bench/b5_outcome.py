"""B5 outcome on real drift: prequential error of retuning strategies.

Bike sharing (30-day windows, 90-day training windows) and NOAA weather (365-day windows,
3-year training windows). All strategies start from the same first model (Retune's cold,
pruned study on the bootstrap window). At the end of each production window:

- (a) ``never``: the first model stays;
- (b) ``retune``: Retune's monitor (the detector of the bench config's ``drift`` section,
  through :func:`retune.drift.detector_for`, as ``check_drift`` picks it: the default
  ``profiled``, built afresh in every check as in a monitor task, with Evidently's HTML
  report for a drifted window, ``report: on_drift``) compares the window with the champion's training window and
  records it; Retune's trigger policy (:func:`retune.policy.decide`, the config's defaults:
  no hysteresis, no cooldown) decides; a triggered retune is Retune's warm-started, pruned
  study (drift-aware mode and budget from :func:`retune.adaptive.plan_for`, champion and previous
  study's top-k enqueued, and Retune's default early stopping: a warm-started study stops
  after max(5, n_trials / 5) trials without improvement), refit on train + validation, and
  promoted when it scores at least as well as the champion on the retune's holdout (the
  ``beats_champion`` gate);
- (c) ``full``: a cold, unpruned study with the full budget every window, always promoted.

Beside them, for the team: ``retune, no early stop`` (the same with the whole budget, as
before early stopping was the default), ``retune, cooldown 2 windows`` (the policy's
cooldown) and ``refit only`` (the first model's params refit on every new window, no search:
how much of the gap is data rather than hyperparameters).

Each champion is then scored on the next window (which no strategy has seen). Reported:
mean next-window error of each, the share of the (a)->(c) gap that (b) recovers and (b)'s
CPU seconds (monitoring, policy, studies, refits) as a share of (c)'s. For (b), the opt-in
detector (:class:`retune.drift.EvidentlyDriftDetector` with its HTML report every window,
``drift.detector: evidently, report: always``, the default before 2026-11-27) is also run on
the same windows, outside (b)'s CPU: ``compute_over_full_evidently_check`` is (b)'s share had
it been configured (its verdicts are recorded; where one differed, the rest of that run would
have too). The configured detector with ``report: never`` (its verdict alone) is timed on
the same windows too: ``compute_over_full_no_report`` is (b)'s share without the HTML reports.

Datasets are combined one way for both headline ratios: the mean of the per-dataset ratios
(each dataset weighs the same; ``compute_over_full_pooled`` keeps the pooled CPU ratio). A
dataset where never retuning is as good as a full retune every window (no gap) has no
``gap_recovered``: it is listed in ``ratios.no_gap`` and in the table title, and the headline
``gap_recovered`` is then the mean over the others.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import log, plot_path, pyplot, quiet, ratio, table


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"n_trials": 12, "windows": {"bike_sharing": 4, "noaa_weather": 3}, "cooldown_variant": False}
    return {"n_trials": 30, "windows": {"bike_sharing": 20, "noaa_weather": 12}, "cooldown_variant": True}


class Strategy:
    """A champion (fitted model, params, training window) and the CPU it has spent."""

    def __init__(self, name: str, model: Any, params: dict[str, Any], trained_on: tuple[Any, Any]) -> None:
        self.name = name
        self.model = model
        self.params = params
        self.trained_on = trained_on
        self.cpu = 0.0
        self.retunes = 0
        self.promotions = 0
        self.errors: list[float] = []


def _prequential(dataset: str, tmp: Path, n_trials: int, n_windows: int, cooldown_variant: bool) -> dict[str, Any]:
    import time

    import optuna
    import realdata

    from retune import adaptive, policy
    from retune.data import split_for_retune
    from retune.drift import EvidentlyDriftDetector, detector_for
    from retune.metrics import get_metric
    from retune.settings import Settings
    from retune.warmstart import previous_study_top_k

    rd = realdata.load(dataset, tmp, n_trials=n_trials, seed=0)
    cfg = rd.cfg
    metric = get_metric(cfg.metric.name, cfg.task)
    model_name = cfg.registry.model_name

    def retune_split(end: Any) -> tuple[Any, Any]:
        df, features = realdata.window(rd, end - rd.train_window, end)
        return split_for_retune(df, cfg), features

    # The first model: Retune's cold, pruned study on the bootstrap window.
    split, features = retune_split(rd.bootstrap_end)
    storage = optuna.storages.InMemoryStorage()
    boot = realdata.timed_study(
        rd, split, features, label="bootstrap", study_name=f"retune.{model_name}.boot", storage=storage, n_trials=n_trials, seed=0
    )
    model0 = realdata.fit_and_score(rd, boot.best_params, split.tuning, features)
    first = (rd.bootstrap_end - rd.train_window, rd.bootstrap_end)
    strategies = {"never": Strategy("never", model0, boot.best_params, first)}
    variants = {"retune": "0", "retune, no early stop": "0"}
    if cooldown_variant:
        variants["retune, cooldown 2 windows"] = f"{int(rd.window.total_seconds() * 2 - 3600)}s"
    early_stop: dict[str, Any] = {label: None if "no early stop" in label else "auto" for label in variants}
    for label in variants:
        strategies[label] = Strategy(label, model0, boot.best_params, first)
    strategies["refit only"] = Strategy("refit only", model0, boot.best_params, first)
    strategies["full"] = Strategy("full", model0, boot.best_params, first)
    windows: list[dict[str, Any]] = []
    default_check = {"cpu_s": 0.0, "checks": 0, "verdict_differs": 0}  # evidently, report always, on (b)'s windows
    verdict_check = {"cpu_s": 0.0, "reports": 0}  # the configured detector, report never, on (b)'s windows

    def settings_for(label: str, cooldown: str) -> Settings:
        folder = tmp / ("policy-" + "".join(ch if ch.isalnum() else "_" for ch in label))  # one policy database per variant
        folder.mkdir(parents=True, exist_ok=True)
        raw = (tmp / f"{model_name}.yaml").read_text()
        (folder / f"{model_name}.yaml").write_text(raw + f"policy:\n  cooldown: '{cooldown}'\n" if cooldown != "0" else raw)
        return Settings(
            state_dir=folder,
            config_dir=folder,
            tracking_uri="",
            artifact_root=None,
            optuna_storage="",
            policy_db=f"sqlite:///{folder / 'policy.db'}",
        )

    policies = {label: settings_for(label, cd) for label, cd in variants.items()}
    storages = {label: optuna.storages.InMemoryStorage() for label in variants}
    for label in variants:  # the bootstrap study is every Retune variant's "previous study"
        optuna.copy_study(from_study_name=f"retune.{model_name}.boot", from_storage=storage, to_storage=storages[label])

    def retune_step(s: Strategy, label: str, end: Any, i: int) -> dict[str, Any]:
        cur, _ = realdata.window(rd, end - rd.window, end, features=features)
        ref, _ = realdata.window(rd, *s.trained_on, features=features)
        cols = {"numerical": features.numerical, "categorical": features.categorical}
        c0 = time.process_time()
        result = detector_for(cfg.drift).detect(ref, cur, **cols, policy=cfg.drift)
        check_cpu = time.process_time() - c0
        summary = result.summary
        evidently_cpu = verdict_cpu = None
        if label == "retune":  # side measures on the same windows, kept out of (b)'s CPU
            c0 = time.process_time()  # the evidently detector, report always
            default = EvidentlyDriftDetector().detect(ref, cur, **cols, policy=cfg.drift).summary
            evidently_cpu = time.process_time() - c0
            default_check["cpu_s"] += evidently_cpu
            default_check["checks"] += 1
            default_check["verdict_differs"] += default.drift_detected != summary.drift_detected
            c0 = time.process_time()  # the configured detector with report: never (the verdict alone)
            detector_for(cfg.drift.model_copy(update={"report": "never"})).detect(ref, cur, **cols, policy=cfg.drift)
            verdict_cpu = time.process_time() - c0
            verdict_check["cpu_s"] += verdict_cpu
            verdict_check["reports"] += result.html is not None
        settings = policies[label]
        policy.record_window(
            model_name,
            end.to_pydatetime(),
            drift_detected=summary.drift_detected,
            drift_share=summary.drift_share,
            settings=settings,
        )
        step: dict[str, Any] = {
            "drift_share": summary.drift_share,
            "drift": summary.drift_detected,
            "retuned": False,
            "check_cpu_s": check_cpu,
            "evidently_check_cpu_s": evidently_cpu,
            "verdict_check_cpu_s": verdict_cpu,
        }
        if not summary.drift_detected:
            return step
        decision = policy.decide(
            model_name, source="drift", key=f"drift:{model_name}:{end.isoformat()}", settings=settings, now=end.to_pydatetime()
        )
        step["policy"] = decision.reason
        if not decision.triggered:
            return step
        split, _ = retune_split(end)
        plan = adaptive.plan_for(cfg, n_trials=n_trials, drift_share=summary.drift_share, champion_params=s.params)
        name = f"retune.{model_name}.w{i:02d}"
        _, top = previous_study_top_k(storages[label], model_name, exclude=name, k=cfg.tuning.warm_start_top_k)
        seeds = ([("champion", s.params)] + [("previous_study", p) for p in top]) if plan.warm else []
        run = realdata.timed_study(
            rd, split, features, label=label, study_name=name, storage=storages[label], n_trials=plan.n_trials, seed=i,
            space=plan.space, seeds=seeds, early_stop=early_stop[label], mode=plan.mode,
        )  # fmt: skip
        challenger = realdata.fit_and_score(rd, run.best_params, split.tuning, features)
        X, y = split.holdout[features.columns], split.holdout[cfg.target]
        new, old = metric.score(challenger, X, y), metric.score(s.model, X, y)
        promoted = metric.better(new, old) or new == old
        s.retunes += 1
        step.update(
            {
                "retuned": True,
                "mode": plan.mode,
                "n_trials": plan.n_trials,
                "pruned": run.n_pruned,
                "failed": run.n_failed,
                "finished": len(run.trials),
                "stop_reason": run.stop_reason,
                "promoted": promoted,
            }
        )
        if promoted:
            s.model, s.params, s.trained_on = challenger, run.best_params, (end - rd.train_window, end)
            s.promotions += 1
        policy.release(model_name, str(decision.token), outcome="promoted" if promoted else "kept", settings=settings)
        return step

    def full_step(s: Strategy, end: Any, i: int) -> dict[str, Any]:
        split, _ = retune_split(end)
        run = realdata.timed_study(
            rd, split, features, label="full", study_name=f"full.{model_name}.w{i:02d}", storage=storage, n_trials=n_trials, seed=i,
            pruner="none",
        )  # fmt: skip
        s.model, s.params, s.trained_on = (
            realdata.fit_and_score(rd, run.best_params, split.tuning, features),
            run.best_params,
            (end - rd.train_window, end),
        )
        s.retunes += 1
        s.promotions += 1
        return {"retuned": True, "n_trials": n_trials}

    def refit_step(s: Strategy, end: Any) -> dict[str, Any]:
        split, _ = retune_split(end)
        s.model, s.trained_on = realdata.fit_and_score(rd, s.params, split.tuning, features), (end - rd.train_window, end)
        s.retunes += 1
        s.promotions += 1
        return {"retuned": True, "n_trials": 0}

    steps = {"full": lambda s, end, i: full_step(s, end, i), "refit only": lambda s, end, i: refit_step(s, end)}
    end = rd.bootstrap_end
    for i in range(1, n_windows + 1):
        end = end + rd.window
        if end + rd.window > rd.end:
            break
        row: dict[str, Any] = {"window_end": end.date().isoformat()}
        order = [*variants, *steps] if i % 2 else [*steps, *variants]
        for label in order:
            s = strategies[label]
            t0 = time.process_time()
            row[label] = steps[label](s, end, i) if label in steps else retune_step(s, label, end, i)
            side = (row[label].get("evidently_check_cpu_s") or 0.0) + (row[label].get("verdict_check_cpu_s") or 0.0)
            spent = time.process_time() - t0 - side
            s.cpu += spent
            row[label]["cpu_s"] = spent
        nxt, _ = realdata.window(rd, end, end + rd.window, features=features)
        for s in strategies.values():
            err = metric.score(s.model, nxt[features.columns], nxt[cfg.target])
            s.errors.append(err)
            row.setdefault("error", {})[s.name] = err
        windows.append(row)
        log(
            f"B5 {dataset} window {i}/{n_windows} ({row['window_end']}): "
            + ", ".join(f"{k} {v:.4g}" for k, v in row["error"].items())
        )
    mean = {k: sum(s.errors) / len(s.errors) for k, s in strategies.items() if s.errors}
    gap = mean["never"] - mean["full"]
    out: dict[str, Any] = {
        "dataset": dataset,
        "metric": cfg.metric.name,
        "windows": len(windows),
        "mean_error": mean,
        "cpu_s": {k: s.cpu for k, s in strategies.items()},
        "retunes": {k: s.retunes for k, s in strategies.items()},
        "promotions": {k: s.promotions for k, s in strategies.items()},
        "per_window": windows,
        "gap_never_minus_full": gap,
        "detector": f"{cfg.drift.detector}, report {cfg.drift.report}",
        "evidently_check": default_check,
        "verdict_check": verdict_check,
    }
    for label in [*variants, "refit only"]:
        out.setdefault("gap_recovered", {})[label] = (mean["never"] - mean[label]) / gap if gap > 0 else None
        out.setdefault("compute_over_full", {})[label] = ratio(strategies[label].cpu, strategies["full"].cpu)
    check_cpu = sum(w["retune"]["check_cpu_s"] for w in windows)
    out["retune_check_cpu_s"] = check_cpu
    out["compute_over_full_evidently_check"] = ratio(
        strategies["retune"].cpu - check_cpu + default_check["cpu_s"], strategies["full"].cpu
    )
    out["compute_over_full_no_report"] = ratio(
        strategies["retune"].cpu - check_cpu + verdict_check["cpu_s"], strategies["full"].cpu
    )
    return out


def run(quick: bool, out: Path) -> dict[str, Any]:
    import realdata

    quiet()
    if not realdata.available():
        return {"skipped": f"datasets not found in {realdata.DATASETS}", "ratios": {}}
    s = _settings(quick)
    results = []
    with tempfile.TemporaryDirectory(prefix="retune-b5-") as tmp:
        for dataset, n in s["windows"].items():
            results.append(_prequential(dataset, Path(tmp) / dataset, s["n_trials"], n, s["cooldown_variant"]))
    recovered = {r["dataset"]: r["gap_recovered"]["retune"] for r in results}
    defined = [v for v in recovered.values() if v is not None]
    no_gap = [d for d, v in recovered.items() if v is None]
    compute = [r["compute_over_full"]["retune"] for r in results]
    compute_ev = [r["compute_over_full_evidently_check"] for r in results]
    compute_no_report = [r["compute_over_full_no_report"] for r in results]

    def mean_of(values: Sequence[float | None]) -> float | None:
        """The mean, or None when there is none or any value is None (never a silent drop)."""
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known and len(known) == len(values) else None

    cpu_b = sum(r["cpu_s"]["retune"] for r in results)
    cpu_c = sum(r["cpu_s"]["full"] for r in results)
    rows = []
    for r in results:
        for k in r["mean_error"]:
            rows.append(
                [
                    r["dataset"],
                    k,
                    r["windows"],
                    r["mean_error"][k],
                    r["retunes"][k],
                    r["promotions"][k],
                    r["cpu_s"][k],
                    "no gap" if k in r["gap_recovered"] and r["gap_never_minus_full"] <= 0 else r["gap_recovered"].get(k),
                    r["compute_over_full"].get(k),
                ]
            )
        vc = r["verdict_check"]
        rows.append(
            [
                r["dataset"],
                f"retune, had drift.report been never ({vc['reports']} HTML reports: "
                f"{r['retune_check_cpu_s'] - vc['cpu_s']:.1f} CPU s)",
                r["windows"],
                "",
                "",
                "",
                r["cpu_s"]["retune"] - r["retune_check_cpu_s"] + vc["cpu_s"],
                "",
                r["compute_over_full_no_report"],
            ]
        )
        ev = r["evidently_check"]
        rows.append(
            [
                r["dataset"],
                f"retune, had drift.detector been evidently, report always ({ev['checks']} checks: {ev['cpu_s']:.1f} CPU s)",
                r["windows"],
                "",
                "",
                "",
                r["cpu_s"]["retune"] - r["retune_check_cpu_s"] + ev["cpu_s"],
                "",
                r["compute_over_full_evidently_check"],
            ]
        )
    result = {
        "settings": s,
        "targets": {"gap_recovered": ">= 0.9", "compute_over_full": "<= 0.3"},
        "aggregation": "mean of per-dataset ratios (each dataset weighs the same), for every headline ratio",
        "detector": sorted({r["detector"] for r in results}),
        "ratios": {
            "gap_recovered": mean_of(defined),
            "gap_recovered_datasets": f"{len(defined)} of {len(results)}",
            "no_gap": no_gap,
            "compute_over_full": mean_of(compute),
            "compute_over_full_evidently_check": mean_of(compute_ev),
            "compute_over_full_no_report": mean_of(compute_no_report),
            "compute_over_full_pooled": ratio(cpu_b, cpu_c),
            "evidently_verdict_differs": sum(r["evidently_check"]["verdict_differs"] for r in results),
            "per_dataset": {
                r["dataset"]: {
                    "gap_recovered": r.get("gap_recovered"),
                    "compute_over_full": r.get("compute_over_full"),
                    "compute_over_full_evidently_check": r.get("compute_over_full_evidently_check"),
                    "compute_over_full_no_report": r.get("compute_over_full_no_report"),
                }
                for r in results
            },
        },
        "datasets": results,
        "table": table(
            "B5 prequential error on the next window (mean; bike MAE, NOAA log loss) and CPU seconds; "
            f"monitor: drift.detector {', '.join(sorted({r['detector'] for r in results}))}; headline = mean over datasets"
            + (f"; NO GAP (never <= full), no gap recovered: {', '.join(no_gap)}" if no_gap else ""),
            ["dataset", "strategy", "windows", "mean error", "retunes", "promoted", "CPU s", "gap recovered", "CPU / full"],
            rows,
        ),
    }
    _plot(results, plot_path(out, "B5", quick))
    return result


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.3), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        xs = [w["window_end"] for w in r["per_window"]]
        for k in r["mean_error"]:
            ax.plot(range(len(xs)), [w["error"][k] for w in r["per_window"]], "o-" if k != "never" else "s--", ms=3, label=k)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=60, fontsize=6)
        ax.set_ylabel(f"next-window {r['metric']}")
        no_report = r.get("compute_over_full_no_report")
        ax.set_title(
            f"{r['dataset']}: CPU retune/full {r['compute_over_full'].get('retune', 0) or 0:.2f}"
            + (f" ({no_report:.2f} without HTML reports)" if no_report is not None else ""),
            fontsize=9,
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

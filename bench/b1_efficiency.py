"""B1 retune efficiency on real drift.

For each drift episode (a production window where the monitor fires against the champion's
training window) of bike sharing and NOAA weather, and for each seed, three studies run on
the same data with the same trial budget:

- (a) ``cold``: cold start, no pruning (Optuna's defaults: TPE, no pruner);
- (b) ``cold+sh``: cold start with Retune's default pruner (``tuning.pruner``: successive
  halving);
- (c) ``retune``: Retune's study: drift-aware mode (:func:`retune.adaptive.plan_for` from the
  monitor's drift share), the champion's params and the previous study's top-k enqueued,
  Retune's default pruner.

All of them run the same trial budget (early stopping off). Recorded for each: CPU seconds
and finished trials until the study first reaches (a)'s final best within 0.5%, total CPU
seconds, final best (validation metric).

Two more rows say how to read that target:

- ``cold, other seed``: (a) again with another sampler seed (the same objective and models):
  how often plain luck reaches (a)'s final best, the noise floor of the target;
- ``retune, early stop (default)``: (c) as Retune runs it by default, stopping after
  max(5, n_trials / 5) trials without improvement (its total CPU is what a retune costs).

For (a), (b), (c) and these two, the same question is also asked on the holdout, which no
trial has seen: when does the study first hold a model (its best-so-far trial, trained again
exactly as the trial trained it) whose holdout error is within 0.5% of (a)'s final model's?
Alongside, on the same data: warm-start modes (enqueue without the adaptive space;
warm-starting CMA-ES from the previous study's trials, alone and with the seeds enqueued) and
the other pruners (median, Retune's default before successive halving, and hyperband; cold
and warm, ``warm+median`` with the holdout view too). A guard case puts the learning rate in the search space
and asks whether successive halving shows short-horizon bias.

Every median is given over all cases and, for the main rows, per dataset (``by_dataset``, the
second table): the datasets drift differently (bike sharing moderately, NOAA weather severely,
so Retune's drift-aware plan differs) and one dataset's misses should not hide in the other's
hits. The full run uses five seeds (25 cases): with three, the reach shares moved by about 15
points between runs of the same code.

The champion after an episode is (c)'s best (what Retune would promote), and (c)'s study is
the "previous study" of the next episode.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import log, median, plot_path, pyplot, quiet, ratio, table

TOLERANCE = 0.005
SHORT = {"successive_halving": "sh", "median": "median", "hyperband": "hyperband"}


def _ours() -> str:
    """Retune's default pruner (``tuning.pruner.type`` when a config does not set it)."""
    from retune.config import PrunerConfig

    return str(PrunerConfig().type)


PRUNED = f"cold+{SHORT.get(_ours(), _ours())}"  # (b)
MAIN = ("cold", PRUNED, "retune", "retune, early stop (default)", "cold, other seed")
HOLDOUT = (*MAIN, "warm+median")


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"seeds": [0], "n_trials": 12, "episodes": {"bike_sharing": 1, "noaa_weather": 1}, "guard_seeds": [0]}
    return {
        "seeds": [0, 1, 2, 3, 4],
        "n_trials": 30,
        "episodes": {"bike_sharing": 3, "noaa_weather": 2},
        "guard_seeds": [0, 1, 2],
    }


def target_of(best: float, direction: str) -> float:
    """(a)'s final best, loosened by the tolerance."""
    slack = TOLERANCE * abs(best)
    return best + slack if direction == "minimize" else best - slack


def _episodes(rd: Any, seed: int, n_trials: int, max_episodes: int, storage: Any) -> Any:
    """Walk the production windows after the bootstrap: yield each drift episode with what
    Retune knows then (drift share, champion params, data). The caller runs the studies and
    sends back (c)'s best params (the new champion)."""
    import realdata

    from retune.data import split_for_retune
    from retune.profile import ProfiledDriftDetector

    detector = ProfiledDriftDetector()
    boot_start = rd.bootstrap_end - rd.train_window
    df, features = realdata.window(rd, boot_start, rd.bootstrap_end)
    split = split_for_retune(df, rd.cfg)
    boot = realdata.timed_study(
        rd,
        split,
        features,
        label="bootstrap",
        study_name=f"retune.{rd.cfg.registry.model_name}-s{seed}.e0",
        storage=storage,
        n_trials=n_trials,
        seed=seed,
    )
    champion, ref_window = boot.best_params, (boot_start, rd.bootstrap_end)
    end, found = rd.bootstrap_end, 0
    while found < max_episodes and end + rd.window <= rd.end:
        end = end + rd.window
        ref, _ = realdata.window(rd, *ref_window, features=features)
        cur, _ = realdata.window(rd, end - rd.window, end, features=features)
        summary = detector.detect(
            ref, cur, numerical=features.numerical, categorical=features.categorical, policy=rd.cfg.drift
        ).summary
        if not summary.drift_detected:
            continue
        found += 1
        df, _ = realdata.window(rd, end - rd.train_window, end, features=features)
        new_champion = yield {
            "episode": found,
            "window_end": end.date().isoformat(),
            "drift_share": summary.drift_share,
            "drifted": [c.column for c in summary.drifted_columns],
            "champion": champion,
            "split": split_for_retune(df, rd.cfg),
            "features": features,
        }
        champion, ref_window = new_champion, (end - rd.train_window, end)


def _case(rd: Any, ep: dict[str, Any], seed: int, n_trials: int, storage: Any, order: int) -> dict[str, Any]:
    """All studies of one episode and seed."""
    import realdata

    from retune import adaptive
    from retune.warmstart import previous_study_top_k

    cfg = rd.cfg
    model = cfg.registry.model_name
    tag = f"s{seed}.e{ep['episode']}"
    retune_name = f"retune.{model}-s{seed}.e{ep['episode']}"
    plan = adaptive.plan_for(cfg, n_trials=n_trials, drift_share=ep["drift_share"], champion_params=ep["champion"])
    previous, top = previous_study_top_k(storage, f"{model}-s{seed}", exclude=retune_name, k=cfg.tuning.warm_start_top_k)
    seeds = [("champion", ep["champion"])] + [("previous_study", p) for p in top]
    seeds = seeds if plan.warm else []
    prev_trials = storage_trials(storage, previous)
    common = {
        "split": ep["split"],
        "features": ep["features"],
        "storage": storage,
        "n_trials": n_trials,
        "seed": seed,
        "mode": plan.mode,
    }
    budget = {"early_stop": None}  # the same trial budget for every study of the comparison
    ours = _ours()
    others = [p for p in SHORT if p != ours]  # the other pruners, cold and warm
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "cold": lambda: {"pruner": "none", **budget},
        PRUNED: lambda: {"pruner": ours, **budget},
        "retune": lambda: {"pruner": ours, "space": plan.space, "seeds": seeds, "study_name": retune_name, **budget},
        "retune, early stop (default)": lambda: {"pruner": ours, "space": plan.space, "seeds": seeds, "early_stop": "auto"},
        "cold, other seed": lambda: {"pruner": "none", "sampler_seed": seed + 1000, **budget},
        **{f"cold+{SHORT[p]}": (lambda p=p: {"pruner": p, **budget}) for p in others},
        **{f"warm+{SHORT[p]}": (lambda p=p: {"pruner": p, "space": plan.space, "seeds": seeds, **budget}) for p in others},
        "enqueue,full space": lambda: {"pruner": ours, "seeds": seeds, **budget},
        "cma transfer": lambda: {
            "pruner": ours,
            "space": plan.space,
            "sampler": "cmaes",
            "source_trials": prev_trials,
            **budget,
        },
        "cma transfer+enqueue": lambda: {
            "pruner": ours,
            "space": plan.space,
            "seeds": seeds,
            "sampler": "cmaes",
            "source_trials": prev_trials,
            **budget,
        },
    }
    labels = list(runs)
    labels = labels[order % len(labels) :] + labels[: order % len(labels)]  # alternate who runs first
    studies: dict[str, Any] = {}
    for label in labels:
        kwargs = runs[label]()
        kwargs.setdefault("study_name", f"bench.{model}.{tag}.{label}")
        try:
            studies[label] = realdata.timed_study(rd, label=label, **common, **kwargs)
        except (ValueError, RuntimeError, ImportError, AssertionError) as exc:  # e.g. cmaes missing: the row is skipped
            log(f"B1 {rd.dataset} {tag} {label}: skipped ({type(exc).__name__}: {exc})")
    cold = studies["cold"]
    target = target_of(cold.best, cold.direction)  # type: ignore[arg-type]
    rows = {}
    for label, run in studies.items():
        trials_to, cpu_to = run.to_target(target)
        rows[label] = {
            **run.summary(),
            "trials_to_target": trials_to,
            "cpu_to_target_s": cpu_to,
            "reached": trials_to is not None,
        }
    # The same question judged on the holdout, which no trial has seen: when does each study
    # first hold a model as good as (a)'s final one (within the tolerance) on unseen data?
    traces = {
        label: realdata.holdout_trace(rd, studies[label], ep["split"], ep["features"]) for label in HOLDOUT if label in studies
    }
    cold_final = traces["cold"][-1][1] if traces.get("cold") else None
    for label, trace in traces.items():
        h_target = None if cold_final is None else target_of(cold_final, cold.direction)
        hit = next(
            (
                cpu
                for cpu, err in trace
                if h_target is not None and (err <= h_target if cold.direction == "minimize" else err >= h_target)
            ),
            None,
        )
        rows[label]["holdout"] = {
            "final": trace[-1][1] if trace else None,
            "cold_final": cold_final,
            "cpu_to_target_s": hit,
            "reached": hit is not None,
            "trace": [(round(c, 3), round(e, 6)) for c, e in trace],
        }
    trace = {}
    for label in MAIN:
        if label not in studies:
            continue
        best, points = None, []
        for t in studies[label].trials:
            v = t["value"]
            if v is not None and (best is None or (v < best if cold.direction == "minimize" else v > best)):
                best = v
            if best is not None and t["cpu"] is not None:
                points.append((round(t["cpu"], 3), round(best / cold.best, 5)))  # type: ignore[operator]
        trace[label] = points
    return {
        "trace": trace,
        "dataset": rd.dataset,
        "episode": ep["episode"],
        "window_end": ep["window_end"],
        "seed": seed,
        "drift_share": ep["drift_share"],
        "mode": plan.mode,
        "mode_reason": plan.reason,
        "previous_study": previous,
        "target": target,
        "studies": rows,
    }


def storage_trials(storage: Any, study_name: str | None) -> list[Any]:
    """The trials of a study in ``storage`` (empty if there is none)."""
    import optuna

    if not study_name:
        return []
    return list(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))


def _cpu_ratio(case: dict[str, Any], label: str) -> float | None:
    """(a)'s CPU to target over ``label``'s; a study that never reached it counts as 0
    (infinitely slow)."""
    a = case["studies"]["cold"]["cpu_to_target_s"]
    s = case["studies"].get(label)
    if s is None:
        return None
    return 0.0 if not s["reached"] else ratio(a, s["cpu_to_target_s"])


def _holdout_ratio(case: dict[str, Any], label: str) -> float | None:
    """Like :func:`_cpu_ratio`, judged on the holdout."""
    a = case["studies"]["cold"].get("holdout")
    s = case["studies"].get(label, {}).get("holdout")
    if a is None or s is None:
        return None
    return 0.0 if not s["reached"] else ratio(a["cpu_to_target_s"], s["cpu_to_target_s"])


def _final_ratio(case: dict[str, Any], label: str) -> float | None:
    """``label``'s final validation best over (a)'s (under 1: better, for a minimized metric)."""
    s = case["studies"].get(label)
    return None if s is None else ratio(s["best"], case["studies"]["cold"]["best"])


def _holdout_final_ratio(case: dict[str, Any], label: str) -> float | None:
    """``label``'s model's holdout error over (a)'s model's."""
    hold = case["studies"].get(label, {}).get("holdout")
    return None if not hold or hold.get("final") is None else ratio(hold["final"], hold["cold_final"])


def _summarize(cases: list[dict[str, Any]], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Medians over ``cases`` for each study label."""
    summary: dict[str, dict[str, Any]] = {}
    for label in labels:
        rows = [c["studies"][label] for c in cases if label in c["studies"]]
        summary[label] = {
            "cases": len(rows),
            "reached_share": sum(r["reached"] for r in rows) / len(rows) if rows else None,
            "median_trials_to_target": median([r["trials_to_target"] for r in rows]),
            "median_cpu_to_target_s": median([r["cpu_to_target_s"] for r in rows]),
            "median_total_cpu_s": median([r["cpu_s"] for r in rows]),
            "median_pruned": median([r["n_pruned"] for r in rows]),
            "median_cpu_to_target_cold_over_this": median([_cpu_ratio(c, label) for c in cases]),
            "median_cpu_to_target_cold_over_this_when_reached": median(
                [_cpu_ratio(c, label) for c in cases if label in c["studies"] and c["studies"][label]["reached"]]
            ),
            "median_final_best_this_over_cold": median([_final_ratio(c, label) for c in cases if label in c["studies"]]),
            "median_total_cpu_this_over_cold": median(
                [ratio(c["studies"][label]["cpu_s"], c["studies"]["cold"]["cpu_s"]) for c in cases if label in c["studies"]]
            ),
        }
        if label in HOLDOUT:
            summary[label].update(
                {
                    "holdout_reached_share": sum(r["holdout"]["reached"] for r in rows) / len(rows) if rows else None,
                    "median_holdout_cpu_to_target_cold_over_this": median([_holdout_ratio(c, label) for c in cases]),
                    "median_holdout_final_this_over_cold": median([_holdout_final_ratio(c, label) for c in cases]),
                }
            )
    return summary


def _guard(tmp: Path, seeds: list[int], n_trials: int) -> dict[str, Any]:
    """Learning rate in the space: does successive halving favour fast learners?"""
    import optuna
    import realdata
    from scipy.stats import spearmanr

    from retune.data import split_for_retune

    rd = realdata.load("bike_sharing", tmp, n_trials=n_trials, learning_rate=True)
    end = rd.bootstrap_end + rd.window
    df, features = realdata.window(rd, end - rd.train_window, end)
    split = split_for_retune(df, rd.cfg)
    per_seed = []
    for seed in seeds:
        storage = optuna.storages.InMemoryStorage()
        runs = {}
        for label, pruner in [
            ("none", "none"),
            ("median", "median"),
            ("successive_halving", "successive_halving"),
            ("hyperband", "hyperband"),
        ]:
            runs[label] = realdata.timed_study(
                rd,
                split,
                features,
                label=label,
                study_name=f"guard.{seed}.{label}",
                storage=storage,
                n_trials=n_trials,
                seed=seed,
                pruner=pruner,
            )
        full = runs["none"]
        last = rd.cfg.tuning.n_steps - 1
        curves = [t for t in full.trials if t["value"] is not None and 0 in t["steps"] and last in t["steps"]]
        rho = (
            spearmanr([t["steps"][0] for t in curves], [t["steps"][last] for t in curves]).statistic if len(curves) > 2 else None
        )
        q = max(1, len(curves) // 4)
        early_top = sorted(curves, key=lambda t: t["steps"][0])[:q]
        final_top = sorted(curves, key=lambda t: t["steps"][last])[:q]
        best_trial = final_top[0] if final_top else None
        survives = best_trial is not None and best_trial in early_top

        def log_lr(trials: list[dict[str, Any]]) -> float | None:
            vals = [math.log10(t["params"]["learning_rate"]) for t in trials if "learning_rate" in t["params"]]
            return sum(vals) / len(vals) if vals else None

        per_seed.append(
            {
                "seed": seed,
                "best": {k: r.best for k, r in runs.items()},
                "cpu_s": {k: r.cpu for k, r in runs.items()},
                "best_lr": {k: r.best_params.get("learning_rate") for k, r in runs.items()},
                "spearman_first_vs_last_step": rho,
                "mean_log10_lr_top_quarter_first_step": log_lr(early_top),
                "mean_log10_lr_top_quarter_last_step": log_lr(final_top),
                "unpruned_best_in_top_quarter_at_first_step": survives,
            }
        )
    sh_over_none = median([ratio(s["best"]["successive_halving"], s["best"]["none"]) for s in per_seed])
    lr_up = median(
        [(s["mean_log10_lr_top_quarter_first_step"] or 0) - (s["mean_log10_lr_top_quarter_last_step"] or 0) for s in per_seed]
    )
    sh_lr = median([ratio(s["best_lr"]["successive_halving"], s["best_lr"]["none"]) for s in per_seed])
    bias = bool(sh_over_none is not None and sh_over_none > 1 + TOLERANCE and (sh_lr or 1) > 1)
    return {
        "dataset": "bike_sharing (learning_rate in the space)",
        "window_end": end.date().isoformat(),
        "per_seed": per_seed,
        "sh_final_best_over_unpruned": sh_over_none,
        "median_final_best_over_unpruned": median([ratio(s["best"]["median"], s["best"]["none"]) for s in per_seed]),
        "hyperband_final_best_over_unpruned": median([ratio(s["best"]["hyperband"], s["best"]["none"]) for s in per_seed]),
        "sh_best_lr_over_unpruned_best_lr": sh_lr,
        "early_top_quarter_log10_lr_minus_final_top_quarter": lr_up,
        "short_horizon_bias": bias,
        "verdict": (
            "successive halving ends worse than no pruning with a faster learning rate: short-horizon bias"
            if bias
            else "no short-horizon bias beyond 0.5% in the final best"
        ),
    }


def target_agreement(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: does a study's validation best, relative to (a)'s, say how its model does
    on the holdout, relative to (a)'s model?

    The rank correlation (Spearman) over every (case, study) pair with a holdout view, (a)
    itself left out. Near 1: the validation target (within 0.5% of (a)'s best) ranks models as
    unseen data would; near 0: differences of a few percent on validation are selection noise.
    """
    from scipy.stats import spearmanr

    out: dict[str, dict[str, Any]] = {}
    for dataset in sorted({c["dataset"] for c in cases}):
        pairs = []
        for c in cases:
            if c["dataset"] != dataset:
                continue
            for label, row in c["studies"].items():
                if label == "cold" or row.get("best") is None:
                    continue
                pairs.append((_final_ratio(c, label), _holdout_final_ratio(c, label)))
        pairs = [(v, h) for v, h in pairs if v is not None and h is not None]
        rho = spearmanr([v for v, _ in pairs], [h for _, h in pairs]).statistic if len(pairs) > 2 else None
        out[dataset] = {"pairs": len(pairs), "spearman_validation_vs_holdout": None if rho is None else float(rho)}
    return out


def run(quick: bool, out: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """Run B1.

    Args:
        quick: Small sizes (one seed, one episode per dataset, 12 trials).
        out: Results folder (for the PNG).
        seeds: Seeds instead of the default ones (``bench/run.py --seeds``): the same code on
            other seeds, to see how far the medians move.
    """
    import optuna
    import realdata

    quiet()
    if not realdata.available():
        return {"skipped": f"datasets not found in {realdata.DATASETS}", "ratios": {}}
    s = _settings(quick)
    if seeds:
        s["seeds"] = list(seeds)
    cases: list[dict[str, Any]] = []
    order = 0
    with tempfile.TemporaryDirectory(prefix="retune-b1-") as tmp:
        for dataset, n_episodes in s["episodes"].items():
            for seed in s["seeds"]:
                rd = realdata.load(dataset, Path(tmp), n_trials=s["n_trials"], seed=seed)
                storage = optuna.storages.InMemoryStorage()
                walk = _episodes(rd, seed, s["n_trials"], n_episodes, storage)
                try:
                    ep = next(walk)
                    while True:
                        log(
                            f"B1 {dataset} seed {seed} episode {ep['episode']} ({ep['window_end']}, drift {ep['drift_share']:.2f})"
                        )
                        case = _case(rd, ep, seed, s["n_trials"], storage, order)
                        order += 1
                        cases.append(case)
                        ep = walk.send(case["studies"]["retune"]["best_params"])
                except StopIteration:
                    pass
        log("B1 guard case (learning rate in the space)")
        guard = _guard(Path(tmp) / "guard", s["guard_seeds"], s["n_trials"])
    labels = list(cases[0]["studies"]) if cases else []
    summary = _summarize(cases, labels)
    by_dataset = {
        dataset: {
            "modes": sorted({c["mode"] for c in cases if c["dataset"] == dataset}),
            "studies": _summarize([c for c in cases if c["dataset"] == dataset], [x for x in MAIN if x in labels]),
        }
        for dataset in s["episodes"]
    }
    default = "retune, early stop (default)"
    ratios = {
        "cpu_to_target_cold_over_warm": summary.get("retune", {}).get("median_cpu_to_target_cold_over_this"),
        "cpu_to_target_cold_over_cold_other_seed": summary.get("cold, other seed", {}).get("median_cpu_to_target_cold_over_this"),
        "holdout_cpu_to_target_cold_over_warm": summary.get("retune", {}).get("median_holdout_cpu_to_target_cold_over_this"),
        "holdout_final_warm_over_cold": summary.get("retune", {}).get("median_holdout_final_this_over_cold"),
        "total_cpu_default_over_cold": summary.get(default, {}).get("median_total_cpu_this_over_cold"),
        "holdout_final_default_over_cold": summary.get(default, {}).get("median_holdout_final_this_over_cold"),
        "cpu_to_target_cold_over_pruned": summary.get(PRUNED, {}).get("median_cpu_to_target_cold_over_this"),
        "final_best_warm_over_cold": summary.get("retune", {}).get("median_final_best_this_over_cold"),
        "final_best_pruned_over_cold": summary.get(PRUNED, {}).get("median_final_best_this_over_cold"),
        "total_cpu_warm_over_cold": summary.get("retune", {}).get("median_total_cpu_this_over_cold"),
    }
    agreement = target_agreement(cases)
    result = {
        "settings": {**s, "tolerance": TOLERANCE, "metric": {k: v.metric for k, v in realdata.SPECS.items()}},
        "targets": {"cpu_to_target_cold_over_warm": ">= 4", "final_best_warm_over_cold": "<= 1 (lower is better: MAE, log loss)"},
        "ratios": ratios,
        "summary": summary,
        "by_dataset": by_dataset,
        "guard": {k: v for k, v in guard.items()},
        "target_agreement": agreement,
        "cases": [{k: v for k, v in c.items()} for c in cases],
        "table": table(
            "B1 retune efficiency on real drift (medians over episodes x seeds; target = cold's final best within 0.5%)",
            [
                "study",
                "cases",
                "reached",
                "trials to target (when reached)",
                "CPU s to target (when reached)",
                "total CPU s",
                "pruned",
                "cold/this CPU to target",
                "same, when reached",
                "final best this/cold",
                "holdout: reached",
                "holdout: cold/this CPU",
                "holdout: final this/cold",
            ],
            [
                [
                    label,
                    v["cases"],
                    v["reached_share"],
                    v["median_trials_to_target"],
                    v["median_cpu_to_target_s"],
                    v["median_total_cpu_s"],
                    v["median_pruned"],
                    v["median_cpu_to_target_cold_over_this"],
                    v["median_cpu_to_target_cold_over_this_when_reached"],
                    v["median_final_best_this_over_cold"],
                    v.get("holdout_reached_share"),
                    v.get("median_holdout_cpu_to_target_cold_over_this"),
                    v.get("median_holdout_final_this_over_cold"),
                ]
                for label, v in summary.items()
            ],
        ),
    }
    result["extra_tables"] = [
        table(
            "B1 by dataset (the drift mode Retune picked; same medians as above)",
            [
                "dataset",
                "mode",
                "study",
                "cases",
                "reached",
                "cold/this CPU to target",
                "same, when reached",
                "final best this/cold",
                "holdout: reached",
                "holdout: final this/cold",
            ],
            [
                [
                    dataset,
                    ",".join(d["modes"]),
                    label,
                    v["cases"],
                    v["reached_share"],
                    v["median_cpu_to_target_cold_over_this"],
                    v["median_cpu_to_target_cold_over_this_when_reached"],
                    v["median_final_best_this_over_cold"],
                    v.get("holdout_reached_share"),
                    v.get("median_holdout_final_this_over_cold"),
                ]
                for dataset, d in by_dataset.items()
                for label, v in d["studies"].items()
                if label != "cold"
            ],
        ),
        table(
            "B1 does the validation target predict the holdout? (rank correlation of this/cold on validation vs on the holdout, every study with a holdout view)",
            ["dataset", "pairs", "Spearman"],
            [[d, a["pairs"], a["spearman_validation_vs_holdout"]] for d, a in agreement.items()],
        ),
    ]
    _plot(cases, plot_path(out, "B1", quick))
    return result


def _plot(cases: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far against CPU seconds for (a), (b), (c) in each case, relative to (a)'s final best."""
    if not cases:
        return
    plt = pyplot()
    shown = cases[: min(4, len(cases))]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, case in zip(axes[0], shown, strict=False):
        cold_best = case["studies"]["cold"]["best"]
        for label, style in (
            ("cold", "-"),
            (PRUNED, "--"),
            ("retune", "-"),
            ("retune, early stop (default)", "-."),
            ("cold, other seed", ":"),
        ):
            trace = case["trace"].get(label)
            if not trace:
                continue
            xs, ys = zip(*trace, strict=True)
            ax.step(xs, ys, style, where="post", label=label)
        ax.axhline(case["target"] / cold_best, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{case['dataset']} ep {case['episode']} seed {case['seed']} ({case['mode']})", fontsize=8)
        ax.set_xlabel("CPU seconds")
        ax.set_ylabel("best so far / cold's final best")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

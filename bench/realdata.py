"""Real drift for B1 and B5: bike sharing and NOAA weather as Retune configs, and studies
timed in CPU seconds trial by trial.

Everything runs through Retune's own code: the config is a real ``RetuneConfig`` (read
from YAML by :func:`retune.config.load_config`), windows come from
:func:`retune.data.load_window`, splits from :func:`retune.data.split_for_retune`, trials
from :class:`retune.tuning.Objective` and :func:`retune.tuning.run_study`, pruners from
:func:`retune.tuning.make_pruner`, the drift-aware mode from :func:`retune.adaptive.plan_for`
and the warm-start seeds from :mod:`retune.warmstart`. Only MLflow is replaced by a
stand-in that drops what a trial logs (see :class:`common.NullMlflowClient`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from common import DATASETS, NullMlflowClient

SPACE = {
    "max_leaf_nodes": {"type": "int", "low": 8, "high": 128, "log": True},
    "min_samples_leaf": {"type": "int", "low": 5, "high": 80},
    "l2_regularization": {"type": "log_float", "low": 0.0001, "high": 10.0},
    "max_features": {"type": "float", "low": 0.3, "high": 1.0},
}
LEARNING_RATE = {"type": "log_float", "low": 0.02, "high": 0.5}


@dataclass(frozen=True)
class DataSpec:
    """One real dataset as a Retune config."""

    name: str
    task: str
    target: str
    metric: str
    window: str
    train_window: str
    bootstrap_end: str
    max_iter: int


SPECS = {
    "bike_sharing": DataSpec(
        name="bikes",
        task="regression",
        target="cnt",
        metric="mae",
        window="30d",
        train_window="90d",
        bootstrap_end="2011-04-01",
        max_iter=200,
    ),
    "noaa_weather": DataSpec(
        name="weather",
        task="classification",
        target="rain",
        metric="log_loss",
        window="365d",
        train_window="1095d",
        bootstrap_end="1952-01-01",
        max_iter=200,
    ),
}


def available() -> bool:
    """Whether ../shared/datasets is here."""
    return (DATASETS / "bike_sharing" / "hour.csv").exists() and (DATASETS / "noaa_weather" / "weather_nebraska.csv").exists()


def _frame(dataset: str) -> Any:
    import pandas as pd

    if dataset == "bike_sharing":
        raw = pd.read_csv(DATASETS / "bike_sharing" / "hour.csv")
        raw["ts"] = pd.to_datetime(raw["dteday"], utc=True) + pd.to_timedelta(raw["hr"], unit="h")
        return raw.drop(columns=["casual", "registered", "instant", "dteday"])
    raw = pd.read_csv(DATASETS / "noaa_weather" / "weather_nebraska.csv")
    # Calendar dates cannot be rebuilt (see the datasets' README): day 0 is put at 1949-01-01.
    raw["ts"] = pd.Timestamp("1949-01-01", tz="UTC") + pd.to_timedelta(raw["day_index"], unit="D")
    return raw.drop(columns=["day_index"])


@dataclass
class RealData:
    """A dataset written as Parquet with its Retune config."""

    dataset: str
    spec: DataSpec
    cfg: Any
    frame: Any
    window: timedelta
    train_window: timedelta
    bootstrap_end: Any
    end: Any


def load(dataset: str, tmp: Path, *, n_trials: int, learning_rate: bool = False, seed: int = 0) -> RealData:
    """Write ``dataset`` as Parquet under ``tmp`` and load a Retune config for it.

    Args:
        dataset: ``bike_sharing`` or ``noaa_weather``.
        tmp: A scratch folder.
        n_trials: ``tuning.n_trials``.
        learning_rate: Put the learning rate in the search space (the guard case).
        seed: ``tuning.seed``.
    """
    import pandas as pd

    from retune.config import load_config, parse_duration

    spec = SPECS[dataset]
    frame = _frame(dataset)
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / f"{dataset}.parquet"
    if not data.exists():
        frame.to_parquet(data)
    space = dict(SPACE)
    fixed: dict[str, Any] = {"max_iter": spec.max_iter}
    if learning_rate:
        space = {"learning_rate": LEARNING_RATE, **space}
    else:
        fixed["learning_rate"] = 0.1
    start = pd.Timestamp(frame["ts"].min())
    raw = {
        "name": spec.name,
        "task": spec.task,
        "target": spec.target,
        "data": {
            "production": {"path": str(data)},
            "reference": {"start": start.isoformat(), "end": pd.Timestamp(spec.bootstrap_end, tz="UTC").isoformat()},
            "time_column": "ts",
            "window": spec.window,
            "train_window": spec.train_window,
            "holdout_fraction": 0.2,
        },
        "model": {"family": "hist_gradient_boosting", "fixed_params": fixed, "search_space": space},
        "metric": {"name": spec.metric},
        # B5's monitor runs the default detector (profiled, Evidently's HTML report for a drifted
        # window); B5 also reports the share had it been evidently with a report every window.
        "drift": {"drift_share": 0.3},
        "tuning": {"n_trials": n_trials, "seed": seed, "n_steps": 4, "warm_start_top_k": 3, "threads_per_trial": 1},
        "validation": {"min_improvement": 0.0},
        "registry": {"model_name": spec.name},
    }
    path = tmp / f"{spec.name}{'-lr' if learning_rate else ''}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    return RealData(
        dataset=dataset,
        spec=spec,
        cfg=cfg,
        frame=frame,
        window=parse_duration(spec.window),
        train_window=parse_duration(spec.train_window),
        bootstrap_end=pd.Timestamp(spec.bootstrap_end, tz="UTC"),
        end=pd.Timestamp(frame["ts"].max()),
    )


def window(rd: RealData, start: Any, end: Any, *, features: Any = None) -> tuple[Any, Any]:
    """Rows in ``[start, end)`` through Retune's data checks: ``(frame, FeatureSet)``."""
    from retune.data import Window, load_window

    return load_window(rd.cfg, Window("production", start.to_pydatetime(), end.to_pydatetime()), features=features)


# --------------------------------------------------------------------------- studies


def _objective_class() -> type:
    from retune.tuning import Objective

    class TimedObjective(Objective):  # type: ignore[misc, valid-type]
        """Retune's objective, noting the study's CPU seconds when each trial ends."""

        cpu0 = 0.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.marks: dict[int, float] = {}

        def __call__(self, trial: Any) -> Any:
            try:
                return super().__call__(trial)
            finally:
                self.marks[trial.number] = time.process_time() - self.cpu0

    return TimedObjective


@dataclass
class StudyRun:
    """What one timed study did."""

    label: str
    direction: str
    cpu: float
    best: float | None
    best_params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    n_pruned: int = 0
    n_complete: int = 0
    n_failed: int = 0
    seeds: int = 0
    stop_reason: str = ""
    study: Any = None

    def to_target(self, target: float) -> tuple[int | None, float | None]:
        """Finished trials and CPU seconds until a complete trial first reaches ``target``."""
        for i, t in enumerate(self.trials, start=1):
            v = t["value"]
            if v is not None and (v <= target if self.direction == "minimize" else v >= target):
                return i, t["cpu"]
        return None, None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "cpu_s": self.cpu,
            "best": self.best,
            "n_complete": self.n_complete,
            "n_pruned": self.n_pruned,
            "n_failed": self.n_failed,
            "seeds": self.seeds,
            "stop_reason": self.stop_reason,
            "best_params": self.best_params,
        }


def timed_study(
    rd: RealData,
    split: Any,
    features: Any,
    *,
    label: str,
    study_name: str,
    storage: Any,
    n_trials: int,
    seed: int,
    pruner: str | None = None,
    sampler: str = "tpe",
    space: dict[str, Any] | None = None,
    seeds: list[tuple[str, dict[str, Any]]] | None = None,
    source_trials: list[Any] | None = None,
    early_stop: int | str | None = "auto",
    sampler_seed: int | None = None,
    mode: str | None = None,
) -> StudyRun:
    """Run one study with Retune's objective and record the CPU seconds at each trial's end.

    Args:
        rd: The dataset.
        split: The retune split.
        features: The feature set.
        label: Name in the results.
        study_name: The Optuna study name (``retune.<model>.`` studies are what warm starts find).
        storage: Optuna storage.
        n_trials: Trial budget.
        seed: Sampler seed.
        pruner: Retune pruner type (``none`` for no pruning; default: the config's
            ``tuning.pruner`` with its args).
        sampler: ``tpe`` (Retune's) or ``cmaes`` (with ``source_trials``: warm-starting CMA-ES).
        space: Search space (default: the config's).
        seeds: Warm-start seeds ``(source, params)``, enqueued with :func:`retune.warmstart.enqueue_seeds`.
        source_trials: Trials of an earlier study for ``cmaes``.
        early_stop: ``tuning.early_stop_patience`` of this study: ``"auto"`` (Retune's default:
            a warm-started study stops after max(5, n_trials / 5) trials without improvement),
            a number, or ``None`` to run the whole budget.
        sampler_seed: The sampler's seed (default ``seed``); the models' seed stays ``seed``,
            so the objective is the same.
        mode: The drift-aware plan's mode (``severe`` widened the space: TPE keeps its random start).
    """
    import optuna
    from optuna.trial import TrialState

    from retune.config import PrunerConfig
    from retune.tuning import WARM_START_ATTR, fit_sampler_to_seeds, make_pruner, make_sampler, run_study
    from retune.warmstart import enqueue_seeds

    cfg = rd.cfg
    if early_stop != cfg.tuning.early_stop_patience:
        cfg = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"early_stop_patience": early_stop})})
    space = space if space is not None else cfg.model.search_space
    sseed = seed if sampler_seed is None else sampler_seed
    if sampler == "cmaes":
        usable = [t for t in (source_trials or []) if t.state == TrialState.COMPLETE]
        if len(usable) < 10:  # cmaes.get_warm_start_mgd keeps the best 10%: it needs at least 10
            raise ValueError(f"warm-starting CMA-ES needs 10 complete source trials, the previous study has {len(usable)}")
        smp: Any = optuna.samplers.CmaEsSampler(seed=sseed, source_trials=usable or None, warn_independent_sampling=False)
    else:
        smp = make_sampler(cfg.tuning, n_seeds=0, seed=sseed)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=cfg.direction,
        sampler=smp,
        pruner=make_pruner(
            cfg.tuning.pruner if pruner is None else PrunerConfig(type=pruner),  # type: ignore[arg-type]
            n_steps=cfg.tuning.n_steps,
        ),
    )
    enqueued = enqueue_seeds(study, seeds, space) if seeds else []
    if sampler != "cmaes" and enqueued:  # as Retune's pipeline does: TPE's random start counts the seeds
        fit_sampler_to_seeds(study, cfg.tuning, mode=mode, seed=sseed)
    objective = _objective_class()(cfg, split, features, cl=NullMlflowClient(), experiment_id="0", parent_run_id="0", space=space)
    objective.cpu0 = time.process_time()
    outcome = run_study(study, objective, n_trials=n_trials, timeout=None)
    cpu = time.process_time() - objective.cpu0
    trials = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if not t.state.is_finished():
            continue
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "cpu": objective.marks.get(t.number),
                "seed": t.user_attrs.get(WARM_START_ATTR),
                "params": dict(t.params),
                "steps": dict(t.intermediate_values),
            }
        )
    complete = [t for t in trials if t["value"] is not None]
    best = None
    if complete:
        pick = min if cfg.direction == "minimize" else max
        best = pick(complete, key=lambda t: t["value"])
    return StudyRun(
        label=label,
        direction=cfg.direction,
        cpu=cpu,
        best=None if best is None else float(best["value"]),
        best_params={} if best is None else dict(best["params"]),
        trials=trials,
        n_pruned=sum(t["state"] == "PRUNED" for t in trials),
        n_complete=len(complete),
        n_failed=sum(t["state"] == "FAIL" for t in trials),
        seeds=len(enqueued),
        stop_reason=outcome.stop_reason,
        study=study,
    )


def fit_and_score(rd: RealData, params: dict[str, Any], train: Any, features: Any) -> Any:
    """Refit ``params`` on ``train`` (as Retune's validate does): the fitted pipeline."""
    from threadpoolctl import threadpool_limits

    from retune.models import get_family

    cfg = rd.cfg
    family = get_family(cfg.model.family)
    pipe = family.build(
        cfg.task,
        {**cfg.model.fixed_params, **params},
        numerical=features.numerical,
        categorical=features.categorical,
        seed=cfg.tuning.seed,
    )
    with threadpool_limits(limits=cfg.tuning.threads_per_trial):
        pipe.fit(train[features.columns], train[cfg.target])
    return pipe


def holdout_trace(rd: RealData, run: StudyRun, split: Any, features: Any) -> list[tuple[float, float]]:
    """``(CPU seconds, holdout error)`` each time the study's best-so-far trial changes.

    The trial's model is trained again exactly as the trial trained it (same params, seed and
    stages, on the train part) and scored on the holdout, which no trial has seen: how good the
    model a study would hand over is on unseen data, not on the validation part it was picked on.
    """
    from threadpoolctl import threadpool_limits

    from retune.metrics import get_metric
    from retune.models import get_family

    cfg = rd.cfg
    family, metric = get_family(cfg.model.family), get_metric(cfg.metric.name, cfg.task)
    X, y = split.train[features.columns], split.train[cfg.target]
    Xh, yh = split.holdout[features.columns], split.holdout[cfg.target]
    out: list[tuple[float, float]] = []
    best: float | None = None
    for t in run.trials:
        v = t["value"]
        if v is None or t["cpu"] is None or (best is not None and not (v < best if run.direction == "minimize" else v > best)):
            continue
        best = v
        pipe = family.build(
            cfg.task,
            {**cfg.model.fixed_params, **t["params"]},
            numerical=features.numerical,
            categorical=features.categorical,
            seed=cfg.tuning.seed,
        )
        with threadpool_limits(limits=cfg.tuning.threads_per_trial):
            for _ in family.staged_fit(pipe, X, y, n_steps=cfg.tuning.n_steps):
                pass  # the pipeline is fitted in place, stage after stage
        out.append((float(t["cpu"]), float(metric.score(pipe, Xh, yh))))
    return out

"""The pruned Optuna study: search space, pruners, the objective and its MLflow child runs.

Every trial trains in stages (see :mod:`retune.models`), reports the validation metric after
each stage and is stopped by the pruner when it falls behind. Every trial is one MLflow
child run of the retune's parent run: its params, the metric at every stage (as metric
steps), its final value and its state (pruned trials end KILLED with
``optuna.trial_state=PRUNED``, failed ones FAILED).

Example:
    >>> from retune.config import PrunerConfig
    >>> type(make_pruner(PrunerConfig(type="hyperband"), n_steps=4)).__name__
    'HyperbandPruner'
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retune.config import CategoricalParam, FloatParam, IntParam, ParamSpec, PrunerConfig, RetuneConfig
from retune.data import FeatureSet, RetuneSplit
from retune.metrics import get_metric
from retune.models import get_family

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

WARM_START_ATTR = "warm_start"


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample one point of the search space.

    Args:
        trial: The Optuna trial.
        space: The config's search space.

    Returns:
        Parameter values by name.
    """
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, IntParam):
            params[name] = trial.suggest_int(name, spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, FloatParam):
            params[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.type == "log_float", step=spec.step)
        elif isinstance(spec, CategoricalParam):
            params[name] = trial.suggest_categorical(name, spec.choices)
    return params


def distributions(space: dict[str, ParamSpec]) -> dict[str, Any]:
    """The Optuna distributions of a search space (for checking and clipping seeds)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, IntParam):
            out[name] = IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, FloatParam):
            out[name] = FloatDistribution(spec.low, spec.high, log=spec.type == "log_float", step=spec.step)
        else:
            out[name] = CategoricalDistribution(spec.choices)
    return out


def make_pruner(cfg: PrunerConfig, *, n_steps: int) -> optuna.pruners.BasePruner:
    """The pruner a config asks for.

    Args:
        cfg: ``tuning.pruner`` of the config.
        n_steps: Intermediate values per trial (sets sensible defaults for resource bounds).

    Returns:
        An Optuna pruner.

    Raises:
        ValueError: If the arguments do not fit the pruner, naming ``tuning.pruner.args``.
    """
    import optuna

    factories: dict[str, Any] = {
        "median": lambda **kw: optuna.pruners.MedianPruner(**{"n_startup_trials": 5, "n_warmup_steps": 0, **kw}),
        "percentile": lambda **kw: optuna.pruners.PercentilePruner(**{"percentile": 25.0, "n_startup_trials": 5, **kw}),
        "successive_halving": lambda **kw: optuna.pruners.SuccessiveHalvingPruner(**kw),
        "hyperband": lambda **kw: optuna.pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": n_steps, **kw}),
        "wilcoxon": lambda **kw: optuna.pruners.WilcoxonPruner(**kw),
        "none": lambda **kw: optuna.pruners.NopPruner(**kw),
    }
    try:
        return factories[cfg.type](**cfg.args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tuning.pruner.args for {cfg.type!r}: {exc}") from None


@dataclass
class StudyOutcome:
    """What a study found; JSON-safe."""

    study_name: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_is_warm_start: str | None
    elapsed_s: float
    stop_reason: str
    seeds: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A small dict for XCom."""
        return asdict(self)


class ProgressLogger:
    """An Optuna callback that logs ``trial n/N``, the best so far and the pruned count."""

    def __init__(self, n_trials: int, direction: str) -> None:
        self.n_trials = n_trials
        self.direction = direction

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state.is_finished()]
        pruned = sum(t.state == TrialState.PRUNED for t in done)
        failed = sum(t.state == TrialState.FAIL for t in done)
        complete = [t for t in done if t.state == TrialState.COMPLETE]
        best = (min if self.direction == "minimize" else max)((t.value for t in complete if t.value is not None), default=None)
        seed = trial.user_attrs.get(WARM_START_ATTR)
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        log.info(
            "trial %d/%d %s%s value=%s | best so far=%s | pruned so far=%d failed=%d",
            len(done),
            self.n_trials,
            trial.state.name,
            f" (warm start: {seed})" if seed else "",
            "-" if value is None else f"{value:.6g}",
            "-" if best is None else f"{best:.6g}",
            pruned,
            failed,
        )


class Objective:
    """Trains one trial in stages, reports each stage, and tracks it as an MLflow child run.

    Args:
        cfg: The model config.
        split: The retune's data split (trials train on ``train``, score on ``valid``).
        features: Feature columns.
        cl: MLflow client.
        experiment_id: The retune experiment.
        parent_run_id: The retune's parent run.
        worker: Which parallel worker runs the trials (recorded on each trial).
    """

    def __init__(
        self,
        cfg: RetuneConfig,
        split: RetuneSplit,
        features: FeatureSet,
        *,
        cl: MlflowClient,
        experiment_id: str,
        parent_run_id: str,
        worker: int = 0,
    ) -> None:
        self.worker = worker
        self.cfg = cfg
        self.features = features
        self.metric = get_metric(cfg.metric.name, cfg.task)
        self.family = get_family(cfg.model.family)
        self.X_train = split.train[features.columns]
        self.y_train = split.train[cfg.target]
        self.X_valid = split.valid[features.columns]
        self.y_valid = split.valid[cfg.target]
        self.cl = cl
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna
        from threadpoolctl import threadpool_limits

        params = suggest(trial, self.cfg.model.search_space)
        seed = trial.user_attrs.get(WARM_START_ATTR)
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "mlflow.runName": f"trial-{trial.number:03d}",
            "optuna.study": trial.study.study_name,
            "optuna.trial_number": str(trial.number),
            "retune.warm_start": seed or "none",
            "retune.worker": str(self.worker),
        }
        run = self.cl.create_run(self.experiment_id, tags=tags)
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("worker", self.worker)
        from mlflow.entities import Param

        self.cl.log_batch(run_id, params=[Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()])
        status, state = "FAILED", "FAIL"
        try:
            pipe = self.family.build(
                self.cfg.task,
                {**self.cfg.model.fixed_params, **params},
                numerical=self.features.numerical,
                categorical=self.features.categorical,
                seed=self.cfg.tuning.seed,
            )
            value = math.nan
            with threadpool_limits(limits=self.cfg.tuning.threads_per_trial):
                for i, (budget, fitted) in enumerate(
                    self.family.staged_fit(pipe, self.X_train, self.y_train, n_steps=self.cfg.tuning.n_steps)
                ):
                    value = self.metric.score(fitted, self.X_valid, self.y_valid)
                    self.cl.log_metric(run_id, f"valid_{self.metric.name}", value, step=i)
                    self.cl.log_metric(run_id, "budget", float(budget), step=i)
                    trial.report(value, i)
                    if trial.should_prune():
                        status, state = "KILLED", "PRUNED"
                        raise optuna.TrialPruned(f"pruned at step {i} (budget {budget}) with {value:.6g}")
            if not math.isfinite(value):
                raise ValueError(f"trial {trial.number} produced a non-finite {self.metric.name}: {value}")
            self.cl.log_metric(run_id, self.metric.name, value)
            status, state = "FINISHED", "COMPLETE"
            return value
        finally:
            self.cl.set_tag(run_id, "optuna.trial_state", state)
            self.cl.set_terminated(run_id, status=status)


def run_study(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None,
) -> StudyOutcome:
    """Run (or resume) a study until it has ``n_trials`` complete or pruned trials, or the
    timeout passes.

    Several workers may run this on one study at once: the budget is shared (a worker stops
    when the study as a whole reaches it, so at most one in-flight trial per other worker
    runs past it). A retried task resumes the same study: finished trials count towards the
    budget. Failed trials do not count, so a trial lost with its worker is made up for.

    Args:
        study: The study (with its warm-start seeds already enqueued).
        objective: The objective.
        n_trials: The trial budget (complete, pruned and failed trials all count).
        timeout: Seconds, or ``None``.

    Returns:
        The outcome.
    """
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    start = time.monotonic()
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    already = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(0, n_trials - already)
    log.info("study %s: %d trial(s) to run (%d already finished), timeout=%s", study.study_name, remaining, already, timeout)
    if remaining:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=timeout,
            callbacks=[
                MaxTrialsCallback(n_trials, states=finished),
                ProgressLogger(n_trials, objective.cfg.direction),
            ],
            catch=(ValueError, ArithmeticError),
            gc_after_trial=False,
        )
    elapsed = time.monotonic() - start
    return outcome_of(study, elapsed_s=elapsed, stop_reason=stop_reason_of(study, n_trials))


def stop_reason_of(study: optuna.Study, n_trials: int) -> str:
    """Why a study stopped: its budget, or (short of it) the timeout."""
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    return "trial budget reached" if done >= n_trials else "timeout reached"


def outcome_of(study: optuna.Study, *, elapsed_s: float, stop_reason: str) -> StudyOutcome:
    """Summarize a study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    seeds = [
        {"trial": t.number, "source": t.user_attrs[WARM_START_ATTR], "state": t.state.name, "value": t.value}
        for t in trials
        if WARM_START_ATTR in t.user_attrs
    ]
    best = study.best_trial if complete else None
    return StudyOutcome(
        study_name=study.study_name,
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        best_value=None if best is None else float(best.value),  # type: ignore[arg-type]
        best_params={} if best is None else dict(best.params),
        best_trial=None if best is None else best.number,
        best_is_warm_start=None if best is None else best.user_attrs.get(WARM_START_ATTR),
        elapsed_s=round(elapsed_s, 3),
        stop_reason=stop_reason,
        seeds=seeds,
    )

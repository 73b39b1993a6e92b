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

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retune.config import CategoricalParam, FloatParam, IntParam, ParamSpec, PrunerConfig, RetuneConfig, TuningConfig
from retune.data import FeatureSet, RetuneSplit
from retune.metrics import get_metric
from retune.models import get_family
from retune.tracking import end_trial_run

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence

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


def make_sampler(
    tuning: TuningConfig, *, n_seeds: int, widened: bool = False, seed: int | None = None
) -> optuna.samplers.TPESampler:
    """Retune's TPE sampler for a study with ``n_seeds`` enqueued warm-start seeds.

    TPE samples its first ``n_startup_trials`` finished trials at random. With Optuna's
    default (10) a study warm-started with 4 seeds spends 6 more trials on random search
    before TPE uses the seeds' scores; ``tuning.startup_trials: auto`` starts modelling after
    one random trial when the study searches the seeds' own space, and keeps the random start
    where severe drift widened the space (bench B1: fewer random trials helped on bike sharing,
    moderate drift, and hurt on NOAA weather, severe drift).

    Args:
        tuning: ``startup_trials`` and ``seed``.
        n_seeds: Warm-start seeds in the study (0: cold).
        widened: Whether the space is wider than the one the seeds came from.
        seed: The sampler's seed (default: ``tuning.seed``).

    Returns:
        The sampler.
    """
    import optuna

    return optuna.samplers.TPESampler(
        n_startup_trials=tuning.startup_trials_for(n_seeds, widened=widened), seed=tuning.seed if seed is None else seed
    )


def fit_sampler_to_seeds(study: optuna.Study, tuning: TuningConfig, *, mode: str | None, seed: int | None = None) -> None:
    """Give a study whose seeds are enqueued the TPE sampler that counts them (:func:`make_sampler`).

    Args:
        study: The study, its warm-start seeds already enqueued.
        tuning: ``startup_trials`` and ``seed``.
        mode: The drift-aware plan's mode (``severe`` widened the space beyond the seeds').
        seed: The sampler's seed (default: ``tuning.seed``).
    """
    study.sampler = make_sampler(tuning, n_seeds=n_seeds_of(study), widened=mode == "severe", seed=seed)


def n_seeds_of(study: optuna.Study) -> int:
    """How many warm-start seeds were enqueued in the study."""
    return sum(WARM_START_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False))


def make_pruner(cfg: PrunerConfig, *, n_steps: int) -> optuna.pruners.BasePruner:
    """The pruner a config asks for.

    Args:
        cfg: ``tuning.pruner`` of the config.
        n_steps: Intermediate values per trial (sets sensible defaults for resource bounds).

    Returns:
        An Optuna pruner.

    Raises:
        ValueError: If the arguments do not fit the pruner, naming ``tuning.pruner.args``, or
            the pruner cannot prune before a trial's last step with ``n_steps`` (``wilcoxon``:
            see :func:`wilcoxon_min_steps`), naming ``tuning.pruner`` and ``tuning.n_steps``.
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
        pruner = factories[cfg.type](**cfg.args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tuning.pruner.args for {cfg.type!r}: {exc}") from None
    if cfg.type == "wilcoxon":
        p_threshold = float(cfg.args.get("p_threshold", 0.1))
        need = wilcoxon_min_steps(p_threshold, int(cfg.args.get("n_startup_steps", 2)))
        if need is None:
            raise ValueError(f"tuning.pruner.args for 'wilcoxon': p_threshold {p_threshold:g} never prunes; use pruner 'none'")
        if n_steps < need:
            raise ValueError(
                f"tuning.pruner 'wilcoxon' needs tuning.n_steps >= {need} (got {n_steps}): with p_threshold "
                f"{p_threshold:g} its test can prune only after {need - 1} steps, so with fewer it prunes at the "
                "last step at best, when the trial is already fully trained; raise tuning.n_steps or use another pruner"
            )
    return pruner


def wilcoxon_min_steps(p_threshold: float, n_startup_steps: int = 2) -> int | None:
    """The fewest ``tuning.n_steps`` with which the Wilcoxon pruner can prune a trial before
    its last step (the full fit, when pruning saves nothing).

    Optuna's :class:`~optuna.pruners.WilcoxonPruner` compares a trial's steps with the best
    trial's in a one-sided Wilcoxon signed-rank test; with ``n`` paired steps its p-value is at
    least ``0.5 ** n`` (every step worse), so it prunes only once ``0.5 ** n < p_threshold``,
    and never before ``max(2, n_startup_steps)`` pairs.

    Example:
        >>> wilcoxon_min_steps(0.1), wilcoxon_min_steps(0.2), wilcoxon_min_steps(0.1, 6)
        (5, 4, 7)

    Args:
        p_threshold: The pruner's ``p_threshold``.
        n_startup_steps: The pruner's ``n_startup_steps``.

    Returns:
        The fewest steps, or ``None`` if the pruner can never prune (``p_threshold <= 0``).
    """
    if p_threshold <= 0:
        return None
    pairs = 1
    while 0.5**pairs >= p_threshold:
        pairs += 1
    return max(2, n_startup_steps, pairs) + 1


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
    pareto_front: list[dict[str, Any]] = field(default_factory=list)
    selection: str | None = None

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
        first = [t.values[0] for t in complete if t.values]  # the metric, also in a multi-objective study
        best = (min if self.direction == "minimize" else max)(first, default=None)
        seed = trial.user_attrs.get(WARM_START_ATTR)
        value = trial.values[0] if trial.values else None
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


OBJECTIVE_METRICS = {"latency": "latency_ms_per_1k", "size": "size_kb"}


def objective_values(objectives: list[str], metric_value: float, model: Any, X: Any) -> tuple[float, ...]:
    """The objective values of a fitted trial: the metric, then latency and/or size."""
    import pickle

    from retune.validation import latency_ms_per_1k

    out = [metric_value]
    for name in objectives[1:]:
        if name == "latency":
            out.append(latency_ms_per_1k(model, X))
        elif name == "size":
            out.append(len(pickle.dumps(model)) / 1024.0)
    return tuple(out)


def select_winner(
    front: list[optuna.trial.FrozenTrial],
    *,
    objectives: list[str],
    direction: str,
    max_latency_ms_per_1k: float | None,
    max_size_kb: float | None,
) -> tuple[optuna.trial.FrozenTrial | None, str]:
    """Pick the winner of a multi-objective study from its Pareto front: among the trials
    within the latency and size bounds, the best metric.

    Returns:
        The winner (``None`` if no trial meets the bounds) and why it won.
    """
    bounds = {"latency": max_latency_ms_per_1k, "size": max_size_kb}

    def ok(t: optuna.trial.FrozenTrial) -> bool:
        return all(
            bounds[name] is None or t.values[i] <= bounds[name]  # type: ignore[operator]
            for i, name in enumerate(objectives)
            if name in bounds
        )

    feasible = [t for t in front if ok(t)]
    if not feasible:
        return None, f"no Pareto-optimal trial meets the bounds {bounds}"
    best = (min if direction == "minimize" else max)(feasible, key=lambda t: t.values[0])
    return best, f"best metric among {len(feasible)} of {len(front)} Pareto-optimal trials within {bounds}"


class EarlyStopping:
    """Stop the study when the best value has not improved for ``patience`` finished trials.

    Works across parallel workers: each worker checks the shared study after its trials.

    Args:
        patience: Finished (complete or pruned) trials without improvement before stopping.
        min_delta: An improvement smaller than this does not count.
        direction: ``"minimize"`` or ``"maximize"``.
    """

    def __init__(self, patience: int, *, min_delta: float = 0.0, direction: str = "minimize") -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.sign = 1.0 if direction == "minimize" else -1.0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        done = sorted(
            (t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
            key=lambda t: (t.datetime_complete or t.datetime_start, t.number),  # type: ignore[arg-type, return-value]
        )
        best: float | None = None
        since = 0
        for t in done:
            value = t.value if t.state == TrialState.COMPLETE else None
            if value is not None and (best is None or self.sign * (best - value) > self.min_delta):
                best, since = value, 0
            else:
                since += 1
        if best is not None and since >= self.patience:
            reason = f"converged: no improvement in {since} trials (patience {self.patience})"
            if study.user_attrs.get("stop_reason") != reason:
                study.set_user_attr("stop_reason", reason)
            log.info("early stop of %s: %s", study.study_name, reason)
            study.stop()


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
        space: The search space of this retune (default: the config's; see :mod:`retune.adaptive`).
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
        space: dict[str, ParamSpec] | None = None,
    ) -> None:
        self.worker = worker
        self.space = space if space is not None else cfg.model.search_space
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

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        import optuna
        from threadpoolctl import threadpool_limits

        params = suggest(trial, self.space)
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

        status, state = "FAILED", "FAIL"
        multi = self.cfg.tuning.multi_objective
        try:
            with interruptible():  # a SIGTERM stops the fit; creating and ending the run finish first
                self.cl.log_batch(
                    run_id, params=[Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()]
                )
                pipe = self.family.build(
                    self.cfg.task,
                    {**self.cfg.model.fixed_params, **params},
                    numerical=self.features.numerical,
                    categorical=self.features.categorical,
                    seed=self.cfg.tuning.seed,
                    threads=self.cfg.tuning.threads_per_trial,
                )
                value = math.nan
                with threadpool_limits(limits=self.cfg.tuning.threads_per_trial):
                    for i, (budget, fitted) in enumerate(
                        self.family.staged_fit(pipe, self.X_train, self.y_train, n_steps=self.cfg.tuning.n_steps)
                    ):
                        value = self.metric.score(fitted, self.X_valid, self.y_valid)
                        self.cl.log_metric(run_id, f"valid_{self.metric.name}", value, step=i)
                        self.cl.log_metric(run_id, "budget", float(budget), step=i)
                        if multi:
                            continue  # Optuna cannot prune multi-objective trials
                        trial.report(value, i)
                        if trial.should_prune():
                            status, state = "KILLED", "PRUNED"
                            raise optuna.TrialPruned(f"pruned at step {i} (budget {budget}) with {value:.6g}")
                    if not math.isfinite(value):
                        raise ValueError(f"trial {trial.number} produced a non-finite {self.metric.name}: {value}")
                    # latency under the trial's thread cap, as validate's latency gate measures it
                    values = objective_values(self.cfg.tuning.objectives, value, pipe, self.X_valid) if multi else (value,)
                self.cl.log_metric(run_id, self.metric.name, value)
                result: float | tuple[float, ...] = value
                if multi:
                    for name, v in zip(self.cfg.tuning.objectives[1:], values[1:], strict=True):
                        self.cl.log_metric(run_id, OBJECTIVE_METRICS[name], v)
                    result = values
            status, state = "FINISHED", "COMPLETE"
        except BaseException:
            # close the child run whatever failed (MLflow too); the trial's own error is raised
            end_trial_run(self.cl, run_id, state=state, status=status)
            raise
        # an MLflow error now is logged only: the trial is complete, and the study summary
        # closes a finished trial's child run still RUNNING (fail_abandoned)
        end_trial_run(self.cl, run_id, state=state, status=status)
        return result


def run_study(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> StudyOutcome:
    """Run (or resume) a study until it has ``n_trials`` complete or pruned trials, or the
    timeout passes.

    Several workers may run this on one study at once: the budget is shared (a worker stops
    when the study as a whole reaches it, so at most one in-flight trial per other worker
    runs past it). A retried task resumes the same study: finished trials count towards the
    budget. Failed trials do not count then, so a trial lost with its worker is made up for;
    within one run, a trial whose objective raised an error the study catches (``ValueError``,
    ``ArithmeticError``) uses up one trial of the budget, as in Optuna's ``optimize``.

    Args:
        study: The study (with its warm-start seeds already enqueued).
        objective: The objective.
        n_trials: The trial budget (complete, pruned and failed trials all count).
        timeout: Seconds, or ``None``: the study's wall-clock limit, counted from the first
            time a worker ran it (see :func:`seconds_left`), not per worker or per retry.
        callbacks: More Optuna callbacks, called after each trial.

    Returns:
        The outcome.
    """
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    start = time.monotonic()
    timeout = seconds_left(study, timeout)
    tuning = objective.cfg.tuning
    extra = list(callbacks)
    callbacks = []
    warm = is_warm_started(study)
    patience = tuning.patience_for(n_trials=n_trials, warm=warm)
    if patience:
        callbacks.append(EarlyStopping(patience, min_delta=tuning.early_stop_min_delta, direction=objective.cfg.direction))
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    fail_stale(study)  # Optuna only does this before a trial: also when the budget is already met
    already = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(0, n_trials - already)
    log.info(
        "study %s (%s start): %d trial(s) to run (%d already finished), timeout=%s, early stop %s",
        study.study_name,
        "warm" if warm else "cold",
        remaining,
        already,
        timeout,
        f"after {patience} trials without improvement" if patience else "off",
    )
    if remaining and timeout is not None and timeout <= 0 and "stop_reason" not in study.user_attrs:
        study.set_user_attr("stop_reason", "timeout reached")
        log.info("study %s: its timeout passed before this worker started: no trial run", study.study_name)
    if remaining and "stop_reason" not in study.user_attrs:
        with stop_on_sigterm():
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                callbacks=[
                    MaxTrialsCallback(n_trials, states=finished),
                    ProgressLogger(n_trials, objective.cfg.direction),
                    *callbacks,
                    *extra,
                    stop_if_terminated,
                ],
                catch=(ValueError, ArithmeticError),
                gc_after_trial=False,
            )
    elapsed = time.monotonic() - start
    return outcome_of(
        study,
        elapsed_s=elapsed,
        stop_reason=stop_reason_of(study, n_trials),
        objectives=tuning.objectives,
        max_latency_ms_per_1k=tuning.max_latency_ms_per_1k,
        max_size_kb=tuning.max_size_kb,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a study ran (:func:`stop_on_sigterm`).

    A ``KeyboardInterrupt``, which Optuna handles as it does Ctrl-C: the trial in flight is
    marked FAIL and the error raised, so the study stops. No ``except Exception`` on the
    way out swallows it.
    """

    def __init__(self) -> None:
        super().__init__("SIGTERM: the study stopped; the trial in flight is marked failed")


class _Sigterm:
    """What :func:`stop_on_sigterm`'s handler and :func:`interruptible` share (Python runs
    signal handlers in the main thread only)."""

    depth = 0  # > 0: inside an interruptible block, where a SIGTERM raises at once
    pending = False  # a SIGTERM came outside one: raised at the next block or after the trial


def interruptible() -> contextlib.AbstractContextManager[None]:
    """Where a trial may be stopped at once: its fit and scoring, not its bookkeeping.

    Under :func:`stop_on_sigterm`, a SIGTERM inside the block raises :class:`Terminated`
    there; outside one (Optuna's ask and tell, creating or ending the trial's child run) it
    waits, so no trial and no child run is left half-recorded, and is raised on entering the
    next block, or after the trial by :func:`stop_if_terminated`. A pending one raises on
    entry.
    """

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        if _Sigterm.pending:
            _Sigterm.pending = False
            raise Terminated()
        _Sigterm.depth += 1
        try:
            yield
        finally:
            _Sigterm.depth -= 1

    return block()


def stop_if_terminated(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna callback: raise a SIGTERM that came after the trial's last interruptible block
    (the trial is recorded as it ended; no further trial starts)."""
    del study, trial
    if _Sigterm.pending:
        _Sigterm.pending = False
        raise Terminated()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Stop the study soon and cleanly when the process gets SIGTERM.

    Airflow 3's task runner only calls the operator's ``on_kill`` on SIGTERM and lets the
    task go on; its supervisor sends SIGTERM when a person marks the run failed or success
    (or the task is cleared, or the scheduler stops) and SIGKILL 5 s later. A study went on
    tuning until the SIGKILL, which left the trial in flight RUNNING in the study (for ever
    on SQLite or a journal) and its MLflow child run RUNNING. Here the previous handler runs
    first (Airflow's ``on_kill``), then :class:`Terminated` is raised in the trial's fit
    (:func:`interruptible`; its bookkeeping finishes first): its child run ends FAILED,
    Optuna marks it FAIL, and the error leaves the task. A process that ignores SIGTERM
    (``SIG_IGN``) keeps ignoring it, and one whose handler was not set from Python keeps
    that handler; a second SIGTERM only runs the previous handler, so the first one's
    cleanup finishes. Only in the main thread (where Python runs signal handlers);
    elsewhere a no-op.

    Yields:
        Nothing; the previous handler is put back on leaving.
    """
    import signal
    import threading

    previous = signal.getsignal(signal.SIGTERM)
    # SIG_IGN: the process means to ignore it; None: a handler not set from Python, which
    # could not be put back
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return

    raised = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal raised
        if callable(previous):
            previous(signum, frame)
        if raised:  # once: a second SIGTERM must not break the first one's cleanup
            return
        raised = True
        if _Sigterm.depth:
            raise Terminated()
        _Sigterm.pending = True

    _Sigterm.pending = False
    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _Sigterm.pending = False


DEADLINE_ATTR = "deadline"  # study user attribute: ISO time at which its timeout passes


def seconds_left(study: optuna.Study, timeout: float | None) -> float | None:
    """What is left of the study's ``timeout``: the first worker to run the study sets its
    deadline (``now + timeout``, the study's user attribute ``deadline``); every worker and
    every retry after it tunes only until then. Without it, a worker retried after a kill, or
    one that started late, got a whole ``timeout`` of its own.

    Returns:
        Seconds (``<= 0``: none left), or ``None`` without a timeout.
    """
    from datetime import UTC, datetime, timedelta

    if timeout is None:
        return None
    now = datetime.now(UTC)
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    if not isinstance(deadline, str):
        deadline = (now + timedelta(seconds=float(timeout))).isoformat()
        study.set_user_attr(DEADLINE_ATTR, deadline)  # two workers at once: about the same time
    return min(float(timeout), (datetime.fromisoformat(deadline) - now).total_seconds())


def fail_stale(study: optuna.Study) -> None:
    """Mark trials whose worker died FAIL (and retry them, per the storage's callback).

    A no-op on storages without heartbeats (SQLite, journal).
    """
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)


RUN_END = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}  # a trial's state -> its child run's


def fail_abandoned(study: optuna.Study, cl: Any = None) -> list[int]:
    """Mark FAIL every trial still RUNNING, and its MLflow child run FAILED; close the child
    run of every finished trial that is still RUNNING.

    Call it only once every worker of the study has ended: a trial still RUNNING then lost
    its worker. Optuna fails a stale trial only when a worker starts another trial after the
    grace period, so one whose worker died near the end of the study (or on a storage without
    heartbeats: SQLite, journal) stayed RUNNING for ever, its child run too. A trial that
    ended while MLflow was unreachable could not close its child run either; it is ended
    here with the trial's state (``FAILED``, ``KILLED`` or ``FINISHED``).

    Args:
        study: The study, its workers ended.
        cl: MLflow client of the child runs (``None``: the runs are left as they are).

    Returns:
        The numbers of the trials marked FAIL.
    """
    from optuna.trial import TrialState

    from retune.tracking import fail_trial_run

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        numbers.append(t.number)
        log.warning("trial %d of %s was still RUNNING after its workers ended: marked FAIL", t.number, study.study_name)
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id and cl is not None:
            fail_trial_run(cl, run_id, "worker died (trial still running when the workers ended)")
    if cl is not None:
        close_open_trial_runs(study, cl, skip=set(numbers))
    return numbers


def close_open_trial_runs(study: optuna.Study, cl: Any, *, skip: Collection[int] = ()) -> list[int]:
    """End the MLflow child run of every finished trial whose run is still RUNNING (the
    trial could not close it: MLflow was unreachable then). MLflow errors are logged.

    Args:
        study: The study.
        cl: MLflow client of the child runs.
        skip: Trial numbers already dealt with.

    Returns:
        The numbers of the trials whose child run was ended.
    """
    closed = []
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get("mlflow_run_id")
        status = RUN_END.get(t.state.name)
        if not run_id or status is None or t.number in skip:
            continue
        try:
            if cl.get_run(run_id).info.status != "RUNNING":
                continue
        except Exception as exc:  # noqa: BLE001 - cleanup: the summary matters more
            log.warning("could not read MLflow run %s of trial %d: %s", run_id, t.number, exc)
            continue
        reason = "MLflow unreachable when the trial ended (run closed by the study summary)" if t.state.name == "FAIL" else None
        if not end_trial_run(cl, run_id, state=t.state.name, status=status, reason=reason):
            closed.append(t.number)
            log.warning(
                "trial %d of %s had ended %s with its child run still RUNNING: run ended %s",
                t.number,
                study.study_name,
                t.state.name,
                status,
            )
    return closed


def is_warm_started(study: optuna.Study) -> bool:
    """Whether warm-start seeds were enqueued in the study (trials marked ``warm_start``)."""
    return n_seeds_of(study) > 0


def stop_reason_of(study: optuna.Study, n_trials: int) -> str:
    """Why a study stopped: convergence (early stopping), its budget, or the timeout.

    A trial that failed (its objective raised one of the errors the study catches) used up
    one of the budget's trials: a budget spent that way says how many failed, instead of
    passing for a timeout.
    """
    from collections import Counter

    from optuna.trial import TrialState

    if "stop_reason" in study.user_attrs:
        return str(study.user_attrs["stop_reason"])
    states = Counter(t.state for t in study.get_trials(deepcopy=False))  # one read of the storage
    done = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
    if done >= n_trials:
        return "trial budget reached"
    failed = states[TrialState.FAIL]
    if failed and done + failed >= n_trials:
        return f"trial budget reached ({failed} trial(s) failed)"
    return "timeout reached"


def outcome_of(
    study: optuna.Study,
    *,
    elapsed_s: float,
    stop_reason: str,
    objectives: list[str] | None = None,
    max_latency_ms_per_1k: float | None = None,
    max_size_kb: float | None = None,
) -> StudyOutcome:
    """Summarize a study; a multi-objective one by its Pareto front and the constrained winner."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    seeds = [
        {
            "trial": t.number,
            "source": t.user_attrs[WARM_START_ATTR],
            "state": t.state.name,
            "value": t.values[0] if t.values else None,
        }
        for t in trials
        if WARM_START_ATTR in t.user_attrs
    ]
    front: list[dict[str, Any]] = []
    selection = None
    if len(study.directions) > 1:
        best, selection = (
            (None, "no complete trial")
            if not complete
            else select_winner(
                study.best_trials,
                objectives=list(objectives or []),
                direction=study.directions[0].name.lower(),
                max_latency_ms_per_1k=max_latency_ms_per_1k,
                max_size_kb=max_size_kb,
            )
        )
        front = [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in study.best_trials]
    else:
        best = study.best_trial if complete else None
    return StudyOutcome(
        study_name=study.study_name,
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        best_value=None if best is None else float(best.values[0]),
        best_params={} if best is None else dict(best.params),
        best_trial=None if best is None else best.number,
        best_is_warm_start=None if best is None else best.user_attrs.get(WARM_START_ATTR),
        elapsed_s=round(elapsed_s, 3),
        stop_reason=stop_reason,
        seeds=seeds,
        pareto_front=front,
        selection=selection,
    )

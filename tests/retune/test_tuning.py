"""retune.tuning: pruners, the search space, and the objective's trials and child runs."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from retune.config import CategoricalParam, FloatParam, IntParam, PrunerConfig
from retune.data import FeatureSet, RetuneSplit
from retune.tuning import (
    WARM_START_ATTR,
    Objective,
    distributions,
    make_pruner,
    make_sampler,
    n_seeds_of,
    outcome_of,
    run_study,
    suggest,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "depth": IntParam(type="int", low=2, high=12, step=2),
    "leaves": IntParam(type="int", low=4, high=256, log=True),
    "rate": FloatParam(type="log_float", low=1e-4, high=10.0),
    "frac": FloatParam(type="float", low=0.1, high=0.9),
    "grid": FloatParam(type="float", low=0.0, high=1.0, step=0.25),
    "kind": CategoricalParam(type="categorical", choices=["a", "b", 3]),
}


# --------------------------------------------------------------------------- pruners


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("percentile", optuna.pruners.PercentilePruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("wilcoxon", optuna.pruners.WilcoxonPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_make_pruner_type(kind: str, cls: type) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for Wilcoxon
        pruner = make_pruner(PrunerConfig(type=kind), n_steps=5)  # wilcoxon needs 5 (see below)
    assert type(pruner) is cls


def test_make_pruner_passes_args() -> None:
    pruner = make_pruner(PrunerConfig(type="percentile", args={"percentile": 10.0, "n_startup_trials": 1}), n_steps=4)
    assert isinstance(pruner, optuna.pruners.PercentilePruner)
    assert pruner._percentile == 10.0  # private: no public accessor
    assert pruner._n_startup_trials == 1


@pytest.mark.parametrize(
    ("kind", "args", "detail"),
    [
        ("median", {"n_startup": 3}, "unexpected keyword argument 'n_startup'"),
        ("median", {"n_startup_trials": -1}, "cannot be negative"),
        ("percentile", {"percentile": 150.0}, "between 0 and 100"),
        ("successive_halving", {"reduction_factor": 1}, "reduction_factor"),
        ("none", {"anything": 1}, "takes no arguments"),
    ],
)
def test_make_pruner_bad_args_name_the_field(kind: str, args: dict, detail: str) -> None:
    with pytest.raises(ValueError, match=r"tuning\.pruner\.args") as info:
        make_pruner(PrunerConfig(type=kind, args=args), n_steps=4)
    assert repr(kind) in str(info.value)
    assert detail in str(info.value)


def _worse_trial_pruned_at(pruner: optuna.pruners.BasePruner, n_steps: int) -> int | None:
    """The step at which a trial worse than the best at every step is pruned (``None``: never)."""
    study = optuna.create_study(pruner=pruner)
    best = study.ask()
    for step in range(n_steps):
        best.report(1.0 + 0.01 * step, step)
    study.tell(best, 1.0)
    worse = study.ask()
    for step in range(n_steps):
        worse.report(2.0 + 0.01 * step, step)
        if worse.should_prune():
            return step
    return None


@pytest.mark.parametrize(("args", "need"), [({}, 5), ({"p_threshold": 0.2}, 4), ({"n_startup_steps": 6}, 7)])
def test_wilcoxon_is_refused_when_it_could_prune_only_at_the_last_step(args: dict, need: int) -> None:
    """With the default n_steps 4 the Wilcoxon test (p >= 0.5 ** pairs) reaches p_threshold 0.1
    only at the 4th step, the full fit: the pruner saved nothing and the config passed."""
    from retune.tuning import wilcoxon_min_steps

    assert wilcoxon_min_steps(float(args.get("p_threshold", 0.1)), int(args.get("n_startup_steps", 2))) == need
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for Wilcoxon
        with pytest.raises(ValueError, match=rf"tuning\.pruner 'wilcoxon' needs tuning\.n_steps >= {need} \(got {need - 1}\)"):
            make_pruner(PrunerConfig(type="wilcoxon", args=args), n_steps=need - 1)
        # the real pruner: with `need` steps it prunes one step before the last; with one fewer,
        # at the same step, which is then the last one (the trial is already fully trained)
        assert _worse_trial_pruned_at(make_pruner(PrunerConfig(type="wilcoxon", args=args), n_steps=need), need) == need - 2
        assert _worse_trial_pruned_at(optuna.pruners.WilcoxonPruner(**args), need - 1) == need - 2
    with pytest.raises(ValueError, match="never prunes"):
        make_pruner(PrunerConfig(type="wilcoxon", args={"p_threshold": 0.0}), n_steps=50)


# --------------------------------------------------------------------------- search space


def test_suggest_returns_the_fixed_values() -> None:
    fixed = {"depth": 6, "leaves": 32, "rate": 0.01, "frac": 0.5, "grid": 0.75, "kind": 3}
    assert suggest(optuna.trial.FixedTrial(fixed), SPACE) == fixed


def test_suggest_respects_types_ranges_steps_and_choices() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    samples = []
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, SPACE)
        samples.append(params)
        study.tell(trial, 0.0)

    for p in samples:
        assert set(p) == set(SPACE)
        assert isinstance(p["depth"], int) and 2 <= p["depth"] <= 12 and p["depth"] % 2 == 0
        assert isinstance(p["leaves"], int) and 4 <= p["leaves"] <= 256
        assert 1e-4 <= p["rate"] <= 10.0
        assert 0.1 <= p["frac"] <= 0.9
        assert p["grid"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert p["kind"] in ("a", "b", 3)
    # log ranges are sampled on a log scale: most draws fall far below the arithmetic midpoint
    assert sum(p["rate"] < 5.0 for p in samples) >= 50
    assert sum(p["frac"] < 0.5 for p in samples) < 45  # a linear range is not
    assert len({p["kind"] for p in samples}) == 3


def test_suggest_records_the_distributions() -> None:
    study = optuna.create_study()
    trial = study.ask()
    suggest(trial, SPACE)
    assert trial.distributions == distributions(SPACE)
    dists = distributions(SPACE)
    assert dists["rate"].log and not dists["frac"].log
    assert dists["leaves"].log and dists["depth"].step == 2
    assert dists["grid"].step == 0.25
    assert dists["kind"].choices == ("a", "b", 3)


# --------------------------------------------------------------------------- objective


@dataclass
class FakeRun:
    run_id: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    status: str = "RUNNING"


class FakeClient:
    """Records what the objective tells MLflow (the parts of MlflowClient it uses)."""

    def __init__(self) -> None:
        self.runs: list[FakeRun] = []

    def _run(self, run_id: str) -> FakeRun:
        return next(r for r in self.runs if r.run_id == run_id)

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> Any:
        run = FakeRun(f"run{len(self.runs)}", dict(tags))
        self.runs.append(run)

        class Info:
            pass

        out = Info()
        out.info = Info()
        out.info.run_id = run.run_id
        return out

    def log_batch(self, run_id: str, params=(), metrics=()) -> None:
        self._run(run_id).params.update({p.key: p.value for p in params})

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0) -> None:
        self._run(run_id).metrics.setdefault(key, []).append((step, value))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._run(run_id).tags[key] = value

    def set_terminated(self, run_id: str, status: str) -> None:
        self._run(run_id).status = status


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.fixture(scope="module")
def split() -> RetuneSplit:
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b"], n).astype(object)})
    df["y"] = 2.0 * df["x"] + rng.normal(0, 0.1, n)
    return RetuneSplit(train=df.iloc[:80].reset_index(drop=True), valid=df.iloc[80:].reset_index(drop=True), holdout=df.iloc[:0])


@pytest.fixture
def linear_cfg(make_cfg):
    return make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            "model!": {"family": "linear", "search_space": {"alpha": {"type": "log_float", "low": 0.001, "high": 10.0}}},
            "tuning": {"n_steps": 3, "seed": 1},
        }
    )


def objective(cfg, split, client: FakeClient) -> Objective:
    return Objective(cfg, split, FeatureSet(["x"], ["g"]), cl=client, experiment_id="1", parent_run_id="parent")


def test_objective_tracks_each_trial_as_a_child_run(linear_cfg, split) -> None:
    client = FakeClient()
    study = optuna.create_study(study_name="s", sampler=optuna.samplers.TPESampler(seed=0), pruner=optuna.pruners.NopPruner())
    outcome = run_study(study, objective(linear_cfg, split, client), n_trials=3, timeout=None)

    assert (outcome.n_complete, outcome.n_pruned, outcome.n_failed) == (3, 0, 0)
    assert outcome.stop_reason == "trial budget reached"
    assert len(client.runs) == 3
    for number, run in enumerate(client.runs):
        trial = study.trials[number]
        assert run.tags["mlflow.parentRunId"] == "parent"
        assert run.tags["mlflow.runName"] == f"trial-{number:03d}"
        assert run.tags["optuna.study"] == "s" and run.tags["optuna.trial_number"] == str(number)
        assert run.tags["retune.warm_start"] == "none"
        assert run.tags["optuna.trial_state"] == "COMPLETE" and run.status == "FINISHED"
        assert float(run.params["alpha"]) == pytest.approx(trial.params["alpha"])
        assert [s for s, _ in run.metrics["valid_mae"]] == [0, 1, 2]  # one value per stage
        assert run.metrics["mae"] == [(0, trial.value)]
        assert trial.intermediate_values == {s: v for s, v in run.metrics["valid_mae"]}
        assert trial.user_attrs["mlflow_run_id"] == run.run_id
    assert outcome.best_value == min(t.value for t in study.trials)
    assert outcome.best_value < 0.5  # y = 2x + small noise: a ridge model fits it well


def test_pruned_trials_end_killed(linear_cfg, split) -> None:
    client = FakeClient()
    study = optuna.create_study(pruner=AlwaysPrune())
    outcome = run_study(study, objective(linear_cfg, split, client), n_trials=2, timeout=None)
    assert (outcome.n_complete, outcome.n_pruned) == (0, 2)
    assert outcome.best_value is None and outcome.best_params == {}
    assert {(r.status, r.tags["optuna.trial_state"]) for r in client.runs} == {("KILLED", "PRUNED")}
    assert all(len(r.metrics["valid_mae"]) == 1 for r in client.runs)  # stopped after the first stage


def test_failing_trials_end_failed_and_do_not_stop_the_study(make_cfg, split) -> None:
    cfg = make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            # Ridge refuses a negative alpha: every trial fails inside the estimator
            "model!": {"family": "linear", "search_space": {"alpha": {"type": "float", "low": -2.0, "high": -1.0}}},
        }
    )
    client = FakeClient()
    study = optuna.create_study()
    outcome = run_study(study, objective(cfg, split, client), n_trials=2, timeout=None)
    assert (outcome.n_failed, outcome.n_complete) == (2, 0)
    assert outcome.stop_reason == "trial budget reached (2 trial(s) failed)"  # no timeout was set
    assert {(r.status, r.tags["optuna.trial_state"]) for r in client.runs} == {("FAILED", "FAIL")}


def test_warm_start_seeds_are_tagged(linear_cfg, split) -> None:
    client = FakeClient()
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"alpha": 0.5}, user_attrs={WARM_START_ATTR: "champion"})
    outcome = run_study(study, objective(linear_cfg, split, client), n_trials=2, timeout=None)
    assert client.runs[0].tags["retune.warm_start"] == "champion"
    assert float(client.runs[0].params["alpha"]) == 0.5
    assert client.runs[1].tags["retune.warm_start"] == "none"
    assert outcome.seeds == [{"trial": 0, "source": "champion", "state": "COMPLETE", "value": study.trials[0].value}]


def test_run_study_resumes_and_counts_finished_trials(linear_cfg, split) -> None:
    client = FakeClient()
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    run_study(study, objective(linear_cfg, split, client), n_trials=2, timeout=None)
    outcome = run_study(study, objective(linear_cfg, split, client), n_trials=3, timeout=None)
    assert len(study.trials) == 3  # only one more trial: two were already finished
    assert outcome.n_complete == 3
    again = run_study(study, objective(linear_cfg, split, client), n_trials=3, timeout=None)
    assert len(study.trials) == 3 and again.stop_reason == "trial budget reached"


def test_outcome_of_an_empty_study_is_json_safe() -> None:
    import json

    outcome = outcome_of(optuna.create_study(study_name="empty"), elapsed_s=1.23456, stop_reason="timeout reached")
    data = json.loads(json.dumps(outcome.to_json(), allow_nan=False))
    assert data["best_value"] is None and data["best_trial"] is None
    assert data["elapsed_s"] == 1.235 and data["study_name"] == "empty"


def test_non_finite_metric_fails_the_trial(linear_cfg, split, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    obj = objective(linear_cfg, split, client)
    monkeypatch.setattr(type(obj.metric), "score", lambda self, model, X, y: math.nan)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    outcome = run_study(study, obj, n_trials=1, timeout=None)
    assert outcome.n_failed == 1 and client.runs[0].status == "FAILED"


# --------------------------------------------------------------------------- early stopping by default


def test_a_warm_started_study_stops_early_by_default(make_cfg, split) -> None:
    # The seed (the least regularized ridge) is about as good as it gets: the study soon stops improving.
    cfg = make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            "model!": {"family": "linear", "search_space": {"alpha": {"type": "log_float", "low": 0.001, "high": 10.0}}},
            "tuning": {"n_steps": 1, "seed": 1, "n_trials": 40},
        }
    )
    assert cfg.tuning.early_stop_patience == "auto"
    warm = optuna.create_study(pruner=optuna.pruners.NopPruner(), sampler=optuna.samplers.RandomSampler(seed=0))
    warm.enqueue_trial({"alpha": 0.001}, user_attrs={WARM_START_ATTR: "champion"})
    outcome = run_study(warm, objective(cfg, split, FakeClient()), n_trials=40, timeout=None)
    patience = cfg.tuning.patience_for(n_trials=40, warm=True)
    assert patience == 8  # max(5, 40 / 5)
    assert outcome.stop_reason.startswith("converged: no improvement in 8 trials"), outcome.stop_reason
    values = [t.value for t in warm.trials]
    best_at = values.index(min(values))
    assert len(warm.trials) == best_at + 1 + patience < 40


def test_a_cold_study_runs_its_budget_by_default(linear_cfg, split) -> None:
    cold = optuna.create_study(pruner=optuna.pruners.NopPruner(), sampler=optuna.samplers.RandomSampler(seed=0))
    outcome = run_study(cold, objective(linear_cfg, split, FakeClient()), n_trials=12, timeout=None)
    assert len(cold.trials) == 12 and outcome.stop_reason == "trial budget reached"


def test_early_stopping_off_runs_a_warm_study_to_its_budget(make_cfg, split) -> None:
    cfg = make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            "model!": {"family": "linear", "search_space": {"alpha": {"type": "log_float", "low": 0.001, "high": 10.0}}},
            "tuning": {"n_steps": 1, "seed": 1},
        }
    )
    cfg = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"early_stop_patience": None})})  # make_cfg drops None
    warm = optuna.create_study(pruner=optuna.pruners.NopPruner(), sampler=optuna.samplers.RandomSampler(seed=0))
    warm.enqueue_trial({"alpha": 0.001}, user_attrs={WARM_START_ATTR: "champion"})
    outcome = run_study(warm, objective(cfg, split, FakeClient()), n_trials=14, timeout=None)
    assert len(warm.trials) == 14 and outcome.stop_reason == "trial budget reached"


@pytest.mark.postgres
def test_a_resumed_study_whose_budget_is_met_still_fails_a_dead_workers_trial(
    linear_cfg, split, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna fails stale trials only before starting a trial; a rerun with nothing left to
    run would leave a dead worker's trial RUNNING for ever."""
    import sqlalchemy
    from pg import age_trial, temp_database  # type: ignore[import-not-found]

    from retune.config import TuningConfig
    from retune.settings import get_settings
    from retune.storage import open_storage

    with temp_database("retune_tuning") as pg:
        url = pg.replace("postgresql://", "postgresql+psycopg2://")
        monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("RETUNE_OPTUNA_STORAGE", url)
        storage = open_storage(get_settings(), TuningConfig(heartbeat_interval=1, grace_period=5))
        study = optuna.create_study(study_name="s", storage=storage, pruner=optuna.pruners.NopPruner())
        run_study(study, objective(linear_cfg, split, FakeClient()), n_trials=2, timeout=None)
        lost = study.ask()  # a worker that died before its trial's first heartbeat
        age_trial(url, lost._trial_id, start=True)

        outcome = run_study(study, objective(linear_cfg, split, FakeClient()), n_trials=2, timeout=None)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states[2] == optuna.trial.TrialState.FAIL and optuna.trial.TrialState.RUNNING not in states
        assert outcome.stop_reason == "trial budget reached" and outcome.n_complete == 2
        sqlalchemy.orm.close_all_sessions()


def _seeded_study(startup: object) -> optuna.Study:
    """4 enqueued warm-start seeds, then 4 more trials of a quadratic, TPE per ``startup``."""
    from retune.config import TuningConfig

    tuning = TuningConfig(startup_trials=startup, seed=3)  # type: ignore[arg-type]
    study = optuna.create_study(sampler=make_sampler(tuning, n_seeds=0))
    for x in (0.1, 0.2, 0.25, 0.3):
        study.enqueue_trial({"x": x}, user_attrs={WARM_START_ATTR: "previous_study"})
    study.sampler = make_sampler(tuning, n_seeds=n_seeds_of(study))
    study.optimize(lambda t: (t.suggest_float("x", -10.0, 10.0) - 0.2) ** 2, n_trials=8)
    return study


def test_a_warm_study_models_its_seeds_after_one_random_trial() -> None:
    auto, default = _seeded_study("auto"), _seeded_study(10)
    xs_auto = [t.params["x"] for t in auto.trials]
    xs_default = [t.params["x"] for t in default.trials]
    assert n_seeds_of(auto) == 4
    assert xs_auto[:5] == xs_default[:5], "the seeds, then the same seeded random trial"
    assert xs_auto[5:] != xs_default[5:], "then TPE (auto) where the default still samples at random"


def test_a_trial_still_running_when_the_workers_ended_is_failed_with_its_child_run(
    linear_cfg, split, tmp_path, restore_mlflow_uris
) -> None:
    """A worker killed near the end of the study (or on a storage without heartbeats) left its
    trial and its MLflow child run RUNNING for ever: no later trial start let Optuna notice."""
    from mlflow import MlflowClient

    from retune.tuning import fail_abandoned

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cl = MlflowClient(tracking_uri=uri)
    experiment = cl.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(journal))  # no heartbeats
    run_study(study, objective(linear_cfg, split, FakeClient()), n_trials=2, timeout=None)
    lost = study.ask()  # its worker died mid-trial
    child = cl.create_run(experiment).info.run_id
    lost.set_user_attr("mlflow_run_id", child)

    assert fail_abandoned(study, cl) == [lost.number]
    assert study.trials[lost.number].state == optuna.trial.TrialState.FAIL
    assert [t.state for t in study.trials[:2]] == [optuna.trial.TrialState.COMPLETE] * 2  # finished trials untouched
    run = cl.get_run(child)
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_state"] == "FAIL"
    assert fail_abandoned(study, cl) == []  # nothing RUNNING any more


def test_the_timeout_is_the_studys_not_each_workers(linear_cfg, split) -> None:
    """A worker retried after a kill, or one that started late, used to get a whole timeout
    of its own: the study ran up to (retries + 1) x timeout against a wall-clock limit."""
    from datetime import UTC, datetime, timedelta

    from retune.tuning import DEADLINE_ATTR, seconds_left

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    run_study(study, objective(linear_cfg, split, FakeClient()), n_trials=2, timeout=600)
    deadline = datetime.fromisoformat(study.user_attrs[DEADLINE_ATTR])
    assert timedelta(seconds=590) < deadline - datetime.now(UTC) <= timedelta(seconds=600)

    study.set_user_attr(DEADLINE_ATTR, (datetime.now(UTC) + timedelta(seconds=30)).isoformat())
    assert 0 < seconds_left(study, 600) <= 30  # a worker starting now gets what is left

    study.set_user_attr(DEADLINE_ATTR, (datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    outcome = run_study(study, objective(linear_cfg, split, FakeClient()), n_trials=4, timeout=600)  # the retry
    assert len(study.trials) == 2, "no trial after the study's deadline"
    assert outcome.stop_reason == "timeout reached"
    assert seconds_left(optuna.create_study(), None) is None


# --------------------------------------------------------------------------- MLflow outages


class FlakyMlflow:
    """A real MLflow client (SQLite store) whose listed calls fail, as during an outage."""

    def __init__(self, tmp_path: Any) -> None:
        from mlflow import MlflowClient

        self.cl = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        self.experiment = self.cl.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
        self.down: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.cl, name)

        def flaky(*args: Any, **kwargs: Any) -> Any:
            from mlflow.exceptions import MlflowException

            if name in self.down:
                raise MlflowException(f"API request to {name} failed: Connection refused")
            return call(*args, **kwargs)

        return flaky


def _flaky_objective(cfg, split, mlflow: FlakyMlflow) -> Objective:
    return Objective(cfg, split, FeatureSet(["x"], ["g"]), cl=mlflow, experiment_id=mlflow.experiment, parent_run_id="p")  # type: ignore[arg-type]


def test_a_trial_whose_tag_fails_still_ends_its_child_run(linear_cfg, split, tmp_path, restore_mlflow_uris) -> None:
    """set_tag raising in the objective's cleanup skipped set_terminated: the child run of a
    trial that met an MLflow blip stayed RUNNING for ever (and a finished trial failed)."""
    mlflow = FlakyMlflow(tmp_path)
    mlflow.down = {"set_tag"}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(_flaky_objective(linear_cfg, split, mlflow), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE  # the blip costs no trial
    assert mlflow.cl.get_run(study.trials[0].user_attrs["mlflow_run_id"]).info.status == "FINISHED"

    mlflow.down = {"log_metric", "set_tag"}  # a trial failing in the blip: its run still ends FAILED
    with pytest.raises(Exception, match="log_metric failed"):
        study.optimize(_flaky_objective(linear_cfg, split, mlflow), n_trials=1)
    assert study.trials[1].state == optuna.trial.TrialState.FAIL
    assert mlflow.cl.get_run(study.trials[1].user_attrs["mlflow_run_id"]).info.status == "FAILED"


def test_an_mlflow_outage_mid_trial_raises_its_error_and_the_summary_closes_the_run(
    linear_cfg, split, tmp_path, restore_mlflow_uris
) -> None:
    """MLflow down during a trial, and still down in its cleanup: the trial fails with the
    outage's first error (not the cleanup's), and once MLflow is back the study summary's
    cleanup (fail_abandoned) ends the FAIL trial's child run, which it used to skip."""
    from retune.tuning import fail_abandoned

    mlflow = FlakyMlflow(tmp_path)
    mlflow.down = {"log_metric", "set_tag", "set_terminated"}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with pytest.raises(Exception, match="log_metric failed"):
        study.optimize(_flaky_objective(linear_cfg, split, mlflow), n_trials=1)
    run_id = study.trials[0].user_attrs["mlflow_run_id"]
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert mlflow.cl.get_run(run_id).info.status == "RUNNING"  # MLflow was down: nobody could close it

    mlflow.down = set()  # MLflow is back: the retried worker tunes, the summary cleans up
    run_study(study, _flaky_objective(linear_cfg, split, mlflow), n_trials=2, timeout=None)
    assert fail_abandoned(study, mlflow) == []  # no trial was RUNNING
    run = mlflow.cl.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_state"] == "FAIL"
    others = [mlflow.cl.get_run(t.user_attrs["mlflow_run_id"]) for t in study.trials[1:]]
    assert [r.info.status for r in others] == ["FINISHED", "FINISHED"]  # closed by their trials, left alone


def test_a_failed_log_batch_fails_the_trial_and_ends_its_child_run(linear_cfg, split, tmp_path, restore_mlflow_uris) -> None:
    """log_batch ran between create_run and the try: its error left the child run RUNNING."""
    mlflow = FlakyMlflow(tmp_path)
    mlflow.down = {"log_batch"}
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with pytest.raises(Exception, match="log_batch failed"):
        study.optimize(_flaky_objective(linear_cfg, split, mlflow), n_trials=1)
    run = mlflow.cl.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_state"] == "FAIL"


def test_the_latency_objective_is_measured_under_the_trials_thread_cap(make_cfg, split, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-objective trial measured its latency after leaving threadpool_limits, with every
    thread, while validate's latency gate measures capped to threads_per_trial: the study
    traded the metric against a latency the gate never sees."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from retune import validation

    cfg = make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            "model!": {"family": "linear", "search_space": {"alpha": {"type": "log_float", "low": 0.001, "high": 10.0}}},
            "tuning": {"n_steps": 2, "seed": 1, "threads_per_trial": 1, "objectives": ["metric", "latency"]},
        }
    )
    threads: list[int] = []
    measure = validation.latency_ms_per_1k

    def timed(model: Any, X: Any, **kwargs: Any) -> float:  # the real measurement; notes the threads it ran with
        threads.append(max(pool["num_threads"] for pool in threadpool_info()))
        return measure(model, X, **kwargs)

    monkeypatch.setattr(validation, "latency_ms_per_1k", timed)
    assert threadpool_info(), "no BLAS/OpenMP pool loaded: nothing to cap"
    study = optuna.create_study(directions=["minimize", "minimize"])
    with threadpool_limits(limits=4):  # the worker's threads (the tests otherwise run on one)
        run_study(study, objective(cfg, split, FakeClient()), n_trials=2, timeout=None)
    assert threads == [1, 1]
    assert all(len(t.values) == 2 and t.values[1] > 0 for t in study.trials)


def test_a_forest_trial_fits_with_the_trials_thread_count(make_cfg, split, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trial's forest gets n_jobs = tuning.threads_per_trial (joblib's threads are not
    capped by threadpoolctl; a forest built with sklearn's default would use one)."""
    from retune.models import RandomForest

    cfg = make_cfg(
        {
            "target": "y",
            "features!": {"numerical": ["x"], "categorical": ["g"]},
            "model!": {
                "family": "random_forest",
                "fixed_params": {"n_estimators": 4},
                "search_space": {"max_depth": {"type": "int", "low": 2, "high": 6}},
            },
            "tuning": {"n_steps": 2, "seed": 1, "threads_per_trial": 2},
        }
    )
    seen: list[int] = []
    staged_fit = RandomForest.staged_fit

    def noting(self: RandomForest, pipe: Any, X: Any, y: Any, *, n_steps: int) -> Any:
        seen.append(pipe.named_steps["model"].n_jobs)
        yield from staged_fit(self, pipe, X, y, n_steps=n_steps)

    monkeypatch.setattr(RandomForest, "staged_fit", noting)
    study = optuna.create_study()
    run_study(study, objective(cfg, split, FakeClient()), n_trials=2, timeout=None)
    assert seen == [2, 2]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


# --------------------------------------------------------------------------- SIGTERM


class SigtermMidTrial(FlakyMlflow):
    """A real MLflow client that sends this process SIGTERM where a trial is, as Airflow's
    supervisor does when a person marks the run: at the ``at_metric``-th intermediate metric
    (its fit), right after the ``at_create``-th child run is created (its bookkeeping), or
    as a child run ends with status ``at_end`` (once)."""

    def __init__(self, tmp_path: Any, at_metric: int = 0, at_create: int = 0, at_end: str = "") -> None:
        super().__init__(tmp_path)
        self.at_metric, self.at_create, self.at_end = at_metric, at_create, at_end
        self.metrics = self.creates = 0

    @staticmethod
    def _sigterm() -> None:
        import signal

        signal.raise_signal(signal.SIGTERM)

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> Any:
        run = self.cl.create_run(experiment_id, tags=tags)
        self.creates += 1
        if self.creates == self.at_create:
            self._sigterm()
        return run

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0) -> None:
        self.cl.log_metric(run_id, key, value, step=step)
        if key.startswith("valid_"):
            self.metrics += 1
            if self.metrics == self.at_metric:
                self._sigterm()

    def set_terminated(self, run_id: str, status: str) -> None:
        if status == self.at_end:
            self.at_end = ""
            self._sigterm()
        self.cl.set_terminated(run_id, status)

    def statuses(self, study: optuna.Study) -> list[str]:
        return [self.cl.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in study.trials]

    def running(self) -> list[str]:
        return [r.info.run_id for r in self.cl.search_runs([self.experiment]) if r.info.status == "RUNNING"]


@pytest.fixture
def previous_sigterm() -> Any:
    """A SIGTERM handler standing for Airflow's (it calls the operator's on_kill): the calls."""
    import signal

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_mid_trial_fails_that_trial_ends_its_child_run_and_stops_the_study(
    linear_cfg, split, tmp_path, restore_mlflow_uris, previous_sigterm
) -> None:
    """Airflow's task runner only calls on_kill on SIGTERM, and its supervisor SIGKILLs the task
    5 s later: the study tuned on until then and left the trial in flight and its child run
    RUNNING for ever. Now the previous handler runs, then the trial fails and the study stops;
    a second SIGTERM, during that trial's cleanup, does not break it."""
    import signal

    from retune.tuning import Terminated

    mlflow = SigtermMidTrial(tmp_path, at_metric=5, at_end="FAILED")  # trial 1 (0-based), its 2nd of 3 steps
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with pytest.raises(Terminated):
        run_study(study, _flaky_objective(linear_cfg, split, mlflow), n_trials=10, timeout=None)
    assert previous_sigterm == [signal.SIGTERM, signal.SIGTERM], "the previous handler ran for both"
    assert signal.getsignal(signal.SIGTERM).__name__ == "<lambda>", "and is back"
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert mlflow.statuses(study) == ["FINISHED", "FAILED"]
    assert study.trials[1].user_attrs and mlflow.running() == []


def test_sigterm_while_a_trial_creates_its_child_run_waits_until_the_run_is_recorded(
    linear_cfg, split, tmp_path, restore_mlflow_uris, previous_sigterm
) -> None:
    """Raised at once, the SIGTERM left the run just created RUNNING for ever, its id never
    recorded on the trial; it now waits for the fit, where the trial fails and ends the run."""
    from retune.tuning import Terminated

    mlflow = SigtermMidTrial(tmp_path, at_create=2)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with pytest.raises(Terminated):
        run_study(study, _flaky_objective(linear_cfg, split, mlflow), n_trials=10, timeout=None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert mlflow.statuses(study) == ["FINISHED", "FAILED"]
    assert mlflow.running() == []
    assert mlflow.metrics == 3, "trial 1 never fitted"


def test_sigterm_as_a_trial_ends_keeps_it_complete_and_starts_no_other(
    linear_cfg, split, tmp_path, restore_mlflow_uris, previous_sigterm
) -> None:
    from retune.tuning import Terminated

    mlflow = SigtermMidTrial(tmp_path, at_end="FINISHED")
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with pytest.raises(Terminated):
        run_study(study, _flaky_objective(linear_cfg, split, mlflow), n_trials=10, timeout=None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert mlflow.statuses(study) == ["FINISHED"]


def test_a_process_that_ignores_sigterm_tunes_on(linear_cfg, split, tmp_path, restore_mlflow_uris) -> None:
    import signal

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        mlflow = SigtermMidTrial(tmp_path, at_metric=2, at_create=2)
        study = optuna.create_study(pruner=optuna.pruners.NopPruner())
        run_study(study, _flaky_objective(linear_cfg, split, mlflow), n_trials=3, timeout=None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert mlflow.metrics >= 2, "the signal was sent mid-study"
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3

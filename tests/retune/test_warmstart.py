"""retune.warmstart: clipping seeds to the space, enqueueing them, and the previous study's best."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from retune.config import CategoricalParam, FloatParam, IntParam
from retune.tuning import WARM_START_ATTR
from retune.warmstart import clip_to_space, enqueue_seeds, previous_study_top_k, study_prefix

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "leaves": IntParam(type="int", low=8, high=64),
    "rate": FloatParam(type="log_float", low=0.01, high=0.3),
    "loss": CategoricalParam(type="categorical", choices=["squared_error", "absolute_error"]),
}


# --------------------------------------------------------------------------- clip_to_space


def test_clip_keeps_values_inside_the_space() -> None:
    params = {"leaves": 20, "rate": 0.1, "loss": "absolute_error"}
    assert clip_to_space(params, SPACE) == params


def test_clip_numerics_to_the_bounds() -> None:
    assert clip_to_space({"leaves": 1000, "rate": 0.0001}, SPACE) == {"leaves": 64, "rate": 0.01}
    assert clip_to_space({"leaves": -3, "rate": 5.0}, SPACE) == {"leaves": 8, "rate": 0.3}


def test_clip_rounds_ints_and_accepts_numeric_strings() -> None:
    out = clip_to_space({"leaves": "31.6", "rate": "0.05"}, SPACE)
    assert out == {"leaves": 32, "rate": 0.05}
    assert isinstance(out["leaves"], int) and isinstance(out["rate"], float)


def test_clip_drops_unknown_params_and_categories() -> None:
    params = {"leaves": 16, "gone": 1, "loss": "huber", "rate": None}
    assert clip_to_space(params, SPACE) == {"leaves": 16}


def test_clip_drops_values_that_are_not_numbers() -> None:
    assert clip_to_space({"leaves": "many", "rate": [0.1], "loss": "squared_error"}, SPACE) == {"loss": "squared_error"}


def test_clip_of_nothing() -> None:
    assert clip_to_space({}, SPACE) == {}
    assert clip_to_space({"other": 1}, SPACE) == {}


def test_clip_snaps_to_the_step_grid() -> None:
    space = {"depth": IntParam(type="int", low=2, high=12, step=2), "f": FloatParam(type="float", low=0.0, high=1.0, step=0.25)}
    out = clip_to_space({"depth": 5, "f": 0.3}, space)
    assert out["depth"] % 2 == 0 and out["f"] in (0.25, 0.5)


def test_clip_snaps_below_a_high_that_is_off_the_grid() -> None:
    """int [50, 320] by 100 has the values 50, 150, 250; float [0, 1] by 0.6 has 0 and 0.6.
    A champion at 320 or 1.0 was enqueued as itself: Optuna lowers high to the last grid
    point, warns, and the trial still ran the value outside the space."""
    from retune.tuning import suggest

    space = {"n": IntParam(type="int", low=50, high=320, step=100), "f": FloatParam(type="float", low=0.0, high=1.0, step=0.6)}
    top = {k: max(s.low + i * s.step for i in range(100) if s.low + i * s.step <= s.high) for k, s in space.items()}
    for params in ({"n": 320, "f": 1.0}, {"n": 1000, "f": 0.95}, {"n": 300, "f": 0.9}):
        clipped = clip_to_space(params, space)
        assert clipped == pytest.approx(top), params
        study = optuna.create_study()
        enqueue_seeds(study, [("champion", params)], space)
        trial = study.ask()
        assert suggest(trial, space) == clipped
        study.tell(trial, 1.0)
        frozen = study.trials[0]
        assert all(frozen.distributions[k]._contains(frozen.distributions[k].to_internal_repr(v)) for k, v in clipped.items())


def test_clip_drops_nan() -> None:
    out = clip_to_space({"rate": math.nan}, SPACE)
    assert "rate" not in out or 0.01 <= out["rate"] <= 0.3


# --------------------------------------------------------------------------- enqueue_seeds


def test_enqueue_seeds_marks_and_dedupes() -> None:
    study = optuna.create_study()
    seeds = [
        ("champion", {"leaves": 100, "rate": 0.1}),  # clipped to leaves=64
        ("previous_study", {"leaves": 64, "rate": 0.1}),  # the same point after clipping
        ("previous_study", {"gone": 3}),  # nothing of it fits the space
        ("previous_study", {"leaves": 10, "rate": 0.02, "loss": "absolute_error"}),
    ]
    enqueued = enqueue_seeds(study, seeds, SPACE)

    assert enqueued == [
        {"source": "champion", "params": {"leaves": 64, "rate": 0.1}},
        {"source": "previous_study", "params": {"leaves": 10, "rate": 0.02, "loss": "absolute_error"}},
    ]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[WARM_START_ATTR] for t in waiting] == ["champion", "previous_study"]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [e["params"] for e in enqueued]


def test_enqueued_seeds_are_the_first_trials() -> None:
    from retune.tuning import suggest

    study = optuna.create_study()
    enqueue_seeds(study, [("champion", {"leaves": 12, "rate": 0.05, "loss": "squared_error"})], SPACE)
    trial = study.ask()
    assert suggest(trial, SPACE) == {"leaves": 12, "rate": 0.05, "loss": "squared_error"}
    assert trial.user_attrs[WARM_START_ATTR] == "champion"
    study.tell(trial, 1.0)
    assert WARM_START_ATTR not in study.ask().user_attrs  # then the sampler takes over


def test_enqueue_nothing_is_a_cold_start() -> None:
    study = optuna.create_study()
    assert enqueue_seeds(study, [], SPACE) == []
    assert study.get_trials() == []


# --------------------------------------------------------------------------- previous_study_top_k


def add_study(storage, name: str, values: list[float | None], *, day: int, states=None, direction: str = "minimize") -> None:
    """A study whose trials started on 2025-01-<day>; trial i has x=i and values[i]."""
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    for i, value in enumerate(values):
        state = (states or {}).get(i, TrialState.COMPLETE)
        trial = optuna.trial.create_trial(
            params={"x": float(i % 3) if name.endswith("dup") else float(i), "kind": "a"},
            distributions={"x": FloatDistribution(0, 100), "kind": CategoricalDistribution(["a", "b"])},
            value=value if state == TrialState.COMPLETE else None,
            state=state,
        )
        trial.datetime_start = datetime(2025, 1, day) + timedelta(minutes=i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=30)
        study.add_trial(trial)


@pytest.fixture
def storage():
    storage = optuna.storages.InMemoryStorage()
    # an older study of the model, and a newer one whose trials started later
    add_study(storage, "retune.demand.2025-01-05", [1.0, 0.5, 2.0], day=5)
    add_study(storage, "retune.demand.2025-01-10", [3.0, 1.0, 4.0, 2.0, 0.5], day=10)
    # another model, even newer: never a source
    add_study(storage, "retune.other.2025-01-20", [0.1, 0.2], day=20)
    # a study of the model without trials yet (e.g. the current one, or an aborted one)
    optuna.create_study(storage=storage, study_name="retune.demand.empty")
    return storage


def test_top_k_of_the_latest_other_study_minimize(storage) -> None:
    name, top = previous_study_top_k(storage, "demand", exclude="retune.demand.now", k=3)
    assert name == "retune.demand.2025-01-10"
    assert [p["x"] for p in top] == [4.0, 1.0, 3.0]  # values 0.5, 1.0, 2.0
    assert top[0] == {"x": 4.0, "kind": "a"}


def test_top_k_of_the_latest_other_study_maximize() -> None:
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, "retune.demand.2025-01-10", [3.0, 1.0, 4.0, 2.0, 0.5], day=10, direction="maximize")
    _, top = previous_study_top_k(storage, "demand", exclude="retune.demand.now", k=2)
    assert [p["x"] for p in top] == [2.0, 0.0]  # values 4.0, 3.0


def test_top_k_ranks_by_the_previous_studys_own_direction() -> None:
    """The metric may have changed since (r2, maximized, to mae, minimized): the previous
    study's best are its best by what it was tuned for, never its worst."""
    storage = optuna.storages.InMemoryStorage()
    values = [0.2, 0.9, 0.5, 0.7]
    add_study(storage, "retune.demand.r2", values, day=1, direction="maximize")
    add_study(storage, "retune.demand.mae", values, day=2, direction="minimize")
    _, newest = previous_study_top_k(storage, "demand", exclude="x", k=2)
    _, older = previous_study_top_k(storage, "demand", exclude="retune.demand.mae", k=2)
    assert [values[int(p["x"])] for p in older] == sorted(values, reverse=True)[:2]
    assert [values[int(p["x"])] for p in newest] == sorted(values)[:2]


def test_top_k_of_a_multi_objective_study_ranks_by_its_metric() -> None:
    """A study with objectives [metric, latency] has no single value (FrozenTrial.value raises):
    its trials are ranked by the metric, the first objective, in that study's direction."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="retune.demand.mo", directions=["maximize", "minimize"])
    metric_latency = [(0.5, 1.0), (0.9, 30.0), (0.1, 0.5), (0.7, 2.0)]
    for i, values in enumerate(metric_latency):
        study.add_trial(
            optuna.trial.create_trial(params={"x": float(i)}, distributions={"x": FloatDistribution(0, 100)}, values=list(values))
        )
    name, top = previous_study_top_k(storage, "demand", exclude="retune.demand.now", k=3)
    assert name == "retune.demand.mo"
    assert [metric_latency[int(p["x"])][0] for p in top] == [0.9, 0.7, 0.5]


def test_the_current_study_is_excluded(storage) -> None:
    name, top = previous_study_top_k(storage, "demand", exclude="retune.demand.2025-01-10", k=5)
    assert name == "retune.demand.2025-01-05"
    assert [p["x"] for p in top] == [1.0, 0.0, 2.0]  # fewer than k: all of them


def test_latest_is_by_trial_time_not_by_name_or_creation_order() -> None:
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, "retune.demand.zzz", [1.0], day=2)  # created first, sorts last, oldest trials
    add_study(storage, "retune.demand.aaa", [2.0], day=9)
    name, _ = previous_study_top_k(storage, "demand", exclude="x", k=1)
    assert name == "retune.demand.aaa"


def test_duplicates_pruned_and_failed_trials_are_skipped() -> None:
    storage = optuna.storages.InMemoryStorage()
    states = {1: TrialState.PRUNED, 4: TrialState.FAIL}
    # x cycles 0,1,2,0,1,2: trials 0 and 3 share params, 1 is pruned, 4 failed
    add_study(storage, "retune.demand.dup", [0.3, None, 0.5, 0.1, None, 0.4], day=3, states=states)
    _, top = previous_study_top_k(storage, "demand", exclude="x", k=3)
    assert [p["x"] for p in top] == [0.0, 2.0]  # x=0 best at 0.1 (once), then x=2 at 0.4


def test_no_previous_study_or_k_zero(storage) -> None:
    assert previous_study_top_k(storage, "unknown", exclude="x", k=3) == (None, [])
    assert previous_study_top_k(storage, "demand", exclude="x", k=0) == (None, [])


def test_top_k_on_sqlite_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    add_study(url, "retune.demand.a", [5.0, 2.0, 9.0, 1.0], day=1, direction="maximize")
    name, top = previous_study_top_k(url, "demand", exclude="retune.demand.b", k=2)
    assert name == "retune.demand.a"
    assert [p["x"] for p in top] == [2.0, 0.0]


def test_study_prefix() -> None:
    assert study_prefix("demo-demand") == "retune.demo-demand."


def test_studies_of_a_model_with_a_longer_name_are_not_used() -> None:
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, "retune.demo.boot", [1.0], day=1)
    add_study(storage, "retune.demo-demand.boot", [2.0], day=5)  # model "demo-demand"
    name, _ = previous_study_top_k(storage, "demo", exclude="retune-demo-now", k=1)
    assert name == "retune.demo.boot"

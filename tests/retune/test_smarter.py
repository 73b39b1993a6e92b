"""Multi-objective studies (Pareto front, constrained winner) and meta-learning warm start,
run through the pipeline on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from retune.tuning import select_winner

ROOT = Path(__file__).resolve().parents[2]


def _trial(number: int, values: list[float]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        values=values, params={"x": float(number)}, distributions={"x": optuna.distributions.FloatDistribution(0, 100)}
    )


def test_winner_is_the_best_metric_within_the_bounds() -> None:
    front = [_trial(0, [1.0, 50.0]), _trial(1, [2.0, 10.0]), _trial(2, [3.0, 1.0])]
    best, why = select_winner(
        front, objectives=["metric", "latency"], direction="minimize", max_latency_ms_per_1k=20.0, max_size_kb=None
    )
    assert best is front[1]
    assert "2 of 3" in why
    unbounded, _ = select_winner(
        front, objectives=["metric", "latency"], direction="minimize", max_latency_ms_per_1k=None, max_size_kb=None
    )
    assert unbounded is front[0]
    none, why = select_winner(
        front, objectives=["metric", "latency"], direction="minimize", max_latency_ms_per_1k=0.5, max_size_kb=None
    )
    assert none is None
    assert "no Pareto-optimal trial" in why
    maxi, _ = select_winner(
        [_trial(0, [0.9, 5.0, 900.0]), _trial(1, [0.8, 1.0, 10.0])],
        objectives=["metric", "latency", "size"],
        direction="maximize",
        max_latency_ms_per_1k=None,
        max_size_kb=100.0,
    )
    assert maxi is not None
    assert maxi.params["x"] == 1.0, "the 900 KiB model is out of bounds"


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configs: dict[str, dict[str, Any]]) -> None:
    from retune import demo_data

    state, folder = tmp_path / "state", tmp_path / "configs"
    folder.mkdir()
    base = yaml.safe_load((ROOT / "include" / "configs" / "demo.yaml").read_text())
    for name, changes in configs.items():
        raw = yaml.safe_load(yaml.safe_dump(base))
        raw["name"] = name
        raw["registry"]["model_name"] = f"{name}-model"
        raw["data"]["reference"] = {"start": "2025-01-01", "end": "2025-02-20"}
        for section, values in changes.items():
            raw[section].update(values) if isinstance(raw.get(section), dict) else raw.__setitem__(section, values)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    demo_data.write(state / "data" / "demo", days=60, rows_per_day=40, seed=4)
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(folder))


@pytest.mark.slow
def test_multi_objective_study_returns_a_front_and_the_constrained_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retune import pipeline, tracking
    from retune.settings import get_settings

    _setup(
        tmp_path,
        monkeypatch,
        {"mo": {"tuning": {"n_trials": 8, "objectives": ["metric", "latency", "size"], "max_size_kb": 2000.0}}},
    )
    ctx = pipeline.prepare("mo", window_kind="reference", key="mo-1")
    pipeline.warm_start(ctx)
    outcome = pipeline.tune(ctx)
    front = outcome["pareto_front"]
    assert front, "a multi-objective study keeps its Pareto front"
    assert all(len(p["values"]) == 3 for p in front)
    feasible = [p for p in front if p["values"][2] <= 2000.0]
    assert outcome["best_value"] == pytest.approx(min(p["values"][0] for p in feasible))
    assert outcome["best_trial"] in {p["trial"] for p in feasible}
    assert "Pareto-optimal" in outcome["selection"]
    cl = tracking.client(get_settings())
    artifacts = {a.path for a in cl.list_artifacts(ctx["parent_run_id"], "plots")}
    assert "plots/pareto_front.png" in artifacts
    assert "plots/pareto_front.html" in artifacts
    checked = pipeline.validate(ctx, outcome)
    assert checked["params"] == outcome["best_params"], "the staging gates apply to the chosen winner"


@pytest.mark.slow
def test_a_model_without_history_is_seeded_from_the_nearest_past_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retune import pipeline, tracking
    from retune.settings import get_settings

    small = {"tuning": {"n_trials": 4}}
    _setup(tmp_path, monkeypatch, {"alpha": small, "beta": small})
    first = pipeline.prepare("alpha", window_kind="reference", key="alpha-1")
    seeds = pipeline.warm_start(first)
    assert seeds["seeds"] == [], "the very first model anywhere starts cold"
    pipeline.tune(first)
    second = pipeline.prepare("beta", window_kind="reference", key="beta-1")
    seeded = pipeline.warm_start(second)
    assert [s["config"] for s in seeded["similar_tasks"]] == ["alpha"]
    assert [s["source"] for s in seeded["seeds"]] == ["meta:alpha"]
    cl = tracking.client(get_settings())
    assert cl.get_run(second["parent_run_id"]).data.tags["retune.similar_tasks"] == "alpha"
    # TPE's random start counts the seeds: 10 trials cold, the one seed + 1 here
    # ... and keeps Optuna's 10 where severe drift widened the space beyond the seeds'
    for ctx, name, startup in ((second, "beta", 2), (first, "alpha", 10), ({**second, "mode": "severe"}, "beta", 10)):
        cfg = pipeline.load_named_config(name, get_settings())
        assert pipeline._create_study(cfg, ctx, get_settings()).sampler._n_startup_trials == startup


@pytest.mark.slow
def test_sampler_transfer_starts_cmaes_from_the_previous_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retune import pipeline
    from retune.settings import get_settings

    _setup(
        tmp_path,
        monkeypatch,
        {"gamma": {"tuning": {"n_trials": 12, "transfer": "cmaes", "pruner": {"type": "none", "args": {}}}}},
    )
    first = pipeline.prepare("gamma", window_kind="reference", key="gamma-1")
    assert first["transfer_from"] is None, "nothing to transfer from yet"
    pipeline.warm_start(first)
    pipeline.tune(first)
    second = pipeline.prepare("gamma", window_kind="reference", key="gamma-2")
    assert second["transfer_from"] == first["study_name"]
    from retune.pipeline import _create_study, load_named_config

    study = _create_study(load_named_config("gamma"), second, get_settings())
    assert type(study.sampler).__name__ == "CmaEsSampler"
    second["transfer_from"] = None
    assert type(_create_study(load_named_config("gamma"), second, get_settings()).sampler).__name__ == "TPESampler"


@pytest.mark.slow
def test_a_multi_objective_model_retunes_again_from_its_previous_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second retune finds the first's multi-objective study (FrozenTrial.value raises on
    its trials): it failed in warm_start, or with transfer: cmaes already in prepare."""
    from optuna.trial import TrialState

    from retune import pipeline
    from retune.settings import get_settings

    tuning = {"n_trials": 2, "objectives": ["metric", "latency"], "transfer": "cmaes"}
    _setup(tmp_path, monkeypatch, {"mo": {"tuning": tuning}})
    first = pipeline.prepare("mo", window_kind="reference", key="mo-1")
    pipeline.warm_start(first)
    pipeline.tune(first)
    second = pipeline.prepare("mo", window_kind="reference", key="mo-2")
    assert second["transfer_from"] == first["study_name"]
    assert pipeline.warm_start(second)["previous_study"] == first["study_name"]
    outcome = pipeline.tune(second)
    assert outcome["pareto_front"] and all(len(p["values"]) == 2 for p in outcome["pareto_front"])
    study = optuna.load_study(study_name=second["study_name"], storage=get_settings().optuna_storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2


def test_cmaes_transfer_only_from_a_study_with_the_same_objective_and_direction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CMA-ES reads the source trials' values in the new study's direction: from a study that
    maximized (r2) into one that minimizes (mae) it would start from the old study's worst,
    and a multi-objective source has no single value. Those enqueue only."""
    from retune import pipeline
    from retune.settings import get_settings

    _setup(tmp_path, monkeypatch, {"delta": {"tuning": {"transfer": "cmaes"}}})
    settings = get_settings()
    cfg = pipeline.load_named_config("delta", settings)
    assert cfg.direction == "minimize"
    space = cfg.model.search_space
    distributions = pipeline.tuning_distributions(space)
    rng = np.random.default_rng(0)

    def previous(name: str, directions: list[str]) -> dict[str, Any]:
        study = optuna.create_study(storage=settings.optuna_storage, study_name=name, directions=directions)
        for _ in range(12):
            params = {n: d.to_external_repr(rng.uniform(d.low, d.high)) for n, d in distributions.items()}
            values = [float(rng.uniform(0.1, 1.0)) for _ in directions]
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=values))
        return {"transfer_from": name, "space": {k: v.model_dump() for k, v in space.items()}}

    assert pipeline._cmaes_transfer_sampler(cfg, previous("retune.delta.same", ["minimize"]), settings, seed=0) is not None
    for name, directions in (("r2", ["maximize"]), ("mo", ["minimize", "minimize"])):
        ctx = previous(f"retune.delta.{name}", directions)
        assert pipeline._cmaes_transfer_sampler(cfg, ctx, settings, seed=0) is None, name


@pytest.mark.slow
def test_without_a_champion_the_next_retune_starts_from_the_previous_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first retune's challenger was not promoted (it failed a gate, or the champion was
    deleted): the next retune found that study and threw its best away (mode cold meant
    unseeded), and skipped meta-learning as well, since it had seeds. It starts from them."""
    from optuna.trial import TrialState

    from retune import pipeline
    from retune.settings import get_settings

    _setup(tmp_path, monkeypatch, {"eps": {"tuning": {"n_trials": 3, "pruner": {"type": "none", "args": {}}}}})
    first = pipeline.prepare("eps", window_kind="reference", key="eps-1")
    pipeline.warm_start(first)
    pipeline.tune(first)  # never validated nor registered: no champion
    previous = optuna.load_study(study_name=first["study_name"], storage=get_settings().optuna_storage)
    best_first = sorted(previous.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.values[0])
    assert best_first

    second = pipeline.prepare("eps", window_kind="reference", key="eps-2")
    assert second["mode"] == "cold", "no champion: the configured space and budget"
    seeded = pipeline.warm_start(second)
    assert seeded["previous_study"] == first["study_name"]
    assert seeded["mode"] == "warm"
    assert [s["source"] for s in seeded["seeds"]] == ["previous_study"] * len(seeded["seeds"])
    assert seeded["seeds"][0]["params"] == pytest.approx(best_first[0].params)

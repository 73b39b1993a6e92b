"""Drift-aware retuning: mode from drift share, narrowing and widening, early stopping,
and reproducible best params."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml

from retune.adaptive import domains_of, narrow, plan, plan_for, widen
from retune.config import AdaptiveConfig, CategoricalParam, FloatParam, IntParam
from retune.models import get_family
from retune.tuning import EarlyStopping, stop_reason_of

SPACE = {
    "lr": FloatParam(type="log_float", low=0.01, high=1.0),
    "leaf": IntParam(type="int", low=8, high=64),
    "l2": FloatParam(type="float", low=0.0, high=10.0),
    "kind": CategoricalParam(type="categorical", choices=["a", "b"]),
}
CHAMP = {"lr": 0.1, "leaf": 32, "l2": 5.0, "kind": "b"}
CFG = AdaptiveConfig(mild_below=0.3, severe_at=0.6, mild_budget=0.5, mild_narrow=0.125, severe_budget=2.0, severe_widen=0.5)


@pytest.mark.parametrize(
    ("share", "champion", "mode", "trials", "warm"),
    [
        (0.1, CHAMP, "mild", 10, True),
        (0.29, CHAMP, "mild", 10, True),
        (0.3, CHAMP, "moderate", 20, True),
        (0.59, CHAMP, "moderate", 20, True),
        (0.6, CHAMP, "severe", 40, True),
        (1.0, CHAMP, "severe", 40, True),
        (None, CHAMP, "moderate", 20, True),
        (0.9, None, "cold", 20, True),  # no champion: still seeded from a previous study, if any
    ],
)
def test_mode_from_drift_share(share: float | None, champion: dict | None, mode: str, trials: int, warm: bool) -> None:
    p = plan(CFG, SPACE, n_trials=20, drift_share=share, champion_params=champion)
    assert (p.mode, p.n_trials, p.warm) == (mode, trials, warm)
    assert p.reason


def test_severe_can_go_cold_and_disabled_is_moderate() -> None:
    cold = plan(CFG.model_copy(update={"severe_cold": True}), SPACE, n_trials=20, drift_share=0.9, champion_params=CHAMP)
    assert cold.mode == "severe"
    assert cold.warm is False
    for champion in (None, {}):
        no_champion = plan(
            CFG.model_copy(update={"severe_cold": True}), SPACE, n_trials=20, drift_share=0.9, champion_params=champion
        )
        assert (no_champion.mode, no_champion.warm) == ("cold", False), "severe_cold drops a previous study's seeds too"
        mild = plan(CFG.model_copy(update={"severe_cold": True}), SPACE, n_trials=20, drift_share=0.1, champion_params=champion)
        assert (mild.mode, mild.warm) == ("cold", True)
    off = plan(CFG.model_copy(update={"enabled": False}), SPACE, n_trials=20, drift_share=0.05, champion_params=CHAMP)
    assert off.mode == "moderate"
    assert off.space == SPACE


def test_narrowing_centres_on_the_champion_inside_the_configured_range() -> None:
    out = narrow(SPACE, CHAMP, 0.125)
    assert out["l2"].low == pytest.approx(3.75)
    assert out["l2"].high == pytest.approx(6.25)
    assert (out["leaf"].low, out["leaf"].high) == (25, 39)  # 32 +- 7, widened to whole numbers
    # log range: +-12.5% of the log-width around log(0.1)
    half = 0.125 * math.log(100.0)
    assert out["lr"].low == pytest.approx(0.1 * math.exp(-half))
    assert out["lr"].high == pytest.approx(0.1 * math.exp(half))
    assert out["kind"] == SPACE["kind"]
    edge = narrow(SPACE, {"l2": 9.9}, 0.125)
    assert edge["l2"].high == 10.0, "never beyond the configured range"
    assert edge["l2"].low == pytest.approx(9.9 - 1.25)


def test_narrowing_keeps_the_range_where_the_champions_value_is_no_number() -> None:
    """The champion was tuned when max_features was categorical ("sqrt", ...) and max_depth
    could be None; the config now makes them ranges: every mild-drift retune crashed in
    prepare (float("sqrt"), float(None)). Those keep their configured range."""
    space = {
        **SPACE,
        "max_features": FloatParam(type="float", low=0.1, high=1.0),
        "max_depth": IntParam(type="int", low=2, high=20),
        "alpha": FloatParam(type="float", low=0.0, high=1.0),
    }
    champion = {**CHAMP, "max_features": "sqrt", "max_depth": None, "alpha": math.nan}
    p = plan(CFG, space, n_trials=20, drift_share=0.1, champion_params=champion)
    assert p.mode == "mild"
    for name in ("max_features", "max_depth", "alpha"):
        assert p.space[name] == space[name], name
    assert p.space["l2"] == narrow(SPACE, CHAMP, CFG.mild_narrow)["l2"], "the numeric centres still narrow"


@pytest.mark.parametrize(("low", "high"), [(8, 64), (5, 100), (7, 1000), (3, 9)])
def test_narrowing_a_log_integer_range_stays_inside_it(low: int, high: int) -> None:
    """exp(log(8)) is 7.999...: the demo's max_leaf_nodes [8, 64] (log) with a champion at 8
    narrowed to [7, 11], and 100 at the top of [5, 100] to a high of 101."""
    spec = IntParam(type="int", low=low, high=high, log=True)
    for champion in (low, high, round(math.sqrt(low * high))):
        out = narrow({"n": spec}, {"n": champion}, 0.125)["n"]
        assert low <= out.low <= champion <= out.high <= high, (champion, out)
        optuna.distributions.IntDistribution(out.low, out.high, log=True)


def test_widening_grows_ranges_but_keeps_natural_floors() -> None:
    out = widen(SPACE, 0.5)
    assert out["l2"].low == 0.0, "a range starting at 0 stays non-negative"
    assert out["l2"].high == pytest.approx(15.0)
    assert out["leaf"].low == 1, "an integer range starting at >= 1 stays >= 1"
    assert out["leaf"].high == 92
    assert out["lr"].low < 0.01
    assert out["lr"].high > 1.0
    assert out["lr"].low > 0.0
    assert widen(SPACE, 0.0) == SPACE


HGB_SPACE = {
    "max_features": FloatParam(type="float", low=0.3, high=1.0),
    "learning_rate": FloatParam(type="log_float", low=0.02, high=0.5),
    "min_samples_leaf": IntParam(type="int", low=5, high=80),
    "l2_regularization": FloatParam(type="log_float", low=1e-4, high=10.0),
}


def test_the_estimator_says_which_values_it_accepts() -> None:
    hgb = get_family("hist_gradient_boosting")
    mf = hgb.domain("regression", "max_features", integer=False)
    assert mf is not None and (mf.low, mf.high, mf.low_open, mf.high_open) == (0.0, 1.0, True, False)
    leaf = hgb.domain("classification", "min_samples_leaf", integer=True)
    assert leaf is not None and (leaf.low, leaf.high) == (1.0, None)
    # random forest: min_samples_leaf is a count (int) or a fraction in (0, 1) (float)
    rf = get_family("random_forest")
    frac = rf.domain("regression", "min_samples_leaf", integer=False)
    assert frac is not None and (frac.low, frac.high, frac.high_open) == (0.0, 1.0, True)
    assert hgb.domain("regression", "no_such_param", integer=False) is None


def test_widening_never_leaves_what_the_estimator_accepts() -> None:
    domains = domains_of(get_family("hist_gradient_boosting"), "regression", HGB_SPACE)
    plain = widen(HGB_SPACE, 0.5)
    assert plain["max_features"].high > 1.0, "without domains a fraction is widened past 1"
    out = widen(HGB_SPACE, 0.5, domains=domains)
    assert out["max_features"].high == 1.0 and 0.0 < out["max_features"].low < 0.3
    assert out["learning_rate"].low > 0.0 and out["learning_rate"].high > 0.5
    assert out["min_samples_leaf"].low == 1 and out["l2_regularization"].high > 10.0


def test_a_severe_plan_trains_every_widened_trial() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    domains = domains_of(get_family("hist_gradient_boosting"), "regression", HGB_SPACE)
    p = plan(
        AdaptiveConfig(severe_widen=2.0),
        HGB_SPACE,
        n_trials=10,
        drift_share=1.0,
        champion_params={"max_features": 0.9},
        domains=domains,
    )
    assert p.mode == "severe"
    X, y = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]] * 5, [0.0, 1.0, 2.0, 3.0] * 5
    for corner in ("low", "high"):
        params = {k: getattr(v, corner) for k, v in p.space.items()}
        HistGradientBoostingRegressor(max_iter=2, **params).fit(X, y)  # raises if a widened bound is invalid


def test_a_configs_plan_keeps_its_widened_space_within_what_the_estimator_accepts(make_cfg) -> None:
    space = {
        "max_features": {"type": "float", "low": 0.3, "high": 1.0},
        "min_samples_leaf": {"type": "int", "low": 5, "high": 80},
    }
    cfg = make_cfg({"model": {"family": "hist_gradient_boosting", "search_space!": space}})
    p = plan_for(cfg, drift_share=1.0, champion_params={"max_features": 0.9, "min_samples_leaf": 20})
    assert p.mode == "severe" and p.n_trials == round(cfg.tuning.n_trials * cfg.tuning.adaptive.severe_budget)
    assert p.space["max_features"].high == 1.0 and p.space["max_features"].low < 0.3
    assert p.space["min_samples_leaf"].low >= 1 and p.space["min_samples_leaf"].high > 80
    assert plan_for(cfg, drift_share=0.4, champion_params={"max_features": 0.9}, n_trials=7).n_trials == 7  # moderate
    assert plan_for(cfg, drift_share=1.0, champion_params={"max_features": 0.9}, n_trials=8).n_trials == 12  # 8 x 1.5
    assert plan_for(cfg, drift_share=None, champion_params=None).mode == "cold"


def test_early_stopping_stops_after_patience_without_improvement() -> None:
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    values = iter([5.0, 4.0, 3.0] + [3.5] * 50)
    study.optimize(lambda t: next(values) + 0 * t.suggest_float("x", 0, 1), n_trials=50, callbacks=[EarlyStopping(4)])
    assert len(study.trials) == 3 + 4, "three improvements, then four trials without"
    assert stop_reason_of(study, 50).startswith("converged: no improvement in 4 trials")


def test_early_stopping_min_delta_ignores_tiny_gains() -> None:
    study = optuna.create_study(direction="maximize")
    values = iter([1.0] + [1.0 + 1e-6 * i for i in range(1, 40)])
    study.optimize(
        lambda t: next(values) + 0 * t.suggest_float("x", 0, 1),
        n_trials=40,
        callbacks=[EarlyStopping(3, min_delta=1e-3, direction="maximize")],
    )
    assert len(study.trials) == 4


@pytest.mark.slow
def test_same_data_config_and_seed_reproduce_the_best_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retune import demo_data, pipeline

    root = Path(__file__).resolve().parents[2]
    raw = yaml.safe_load((root / "include" / "configs" / "demo.yaml").read_text())
    raw["data"]["reference"] = {"start": "2025-01-01", "end": "2025-02-20"}
    raw["tuning"]["n_trials"] = 6
    results = []
    for attempt in ("a", "b"):
        state, configs = tmp_path / attempt / "state", tmp_path / attempt / "configs"
        configs.mkdir(parents=True)
        (configs / "demo.yaml").write_text(yaml.safe_dump(raw))
        demo_data.write(state / "data" / "demo", days=60, rows_per_day=40, seed=3)
        monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
        monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
        ctx = pipeline.prepare("demo", window_kind="reference", key=f"repro-{attempt}")
        pipeline.warm_start(ctx)
        results.append((ctx["data_digest"], pipeline.tune(ctx)))
    (digest_a, a), (digest_b, b) = results
    assert digest_a == digest_b
    assert a["best_params"] == b["best_params"]
    assert a["best_value"] == pytest.approx(b["best_value"], rel=1e-12)
    assert (a["n_complete"], a["n_pruned"]) == (b["n_complete"], b["n_pruned"])


STEPPED = {
    "n_estimators": IntParam(type="int", low=50, high=500, step=50),
    "fraction": FloatParam(type="float", low=0.1, high=1.0, step=0.1),
    "odd": IntParam(type="int", low=1, high=31, step=2),
}


def _on_grid(value: float, base: IntParam | FloatParam) -> bool:
    k = (value - base.low) / base.step  # type: ignore[operator]
    return abs(k - round(k)) < 1e-9


def test_narrowing_and_widening_keep_a_stepped_range_on_its_configured_grid() -> None:
    """Narrowing used to start the range at champion - half width: 143..243 by 50 and
    0.3875..0.5875 by 0.1, no configured value in either, and the champion's own values
    (200, 0.5) were enqueued as 193 and 0.4875."""
    from retune.warmstart import clip_to_space

    champion = {"n_estimators": 200, "fraction": 0.5, "odd": 7}
    for space in (narrow(STEPPED, champion, 0.125), widen(STEPPED, 0.5)):
        for name, spec in space.items():
            base = STEPPED[name]
            assert spec.step == base.step, name
            assert _on_grid(spec.low, base) and _on_grid(spec.high, base), (name, spec)
            assert spec.low <= champion[name] <= spec.high, (name, spec)
            dist = (
                optuna.distributions.FloatDistribution if isinstance(spec, FloatParam) else optuna.distributions.IntDistribution
            )
            dist(spec.low, spec.high, step=spec.step)  # a valid Optuna distribution: no adjusted high
    narrowed = narrow(STEPPED, champion, 0.125)
    assert clip_to_space(champion, narrowed) == champion, "the champion seed is the champion's params"
    assert (narrowed["n_estimators"].low, narrowed["n_estimators"].high) == (150, 250)


def test_widening_a_log_integer_range_from_one_never_reaches_zero() -> None:
    """log=True needs low >= 1: a widened max_iter from 1 became 0 and every trial failed."""
    out = widen({"max_iter": IntParam(type="int", low=1, high=100, log=True)}, 0.5)
    assert out["max_iter"].low == 1 and out["max_iter"].high > 100
    optuna.distributions.IntDistribution(out["max_iter"].low, out["max_iter"].high, log=True)

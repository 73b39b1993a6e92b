"""retune.validation: the gates a challenger must pass before it becomes champion."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from retune.metrics import get_metric
from retune.validation import (
    LATENCY,
    Gate,
    apply_gates,
    gates_json,
    latency_ms_per_1k,
    metric_on_resamples,
    paired_bootstrap,
    predict_scores,
)

OK = {"ok": True, "error": None, "predictions": [1.0]}


@pytest.fixture
def gate_cfg(make_cfg):
    """A config with the given ``validation`` section and metric (regression task)."""

    def build(metric: str = "mae", **validation):
        return make_cfg({"metric": {"name": metric}, "validation!": validation})

    return build


def run_gates(
    cfg,
    metric_name: str,
    challenger: float,
    champion: float | None,
    *,
    latency: float = 1.0,
    staging=OK,
    match=True,
    bootstrap=None,
):
    metric = get_metric(metric_name, "regression")
    return apply_gates(
        cfg,
        metric,
        challenger={metric_name: challenger, LATENCY: latency},
        champion=None if champion is None else {metric_name: champion, LATENCY: latency},
        staging=staging,
        predictions_match=match,
        bootstrap=bootstrap,
    )


def verdicts(gates: list[Gate]) -> dict[str, bool]:
    return {g.name: g.passed for g in gates}


# --------------------------------------------------------------------------- beats_champion


@pytest.mark.parametrize("min_improvement", [0.0, 0.01, 0.2])
@pytest.mark.parametrize(("metric", "champion", "worse"), [("mae", 10.0, 10.5), ("r2", 0.8, 0.75), ("r2", -0.4, -0.5)])
def test_a_worse_challenger_never_passes(gate_cfg, min_improvement, metric, champion, worse) -> None:
    gates = run_gates(gate_cfg(metric, min_improvement=min_improvement), metric, worse, champion)
    assert verdicts(gates)["beats_champion"] is False


def test_never_promote_worse_on_many_random_pairs(gate_cfg) -> None:
    rng = np.random.default_rng(0)
    for metric, min_improvement in itertools.product(["mae", "r2"], [0.0, 0.005, 0.05]):
        cfg = gate_cfg(metric, min_improvement=min_improvement)
        m = get_metric(metric, "regression")
        for _ in range(60):
            champ = float(rng.uniform(0.1, 5.0) if metric == "mae" else rng.uniform(-1.0, 1.0))
            chall = champ + float(rng.normal(0, 0.3))
            passed = verdicts(run_gates(cfg, metric, chall, champ))["beats_champion"]
            if passed:
                assert not m.better(champ, chall), (metric, min_improvement, chall, champ)
                if min_improvement > 0:
                    gain = (chall - champ) if m.greater_is_better else (champ - chall)
                    assert gain >= min_improvement * abs(champ) - 1e-12
            elif min_improvement == 0:
                assert m.better(champ, chall)  # without a margin only a worse model fails


@pytest.mark.parametrize(("metric", "champion", "better"), [("mae", 10.0, 9.0), ("r2", 0.5, 0.6), ("r2", -0.5, -0.4)])
def test_a_clearly_better_challenger_passes(gate_cfg, metric, champion, better) -> None:
    for min_improvement in (0.0, 0.05):
        gates = run_gates(gate_cfg(metric, min_improvement=min_improvement), metric, better, champion)
        assert verdicts(gates)["beats_champion"] is True, min_improvement


def test_a_tie_passes_without_margin_and_fails_with_one(gate_cfg) -> None:
    assert verdicts(run_gates(gate_cfg(min_improvement=0.0), "mae", 4.0, 4.0))["beats_champion"] is True
    assert verdicts(run_gates(gate_cfg(min_improvement=0.01), "mae", 4.0, 4.0))["beats_champion"] is False


def test_relative_margin_is_a_share_of_the_champion(gate_cfg) -> None:
    cfg = gate_cfg(min_improvement=0.1)  # 10% better than mae 10 means at most 9
    assert verdicts(run_gates(cfg, "mae", 9.5, 10.0))["beats_champion"] is False  # better, not by enough
    assert verdicts(run_gates(cfg, "mae", 8.9, 10.0))["beats_champion"] is True


def test_absolute_margin(gate_cfg) -> None:
    cfg = gate_cfg(min_absolute_improvement=0.5)
    assert verdicts(run_gates(cfg, "mae", 9.7, 10.0))["beats_champion"] is False
    assert verdicts(run_gates(cfg, "mae", 9.4, 10.0))["beats_champion"] is True
    assert verdicts(run_gates(cfg, "mae", 10.6, 10.0))["beats_champion"] is False


def test_beats_champion_detail_shows_both_values(gate_cfg) -> None:
    for min_improvement in (0.0, 0.01):
        gate = next(
            g for g in run_gates(gate_cfg(min_improvement=min_improvement), "mae", 10.5, 10.0) if g.name == "beats_champion"
        )
        assert "challenger mae=10.5" in gate.detail and "champion 10" in gate.detail


def test_no_champion_passes_the_comparison(gate_cfg) -> None:
    gates = run_gates(gate_cfg(min_improvement=0.5), "mae", 100.0, None)
    gate = next(g for g in gates if g.name == "beats_champion")
    assert gate.passed and gate.detail == "no champion yet"


# --------------------------------------------------------------------------- other gates


def test_latency_over_the_maximum_fails(gate_cfg) -> None:
    cfg = gate_cfg(max_latency_ms_per_1k=50.0)
    slow = next(g for g in run_gates(cfg, "mae", 1.0, None, latency=80.0) if g.name == "latency")
    assert slow.passed is False
    assert "80 ms per 1k rows (max 50.0)" in slow.detail
    fast = next(g for g in run_gates(cfg, "mae", 1.0, None, latency=20.0) if g.name == "latency")
    assert fast.passed is True


def test_no_latency_gate_without_a_maximum(gate_cfg) -> None:
    assert "latency" not in verdicts(run_gates(gate_cfg(), "mae", 1.0, None, latency=1e9))


def test_metric_threshold_follows_the_direction(gate_cfg) -> None:
    assert verdicts(run_gates(gate_cfg("mae", metric_threshold=5.0), "mae", 6.0, None))["metric_threshold"] is False
    assert verdicts(run_gates(gate_cfg("mae", metric_threshold=5.0), "mae", 4.0, None))["metric_threshold"] is True
    assert verdicts(run_gates(gate_cfg("r2", metric_threshold=0.7), "r2", 0.6, None))["metric_threshold"] is False
    assert verdicts(run_gates(gate_cfg("r2", metric_threshold=0.7), "r2", 0.8, None))["metric_threshold"] is True


def test_staging_failure_fails_even_a_better_model(gate_cfg) -> None:
    bad = {"ok": False, "error": "model failed to load or predict in a fresh process: boom", "predictions": None}
    gates = run_gates(gate_cfg(), "mae", 1.0, 10.0, staging=bad, match=False)
    staging = gates[0]
    assert staging.name == "staging_load" and staging.passed is False
    assert "boom" in staging.detail
    assert verdicts(gates)["beats_champion"] is True  # only the staging gate fails
    assert not all(g.passed for g in gates)


def test_predictions_that_differ_fail_the_staging_gate(gate_cfg) -> None:
    staging = run_gates(gate_cfg(), "mae", 1.0, None, match=False)[0]
    assert staging.passed is False and "differ" in staging.detail
    assert run_gates(gate_cfg(), "mae", 1.0, None, match=True)[0].detail == "predictions match"


def test_all_gates_in_order_and_as_json(gate_cfg) -> None:
    cfg = gate_cfg(min_improvement=0.01, metric_threshold=5.0, max_latency_ms_per_1k=10.0)
    y, champ, chall = _pairs(np.random.default_rng(1), 400, champion_noise=3.0, challenger_noise=2.0)
    boot = paired_bootstrap(MAE, y, champ, chall, seed=7)
    gates = run_gates(cfg, "mae", boot.challenger, boot.champion, latency=5.0, bootstrap=boot)
    assert [g.name for g in gates] == ["staging_load", "beats_champion", "significant_improvement", "metric_threshold", "latency"]
    assert all(g.passed for g in gates)
    data = gates_json(gates)
    assert data[0] == {"name": "staging_load", "passed": True, "detail": "predictions match"}
    assert set(data[2]["data"]) >= {"lower_bound", "interval", "share_not_better", "confidence", "resamples", "improvement"}
    assert json.loads(json.dumps(data)) == data, "gates.json is plain JSON"


# --------------------------------------------------------------------------- latency


def test_latency_is_the_median_per_thousand_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import retune.validation as validation

    ticks = iter([0.0, 0.002, 1.0, 1.010, 2.0, 2.004])  # 2 ms, 10 ms, 4 ms for 500 rows
    monkeypatch.setattr(validation.time, "perf_counter", lambda: next(ticks))
    calls = []

    class Model:
        def predict(self, X):
            calls.append(len(X))
            return np.zeros(len(X))

    assert latency_ms_per_1k(Model(), pd.DataFrame({"x": range(500)})) == pytest.approx(8.0)  # 4 ms / 500 rows
    assert calls == [500, 500, 500]


# --------------------------------------------------------------------------- paired bootstrap

MAE = get_metric("mae", "regression")
R2 = get_metric("r2", "regression")
AUC = get_metric("roc_auc", "classification")


def _pairs(rng: np.random.Generator, n: int, *, champion_noise: float, challenger_noise: float):
    """A regression holdout and two models' predictions with independent errors of given sizes."""
    y = rng.normal(50.0, 10.0, n)
    return y, y + rng.normal(0, champion_noise, n), y + rng.normal(0, challenger_noise, n)


def _significance(cfg, metric, y, champ, chall, *, seed: int = 7, **kwargs) -> Gate:
    boot = paired_bootstrap(metric, y, champ, chall, seed=seed, **kwargs)
    gates = apply_gates(
        cfg,
        metric,
        challenger={metric.name: boot.challenger, LATENCY: 1.0},
        champion={metric.name: boot.champion, LATENCY: 1.0},
        staging=OK,
        predictions_match=True,
        bootstrap=boot,
    )
    return next(g for g in gates if g.name == "significant_improvement")


@pytest.mark.parametrize("metric", [MAE, R2])
def test_champion_plus_noise_never_passes_at_95(gate_cfg, metric) -> None:
    """The challenger is the champion's predictions plus noise: never significantly better."""
    cfg = gate_cfg(metric.name, min_improvement=0.0)
    rng = np.random.default_rng(11)
    for case in range(60):
        y, champ, _ = _pairs(rng, 150, champion_noise=4.0, challenger_noise=0.0)
        chall = champ + rng.normal(0, 2.5, len(y))
        gate = _significance(cfg, metric, y, champ, chall, seed=case)
        assert gate.passed is False, gate.detail


def test_an_identical_challenger_never_passes(gate_cfg) -> None:
    y, champ, _ = _pairs(np.random.default_rng(3), 200, champion_noise=2.0, challenger_noise=0.0)
    gate = _significance(gate_cfg(min_improvement=0.0), MAE, y, champ, champ.copy())
    assert gate.passed is False
    assert gate.data is not None and gate.data["lower_bound"] == 0.0 and gate.data["share_not_better"] == 1.0


def test_equally_good_models_pass_at_most_the_error_rate(gate_cfg) -> None:
    """Two independent models of the same quality (only noise differs): the point comparison
    prefers the challenger half the time; the gate at 95% about 5% of the time at most."""
    cfg = gate_cfg(min_improvement=0.0)
    rng = np.random.default_rng(5)
    passed = looks_better = 0
    for case in range(200):
        y, champ, chall = _pairs(rng, 120, champion_noise=2.0, challenger_noise=2.0)
        looks_better += MAE.better(MAE.fn(y, chall), MAE.fn(y, champ))
        passed += _significance(cfg, MAE, y, champ, chall, seed=case, resamples=200).passed
    assert 70 <= looks_better <= 130, looks_better
    assert passed <= 0.08 * 200, passed


@pytest.mark.parametrize("metric", [MAE, R2])
def test_a_clearly_better_challenger_passes_the_bootstrap(gate_cfg, metric) -> None:
    y, champ, chall = _pairs(np.random.default_rng(2), 300, champion_noise=4.0, challenger_noise=2.0)
    gate = _significance(gate_cfg(metric.name, min_improvement=0.01), metric, y, champ, chall)
    assert gate.passed is True, gate.detail
    assert gate.data is not None and gate.data["lower_bound"] > 0 and gate.data["improvement"] > gate.data["lower_bound"]
    assert gate.data["share_not_better"] < 0.05
    assert gate.data["direction"] == metric.direction
    if metric.greater_is_better:  # improvement = challenger - champion for maximize
        assert gate.data["improvement"] == pytest.approx(gate.data["challenger"] - gate.data["champion"])
    else:  # champion - challenger for minimize
        assert gate.data["improvement"] == pytest.approx(gate.data["champion"] - gate.data["challenger"])
    assert "lower bound" in gate.detail and "interval" in gate.detail and "paired resamples" in gate.detail


@pytest.mark.parametrize("metric", [MAE, R2])
def test_a_clearly_worse_challenger_fails_the_bootstrap(gate_cfg, metric) -> None:
    y, champ, chall = _pairs(np.random.default_rng(2), 300, champion_noise=2.0, challenger_noise=4.0)
    gate = _significance(gate_cfg(metric.name), metric, y, champ, chall)
    assert gate.passed is False
    assert gate.data is not None and gate.data["improvement"] < 0 and gate.data["share_not_better"] > 0.95


def test_significant_but_below_min_improvement_fails(gate_cfg) -> None:
    y, champ, chall = _pairs(np.random.default_rng(2), 2000, champion_noise=3.0, challenger_noise=2.8)
    boot = paired_bootstrap(MAE, y, champ, chall, seed=1)
    assert boot.significant, boot.describe()  # a real but small gain (about 7%)
    assert _significance(gate_cfg(min_improvement=0.01), MAE, y, champ, chall, seed=1).passed is True
    gate = _significance(gate_cfg(min_improvement=0.2), MAE, y, champ, chall, seed=1)
    assert gate.passed is False and "min_improvement gate failed" in gate.detail


def _classification(rng: np.random.Generator, n: int, *, champion_signal: float, challenger_signal: float):
    y = rng.integers(0, 2, n)

    def scores(signal: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1.0, n))))

    return y, scores(champion_signal), scores(challenger_signal)


def test_roc_auc_is_recomputed_on_each_resample(gate_cfg) -> None:
    from sklearn.metrics import roc_auc_score

    cfg = gate_cfg()
    y, champ, chall = _classification(np.random.default_rng(4), 400, champion_signal=0.3, challenger_signal=1.2)
    boot = paired_bootstrap(AUC, y, champ, chall, seed=3)
    assert boot.method == "metric recomputed on each resample"
    assert boot.champion == pytest.approx(roc_auc_score(y, champ)) and boot.challenger == pytest.approx(roc_auc_score(y, chall))
    assert boot.significant and boot.improvement > 0  # maximize: larger AUC is the improvement
    cfg = gate_cfg()
    assert _significance(cfg, AUC, y, champ, chall, seed=3).passed is True
    assert _significance(cfg, AUC, y, chall, champ, seed=3).passed is False  # the roles swapped
    noisy = np.clip(champ + np.random.default_rng(9).normal(0, 0.05, len(y)), 0, 1)
    assert _significance(cfg, AUC, y, champ, noisy, seed=3).passed is False


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("mae", "regression"),
        ("rmse", "regression"),
        ("mape", "regression"),
        ("r2", "regression"),
        ("accuracy", "classification"),
        ("balanced_accuracy", "classification"),
        ("f1", "classification"),
        ("roc_auc", "classification"),
        ("log_loss", "classification"),
    ],
)
def test_each_resample_scores_exactly_what_the_metric_does(name: str, task: str) -> None:
    """The fast paths (per-row losses, closed forms from row counts) equal the metric on the rows."""
    rng = np.random.default_rng(8)
    metric = get_metric(name, task)
    n = 120
    if task == "regression":
        y = rng.normal(20, 5, n)
        score = y + rng.normal(0, 2, n)
    else:
        y = rng.integers(0, 2, n)
        proba = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)  # rounded: ties in the ranking
        score = proba if metric.needs_proba else (proba > 0.5).astype(int)
    idx = rng.integers(0, n, size=(25, n))
    expected = np.array([metric.fn(y[rows], score[rows]) for rows in idx])
    np.testing.assert_allclose(metric_on_resamples(metric, y, score, idx), expected, rtol=1e-10, atol=1e-12)


def test_metrics_without_a_closed_form_are_recomputed_by_calling_them() -> None:
    rng = np.random.default_rng(6)
    f1 = get_metric("f1", "classification")
    y = rng.integers(0, 3, 90)  # three classes: macro F1, no closed form here
    pred = np.where(rng.random(90) < 0.7, y, rng.integers(0, 3, 90))
    idx = rng.integers(0, 90, size=(15, 90))
    expected = np.array([f1.fn(y[rows], pred[rows]) for rows in idx])
    np.testing.assert_allclose(metric_on_resamples(f1, y, pred, idx), expected)
    boot = paired_bootstrap(f1, y, pred, y, seed=1, resamples=100)
    assert boot.method == "metric recomputed on each resample" and boot.significant


def test_the_bootstrap_is_deterministic_with_the_seed() -> None:
    y, champ, chall = _pairs(np.random.default_rng(12), 250, champion_noise=2.0, challenger_noise=1.9)
    first = paired_bootstrap(MAE, y, champ, chall, seed=42).to_json()
    assert paired_bootstrap(MAE, y, champ, chall, seed=42).to_json() == first
    other = paired_bootstrap(MAE, y, champ, chall, seed=43).to_json()
    assert other["interval"] != first["interval"] and other["improvement"] == first["improvement"]
    y2, c2, d2 = _classification(np.random.default_rng(12), 300, champion_signal=0.5, challenger_signal=0.7)
    assert paired_bootstrap(AUC, y2, c2, d2, seed=5).to_json() == paired_bootstrap(AUC, y2, c2, d2, seed=5).to_json()


def test_a_higher_confidence_is_more_cautious() -> None:
    y, champ, chall = _pairs(np.random.default_rng(13), 300, champion_noise=2.2, challenger_noise=2.0)
    bounds = [paired_bootstrap(MAE, y, champ, chall, seed=1, confidence=c).lower_bound for c in (0.8, 0.9, 0.95, 0.99)]
    assert bounds == sorted(bounds, reverse=True)
    boot = paired_bootstrap(MAE, y, champ, chall, seed=1, confidence=0.9)
    assert boot.interval[0] <= boot.lower_bound <= boot.interval[1]  # the one-sided bound is inside the two-sided interval


def test_undefined_resamples_give_no_evidence() -> None:
    from retune.metrics import Metric

    def distinct_only(y, s) -> float:  # undefined when a row is drawn twice: almost every resample
        if len(np.unique(y)) < len(y):
            raise ValueError("undefined")
        return float(np.mean(np.abs(y - s)))

    metric = Metric("custom", "regression", "minimize", False, distinct_only)
    y = np.arange(50.0)
    boot = paired_bootstrap(metric, y, y + 5.0, y, seed=1, resamples=200)
    assert boot.improvement == 5.0
    assert boot.valid_resamples < 100 and not boot.significant and boot.share_not_better == 1.0


def test_no_champion_passes_and_missing_predictions_fail(gate_cfg) -> None:
    gates = run_gates(gate_cfg(), "mae", 1.0, None)
    assert next(g for g in gates if g.name == "significant_improvement").detail == "no champion yet"
    gate = next(g for g in run_gates(gate_cfg(), "mae", 1.0, 5.0) if g.name == "significant_improvement")
    assert gate.passed is False and "per-row predictions" in gate.detail
    metric = get_metric("mae", "regression")
    broken = apply_gates(
        gate_cfg(),
        metric,
        challenger={"mae": 1.0, LATENCY: 1.0},
        champion=None,
        staging=OK,
        predictions_match=True,
        champion_error="champion v3 could not score the holdout: missing column",
    )
    sig = next(g for g in broken if g.name == "significant_improvement")
    assert sig.passed is True and "missing column" in sig.detail


def test_mismatched_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap(MAE, np.zeros(5), np.zeros(5), np.zeros(4))


def test_predict_scores_match_what_the_metric_scores() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=80)})
    y = (X["a"] + rng.normal(0, 0.5, 80) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    for name in ("roc_auc", "accuracy", "log_loss"):
        metric = get_metric(name, "classification")
        assert metric.fn(y, predict_scores(metric, model, X)) == pytest.approx(metric.score(model, X, y))


def test_validation_config_bootstrap_defaults_and_bounds(make_cfg) -> None:
    from pydantic import ValidationError

    cfg = make_cfg()
    assert cfg.validation.confidence == 0.95 and cfg.validation.bootstrap_resamples == 1000
    assert make_cfg({"validation": {"confidence": 0.99, "bootstrap_resamples": 500}}).validation.confidence == 0.99
    for bad in ({"confidence": 1.0}, {"confidence": 0.4}, {"bootstrap_resamples": 10}):
        with pytest.raises((ValidationError, ValueError)):
            make_cfg({"validation": bad})


@pytest.mark.parametrize("validation", [{}, {"min_improvement": 0.01}, {"min_absolute_improvement": 0.1}])
@pytest.mark.parametrize("champion", [None, 5.0])
@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_challenger_without_a_finite_score_never_passes(gate_cfg, validation, champion, score) -> None:
    """NaN compares False both ways: MLflow's relative threshold let it through. Refused
    with or without a champion, whatever the margins."""
    gates = run_gates(gate_cfg(**validation), "mae", score, champion)
    beats = next(g for g in gates if g.name == "beats_champion")
    assert beats.passed is False and "not a finite number" in beats.detail
    assert not all(g.passed for g in gates)


# --------------------------------------------------------------------------- training window


def test_a_challenger_of_an_older_window_never_replaces_a_newer_champion() -> None:
    from datetime import UTC, datetime

    from retune.validation import training_window_gate

    gate = training_window_gate(datetime(2025, 4, 20, tzinfo=UTC), "1", "2025-08-28T00:00:00+00:00")
    assert gate.name == "training_window" and gate.passed is False
    assert "up to 2025-04-20T00:00:00+00:00, champion v1 up to 2025-08-28T00:00:00+00:00" in gate.detail
    assert "never replaces" in gate.detail


@pytest.mark.parametrize(
    ("end", "version", "champion_end", "detail"),
    [
        ("2025-08-28", "1", "2025-08-28T00:00:00+00:00", "up to 2025-08-28T00:00:00+00:00, champion v1 up to"),  # same window
        ("2025-09-01", "1", "2025-08-28T00:00:00+00:00", "up to 2025-09-01T00:00:00+00:00, champion v1 up to"),
        ("2025-04-20", None, None, "no champion yet"),
        ("2025-04-20", "2", None, "champion v2 records no training window end"),
        ("2025-04-20", "2", "", "champion v2 records no training window end"),
        ("2025-04-20", "2", "yesterday", "is no date: not compared"),
        (None, "1", "2025-08-28T00:00:00+00:00", "a window without an end"),
    ],
)
def test_the_training_window_gate_passes_an_equal_or_newer_window_or_nothing_to_compare(
    end: str | None, version: str | None, champion_end: str | None, detail: str
) -> None:
    from retune.config import parse_timestamp
    from retune.validation import training_window_gate

    gate = training_window_gate(parse_timestamp(end) if end else None, version, champion_end)
    assert gate.passed is True and detail in gate.detail


# --------------------------------------------------------------------------- class sets


class _Classifier:
    def __init__(self, classes: list[str], proba: np.ndarray) -> None:
        self.classes_, self.proba = np.asarray(classes), proba

    def predict_proba(self, X):
        return self.proba


@pytest.mark.parametrize("name", ["log_loss", "roc_auc"])
def test_models_of_different_class_sets_are_compared_on_a_holdout_without_a_class(name: str) -> None:
    """The champion was trained while class 'c' existed; it is gone from the holdout and from
    the challenger. Scoring the champion raised ValueError, so it was skipped as broken and
    the challenger promoted uncompared; a multi-class holdout without a class failed every
    resample."""
    from retune.metrics import class_labels

    rng = np.random.default_rng(3)
    n = 300
    y = rng.choice(["a", "b"], n)
    signal = (y == "b").astype(float)
    champ_p = rng.dirichlet([2, 2, 1], n)
    champ_p[:, 1] += 0.3 * signal
    champ_p /= champ_p.sum(axis=1, keepdims=True)
    chall_b = np.clip(0.3 + 0.4 * signal + rng.normal(0, 0.15, n), 0.01, 0.99)
    champion = _Classifier(["a", "b", "c"], champ_p)
    challenger = _Classifier(["a", "b"], np.column_stack([1 - chall_b, chall_b]))
    metric = get_metric(name, "classification")
    labels = class_labels(y, challenger, champion)
    champ, chall = predict_scores(metric, champion, None, labels=labels), predict_scores(metric, challenger, None, labels=labels)
    assert champ.shape == chall.shape == (n, 3)
    boot = paired_bootstrap(metric, y, champ, chall, resamples=200, seed=1, labels=labels)
    assert boot.valid_resamples == 200
    assert boot.champion == pytest.approx(metric.score(champion, None, y))
    assert boot.challenger == pytest.approx(metric.score(challenger, None, y))
    assert boot.significant  # the challenger separates a from b far better

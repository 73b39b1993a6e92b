"""retune.validation: the gates a challenger must pass before it becomes champion."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from retune.metrics import get_metric
from retune.validation import LATENCY, Gate, apply_gates, gates_json, latency_ms_per_1k

OK = {"ok": True, "error": None, "predictions": [1.0]}


@pytest.fixture
def gate_cfg(make_cfg):
    """A config with the given ``validation`` section and metric (regression task)."""

    def build(metric: str = "mae", **validation):
        return make_cfg({"metric": {"name": metric}, "validation!": validation})

    return build


def run_gates(cfg, metric_name: str, challenger: float, champion: float | None, *, latency: float = 1.0, staging=OK, match=True):
    metric = get_metric(metric_name, "regression")
    return apply_gates(
        cfg,
        metric,
        challenger={metric_name: challenger, LATENCY: latency},
        champion=None if champion is None else {metric_name: champion, LATENCY: latency},
        staging=staging,
        predictions_match=match,
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
    gates = run_gates(cfg, "mae", 2.0, 3.0, latency=5.0)
    assert [g.name for g in gates] == ["staging_load", "beats_champion", "metric_threshold", "latency"]
    assert all(g.passed for g in gates)
    data = gates_json(gates)
    assert data[0] == {"name": "staging_load", "passed": True, "detail": "predictions match"}


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

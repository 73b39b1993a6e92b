"""retune.drift: Evidently drift per column, per-column policy, and the dataset verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from retune.config import DriftConfig
from retune.drift import ColumnDriftResult, DriftSummary, EvidentlyDriftDetector, summarize

N = 1000
NUMERICAL = ["shifted", "stable"]
CATEGORICAL = ["channel", "region"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current windows: ``shifted`` moves by 1.5 sd and ``channel`` changes its
    mix; ``stable`` and ``region`` are drawn from the same distribution in both."""
    ref_rng, cur_rng = np.random.default_rng(11), np.random.default_rng(12)
    reference = pd.DataFrame(
        {
            "shifted": ref_rng.normal(0.0, 1.0, N),
            "stable": ref_rng.normal(5.0, 2.0, N),
            "channel": ref_rng.choice(["store", "online", "app"], N, p=[0.7, 0.25, 0.05]),
            "region": ref_rng.choice(["north", "south", "east"], N),
        }
    )
    current = pd.DataFrame(
        {
            "shifted": cur_rng.normal(1.5, 1.0, N),
            "stable": cur_rng.normal(5.0, 2.0, N),
            "channel": cur_rng.choice(["store", "online", "app"], N, p=[0.3, 0.3, 0.4]),
            "region": cur_rng.choice(["north", "south", "east"], N),
        }
    )
    return reference, current


def detect(frames, policy: DriftConfig, **kwargs):
    reference, current = frames
    return EvidentlyDriftDetector(**kwargs).detect(
        reference, current, numerical=NUMERICAL, categorical=CATEGORICAL, policy=policy
    )


@pytest.fixture(scope="module")
def default_result(frames):
    return detect(frames, DriftConfig(), html=False)


def by_column(summary: DriftSummary) -> dict[str, ColumnDriftResult]:
    return {c.column: c for c in summary.columns}


# --------------------------------------------------------------------------- detection


def test_shifted_columns_drift_and_identical_ones_do_not(default_result) -> None:
    cols = by_column(default_result.summary)
    assert set(cols) == set(NUMERICAL + CATEGORICAL)
    assert cols["shifted"].drifted and cols["channel"].drifted
    assert not cols["stable"].drifted and not cols["region"].drifted
    assert cols["shifted"].type == "numerical" and cols["channel"].type == "categorical"


def test_verdict_agrees_with_score_and_threshold(default_result) -> None:
    # Evidently's defaults at this size are p-value tests: drifted when p < threshold.
    for col in default_result.summary.columns:
        assert 0.0 <= col.score <= 1.0
        assert col.drifted == (col.score < col.threshold), col


def test_dataset_verdict_uses_the_configured_share(default_result, frames) -> None:
    summary = default_result.summary
    assert (summary.n_columns, summary.n_drifted, summary.drift_share) == (4, 2, 0.5)
    assert summary.drift_share_threshold == 0.5
    assert summary.drift_detected is True  # 2 of 4 reaches 0.5
    stricter = detect(frames, DriftConfig(drift_share=0.75), html=False).summary
    assert stricter.n_drifted == 2 and stricter.drift_detected is False


def test_drifted_columns_come_first(default_result) -> None:
    summary = default_result.summary
    assert [c.column for c in summary.columns[:2]] == ["channel", "shifted"]
    assert [c.column for c in summary.drifted_columns] == ["channel", "shifted"]


def test_per_column_method_and_threshold_are_honoured(frames, default_result) -> None:
    policy = DriftConfig(
        columns={
            "stable": {"method": "wasserstein", "threshold": 0.3},
            "region": {"method": "psi", "threshold": 0.2},
            "shifted": {"threshold": 1e-300},
        }
    )
    cols = by_column(detect(frames, policy, html=False).summary)

    assert "wasserstein" in cols["stable"].method.lower()
    assert cols["stable"].threshold == pytest.approx(0.3)
    assert not cols["stable"].drifted
    assert "psi" in cols["region"].method.lower()
    assert cols["region"].threshold == pytest.approx(0.2)
    # only the threshold of `shifted` is set: its method stays the default of the column type
    assert cols["shifted"].threshold == pytest.approx(1e-300)
    defaults = by_column(default_result.summary)
    assert cols["shifted"].method == defaults["shifted"].method
    # an unlisted column keeps the defaults
    assert (cols["channel"].method, cols["channel"].threshold) == (defaults["channel"].method, defaults["channel"].threshold)
    assert defaults["stable"].method != cols["stable"].method and defaults["region"].method != cols["region"].method


def test_per_column_threshold_changes_the_verdict(frames) -> None:
    # The same column and the same test: a tiny threshold on a distance calls even an
    # identical distribution drifted, a large one does not.
    strict = DriftConfig(columns={"stable": {"method": "wasserstein", "threshold": 1e-6}})
    lenient = DriftConfig(columns={"stable": {"method": "wasserstein", "threshold": 0.5}})
    s = by_column(detect(frames, strict, html=False).summary)["stable"]
    le = by_column(detect(frames, lenient, html=False).summary)["stable"]
    assert s.score == pytest.approx(le.score)
    assert s.drifted and not le.drifted


def test_global_method_and_threshold_apply_to_every_column(frames) -> None:
    cols = by_column(detect(frames, DriftConfig(method="psi", threshold=0.15), html=False).summary)
    assert {c.method for c in cols.values()} == {"PSI"}
    assert {c.threshold for c in cols.values()} == {0.15}
    assert cols["shifted"].drifted and not cols["stable"].drifted


def test_html_report_is_optional(frames, default_result) -> None:
    assert default_result.html is None
    reference, current = frames
    small = EvidentlyDriftDetector(html=True).detect(
        reference.head(200), current.head(200), numerical=["stable"], categorical=[], policy=DriftConfig()
    )
    assert small.html is not None and "<html" in small.html.lower()


# --------------------------------------------------------------------------- summarize


def col(name: str, drifted: bool, score: float = 0.5) -> ColumnDriftResult:
    return ColumnDriftResult(name, "numerical", "K-S p_value", score, 0.05, drifted)


@pytest.mark.parametrize(
    ("flags", "threshold", "expected"),
    [
        ([True, False, False, False], 0.25, True),  # exactly at the threshold: drifted (>=)
        ([True, False, False, False], 0.26, False),
        ([True, True, False, False], 0.5, True),
        ([True, False, False], 1 / 3, True),
        ([False, False, False], 0.01, False),
        ([True, True, True], 1.0, True),
        ([True, True, False], 1.0, False),
    ],
)
def test_summarize_share_threshold_is_inclusive(flags: list[bool], threshold: float, expected: bool) -> None:
    summary = summarize([col(f"c{i}", f) for i, f in enumerate(flags)], threshold)
    assert summary.n_columns == len(flags)
    assert summary.n_drifted == sum(flags)
    assert summary.drift_share == pytest.approx(sum(flags) / len(flags))
    assert summary.drift_detected is expected


def test_summarize_without_columns_is_no_drift() -> None:
    summary = summarize([], 0.5)
    assert (summary.n_columns, summary.drift_share, summary.drift_detected) == (0, 0.0, False)


def test_summarize_orders_drifted_then_by_name() -> None:
    summary = summarize([col("b", False), col("z", True), col("a", False), col("c", True)], 0.5)
    assert [c.column for c in summary.columns] == ["c", "z", "a", "b"]


# --------------------------------------------------------------------------- JSON


def test_to_json_is_strict_json(default_result) -> None:
    data = default_result.summary.to_json()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["drifted_columns"] == ["channel", "shifted"]
    assert back["n_drifted"] == 2 and back["drift_detected"] is True
    assert {c["column"] for c in back["columns"]} == set(NUMERICAL + CATEGORICAL)


def test_to_json_turns_a_non_finite_score_into_null() -> None:
    summary = summarize([col("a", True, score=math.inf), col("b", False, score=math.nan)], 0.5)
    data = summary.to_json()
    assert [c["score"] for c in data["columns"]] == [None, None]
    json.dumps(data, allow_nan=False)
    assert summary.columns[0].score == math.inf  # the summary itself is not modified


def test_to_json_turns_a_missing_threshold_into_null() -> None:
    result = ColumnDriftResult("a", "numerical", "custom", 0.1, float("nan"), False)
    json.dumps(summarize([result], 0.5).to_json(), allow_nan=False)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_without_nan_is_missing_and_a_shift_still_drifts(value: float) -> None:
    """Evidently drops inf only from a column that also has a NaN: with inf alone Wasserstein
    (its test above 1,000 reference rows) scored NaN, never above the threshold, so the shifted
    column was not drifted. Callers that skip check_frame (the benchmarks, the library API)
    passed such frames."""
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"shifted": rng.normal(0.0, 1.0, 2000), "channel": rng.choice(["a", "b"], 2000)})
    current = pd.DataFrame({"shifted": rng.normal(1.5, 1.0, 2000), "channel": rng.choice(["a", "b"], 2000)})
    current.loc[current.index[:5], "shifted"] = value
    before = current.copy()
    result = EvidentlyDriftDetector(html=False).detect(
        reference, current, numerical=["shifted"], categorical=["channel"], policy=DriftConfig()
    )
    shifted = by_column(result.summary)["shifted"]
    assert shifted.method == "Wasserstein distance (normed)"
    assert shifted.drifted and math.isfinite(shifted.score)
    pd.testing.assert_frame_equal(current, before)  # the caller's frame is left alone

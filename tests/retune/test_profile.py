"""retune.profile: the profiled drift check gives Evidently's verdicts and scores, faster."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retune.config import DriftConfig
from retune.drift import ALL_MISSING, DriftSummary, EvidentlyDriftDetector
from retune.errors import DataError
from retune.profile import ProfiledDriftDetector, reference_digest, wasserstein_sorted

NUMERICAL = ["shifted", "stable", "skewed", "few"]
CATEGORICAL = ["channel", "region", "code"]


def make_frames(n: int, m: int, *, shift: float, mix: bool, nan: bool, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current windows. ``shift`` moves ``shifted`` (in sd) and ``skewed``
    (scale); ``mix`` changes the category mix of ``channel``; ``nan`` sprinkles missing values."""
    r, c = np.random.default_rng(seed), np.random.default_rng(seed + 1)

    def frame(rng: np.random.Generator, size: int, *, current: bool) -> pd.DataFrame:
        p = [0.3, 0.3, 0.4] if current and mix else [0.7, 0.25, 0.05]
        df = pd.DataFrame(
            {
                "shifted": rng.normal(shift if current else 0.0, 1.0, size),
                "stable": rng.normal(5.0, 2.0, size),
                "skewed": rng.exponential(1.0 + (shift / 2 if current else 0.0), size),
                "few": rng.integers(0, 4 if current and mix else 3, size).astype(float),
                "channel": rng.choice(["store", "online", "app"], size, p=p),
                "region": rng.choice(["north", "south", "east", "west"], size),
                "code": rng.integers(0, 6, size),  # an integer column declared categorical
            }
        )
        if nan:
            for col in ("shifted", "few", "channel"):
                df.loc[rng.choice(size, size // 20, replace=False), col] = np.nan if col != "channel" else None
        return df

    return frame(r, n, current=False), frame(c, m, current=True)


def both(reference: pd.DataFrame, current: pd.DataFrame, policy: DriftConfig) -> tuple[DriftSummary, DriftSummary]:
    kwargs = {"numerical": NUMERICAL, "categorical": CATEGORICAL, "policy": policy}
    evidently = EvidentlyDriftDetector(html=False).detect(reference, current, **kwargs).summary
    profiled = ProfiledDriftDetector().detect(reference, current, **kwargs).summary
    return evidently, profiled


def assert_same(evidently: DriftSummary, profiled: DriftSummary) -> None:
    assert profiled.drift_detected == evidently.drift_detected
    assert profiled.n_drifted == evidently.n_drifted
    ev = {c.column: c for c in evidently.columns}
    assert sorted(ev) == sorted(c.column for c in profiled.columns)
    for col in profiled.columns:
        ref = ev[col.column]
        assert (col.method, col.type, col.drifted) == (ref.method, ref.type, ref.drifted), col
        if col.method == ALL_MISSING:  # untestable: no score, no threshold
            assert math.isnan(col.score) and math.isnan(ref.score) and math.isnan(col.threshold) and math.isnan(ref.threshold)
            continue
        assert col.threshold == ref.threshold, (col, ref)
        assert math.isclose(col.score, ref.score, rel_tol=1e-9, abs_tol=1e-12), (col, ref)


@pytest.mark.parametrize(
    ("name", "n", "m", "shift", "mix", "nan"),
    [
        ("shifted", 4000, 3000, 1.0, True, False),
        ("unshifted", 3000, 3000, 0.0, False, False),
        ("categorical_only_shift", 2500, 3500, 0.0, True, False),
        ("nan", 3000, 2000, 0.5, True, True),
        ("small_reference", 800, 1200, 0.5, True, True),
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy chi-square on a category absent from one window
def test_same_verdicts_and_scores_as_evidently(name: str, n: int, m: int, shift: float, mix: bool, nan: bool) -> None:
    reference, current = make_frames(n, m, shift=shift, mix=mix, nan=nan, seed=len(name))
    evidently, profiled = both(reference, current, DriftConfig(drift_share=0.3))
    assert_same(evidently, profiled)
    if name == "shifted":
        assert {c.column for c in profiled.drifted_columns} >= {"shifted", "channel"}
    if name == "unshifted":
        assert not profiled.drifted_columns


def test_configured_methods_and_thresholds_follow_the_policy() -> None:
    reference, current = make_frames(3000, 3000, shift=0.3, mix=True, nan=True, seed=7)
    policy = DriftConfig(
        threshold=0.05,
        columns={"shifted": {"method": "ks", "threshold": 0.01}, "region": {"method": "psi"}, "stable": {"threshold": 0.2}},
        drift_share=0.5,
    )
    evidently, profiled = both(reference, current, policy)
    assert_same(evidently, profiled)
    methods = {c.column: c.method for c in profiled.columns}
    assert methods["shifted"] == "K-S p_value" and methods["region"] == "PSI"


def test_profile_is_built_once_per_reference_and_rebuilt_when_it_changes() -> None:
    reference, current = make_frames(2000, 2000, shift=0.5, mix=False, nan=False, seed=3)
    detector = ProfiledDriftDetector(cache_size=2)
    first = detector.profile(reference, numerical=NUMERICAL, categorical=CATEGORICAL)
    assert detector.profile(reference.copy(), numerical=NUMERICAL, categorical=CATEGORICAL) is first
    changed = reference.copy()
    changed.loc[0, "stable"] += 1.0
    assert reference_digest(changed, NUMERICAL, CATEGORICAL) != first.digest
    assert detector.profile(changed, numerical=NUMERICAL, categorical=CATEGORICAL) is not first
    result = detector.detect(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL, policy=DriftConfig())
    assert result.html is None and result.summary.n_columns == len(NUMERICAL) + len(CATEGORICAL)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (9, 4), (1000, 1000), (1000, 999), (317, 1201)])
@pytest.mark.parametrize("ties", [False, True])
def test_wasserstein_sorted_matches_scipy(n: int, m: int, ties: bool) -> None:
    from scipy import stats

    rng = np.random.default_rng(n * 31 + m)
    u = rng.integers(0, 5, n).astype(float) if ties else rng.normal(size=n)
    v = rng.integers(0, 6, m).astype(float) if ties else rng.normal(0.3, 1.4, size=m)
    expected = stats.wasserstein_distance(u, v)
    assert math.isclose(wasserstein_sorted(np.sort(u), np.sort(v)), expected, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("where", ["current", "reference", "both"])
@pytest.mark.parametrize("column", ["stable", "channel"])
def test_an_empty_column_is_reported_like_evidently(where: str, column: str) -> None:
    """drift.py's contract: a feature with no value in a window is reported (method "all values
    missing"), drifted when empty in one window only. The profiled detector raised ValueError
    ("An empty column ...") instead, so the fast path failed the check the default one passed."""
    reference, current = make_frames(2000, 2000, shift=0.0, mix=False, nan=False, seed=5)
    for frame in {"current": [current], "reference": [reference], "both": [current, reference]}[where]:
        frame[column] = np.nan if column == "stable" else None
    evidently, profiled = both(reference, current, DriftConfig(drift_share=0.3))
    assert_same(evidently, profiled)
    [empty] = [c for c in profiled.columns if c.column == column]
    assert empty.method == ALL_MISSING and empty.drifted is (where != "both") and math.isnan(empty.score)
    assert profiled.n_columns == len(NUMERICAL) + len(CATEGORICAL)


def test_an_inf_only_column_is_empty_too() -> None:
    reference, current = make_frames(2000, 2000, shift=0.0, mix=False, nan=False, seed=5)
    current["stable"] = np.inf
    evidently, profiled = both(reference, current, DriftConfig())
    assert_same(evidently, profiled)
    assert next(c for c in profiled.columns if c.column == "stable").method == ALL_MISSING


def test_inf_without_nan_gives_the_same_verdicts_as_evidently() -> None:
    """Evidently scored a numerical column with inf but no NaN as NaN (not drifted) and took
    -inf in a float categorical column for a category; the profiled detector drops both."""
    reference, current = make_frames(3000, 3000, shift=1.0, mix=False, nan=False, seed=9)
    current.loc[current.index[:5], "shifted"] = np.inf
    current.loc[current.index[5:9], "few"] = -np.inf
    current["code"] = current["code"].astype(float)
    current.loc[current.index[9:12], "code"] = np.inf
    evidently, profiled = both(reference, current, DriftConfig(drift_share=0.3))
    assert_same(evidently, profiled)
    assert "shifted" in {c.column for c in evidently.drifted_columns}


@pytest.mark.parametrize("label", ["reference", "current"])
def test_an_empty_window_is_a_data_error_like_evidently(label: str) -> None:
    reference, current = make_frames(2000, 2000, shift=0.0, mix=False, nan=False, seed=5)
    frames = {"reference": reference, "current": current}
    frames[label] = frames[label].iloc[:0]
    for detector in (EvidentlyDriftDetector(html=False), ProfiledDriftDetector()):
        with pytest.raises(DataError, match=f"drift check: the {label} window has no rows"):
            detector.detect(**frames, numerical=NUMERICAL, categorical=CATEGORICAL, policy=DriftConfig())

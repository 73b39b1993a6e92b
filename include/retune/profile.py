"""A fast drift check from a precomputed reference profile, with Evidently's verdicts.

The reference window of a monitored model changes rarely (it is the champion's training
data), yet Evidently's ``DataDriftPreset`` re-reads and re-tests it on every check.
:class:`ProfiledDriftDetector` profiles the reference once (per content digest) and then
computes, per column, the same statistic as Evidently's default test:

- numerical column, more than 1,000 reference rows, more than 5 distinct values:
  Wasserstein distance normed by the reference's standard deviation (drift at >= 0.1);
  the reference is kept sorted, so a check sorts only the current window and integrates
  the difference of the two quantile functions in linear time;
- categorical column (or a numerical one with at most 5 distinct values), more than 1,000
  reference rows: Jensen-Shannon distance of the category frequencies (drift at >= 0.1);
  the reference frequencies are kept;
- anything else (a small reference, a ``method`` other than ``wasserstein`` or
  ``jensenshannon`` in the config): Evidently's own test function on the cleaned columns.

An empty window is a :class:`~retune.errors.DataError`, and a feature with no value in a
window is reported as :class:`~retune.drift.EvidentlyDriftDetector` reports it (method
``all values missing``, drifted when empty in one window only; see
:func:`retune.drift.missing_columns`). NaN and infinite values are dropped per column first,
as Evidently does. Scores agree
with Evidently's to floating-point rounding, so verdicts differ only for a score within
about 1e-9 of its threshold. The verdict makes no HTML report; when the detector's ``report`` rule asks for one
(:func:`retune.drift.wants_report`: by default for a drifted window only), Evidently's preset
runs on the same windows for the report, and the verdict stays this detector's (a column
whose verdict differs, a score at its threshold, is logged as a warning).

It is the default ``drift.detector`` (:func:`retune.drift.detector_for`; ``evidently`` runs
the preset on every check instead). In a monitor task, a fresh process, every check builds the
profile it uses; the cache pays off in a long-lived process that checks the same reference again.

Example:
    >>> import numpy as np, pandas as pd
    >>> from retune.config import DriftConfig
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=5000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1, size=5000)})
    >>> result = ProfiledDriftDetector().detect(ref, cur, numerical=["x"], categorical=[], policy=DriftConfig())
    >>> result.summary.drift_detected, result.summary.columns[0].method
    (True, 'Wasserstein distance (normed)')
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from retune.config import DriftConfig, ReportRule
from retune.drift import (
    ColumnDriftResult,
    DriftDetector,
    DriftResult,
    EvidentlyDriftDetector,
    split_untestable,
    summarize,
    wants_report,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SMALL_REFERENCE_ROWS = 1000  # Evidently: at most this many reference rows -> KS / chi-square / z-test
FEW_VALUES = 5  # Evidently: a numerical column with at most this many values -> Jensen-Shannon
WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
DISPLAY = {WASSERSTEIN: "Wasserstein distance (normed)", JENSEN_SHANNON: "Jensen-Shannon distance"}
DEFAULT_THRESHOLD = {WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1}


@dataclass(frozen=True)
class NumericalProfile:
    """One numerical reference column: its finite values sorted, their std and, for a
    column with few distinct values, their counts."""

    sorted_values: np.ndarray
    std: float
    n_unique: int
    counts: dict[Any, int] | None

    @property
    def n(self) -> int:
        """Finite reference values."""
        return int(self.sorted_values.shape[0])


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical reference column: the count of each category (missing dropped)."""

    counts: dict[Any, int]
    n: int


@dataclass
class ReferenceProfile:
    """What a drift check needs to know about the reference, computed once."""

    digest: str
    rows: int
    columns: dict[str, NumericalProfile | CategoricalProfile] = field(default_factory=dict)


def clean_numeric(values: pd.Series) -> np.ndarray:
    """The finite values of a numerical column as float64 (NaN and +-inf dropped)."""
    import numpy as np

    arr = values.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(arr)
    return arr if finite.all() else arr[finite]


def clean_categorical(values: pd.Series) -> pd.Series:
    """A categorical column without missing values (and without +-inf, as Evidently)."""
    import numpy as np

    if values.dtype.kind == "f":
        values = values.replace([np.inf, -np.inf], np.nan)
    return values.dropna()


def _counts(values: pd.Series) -> dict[Any, int]:
    return {k: int(v) for k, v in values.value_counts(dropna=True, sort=False).items()}


def reference_digest(reference: pd.DataFrame, numerical: list[str], categorical: list[str]) -> str:
    """A digest of the reference columns a check uses (names, types, every value).

    Args:
        reference: The reference rows.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.

    Returns:
        A hex digest.
    """
    import numpy as np
    import pandas as pd

    h = hashlib.sha256()  # hardware-accelerated on most CPUs: about 1.5 GB/s
    h.update(repr((numerical, categorical, len(reference))).encode())
    for name in [*numerical, *categorical]:
        col = reference[name]
        h.update(f"{name}\0{col.dtype}\0".encode())
        arr = col.to_numpy()
        if arr.dtype.kind in "biufcmM":
            h.update(cast("Any", np.ascontiguousarray(arr).view(np.uint8)))
        else:
            h.update(pd.util.hash_pandas_object(col, index=False).to_numpy().tobytes())
    return h.hexdigest()


def build_profile(
    reference: pd.DataFrame, *, numerical: list[str], categorical: list[str], digest: str | None = None
) -> ReferenceProfile:
    """Profile the reference columns.

    Args:
        reference: The reference rows.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.
        digest: The reference digest, if already known.

    Returns:
        The profile.
    """
    import numpy as np

    profile = ReferenceProfile(digest=digest or reference_digest(reference, numerical, categorical), rows=len(reference))
    for name in numerical:
        values = np.sort(clean_numeric(reference[name]))
        n_unique = int(np.count_nonzero(np.diff(values)) + 1) if values.size else 0
        counts = None
        if n_unique <= FEW_VALUES:
            uniq, cnt = np.unique(values, return_counts=True)
            counts = {float(u): int(c) for u, c in zip(uniq, cnt, strict=True)}
        std = float(np.std(values)) if values.size else 0.0
        profile.columns[name] = NumericalProfile(sorted_values=values, std=std, n_unique=n_unique, counts=counts)
    for name in categorical:
        cleaned = clean_categorical(reference[name])
        profile.columns[name] = CategoricalProfile(counts=_counts(cleaned), n=len(cleaned))
    return profile


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """The first Wasserstein distance of two samples given sorted (what
    ``scipy.stats.wasserstein_distance`` computes, in linear time).

    It integrates ``|Q_u(t) - Q_v(t)|`` over ``t`` in (0, 1]. Both quantile functions are
    steps: ``Q_u`` steps at ``i / n``, ``Q_v`` at ``j / m``. On the integer grid ``t * n * m``
    those are ``i * m`` and ``j * n``, so the interval that ends at each step, and the value
    of the other quantile function on it, follow by integer arithmetic: no search, no merge.

    Args:
        u: First sample, sorted, finite, not empty.
        v: Second sample, sorted, finite, not empty.

    Returns:
        The distance.
    """
    import numpy as np

    n, m = int(u.shape[0]), int(v.shape[0])
    if n == m:
        return float(np.mean(np.abs(u - v)))
    if n * m >= 2**62:  # the integer grid would overflow: merge by value instead
        return _wasserstein_by_cdf(u, v)
    # Intervals ending at a step of u: they start at the previous step of u or of v.
    g = np.arange(1, n + 1, dtype=np.int64) * m
    start = np.maximum(g - m, n * ((g - 1) // n))
    total = np.dot((g - start).astype(float), np.abs(u - v[(g + n - 1) // n - 1]))
    # Intervals ending at a step of v (zero long where a step of u is at the same point).
    g = np.arange(1, m + 1, dtype=np.int64) * n
    start = np.maximum(g - n, m * (g // m))
    total += np.dot((g - start).astype(float), np.abs(u[(g + m - 1) // m - 1] - v))
    return float(total / (n * m))


def _wasserstein_by_cdf(u: np.ndarray, v: np.ndarray) -> float:
    import numpy as np

    n, m = int(u.shape[0]), int(v.shape[0])
    at_v = np.searchsorted(u, v, side="right") + np.arange(m)
    merged = np.empty(n + m)
    is_v = np.zeros(n + m, dtype=bool)
    is_v[at_v] = True
    merged[is_v] = v
    merged[~is_v] = u
    cdf_u = np.cumsum(~is_v)[:-1] / n
    cdf_v = np.cumsum(is_v)[:-1] / m
    return float(np.dot(np.abs(cdf_u - cdf_v), np.diff(merged)))


def jensen_shannon(ref_counts: dict[Any, int], n_ref: int, cur_counts: dict[Any, int], n_cur: int) -> float:
    """Evidently's Jensen-Shannon distance of two frequency tables (natural log)."""
    import numpy as np
    from scipy.spatial import distance

    keys = list(set(ref_counts) | set(cur_counts))
    p = np.array([ref_counts.get(k, 0) / n_ref for k in keys])
    q = np.array([cur_counts.get(k, 0) / n_cur for k in keys])
    return float(distance.jensenshannon(p, q))


class ProfiledDriftDetector(DriftDetector):
    """Evidently's default drift tests from a cached reference profile.

    Args:
        cache_size: Reference profiles kept (by digest), least recently used dropped first.
        report: When to add Evidently's HTML report (:func:`retune.drift.wants_report`):
            ``never`` (the default here), ``on_drift`` or ``always``.
    """

    def __init__(self, *, cache_size: int = 4, report: ReportRule = "never") -> None:
        self.cache_size = cache_size
        self.report: ReportRule = report
        self._cache: OrderedDict[str, ReferenceProfile] = OrderedDict()
        self._lock = threading.Lock()

    def profile(self, reference: pd.DataFrame, *, numerical: list[str], categorical: list[str]) -> ReferenceProfile:
        """The reference's profile: from the cache when its digest is known, else built now.

        Args:
            reference: The reference rows.
            numerical: Numerical feature columns.
            categorical: Categorical feature columns.

        Returns:
            The profile.
        """
        digest = reference_digest(reference, numerical, categorical)
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                return cached
        built = build_profile(reference, numerical=numerical, categorical=categorical, digest=digest)
        with self._lock:
            self._cache[digest] = built
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return built

    def detect(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        numerical: list[str],
        categorical: list[str],
        policy: DriftConfig,
    ) -> DriftResult:
        testable_num, testable_cat, untestable = split_untestable(
            reference, current, numerical=numerical, categorical=categorical
        )
        profile = self.profile(reference, numerical=testable_num, categorical=testable_cat)
        results = [self._column(name, "numerical", profile, reference, current, policy) for name in testable_num] + [
            self._column(name, "categorical", profile, reference, current, policy) for name in testable_cat
        ]
        summary = summarize(results + untestable, policy.drift_share)
        if not wants_report(self.report, summary.drift_detected):
            return DriftResult(summary=summary, html=None)
        report = EvidentlyDriftDetector(report="always").detect(
            reference, current, numerical=numerical, categorical=categorical, policy=policy
        )
        theirs = {c.column: c.drifted for c in report.summary.columns}
        differ = sorted(c.column for c in summary.columns if theirs.get(c.column, c.drifted) != c.drifted)
        if differ:
            log.warning(
                "drift report: Evidently's verdict differs from the profile's for %s (a score at its threshold); "
                "the check's verdict is the profile's, the report shows Evidently's",
                differ,
            )
        return DriftResult(summary=summary, html=report.html)

    def _column(
        self,
        name: str,
        kind: str,
        profile: ReferenceProfile,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        policy: DriftConfig,
    ) -> ColumnDriftResult:
        import numpy as np

        col_policy = policy.columns.get(name)
        method = (col_policy.method if col_policy and col_policy.method else None) or policy.method
        threshold = col_policy.threshold if col_policy and col_policy.threshold is not None else policy.threshold
        ref = profile.columns[name]
        if ref.n == 0:
            raise ValueError(f"An empty column '{name}' was provided for drift calculation in the reference dataset.")
        if method not in (None, WASSERSTEIN, JENSEN_SHANNON) or (method is None and ref.n <= SMALL_REFERENCE_ROWS):
            return self._evidently_column(name, kind, reference, current, method, threshold)
        if isinstance(ref, NumericalProfile):
            cur = clean_numeric(current[name])
            if cur.size == 0:
                raise ValueError(f"An empty column '{name}' was provided for drift calculation in the current dataset.")
            if method is None:
                few = ref.counts is not None and len(set(ref.counts) | set(np.unique(cur).tolist())) <= FEW_VALUES
                method = JENSEN_SHANNON if few else WASSERSTEIN
            if method == WASSERSTEIN:
                cur = np.sort(cur)
                score = wasserstein_sorted(ref.sorted_values, cur) / max(ref.std, 0.001)
            else:
                ref_counts = ref.counts
                if ref_counts is None:
                    uniq, cnt = np.unique(ref.sorted_values, return_counts=True)
                    ref_counts = dict(zip(uniq.tolist(), cnt.tolist(), strict=True))
                uniq, cnt = np.unique(cur, return_counts=True)
                if ref.n_unique > 20:  # Evidently bins a many-valued numerical column for this test
                    return self._evidently_column(name, kind, reference, current, method, threshold)
                score = jensen_shannon(ref_counts, ref.n, dict(zip(uniq.tolist(), cnt.tolist(), strict=True)), int(cur.size))
        else:
            if method == WASSERSTEIN:
                return self._evidently_column(name, kind, reference, current, method, threshold)
            cur_cat = clean_categorical(current[name])
            if cur_cat.empty:
                raise ValueError(f"An empty column '{name}' was provided for drift calculation in the current dataset.")
            method = JENSEN_SHANNON
            score = jensen_shannon(ref.counts, ref.n, _counts(cur_cat), len(cur_cat))
        limit = DEFAULT_THRESHOLD[method] if threshold is None else float(threshold)
        return ColumnDriftResult(
            column=name, type=kind, method=DISPLAY[method], score=float(score), threshold=limit, drifted=bool(score >= limit)
        )

    @staticmethod
    def _evidently_column(
        name: str,
        kind: str,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        method: str | None,
        threshold: float | None,
    ) -> ColumnDriftResult:
        """One column through Evidently's own test function (small references, other tests)."""
        import numpy as np
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType

        ctype = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
        ref = reference[name].replace([-np.inf, np.inf], np.nan).dropna()
        cur = current[name].replace([-np.inf, np.inf], np.nan).dropna()
        for label, values in (("reference", ref), ("current", cur)):
            if values.empty:
                raise ValueError(f"An empty column '{name}' was provided for drift calculation in the {label} dataset.")
        test = get_stattest(ref, cur, ctype, method)
        result = test(ref, cur, ctype, threshold)
        score = float(result.drift_score)
        return ColumnDriftResult(
            column=name,
            type=kind,
            method=test.display_name,
            score=score if math.isfinite(score) else float("nan"),
            threshold=float(result.actual_threshold),
            drifted=bool(result.drifted),
        )

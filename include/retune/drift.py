"""Data drift between the model's reference data and a production window.

The detector is pluggable (:class:`DriftDetector`); the config's ``drift.detector`` picks one
(:func:`detector_for`). :class:`EvidentlyDriftDetector` runs Evidently 0.7's
``DataDriftPreset`` with the column types declared in the config (a ``DataDefinition``;
Evidently never infers them here) and the per-column methods and thresholds of the config's
``drift`` section; the default, :class:`retune.profile.ProfiledDriftDetector`, computes the
same statistics from a reference profile. Either logs Evidently's HTML report when the
config's ``drift.report`` rule asks for it (:func:`wants_report`; by default for a drifted
window only).

Infinite values are missing values (NaN) for every test. A feature with no value at all
(every cell NaN, None or inf) in one of the two windows
cannot be tested; :func:`missing_columns` reports it instead, with method
:data:`ALL_MISSING`, no score, and drifted when it is empty in one window only (its values
stopped or started arriving), not when it is empty in both. Constant columns are tested as
any other (equal constants: no drift; different ones: drift). An empty window is a
:class:`~retune.errors.DataError`.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=500)})
    >>> cur = pd.DataFrame({"x": rng.normal(3, size=500)})
    >>> result = EvidentlyDriftDetector().detect(ref, cur, numerical=["x"], categorical=[], policy=DriftConfig())
    >>> result.summary.drift_detected
    True
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retune.config import DriftConfig, ReportRule
from retune.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ColumnDriftResult:
    """One column's drift test."""

    column: str
    type: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """A small, JSON-safe summary of a drift check."""

    drift_share: float
    n_columns: int
    n_drifted: int
    drift_share_threshold: float
    drift_detected: bool
    columns: list[ColumnDriftResult] = field(default_factory=list)

    @property
    def drifted_columns(self) -> list[ColumnDriftResult]:
        """Only the drifted columns, largest evidence first."""
        return [c for c in self.columns if c.drifted]

    def to_json(self) -> dict[str, Any]:
        """JSON for XCom, run conf and the MLflow artifact."""
        out = asdict(self)
        for col in out["columns"]:
            for key in ("score", "threshold"):
                if isinstance(col[key], float) and not math.isfinite(col[key]):
                    col[key] = None
        out["drifted_columns"] = [c.column for c in self.drifted_columns]
        return out


@dataclass
class DriftResult:
    """The summary and, where the detector makes one, the HTML report."""

    summary: DriftSummary
    html: str | None = None


def wants_report(rule: ReportRule, drift_detected: bool) -> bool:
    """Whether a check with this verdict renders the HTML report under ``rule``.

    Args:
        rule: ``on_drift``, ``always`` or ``never``.
        drift_detected: The check's dataset verdict.

    Returns:
        True for ``always``, for ``on_drift`` when the window drifted; else False.
    """
    return rule == "always" or (rule == "on_drift" and drift_detected)


ALL_MISSING = "all values missing"
"""The method of a column that had no value in a window, so no test could run."""


def missing_columns(
    reference: pd.DataFrame, current: pd.DataFrame, *, numerical: list[str], categorical: list[str]
) -> list[ColumnDriftResult]:
    """The feature columns without a single value in the reference or the current window.

    Args:
        reference: The reference rows.
        current: The production window.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.

    Returns:
        One result per such column (method :data:`ALL_MISSING`, score and threshold NaN),
        drifted when the column is empty in exactly one of the windows.
    """
    import numpy as np

    def empty(values: pd.Series) -> bool:
        if values.dtype.kind in "fc":
            return not np.isfinite(values.to_numpy()).any()
        return bool(values.replace([np.inf, -np.inf], np.nan).isna().all())

    out = []
    for kind, names in (("numerical", numerical), ("categorical", categorical)):
        for name in names:
            in_ref, in_cur = empty(reference[name]), empty(current[name])
            if in_ref or in_cur:
                out.append(ColumnDriftResult(name, kind, ALL_MISSING, float("nan"), float("nan"), in_ref != in_cur))
    return out


def split_untestable(
    reference: pd.DataFrame, current: pd.DataFrame, *, numerical: list[str], categorical: list[str]
) -> tuple[list[str], list[str], list[ColumnDriftResult]]:
    """What every detector does before it tests: refuse an empty window, and set aside the
    features without a value in a window (:func:`missing_columns`).

    Args:
        reference: The reference rows.
        current: The production window.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.

    Returns:
        The numerical and the categorical columns to test, and the results of the others.

    Raises:
        DataError: If either window has no rows.
    """
    for label, frame in (("reference", reference), ("current", current)):
        if frame.empty:
            raise DataError(f"drift check: the {label} window has no rows")
    untestable = missing_columns(reference, current, numerical=numerical, categorical=categorical)
    skip = {c.column for c in untestable}
    return [c for c in numerical if c not in skip], [c for c in categorical if c not in skip], untestable


class DriftDetector(abc.ABC):
    """Compares a production window with the reference data."""

    report: ReportRule = "never"
    """When :meth:`detect` adds Evidently's HTML report (:func:`wants_report`)."""

    @abc.abstractmethod
    def detect(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        numerical: list[str],
        categorical: list[str],
        policy: DriftConfig,
    ) -> DriftResult:
        """Test every feature for drift and decide on the dataset.

        Args:
            reference: The reference rows.
            current: The production window.
            numerical: Numerical feature columns.
            categorical: Categorical feature columns.
            policy: Methods, thresholds and the dataset drift share.

        Returns:
            The result.
        """


class EvidentlyDriftDetector(DriftDetector):
    """Evidently's ``DataDriftPreset`` with declared column types.

    Args:
        html: Render the HTML report at all (False: never, whatever ``report`` says).
        report: When to render it (:func:`wants_report`): ``always`` (the default here),
            ``on_drift`` or ``never``. The preset runs either way; rendering is the extra.
    """

    def __init__(self, *, html: bool = True, report: ReportRule = "always") -> None:
        self.report: ReportRule = report if html else "never"

    def detect(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        numerical: list[str],
        categorical: list[str],
        policy: DriftConfig,
    ) -> DriftResult:
        from evidently import DataDefinition, Dataset, Report
        from evidently.core.report import _default_input_data_generator
        from evidently.legacy.metrics import DataDriftTable
        from evidently.presets import DataDriftPreset

        numerical, categorical, untestable = split_untestable(reference, current, numerical=numerical, categorical=categorical)
        columns = [*numerical, *categorical]
        if not columns:
            return DriftResult(summary=summarize(untestable, policy.drift_share), html=None)
        per_method = {c: s.method for c, s in policy.columns.items() if s.method and c in columns} or None
        per_threshold = {c: s.threshold for c, s in policy.columns.items() if s.threshold is not None and c in columns} or None
        options: dict[str, Any] = {
            "columns": columns,
            "method": policy.method,
            "threshold": policy.threshold,
            "per_column_method": per_method,
            "per_column_threshold": per_threshold,
        }
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        preset = DataDriftPreset(drift_share=policy.drift_share, **options)
        snapshot = Report([preset]).run(
            Dataset.from_pandas(_inf_as_nan(current, columns), data_definition=definition),
            Dataset.from_pandas(_inf_as_nan(reference, columns), data_definition=definition),
        )
        # The preset renders its table from this legacy metric; asking for the same metric
        # returns the cached per-column results instead of testing each column again.
        table, _ = snapshot.context.get_legacy_metric(
            DataDriftTable(
                columns=columns,
                stattest=policy.method,
                per_column_stattest=per_method,
                stattest_threshold=policy.threshold,
                per_column_stattest_threshold=per_threshold,
            ),
            _default_input_data_generator,
            None,
        )
        results = [
            ColumnDriftResult(
                column=name,
                type="numerical" if name in numerical else "categorical",
                method=str(col.stattest_name),
                score=float(col.drift_score),
                threshold=float(col.stattest_threshold) if col.stattest_threshold is not None else float("nan"),
                drifted=bool(col.drift_detected),
            )
            for name, col in table.drift_by_columns.items()
        ] + untestable
        summary = summarize(results, policy.drift_share)
        html = snapshot.get_html_str(as_iframe=False) if wants_report(self.report, summary.drift_detected) else None
        return DriftResult(summary=summary, html=html)


def detector_for(policy: DriftConfig) -> DriftDetector:
    """The detector a config's ``drift.detector`` names, rendering the HTML report as its
    ``drift.report`` says.

    ``profiled`` (the default) is :class:`retune.profile.ProfiledDriftDetector`: Evidently's
    default statistics and thresholds from a reference profile, the same verdicts; when the
    report rule asks, it runs Evidently's preset as well, for the report only. ``evidently`` is
    :class:`EvidentlyDriftDetector`. Each call returns a new detector (an Airflow task is a
    fresh process, so a profile is built in the check that uses it).

    Args:
        policy: The config's drift section.

    Returns:
        The detector.

    Raises:
        ValueError: For a name no detector has (the config refuses one before this).
    """
    if policy.detector == "evidently":
        return EvidentlyDriftDetector(report=policy.report)
    if policy.detector == "profiled":
        from retune.profile import ProfiledDriftDetector

        return ProfiledDriftDetector(cache_size=1, report=policy.report)
    raise ValueError(f"drift.detector: unknown detector {policy.detector!r}")


def _inf_as_nan(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The feature columns with +-inf as NaN (missing), as every test here reads them.

    Evidently drops inf only from a column that also has a NaN: with inf alone, Wasserstein
    scored NaN, which is never above the threshold, so a shifted column was not drifted
    (and inf in a float categorical column became a category). Only the float columns that
    hold an inf are replaced; the selection is the one copy made otherwise.
    """
    import numpy as np

    out = frame[columns]
    fixed = {
        c: out[c].replace([np.inf, -np.inf], np.nan)
        for c in columns
        if out[c].dtype.kind == "f" and np.isinf(out[c].to_numpy()).any()
    }
    return out.assign(**fixed) if fixed else out


def summarize(columns: list[ColumnDriftResult], drift_share_threshold: float) -> DriftSummary:
    """The dataset verdict from per-column results: drifted when the share of drifted
    columns reaches the threshold (Evidently's rule).

    Args:
        columns: Per-column results.
        drift_share_threshold: The dataset drift share threshold.

    Returns:
        The summary.
    """
    n = len(columns)
    n_drifted = sum(c.drifted for c in columns)
    share = n_drifted / n if n else 0.0
    return DriftSummary(
        drift_share=share,
        n_columns=n,
        n_drifted=n_drifted,
        drift_share_threshold=drift_share_threshold,
        drift_detected=n > 0 and share >= drift_share_threshold,
        columns=sorted(columns, key=lambda c: (not c.drifted, c.column)),
    )

"""Staging validation: the challenger against the champion on the same newest holdout.

The winner is refit on the tuning data, logged to MLflow, loaded back in a fresh process
(as a user would load it) and scored there on a sample of the holdout: that is the staging
check. Then the gates of the config are applied with MLflow's ``MetricThreshold`` and
``validate_evaluation_results``, one gate at a time so each verdict is recorded.

The comparison with the champion is also statistical (gate ``significant_improvement``): a
paired bootstrap resamples the holdout rows with replacement, scores both models on the
same resampled rows and keeps the challenger only if the lower confidence bound of its
improvement is above zero, so noise alone never promotes (:func:`paired_bootstrap`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from retune.config import RetuneConfig, parse_timestamp
from retune.metrics import Metric, class_probabilities

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LATENCY = "latency_ms_per_1k"


@dataclass(frozen=True)
class Gate:
    """One gate's verdict (``data``: numbers behind it, e.g. the bootstrap interval)."""

    name: str
    passed: bool
    detail: str
    data: dict[str, Any] | None = field(default=None, compare=False, hash=False)


def latency_ms_per_1k(model: Any, X: pd.DataFrame, *, repeats: int = 3) -> float:
    """Median prediction latency per 1,000 rows, in milliseconds.

    Args:
        model: Anything with ``predict``.
        X: Rows to predict.
        repeats: Timed repeats (the median is kept).

    Returns:
        Milliseconds per 1,000 rows.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000.0 * 1000.0 / max(len(X), 1)


def staging_check(model_uri: str, sample: pd.DataFrame, *, tracking_uri: str, timeout: float = 600) -> dict[str, Any]:
    """Load a model from MLflow in a fresh Python process and predict a sample.

    The sample travels to the child process on its standard input (Parquet bytes), so no
    file is left behind.

    Args:
        model_uri: For example ``models:/m-...`` or ``runs:/<id>/model``.
        sample: Feature rows to predict.
        tracking_uri: The MLflow tracking URI the child process uses.
        timeout: Seconds before the check fails.

    Returns:
        ``{"ok": bool, "predictions": [...], "latency_ms_per_1k": float, "error": str | None}``.
    """
    import io

    buf = io.BytesIO()
    sample.reset_index(drop=True).to_parquet(buf)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "retune.staging", model_uri],
            input=buf.getvalue(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"staging check timed out after {timeout}s", "predictions": None}
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {
            "ok": False,
            "error": "model failed to load or predict in a fresh process: " + " | ".join(tail),
            "predictions": None,
        }
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    result["ok"] = True
    result["error"] = None
    return result


# --------------------------------------------------------------------------- paired bootstrap

PER_ROW_METRICS = frozenset({"mae", "rmse", "mape", "accuracy", "log_loss"})
"""Metrics that are a mean (``rmse``: the root of a mean) of per-row losses."""

_CELLS_PER_CHUNK = 4_000_000  # resamples x rows held in memory at once


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of the challenger's improvement over the champion.

    ``improvement`` is ``champion - challenger`` for a metric to minimize and
    ``challenger - champion`` for one to maximize: positive means the challenger is better.

    Attributes:
        metric: The metric name.
        direction: ``minimize`` or ``maximize``.
        method: ``per-row losses`` or ``metric recomputed on each resample``.
        rows: Holdout rows resampled.
        resamples: Resamples drawn.
        valid_resamples: Resamples on which the metric was defined (e.g. both classes present).
        confidence: The confidence level.
        seed: The random seed of the resampling.
        champion: The champion's metric on the whole holdout.
        challenger: The challenger's metric on the whole holdout.
        improvement: The improvement on the whole holdout.
        lower_bound: One-sided lower confidence bound of the improvement (the
            ``1 - confidence`` quantile of the resampled improvements).
        interval: Two-sided percentile interval of the improvement at ``confidence``.
        share_not_better: Share of the resamples where the challenger was not better
            (improvement <= 0): a one-sided bootstrap p-value.
    """

    metric: str
    direction: str
    method: str
    rows: int
    resamples: int
    valid_resamples: int
    confidence: float
    seed: int
    champion: float
    challenger: float
    improvement: float
    lower_bound: float
    interval: tuple[float, float]
    share_not_better: float

    @property
    def significant(self) -> bool:
        """The lower confidence bound of the improvement is above zero."""
        return bool(np.isfinite(self.lower_bound) and self.lower_bound > 0)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the interval as a list)."""
        data = asdict(self)
        data["interval"] = [float(v) for v in self.interval]
        data["significant"] = self.significant
        return data

    def describe(self) -> str:
        """One line for the gate detail."""
        pct = f"{self.confidence:.0%}" if round(self.confidence * 100, 6).is_integer() else f"{self.confidence:.3%}"
        return (
            f"improvement {self.improvement:.4g}, {pct} lower bound {self.lower_bound:.4g} "
            f"({'> 0' if self.significant else '<= 0: could be noise'}; two-sided {pct} interval "
            f"[{self.interval[0]:.4g}, {self.interval[1]:.4g}]); not better in {self.share_not_better:.1%} of "
            f"{self.valid_resamples} paired resamples of {self.rows} holdout rows ({self.method})"
        )


def predict_scores(metric: Metric, model: Any, X: pd.DataFrame, *, labels: Any = None) -> np.ndarray:
    """What ``metric`` scores for each row: labels or values, or probabilities for
    ``needs_proba`` metrics (one column per class of ``labels``, default the model's, and the
    second class's column only for two), exactly as :meth:`retune.metrics.Metric.score` does.
    Give two models the same ``labels`` (:func:`retune.metrics.class_labels`) to compare them."""
    if metric.needs_proba:
        return class_probabilities(model, X, labels)
    return np.asarray(model.predict(X))


def _per_row(metric: str, y: np.ndarray, score: np.ndarray, labels: Any = None) -> np.ndarray | None:
    """Per-row losses whose mean is the metric (for ``rmse`` the mean of squares), or ``None``."""
    if metric == "mae":
        return np.abs(y.astype(float) - score.astype(float))
    if metric == "rmse":
        return (y.astype(float) - score.astype(float)) ** 2
    if metric == "mape":
        yf = y.astype(float)
        return np.abs(score.astype(float) - yf) / np.maximum(np.abs(yf), np.finfo(np.float64).eps)
    if metric == "accuracy":
        return (y == score).astype(float)
    if metric == "log_loss":
        labels = np.unique(y) if labels is None else np.asarray(labels)
        if score.ndim != 1 or len(labels) != 2:
            return None  # multi-class: recomputed on each resample instead
        p = score.astype(float)
        eps = np.finfo(p.dtype).eps
        p = np.clip(p, eps, 1 - eps)
        return -np.where(y == labels[1], np.log(p), np.log1p(-p))
    return None


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each row appears in each resample (``idx``: resamples x rows)."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b)[:, None] * n)).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _auc_on_counts(y: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Binary ROC AUC of each resample (rows weighted by their counts); ties count half."""
    labels = np.unique(y)
    positive = (y == labels[-1]).astype(float)
    order = np.argsort(score, kind="mergesort")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])  # groups of tied scores
    c = counts[:, order]
    pos = np.add.reduceat(c * positive[order], starts, axis=1)
    neg = np.add.reduceat(c * (1.0 - positive[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _vectorized(metric: str, y: np.ndarray, score: np.ndarray, labels: Any = None) -> Any:
    """A function ``counts -> metric per resample`` for metrics that are recomputed exactly
    from row counts, or ``None`` (then the metric function runs on each resample)."""
    n = len(y)
    losses = _per_row(metric, y, score, labels)
    if losses is not None:
        if metric == "rmse":
            return lambda c: np.sqrt(c @ losses / n)
        return lambda c: c @ losses / n
    if metric == "r2" and score.ndim == 1:
        yf, sf = y.astype(float), score.astype(float)
        sq = (yf - sf) ** 2

        def r2(c: np.ndarray) -> np.ndarray:
            total = c @ (yf**2) - (c @ yf) ** 2 / n
            with np.errstate(invalid="ignore", divide="ignore"):
                out = 1.0 - (c @ sq) / total
            return np.where(total > 1e-12 * max(1.0, float(np.max(yf**2))), out, np.nan)

        return r2
    if metric == "roc_auc" and score.ndim == 1 and len(np.unique(y)) == 2 and (labels is None or len(labels) == 2):
        return lambda c: _auc_on_counts(y, score.astype(float), c)
    if metric == "balanced_accuracy":
        classes = np.unique(y)
        hit = np.stack([(y == k) & (score == k) for k in classes]).astype(float)  # classes x rows
        member = np.stack([y == k for k in classes]).astype(float)

        def balanced(c: np.ndarray) -> np.ndarray:
            support = c @ member.T
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = (c @ hit.T) / support
            return np.nanmean(np.where(support > 0, recall, np.nan), axis=1)

        return balanced
    if metric == "f1" and set(np.unique(y).tolist()) <= {0, 1} and set(np.unique(score).tolist()) <= {0, 1}:
        tp = ((y == 1) & (score == 1)).astype(float)
        fp = ((y != 1) & (score == 1)).astype(float)
        fn = ((y == 1) & (score != 1)).astype(float)

        def f1(c: np.ndarray) -> np.ndarray:
            num = 2 * (c @ tp)
            den = num + c @ fp + c @ fn
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, num / den, 0.0)

        return f1
    return None


def metric_on_resamples(metric: Metric, y: np.ndarray, score: np.ndarray, idx: np.ndarray, *, labels: Any = None) -> np.ndarray:
    """The metric on each resample (``idx``: resamples x rows of row indices; ``labels``: the
    classes of the probability columns, so a resample without some class still scores).

    Per-row metrics average their per-row losses; the others are recomputed on the rows of
    each resample (in closed form from the row counts for ``r2``, binary ``roc_auc``,
    ``balanced_accuracy`` and binary ``f1``, else by calling the metric). A resample on
    which the metric is undefined (for example one class only) gives ``nan``.
    """
    fast = _vectorized(metric.name, y, score, labels)
    if fast is not None:
        return np.asarray(fast(_counts(idx, len(y))), dtype=float)
    import warnings

    out = np.full(idx.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, rows in enumerate(idx):
            try:
                out[i] = metric.value(y[rows], score[rows], labels=labels)
            except ValueError:
                continue
    return out


def paired_bootstrap(
    metric: Metric,
    y: Any,
    champion_scores: Any,
    challenger_scores: Any,
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    labels: Any = None,
) -> BootstrapResult:
    """Paired bootstrap of the challenger's improvement over the champion on one holdout.

    Each resample draws the holdout rows with replacement; both models are scored on the
    same drawn rows (paired), so what the resamples vary is only which rows count.

    Args:
        metric: The model metric.
        y: The holdout target.
        champion_scores: The champion's :func:`predict_scores` on the holdout.
        challenger_scores: The challenger's :func:`predict_scores` on the same rows.
        confidence: Confidence level of the bounds (e.g. 0.95).
        resamples: Bootstrap resamples.
        seed: Random seed (the same seed gives the same result).
        labels: The classes of both models' probability columns (:func:`predict_scores`
            with the same ``labels``).

    Returns:
        The observed improvement, its lower bound and interval, and the share of resamples
        where the challenger was not better.

    Raises:
        ValueError: If the inputs differ in length or the holdout is empty.
    """
    y_arr = np.asarray(y)
    champ = np.asarray(champion_scores)
    chall = np.asarray(challenger_scores)
    n = len(y_arr)
    if n == 0 or len(champ) != n or len(chall) != n:
        raise ValueError(
            f"paired bootstrap needs per-row scores of both models on the same rows: {n}, {len(champ)}, {len(chall)}"
        )
    sign = 1.0 if metric.greater_is_better else -1.0
    champion_value, challenger_value = metric.value(y_arr, champ, labels=labels), metric.value(y_arr, chall, labels=labels)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CELLS_PER_CHUNK // n))
    diffs = []
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(b, n))
        diffs.append(
            sign
            * (
                metric_on_resamples(metric, y_arr, chall, idx, labels=labels)
                - metric_on_resamples(metric, y_arr, champ, idx, labels=labels)
            )
        )
        done += b
    diff = np.concatenate(diffs)
    diff = diff[np.isfinite(diff)]
    valid = len(diff)
    if valid < max(10, resamples // 2):  # the metric is undefined on too many resamples: no evidence
        lower, interval, share = float("nan"), (float("nan"), float("nan")), 1.0
    else:
        lower = float(np.quantile(diff, 1.0 - confidence))
        interval = (float(np.quantile(diff, (1.0 - confidence) / 2)), float(np.quantile(diff, (1.0 + confidence) / 2)))
        share = float(np.mean(diff <= 0))
    return BootstrapResult(
        metric=metric.name,
        direction=metric.direction,
        method="per-row losses"
        if _per_row(metric.name, y_arr, chall, labels) is not None
        else "metric recomputed on each resample",
        rows=n,
        resamples=resamples,
        valid_resamples=valid,
        confidence=confidence,
        seed=seed,
        champion=champion_value,
        challenger=challenger_value,
        improvement=sign * (challenger_value - champion_value),
        lower_bound=lower,
        interval=interval,
        share_not_better=share,
    )


def _gate(name: str, thresholds: dict[str, Any], candidate: dict[str, float], baseline: dict[str, float] | None) -> Gate:
    from mlflow.exceptions import MlflowException
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import validate_evaluation_results

    try:
        validate_evaluation_results(
            thresholds,
            EvaluationResult(metrics=candidate, artifacts={}, run_id="staging"),
            EvaluationResult(metrics=baseline, artifacts={}, run_id="champion") if baseline is not None else None,
        )
    except MlflowException as exc:  # ModelValidationFailedException is one
        return Gate(name, False, str(exc).strip().replace("\n", " "))
    return Gate(name, True, "passed")


def apply_gates(
    cfg: RetuneConfig,
    metric: Metric,
    *,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    staging: dict[str, Any],
    predictions_match: bool,
    bootstrap: BootstrapResult | None = None,
    champion_error: str | None = None,
) -> list[Gate]:
    """Apply every gate of the config.

    Gates, in order: ``staging_load``, ``beats_champion`` (``min_improvement`` and
    ``min_absolute_improvement`` with MLflow's ``MetricThreshold``), ``significant_improvement``
    (the paired bootstrap's lower confidence bound of the improvement is above zero, and
    ``beats_champion`` passed), then ``metric_threshold`` and ``latency`` when configured.
    :func:`retune.pipeline.validate` adds :func:`training_window_gate`.

    Args:
        cfg: The model config (``validation`` section).
        metric: The model metric.
        challenger: The challenger's holdout metrics (metric name and ``latency_ms_per_1k``).
        champion: The champion's holdout metrics, or ``None`` if there is no champion.
        staging: The result of :func:`staging_check`.
        predictions_match: Whether the fresh process predicted what the trained model did.
        bootstrap: The paired bootstrap of both models on the holdout (:func:`paired_bootstrap`);
            with a champion and no bootstrap, ``significant_improvement`` fails.
        champion_error: Why an existing champion could not be scored (then ``champion`` is ``None``).

    Returns:
        One verdict per gate.
    """
    from mlflow.models import MetricThreshold

    v = cfg.validation
    gates = [
        Gate(
            "staging_load",
            bool(staging.get("ok")) and predictions_match,
            staging.get("error") or ("predictions match" if predictions_match else "predictions in a fresh process differ"),
        )
    ]
    score = challenger.get(metric.name)
    if score is None or not math.isfinite(score):
        # NaN compares False both ways, so MLflow's thresholds can pass it: refuse it here
        gates.append(Gate("beats_champion", False, f"the challenger's {metric.name} is not a finite number ({score})"))
    elif champion is not None:
        kwargs: dict[str, Any] = {"greater_is_better": metric.greater_is_better}
        if v.min_improvement > 0:
            kwargs["min_relative_change"] = float(v.min_improvement)
        if v.min_absolute_improvement:
            kwargs["min_absolute_change"] = float(v.min_absolute_improvement)
        if len(kwargs) == 1:  # no margin asked for: still never promote a worse model
            better = metric.better(challenger[metric.name], champion[metric.name]) or (
                challenger[metric.name] == champion[metric.name]
            )
            gates.append(
                Gate(
                    "beats_champion",
                    better,
                    f"challenger {metric.name}={challenger[metric.name]:.6g} vs champion {champion[metric.name]:.6g}",
                )
            )
        else:
            gate = _gate("beats_champion", {metric.name: MetricThreshold(**kwargs)}, challenger, champion)
            gates.append(
                Gate(
                    gate.name,
                    gate.passed,
                    f"challenger {metric.name}={challenger[metric.name]:.6g} vs champion "
                    f"{champion[metric.name]:.6g}: {gate.detail}",
                )
            )
    else:
        gates.append(Gate("beats_champion", True, f"not compared: {champion_error}" if champion_error else "no champion yet"))
    gates.append(_significance_gate(metric, champion, gates[-1], bootstrap, champion_error))
    if v.metric_threshold is not None:
        gates.append(
            _gate(
                "metric_threshold",
                {metric.name: MetricThreshold(threshold=float(v.metric_threshold), greater_is_better=metric.greater_is_better)},
                challenger,
                None,
            )
        )
    if v.max_latency_ms_per_1k is not None:
        gate = _gate(
            "latency",
            {LATENCY: MetricThreshold(threshold=float(v.max_latency_ms_per_1k), greater_is_better=False)},
            challenger,
            None,
        )
        gates.append(
            Gate(
                gate.name, gate.passed, f"{challenger[LATENCY]:.3g} ms per 1k rows (max {v.max_latency_ms_per_1k}): {gate.detail}"
            )
        )
    return gates


def _significance_gate(
    metric: Metric, champion: dict[str, float] | None, beats: Gate, bootstrap: BootstrapResult | None, champion_error: str | None
) -> Gate:
    name = "significant_improvement"
    if champion is None:
        return Gate(name, True, "no champion yet" if not champion_error else f"no champion to compare with: {champion_error}")
    if bootstrap is None:
        return Gate(name, False, "no per-row predictions of both models on the holdout: the improvement could be noise")
    data = bootstrap.to_json()
    if not bootstrap.significant:
        return Gate(name, False, f"{metric.name}: {bootstrap.describe()}", data)
    if not beats.passed:
        return Gate(name, False, f"{metric.name}: {bootstrap.describe()}; but the min_improvement gate failed", data)
    return Gate(name, True, f"{metric.name}: {bootstrap.describe()}", data)


def training_window_gate(train_end: datetime | None, champion_version: str | None, champion_train_end: str | None) -> Gate:
    """Gate ``training_window``: a challenger whose training data ends before the champion's
    never replaces it.

    A retune of an older window (a backfill, a monitor run for a past window, a manual run
    with a past ``window_end`` or ``window=reference``) is validated on that window's newest
    rows, where a model of the old regime beats a champion trained on newer data: the other
    gates cannot see that it is stale. Equal ends pass (the same window retuned again).
    ``force`` does not skip it (it skips only the drift gate and the trigger policy's checks).

    Args:
        train_end: The end of the challenger's training window (``None``: open, up to the
            newest data).
        champion_version: The champion's version (``None``: no champion yet).
        champion_train_end: The champion's ``retune.train_end`` tag (``None`` or empty: not
            recorded, so nothing to compare with).

    Returns:
        The verdict; the detail names both ends.
    """
    name = "training_window"
    if champion_version is None:
        return Gate(name, True, "no champion yet")
    if not champion_train_end:
        return Gate(name, True, f"champion v{champion_version} records no training window end (retune.train_end): not compared")
    try:
        champion_end = parse_timestamp(champion_train_end)
    except ValueError:
        return Gate(
            name, True, f"champion v{champion_version}'s retune.train_end {champion_train_end!r} is no date: not compared"
        )
    if train_end is None:
        return Gate(
            name, True, f"trained on a window without an end; champion v{champion_version} up to {champion_end.isoformat()}"
        )
    detail = f"trained on data up to {train_end.isoformat()}, champion v{champion_version} up to {champion_end.isoformat()}"
    if train_end < champion_end:
        return Gate(
            name,
            False,
            f"{detail}: a model of an older window (a backfill or a past window_end) never replaces a champion "
            "trained on newer data",
        )
    return Gate(name, True, detail)


def gates_json(gates: list[Gate]) -> list[dict[str, Any]]:
    """Gates as JSON (``data`` only where a gate has it)."""
    out = []
    for g in gates:
        item = asdict(g)
        if item["data"] is None:
            item.pop("data")
        out.append(item)
    return out

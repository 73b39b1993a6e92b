"""Model metrics by name, with their direction and what they score (labels or probabilities)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A named metric.

    Attributes:
        name: The name used in configs.
        task: ``"classification"`` or ``"regression"``.
        direction: ``"minimize"`` or ``"maximize"``.
        needs_proba: Scores probabilities instead of labels.
        fn: ``fn(y_true, y_score) -> float``; a ``needs_proba`` metric also takes ``labels=``,
            the classes of the probability columns.
        low: The smallest value the metric can take (``-inf``: unbounded).
        high: The largest value the metric can take (``inf``: unbounded).
    """

    name: str
    task: Literal["classification", "regression"]
    direction: Literal["minimize", "maximize"]
    needs_proba: bool
    fn: Callable[..., float]
    low: float = -math.inf
    high: float = math.inf

    def out_of_range(self, value: float) -> str | None:
        """Why ``value`` can never be a value of this metric, or ``None`` if it can be.

        Example:
            >>> get_metric("r2", "regression").out_of_range(80.0)
            'r2 lies in (-inf, 1], 80 is outside it'
        """
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        if self.low <= value <= self.high:
            return None
        left = "(-inf" if self.low == -math.inf else f"[{self.low:g}"
        right = "inf)" if self.high == math.inf else f"{self.high:g}]"
        return f"{self.name} lies in {left}, {right}, {value:g} is outside it"

    @property
    def greater_is_better(self) -> bool:
        """True when a larger value is better."""
        return self.direction == "maximize"

    def value(self, y: Any, y_score: Any, *, labels: Any = None) -> float:
        """The metric of scores already predicted.

        Args:
            y: True target.
            y_score: Labels or values, or for a ``needs_proba`` metric probabilities as
                :func:`class_probabilities` gives them.
            labels: The classes of the probability columns (default: the classes of ``y``);
                ignored by metrics of labels or values.

        Returns:
            The metric value.

        Raises:
            ValueError: The metric is undefined on these values.
        """
        if self.needs_proba and labels is not None:
            return float(self.fn(y, y_score, labels=labels))
        return float(self.fn(y, y_score))

    def score(self, model: Any, X: Any, y: Any, *, labels: Any = None) -> float:
        """Score a fitted model on ``X, y``.

        A ``needs_proba`` metric scores the model's probabilities on ``labels`` (default: the
        model's classes and those of ``y``): a class of the model missing from ``y`` (a rare or
        retired class), or one of ``y`` the model never saw, leaves the metric computable.

        Args:
            model: A fitted scikit-learn estimator or pipeline.
            X: Features.
            y: True target.
            labels: The classes to score probabilities on (see :func:`class_labels`).

        Returns:
            The metric value.
        """
        if self.needs_proba:
            labels = class_labels(y, model) if labels is None else labels
            return self.value(y, class_probabilities(model, X, labels), labels=labels)
        return self.value(y, model.predict(X))

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b


def class_labels(y: Any, *models: Any) -> np.ndarray:
    """The sorted classes of ``y`` and of each fitted classifier's ``classes_`` (``None`` and
    models without classes are skipped): the probability columns two models are compared on.

    Example:
        >>> class_labels(["a", "b"], None).tolist()
        ['a', 'b']
    """
    parts = [np.asarray(y).ravel()]
    parts += [np.asarray(m.classes_) for m in models if m is not None and getattr(m, "classes_", None) is not None]
    return np.unique(np.concatenate(parts))


def class_probabilities(model: Any, X: Any, labels: Any = None) -> np.ndarray:
    """``predict_proba`` with one column per class of ``labels`` (default: the model's own),
    0 for a class the model never saw; for two classes only the second one's column, as the
    binary metrics take it.

    Raises:
        ValueError: A class of the model is not in ``labels``.
    """
    proba = np.asarray(model.predict_proba(X), dtype=float)
    classes = getattr(model, "classes_", None)
    if labels is not None and classes is not None:
        column = {k: j for j, k in enumerate(np.asarray(labels).tolist())}
        unknown = [k for k in np.asarray(classes).tolist() if k not in column]
        if unknown:
            raise ValueError(f"the model's classes {unknown} are not among the labels {list(column)}")
        aligned = np.zeros((len(proba), len(column)))
        for j, k in enumerate(np.asarray(classes).tolist()):
            aligned[:, column[k]] = proba[:, j]
        proba = aligned
    return proba[:, 1] if proba.shape[1] == 2 else proba


def _ovr_auc(y: Any, s: Any, labels: Any) -> float:
    """One-vs-rest ROC AUC averaged over the classes of ``labels`` that ``y`` has (a class
    without rows has no AUC; sklearn's ``labels=`` gives NaN for it); NaN with fewer than two."""
    from sklearn.metrics import roc_auc_score

    y_arr, labels = np.asarray(y), np.asarray(labels)
    present = [j for j, k in enumerate(labels.tolist()) if np.any(y_arr == k)]
    if len(present) == len(labels):
        return float(roc_auc_score(y_arr, s, multi_class="ovr", labels=labels))
    if len(present) < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(y_arr == labels[j], np.asarray(s)[:, j]) for j in present]))


def _rmse(y: Any, p: Any) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(p, dtype=float)) ** 2)))


def _registry() -> dict[str, Metric]:
    from sklearn import metrics as m

    def auc(y: Any, s: Any, labels: Any = None) -> float:
        if np.ndim(s) == 2:
            return _ovr_auc(y, s, np.unique(y) if labels is None else labels)
        if labels is None:
            return float(m.roc_auc_score(y, s))
        return float(m.roc_auc_score(np.asarray(y) == np.asarray(labels)[1], s))  # s: the second class's probability

    def log_loss(y: Any, s: Any, labels: Any = None) -> float:
        return float(m.log_loss(y, s, labels=labels))

    def f1(y: Any, p: Any) -> float:
        average = "binary" if len(np.unique(y)) <= 2 and set(np.unique(y)) <= {0, 1} else "macro"
        return float(m.f1_score(y, p, average=average))

    # the range of each metric (low, high) is checked against validation.metric_threshold on load
    items = [
        Metric("mae", "regression", "minimize", False, m.mean_absolute_error, low=0.0),
        Metric("rmse", "regression", "minimize", False, _rmse, low=0.0),
        Metric("mape", "regression", "minimize", False, m.mean_absolute_percentage_error, low=0.0),
        Metric("r2", "regression", "maximize", False, m.r2_score, high=1.0),
        Metric("accuracy", "classification", "maximize", False, m.accuracy_score, low=0.0, high=1.0),
        Metric("balanced_accuracy", "classification", "maximize", False, m.balanced_accuracy_score, low=0.0, high=1.0),
        Metric("f1", "classification", "maximize", False, f1, low=0.0, high=1.0),
        Metric("roc_auc", "classification", "maximize", True, auc, low=0.0, high=1.0),
        Metric("log_loss", "classification", "minimize", True, log_loss, low=0.0),
    ]
    return {item.name: item for item in items}


def get_metric(name: str, task: str) -> Metric:
    """Look a metric up by name and check it fits the task.

    Args:
        name: For example ``"mae"`` or ``"roc_auc"``.
        task: ``"classification"`` or ``"regression"``.

    Returns:
        The metric.

    Raises:
        ValueError: If the metric is unknown or belongs to the other task.
    """
    known = _registry()
    if name not in known:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(known)}")
    metric = known[name]
    if metric.task != task:
        options = sorted(k for k, v in known.items() if v.task == task)
        raise ValueError(f"metric {name!r} is for {metric.task}, not {task}; choose one of {options}")
    return metric

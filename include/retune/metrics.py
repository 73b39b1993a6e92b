"""Model metrics by name, with their direction and what they score (labels or probabilities)."""

from __future__ import annotations

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
        fn: ``fn(y_true, y_score) -> float``.
    """

    name: str
    task: Literal["classification", "regression"]
    direction: Literal["minimize", "maximize"]
    needs_proba: bool
    fn: Callable[[Any, Any], float]

    @property
    def greater_is_better(self) -> bool:
        """True when a larger value is better."""
        return self.direction == "maximize"

    def score(self, model: Any, X: Any, y: Any) -> float:
        """Score a fitted model on ``X, y``.

        Args:
            model: A fitted scikit-learn estimator or pipeline.
            X: Features.
            y: True target.

        Returns:
            The metric value.
        """
        if self.needs_proba:
            proba = model.predict_proba(X)
            y_score = proba[:, 1] if proba.shape[1] == 2 else proba
            return float(self.fn(y, y_score))
        return float(self.fn(y, model.predict(X)))

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b


def _rmse(y: Any, p: Any) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(p, dtype=float)) ** 2)))


def _registry() -> dict[str, Metric]:
    from sklearn import metrics as m

    def auc(y: Any, s: Any) -> float:
        return float(m.roc_auc_score(y, s, multi_class="ovr") if np.ndim(s) == 2 else m.roc_auc_score(y, s))

    def log_loss(y: Any, s: Any) -> float:
        return float(m.log_loss(y, s))

    def f1(y: Any, p: Any) -> float:
        average = "binary" if len(np.unique(y)) <= 2 and set(np.unique(y)) <= {0, 1} else "macro"
        return float(m.f1_score(y, p, average=average))

    items = [
        Metric("mae", "regression", "minimize", False, m.mean_absolute_error),
        Metric("rmse", "regression", "minimize", False, _rmse),
        Metric("mape", "regression", "minimize", False, m.mean_absolute_percentage_error),
        Metric("r2", "regression", "maximize", False, m.r2_score),
        Metric("accuracy", "classification", "maximize", False, m.accuracy_score),
        Metric("balanced_accuracy", "classification", "maximize", False, m.balanced_accuracy_score),
        Metric("f1", "classification", "maximize", False, f1),
        Metric("roc_auc", "classification", "maximize", True, auc),
        Metric("log_loss", "classification", "minimize", True, log_loss),
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

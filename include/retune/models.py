"""Model families: how to build an estimator from parameters and train it in stages.

A family is pluggable: subclass :class:`ModelFamily`, implement :meth:`ModelFamily.estimator`
and :meth:`ModelFamily.staged_fit`, and register it in ``FAMILIES``. Staged training is
what lets a pruner stop a bad trial early: each stage is a cheaper version of the full
fit (fewer boosting iterations, fewer trees, less data) that is scored and reported.

Example:
    >>> fam = get_family("hist_gradient_boosting")
    >>> pipe = fam.build("regression", {"learning_rate": 0.1}, numerical=["x"], categorical=[], seed=0)
    >>> type(pipe).__name__
    'Pipeline'
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class Domain:
    """The interval of values an estimator accepts for one parameter (``None``: unbounded)."""

    low: float | None
    high: float | None
    low_open: bool = False
    high_open: bool = False

    def clip(self, low: float, high: float, *, inside: tuple[float, float]) -> tuple[float, float]:
        """Clip a widened range ``[low, high]`` into the domain; where an open bound would be
        reached, stop halfway between it and ``inside`` (the range before widening)."""
        if self.low is not None and (low < self.low or (self.low_open and low <= self.low)):
            low = (self.low + inside[0]) / 2 if self.low_open else self.low
        if self.high is not None and (high > self.high or (self.high_open and high >= self.high)):
            high = (self.high + inside[1]) / 2 if self.high_open else self.high
        return low, high


class ModelFamily(abc.ABC):
    """A family of scikit-learn estimators that Retune can tune."""

    name: ClassVar[str]
    thread_param: ClassVar[str | None] = None
    """The estimator's own thread count (``n_jobs``), if it has one that acts: set from
    ``tuning.threads_per_trial`` by :meth:`build`, never from the config's model section.
    threadpoolctl caps BLAS and OpenMP threads, not joblib's, so without this a forest with
    ``n_jobs=-1`` would start a thread per core in every parallel trial worker."""

    @abc.abstractmethod
    def estimator(self, task: str) -> type:
        """The estimator class for a task (``"classification"`` or ``"regression"``)."""

    @abc.abstractmethod
    def staged_fit(self, pipe: Pipeline, X: pd.DataFrame, y: pd.Series, *, n_steps: int) -> Iterator[tuple[int, Pipeline]]:
        """Fit ``pipe`` in ``n_steps`` growing stages.

        Args:
            pipe: A pipeline from :meth:`build`.
            X: Training features.
            y: Training target.
            n_steps: How many stages; the last one is the full fit.

        Yields:
            ``(step, pipe)`` after each stage; ``step`` grows with the budget spent.
        """

    MAX_CATEGORIES = 250  # a categorical feature's most frequent categories kept; the rest are one

    def max_categories(self, params: dict[str, Any]) -> int:
        """How many categories of a categorical feature the encoder keeps (the rest become
        one infrequent category) for the estimator with ``params``."""
        return self.MAX_CATEGORIES

    def preprocessor(self, numerical: list[str], categorical: list[str], *, max_categories: int = MAX_CATEGORIES) -> Any:
        """The column transformer in front of the estimator (trees: ordinal categories, at most
        ``max_categories`` per feature)."""
        import numpy as np
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OrdinalEncoder

        return ColumnTransformer(
            [
                ("num", "passthrough", numerical),
                (
                    "cat",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                        max_categories=max_categories,
                    ),
                    categorical,
                ),
            ],
            verbose_feature_names_out=False,
        )

    def estimator_params(self, task: str, params: dict[str, Any], *, n_cat: int, n_num: int, seed: int) -> dict[str, Any]:
        """Final keyword arguments of the estimator: the tuned params plus the family's fixed ones."""
        out = dict(params)
        if "random_state" in self.estimator(task)().get_params():
            out.setdefault("random_state", seed)
        return out

    def domain(self, task: str, name: str, *, integer: bool) -> Domain | None:
        """The values the estimator accepts for a numeric parameter, from scikit-learn's own
        parameter constraints (``None`` when it states none, or gives no numeric interval).

        Args:
            task: ``"classification"`` or ``"regression"``.
            name: The parameter.
            integer: Whether the search space samples it as an integer.

        Returns:
            The accepted interval (an open side is excluded).
        """
        from numbers import Integral, Real

        constraints = getattr(self.estimator(task), "_parameter_constraints", {}).get(name, [])
        for c in constraints:
            kind = getattr(c, "type", None)
            if kind is None or not hasattr(c, "left") or not hasattr(c, "closed"):
                continue
            if integer and kind is not Integral:
                continue
            if not integer and kind is Integral:
                continue
            if not integer and not (isinstance(kind, type) and issubclass(kind, Real)) and kind != "real_not_int":
                continue
            closed = str(c.closed)
            return Domain(
                low=None if c.left is None else float(c.left),
                high=None if c.right is None else float(c.right),
                low_open=closed not in ("left", "both"),
                high_open=closed not in ("right", "both"),
            )
        return None

    def check_params(self, task: str, params: dict[str, Any]) -> None:
        """Refuse parameter names the estimator does not have.

        Raises:
            ValueError: Naming the first unknown parameter.
        """
        cls = self.estimator(task)
        known = set(cls().get_params())
        for key in params:
            if key not in known:
                raise ValueError(
                    f"model.search_space/fixed_params: {cls.__name__} has no parameter {key!r}; it has {sorted(known)}"
                )

    def build(
        self,
        task: str,
        params: dict[str, Any],
        *,
        numerical: list[str],
        categorical: list[str],
        seed: int,
        threads: int = 1,
    ) -> Pipeline:
        """A fresh, unfitted pipeline (preprocessing and estimator).

        Args:
            task: ``"classification"`` or ``"regression"``.
            params: Estimator parameters (tuned and fixed).
            numerical: Numerical feature columns.
            categorical: Categorical feature columns.
            seed: Random seed.
            threads: The threads the estimator may start itself (its :attr:`thread_param`;
                ``tuning.threads_per_trial``).

        Returns:
            A scikit-learn pipeline.
        """
        from sklearn.pipeline import Pipeline

        kwargs = self.estimator_params(task, params, n_cat=len(categorical), n_num=len(numerical), seed=seed)
        if self.thread_param is not None:
            kwargs[self.thread_param] = threads
        prep = self.preprocessor(numerical, categorical, max_categories=self.max_categories(params))
        return Pipeline([("prep", prep), ("model", self.estimator(task)(**kwargs))])


def _schedule(total: int, n_steps: int) -> list[int]:
    """Growing budgets ending at ``total``: 100 in 4 steps is [25, 50, 75, 100]."""
    n_steps = max(1, min(n_steps, total))
    return sorted({max(1, math.ceil(total * k / n_steps)) for k in range(1, n_steps + 1)})


class HistGradientBoosting(ModelFamily):
    """scikit-learn's histogram gradient boosting; stages are boosting iterations."""

    name = "hist_gradient_boosting"

    def estimator(self, task: str) -> type:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        return HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor

    def max_categories(self, params: dict[str, Any]) -> int:
        """At most ``max_bins`` (default 255): the estimator refuses a categorical feature with
        more categories than bins, which failed every trial with a smaller ``max_bins``."""
        return min(self.MAX_CATEGORIES, int(params.get("max_bins", 255)))

    def estimator_params(self, task: str, params: dict[str, Any], *, n_cat: int, n_num: int, seed: int) -> dict[str, Any]:
        out = super().estimator_params(task, params, n_cat=n_cat, n_num=n_num, seed=seed)
        out["early_stopping"] = False  # the pruner decides when to stop
        if n_cat:
            out["categorical_features"] = list(range(n_num, n_num + n_cat))
        return out

    def staged_fit(self, pipe: Pipeline, X: pd.DataFrame, y: pd.Series, *, n_steps: int) -> Iterator[tuple[int, Pipeline]]:
        prep, model = pipe.named_steps["prep"], pipe.named_steps["model"]
        Xt = prep.fit_transform(X, y)
        total = int(model.max_iter)
        model.set_params(warm_start=True)
        for budget in _schedule(total, n_steps):
            model.set_params(max_iter=budget)
            model.fit(Xt, y)
            yield budget, pipe
        model.set_params(warm_start=False)


class RandomForest(ModelFamily):
    """scikit-learn's random forest; stages are growing numbers of trees."""

    name = "random_forest"
    thread_param = "n_jobs"

    def estimator(self, task: str) -> type:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        return RandomForestClassifier if task == "classification" else RandomForestRegressor

    def staged_fit(self, pipe: Pipeline, X: pd.DataFrame, y: pd.Series, *, n_steps: int) -> Iterator[tuple[int, Pipeline]]:
        prep, model = pipe.named_steps["prep"], pipe.named_steps["model"]
        Xt = prep.fit_transform(X, y)
        total = int(model.n_estimators)
        model.set_params(warm_start=True)
        for budget in _schedule(total, n_steps):
            model.set_params(n_estimators=budget)
            model.fit(Xt, y)
            yield budget, pipe
        model.set_params(warm_start=False)


class Linear(ModelFamily):
    """Ridge regression or logistic regression; stages train on a growing, newest share of the rows."""

    name = "linear"

    def estimator(self, task: str) -> type:
        from sklearn.linear_model import LogisticRegression, Ridge

        return LogisticRegression if task == "classification" else Ridge

    MAX_CATEGORIES = 50  # one-hot columns per categorical feature

    def preprocessor(self, numerical: list[str], categorical: list[str], *, max_categories: int = MAX_CATEGORIES) -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        return ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numerical),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=max_categories),
                    ),
                    categorical,
                ),
            ],
            verbose_feature_names_out=False,
        )

    def estimator_params(self, task: str, params: dict[str, Any], *, n_cat: int, n_num: int, seed: int) -> dict[str, Any]:
        out = super().estimator_params(task, params, n_cat=n_cat, n_num=n_num, seed=seed)
        if task == "classification":
            out.setdefault("max_iter", 1000)
        return out

    def staged_fit(self, pipe: Pipeline, X: pd.DataFrame, y: pd.Series, *, n_steps: int) -> Iterator[tuple[int, Pipeline]]:
        n = len(X)
        for rows in _schedule(n, n_steps):
            if rows < n and y.iloc[n - rows :].nunique() < 2:
                continue  # a classifier cannot learn from one class; grow the slice first
            pipe.fit(X.iloc[n - rows :], y.iloc[n - rows :])
            yield rows, pipe


FAMILIES: dict[str, type[ModelFamily]] = {cls.name: cls for cls in (HistGradientBoosting, RandomForest, Linear)}


def get_family(name: str) -> ModelFamily:
    """Look a model family up by its config name.

    Raises:
        ValueError: For an unknown family, listing the known ones.
    """
    if name not in FAMILIES:
        raise ValueError(f"model.family: unknown model family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]()

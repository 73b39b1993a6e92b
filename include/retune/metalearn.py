"""Meta-learning warm start: seed a new model's first study from the most similar past tasks.

Every finished retune records its dataset's *meta-features* (size, shape, correlations,
moments, missing values, class balance or target spread, categorical cardinality) and the
best params it found, as a row of the ``retune_meta`` table on ``settings.policy_db`` (the
database the trigger policy uses: PostgreSQL in production, SQLite embedded).

A model with no history of its own (no champion, no previous study) has nothing to warm
start from. :func:`nearest_tasks` finds the past tasks of the same model family and task
type whose meta-features are closest (Euclidean distance on z-scores), and
:func:`seeds_from_similar` turns their best params into ``("meta:<config>", params)``
seeds for :func:`retune.warmstart.enqueue_seeds`, which clips them into the current search
space, enqueues them as ordinary trials (scored on the new data) and marks each with its
source, so which past tasks were used is recorded on the trials and their MLflow runs.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0]})
    >>> f = meta_features(df, target="y", task="regression", numerical=["x"], categorical=[])
    >>> f["target_corr"], f["n_numerical"]
    (1.0, 1.0)
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from retune.settings import Settings, get_settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from retune.config import ParamSpec

log = logging.getLogger(__name__)

SEED_PREFIX = "meta:"
"""Warm-start source label of a seed taken from a similar past task: ``meta:<config>``."""

TASKS = ("classification", "regression")

COMMON_FEATURES = (
    "rows_log10",
    "n_numerical",
    "n_categorical",
    "target_corr",
    "feature_corr",
    "skewness",
    "kurtosis",
    "missing_share",
    "cat_cardinality_log",
)
CLASSIFICATION_FEATURES = ("minority_share", "class_entropy")
REGRESSION_FEATURES = ("target_cv",)

_CV_CAP = 1e6  # a target whose mean is ~0 has an unbounded coefficient of variation
_EPS = 1e-12


# --------------------------------------------------------------------------- meta-features


def _finite(value: float) -> float:
    """``value`` as a float, or 0.0 when it is NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _mean(values: Sequence[float]) -> float:
    return _finite(sum(values) / len(values)) if values else 0.0


def _numeric(series: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing, non-numeric and infinite values."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    values[~np.isfinite(values)] = np.nan
    return values


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation on the rows where both are present; 0.0 when undefined."""
    import numpy as np

    mask = np.isfinite(x) & np.isfinite(y)
    if mask.sum() < 2:
        return 0.0
    a, b = x[mask], y[mask]
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant: no linear relation
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom <= _EPS:
        return 0.0
    return _finite(max(-1.0, min(1.0, float(a @ b) / denom)))


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Sample skewness and excess kurtosis (pandas' bias-corrected estimators); 0.0 when undefined."""
    import numpy as np
    import pandas as pd

    values = x[np.isfinite(x)]
    if len(values) < 3 or np.ptp(values) == 0:
        return 0.0, 0.0
    series = pd.Series(values)
    return _finite(series.skew()), _finite(series.kurt()) if len(values) >= 4 else 0.0


def meta_features(df: pd.DataFrame, *, target: str, task: str, numerical: list[str], categorical: list[str]) -> dict[str, float]:
    """Describe a dataset by a few numbers that do not depend on column names.

    Every value is a finite float (undefined quantities, such as the correlation of a
    constant or all-NaN column, count as 0.0) and the result depends only on the data.

    ========================  ===================================================================
    key                       meaning
    ========================  ===================================================================
    ``rows_log10``            log10 of the number of rows
    ``n_numerical``           number of numerical features
    ``n_categorical``         number of categorical features
    ``target_corr``           mean absolute Pearson r of each numerical feature with the target
                              (classification: with the label-encoded target, classes sorted)
    ``feature_corr``          mean absolute Pearson r over pairs of numerical features
    ``skewness``              mean sample skewness of the numerical features
    ``kurtosis``              mean sample excess kurtosis of the numerical features
    ``missing_share``         share of missing cells among the feature columns
    ``cat_cardinality_log``   log10(1 + mean number of distinct values of a categorical feature)
    ``minority_share``        classification: share of the rarest class
    ``class_entropy``         classification: class entropy / log(number of classes) (1 = balanced)
    ``target_cv``             regression: std / abs(mean) of the target (0 if the mean is 0)
    ========================  ===================================================================

    Args:
        df: The data (features and target).
        target: The target column.
        task: ``"classification"`` or ``"regression"``.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.

    Returns:
        The meta-features, keys as above (the task-specific ones only for their task).

    Raises:
        ValueError: If ``task`` is unknown or a column is missing.
    """
    import numpy as np
    import pandas as pd

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    missing = [c for c in [target, *numerical, *categorical] if c not in df.columns]
    if missing:
        raise ValueError(f"columns not in the frame: {missing}")

    n_rows = len(df)
    if task == "classification":
        codes, _ = pd.factorize(df[target], sort=True)
        y = codes.astype("float64")
        y[codes < 0] = np.nan
    else:
        y = _numeric(df[target])

    columns = [_numeric(df[c]) for c in numerical]
    target_corr = _mean([abs(_pearson(x, y)) for x in columns])
    pairs = [abs(_pearson(columns[i], columns[j])) for i in range(len(columns)) for j in range(i + 1, len(columns))]
    moments = [_moments(x) for x in columns]

    feature_cols = [*numerical, *categorical]
    cells = n_rows * len(feature_cols)
    if cells:
        nan_cells = sum(int(np.isnan(x).sum()) for x in columns)  # counts non-numeric and inf too
        nan_cells += sum(int(df[c].isna().sum()) for c in categorical)
        missing_share = nan_cells / cells
    else:
        missing_share = 0.0
    cardinalities = [float(df[c].nunique(dropna=True)) for c in categorical]

    out: dict[str, float] = {
        "rows_log10": math.log10(n_rows) if n_rows > 0 else 0.0,
        "n_numerical": float(len(numerical)),
        "n_categorical": float(len(categorical)),
        "target_corr": target_corr,
        "feature_corr": _mean(pairs),
        "skewness": _mean([m[0] for m in moments]),
        "kurtosis": _mean([m[1] for m in moments]),
        "missing_share": missing_share,
        "cat_cardinality_log": math.log10(1.0 + _mean(cardinalities)) if cardinalities else 0.0,
    }
    if task == "classification":
        counts = df[target].value_counts(dropna=True).to_numpy(dtype="float64")
        total = counts.sum()
        if total > 0:
            shares = counts / total
            out["minority_share"] = float(shares.min())
            k = len(shares)
            out["class_entropy"] = float(-(shares * np.log(shares)).sum() / math.log(k)) if k > 1 else 0.0
        else:
            out["minority_share"] = out["class_entropy"] = 0.0
    else:
        present = y[np.isfinite(y)]
        if len(present) >= 2 and abs(float(present.mean())) > _EPS:
            out["target_cv"] = min(float(present.std(ddof=1)) / abs(float(present.mean())), _CV_CAP)
        else:
            out["target_cv"] = 0.0
    return {key: _finite(value) for key, value in out.items()}


def search_space_hash(space: Mapping[str, ParamSpec]) -> str:
    """A short, stable digest of a search space (names, types and ranges).

    Args:
        space: The search space of a config (``cfg.model.search_space``).

    Returns:
        16 hex characters.
    """
    import hashlib

    plain = {name: spec.model_dump(mode="json") for name, spec in space.items()}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the store

_TABLES_LOCK = threading.Lock()


def _table(url: str) -> tuple[sa.Engine, sa.Table]:
    with _TABLES_LOCK:  # the first use from many threads at once creates the table once
        return _make_table(url)


@cache
def _make_table(url: str) -> tuple[sa.Engine, sa.Table]:
    import sqlalchemy as sa

    from retune.db import make_engine

    engine = make_engine(url)

    meta = sa.MetaData()
    table = sa.Table(
        "retune_meta",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("config", sa.String(64), nullable=False, index=True),
        sa.Column("model_family", sa.String(64), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("best_params", sa.Text, nullable=False),
        sa.Column("best_value", sa.Float, nullable=True),
        sa.Column("search_space_hash", sa.String(64), nullable=True),
        sa.Index("ix_retune_meta_family_task", "model_family", "task"),
    )
    try:
        meta.create_all(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError:  # created concurrently by another process
        meta.create_all(engine, checkfirst=True)
    return engine, table


def _now() -> datetime:
    return datetime.now(UTC)


def record_task(
    settings: Settings | None,
    *,
    config: str,
    family: str,
    task: str,
    metric: str,
    direction: str,
    features: Mapping[str, float],
    best_params: Mapping[str, Any],
    best_value: float | None,
    search_space_hash: str | None = None,
    now: datetime | None = None,
) -> int:
    """Record a finished retune: the data's meta-features and the best params found.

    Args:
        settings: State locations (``policy_db``); ``None`` reads the environment.
        config: The model config name.
        family: The model family (``cfg.model.family``).
        task: ``"classification"`` or ``"regression"``.
        metric: The metric the study optimised.
        direction: ``"minimize"`` or ``"maximize"``.
        features: From :func:`meta_features` (non-finite values are stored as 0.0).
        best_params: The best trial's params.
        best_value: The best trial's value (``None`` or non-finite is stored as NULL).
        search_space_hash: :func:`search_space_hash` of the space searched, if known.
        now: The time of the record (tests).

    Returns:
        The new row's id.
    """
    import sqlalchemy as sa

    settings = settings or get_settings()
    engine, table = _table(settings.policy_db)
    value = float(best_value) if best_value is not None and math.isfinite(float(best_value)) else None
    with engine.begin() as conn:
        inserted = conn.execute(
            sa.insert(table).values(
                created_at=now or _now(),
                config=config,
                model_family=family,
                task=task,
                metric=metric,
                direction=direction,
                features=json.dumps({str(k): _finite(v) for k, v in features.items()}, sort_keys=True),
                best_params=json.dumps(dict(best_params), sort_keys=True, default=str),
                best_value=value,
                search_space_hash=search_space_hash,
            )
        ).inserted_primary_key
    row_id = int(inserted[0]) if inserted else -1
    log.info("meta-learning: recorded task %d for %s (%s, %s)", row_id, config, family, task)
    return row_id


def _latest_rows(settings: Settings, *, family: str, task: str, exclude_config: str | None) -> list[dict[str, Any]]:
    """The newest row of every config of the family and task, except ``exclude_config``."""
    import sqlalchemy as sa

    engine, table = _table(settings.policy_db)
    where = [table.c.model_family == family, table.c.task == task]
    if exclude_config is not None:
        where.append(table.c.config != exclude_config)
    newest = sa.select(sa.func.max(table.c.id)).where(*where).group_by(table.c.config).scalar_subquery()
    query = sa.select(table).where(table.c.id.in_(newest)).order_by(table.c.id)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _loads(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _distances(query: Mapping[str, float], rows: list[dict[str, float]]) -> list[float]:
    """Euclidean distances from ``query`` to ``rows`` on z-scored features.

    Each of the query's features is standardised over the rows plus the query; a feature
    with zero variance there is ignored. A row without a feature (an older record) gets the
    mean of the others for it, so it neither helps nor hurts.
    """
    import numpy as np

    keys = sorted(query)
    matrix = np.full((len(rows) + 1, len(keys)), np.nan)
    matrix[0] = [_finite(query[k]) for k in keys]
    for i, row in enumerate(rows, start=1):
        for j, key in enumerate(keys):
            if key in row:
                matrix[i, j] = _finite(row[key])
    for j in range(len(keys)):
        column = matrix[:, j]
        column[np.isnan(column)] = np.nanmean(column)
    if not keys:
        return [0.0] * len(rows)
    std = matrix.std(axis=0)
    used = std > _EPS * np.maximum(1.0, np.abs(matrix).max(axis=0))
    if not used.any():
        return [0.0] * len(rows)
    z = (matrix[:, used] - matrix[:, used].mean(axis=0)) / std[used]
    return [float(d) for d in np.sqrt(((z[1:] - z[0]) ** 2).sum(axis=1))]


def nearest_tasks(
    settings: Settings | None,
    *,
    features: Mapping[str, float],
    family: str,
    task: str,
    exclude_config: str,
    k: int = 3,
) -> list[dict[str, Any]]:
    """The ``k`` past tasks whose data look most like ``features``.

    Only tasks of the same model family and task type count, never ``exclude_config``'s
    own, and each config once, by its newest record. Distance is Euclidean on the
    meta-features standardised (z-scores) across those candidates plus the query; a feature
    without variance among them is ignored.

    Args:
        settings: State locations (``policy_db``); ``None`` reads the environment.
        features: The new task's :func:`meta_features`.
        family: The model family.
        task: ``"classification"`` or ``"regression"``.
        exclude_config: The config being tuned (its own records are not "similar tasks").
        k: How many.

    Returns:
        Nearest first: ``{"id", "config", "distance", "best_params", "best_value", "metric",
        "direction", "search_space_hash", "created_at"}`` (``created_at`` ISO 8601).
    """
    if k <= 0:
        return []
    settings = settings or get_settings()
    rows = _latest_rows(settings, family=family, task=task, exclude_config=exclude_config)
    if not rows:
        return []
    distances = _distances(features, [_loads(r["features"]) for r in rows])
    found = [
        {
            "id": int(r["id"]),
            "config": r["config"],
            "distance": dist,
            "best_params": _loads(r["best_params"]),
            "best_value": r["best_value"],
            "metric": r["metric"],
            "direction": r["direction"],
            "search_space_hash": r["search_space_hash"],
            "created_at": r["created_at"].isoformat() if r["created_at"] is not None else None,
        }
        for r, dist in zip(rows, distances, strict=True)
    ]
    found.sort(key=lambda f: (f["distance"], f["config"]))
    return found[:k]


def seeds_from(neighbours: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Warm-start seeds from :func:`nearest_tasks`' answer (tasks without params are skipped).

    Args:
        neighbours: Past tasks, nearest first.

    Returns:
        ``("meta:<config>", params)`` pairs, nearest first.
    """
    return [(f"{SEED_PREFIX}{n['config']}", dict(n["best_params"])) for n in neighbours if n.get("best_params")]


def seeds_from_similar(
    settings: Settings | None,
    *,
    features: Mapping[str, float],
    family: str,
    task: str,
    exclude_config: str,
    k: int = 3,
) -> list[tuple[str, dict[str, Any]]]:
    """Seeds for a model without history: the best params of the ``k`` most similar past tasks.

    The result goes to :func:`retune.warmstart.enqueue_seeds`, which clips each params set
    into the current search space and records its source on the trial.

    Args:
        settings: State locations (``policy_db``); ``None`` reads the environment.
        features: The new task's :func:`meta_features`.
        family: The model family.
        task: ``"classification"`` or ``"regression"``.
        exclude_config: The config being tuned.
        k: How many past tasks.

    Returns:
        ``("meta:<config>", params)`` pairs, nearest first.
    """
    neighbours = nearest_tasks(settings, features=features, family=family, task=task, exclude_config=exclude_config, k=k)
    seeds = seeds_from(neighbours)
    log.info(
        "meta-learning: %d seed(s) for %s from %s",
        len(seeds),
        exclude_config,
        [(n["config"], round(n["distance"], 3)) for n in neighbours],
    )
    return seeds

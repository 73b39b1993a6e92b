"""Reading and checking data windows.

A :class:`DataSource` returns the rows whose time column falls in ``[start, end)``.
:func:`load_window` reads a window and refuses bad data with a :class:`~retune.errors.DataError`
that names the source and the column: a missing column, a wrong dtype, an empty window,
NaN or inf in the target. Windows are addressed by their bounds, so tasks pass the bounds
and a content digest between them, never the rows.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=3, tz="UTC"), "y": [1.0, 2.0, 3.0]})
    >>> len(frame_digest(df))
    64
"""

from __future__ import annotations

import abc
import glob
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retune.config import RetuneConfig, SourceConfig, resolve_path
from retune.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class DataSource(abc.ABC):
    """Where a window of rows comes from."""

    @abc.abstractmethod
    def read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """Rows whose time column is in ``[start, end)`` (an open side when ``None``)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short text naming the source, for errors and lineage."""


class FileSource(DataSource):
    """CSV or Parquet files matched by a path or glob.

    Args:
        pattern: An absolute path or glob.
        time_column: The column that orders rows in time.
        fmt: ``"csv"``, ``"parquet"`` or ``"auto"`` (by file extension).
        read_options: Extra keyword arguments for the pandas reader.
    """

    def __init__(self, pattern: str, *, time_column: str, fmt: str = "auto", read_options: dict[str, Any] | None = None):
        self.pattern = pattern
        self.time_column = time_column
        self.fmt = fmt
        self.read_options = dict(read_options or {})

    def describe(self) -> str:
        return self.pattern

    def files(self) -> list[str]:
        """The matching files, sorted.

        Raises:
            DataError: If nothing matches.
        """
        files = sorted(glob.glob(self.pattern)) if glob.has_magic(self.pattern) else [self.pattern]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise DataError(f"{self.pattern}: no data file found")
        return files

    def _read_file(self, path: str) -> pd.DataFrame:
        import pandas as pd

        fmt = self.fmt
        if fmt == "auto":
            fmt = "parquet" if path.endswith((".parquet", ".pq")) else "csv"
        try:
            if fmt == "parquet":
                return pd.read_parquet(path, **self.read_options)
            return pd.read_csv(path, **self.read_options)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None

    def read(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        import pandas as pd

        frames = [self._read_file(f) for f in self.files()]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        df = parse_time_column(df, self.time_column, self.describe())
        mask = pd.Series(True, index=df.index)
        if start is not None:
            mask &= df[self.time_column] >= pd.Timestamp(start)
        if end is not None:
            mask &= df[self.time_column] < pd.Timestamp(end)
        return df.loc[mask].sort_values(self.time_column, kind="stable").reset_index(drop=True)


def parse_time_column(df: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """Parse the time column to UTC timestamps.

    Raises:
        DataError: If the column is missing or cannot be parsed.
    """
    import pandas as pd

    if column not in df.columns:
        raise DataError(f"{where}: missing time column {column!r} (columns: {list(df.columns)})")
    if not isinstance(df[column].dtype, pd.DatetimeTZDtype):
        try:
            parsed = pd.to_datetime(df[column], utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: time column {column!r} cannot be parsed as timestamps: {exc}") from None
        df = df.assign(**{column: parsed})
    else:
        df = df.assign(**{column: df[column].dt.tz_convert("UTC")})
    return df


def make_source(spec: SourceConfig, cfg: RetuneConfig, variables: dict[str, str] | None = None) -> DataSource:
    """Build the data source a config section describes.

    Args:
        spec: The ``data.production`` or ``data.reference`` section.
        cfg: The whole config (for the time column and the config's folder).
        variables: Extra variables for ``${...}`` in paths.

    Returns:
        A data source.
    """
    assert spec.path is not None
    base = Path(cfg.source_file).parent if cfg.source_file else Path.cwd()
    return FileSource(
        resolve_path(spec.path, base=base, variables=variables),
        time_column=cfg.data.time_column,
        fmt=spec.format,
        read_options=spec.read_options,
    )


@dataclass(frozen=True)
class FeatureSet:
    """The feature columns with their declared types."""

    numerical: list[str]
    categorical: list[str]

    @property
    def columns(self) -> list[str]:
        """All feature columns, numerical first."""
        return [*self.numerical, *self.categorical]


def resolve_features(cfg: RetuneConfig, df: pd.DataFrame) -> FeatureSet:
    """The feature columns of a config; with only ``exclude`` given, typed by pandas dtype.

    Args:
        cfg: The model config.
        df: A window, used only when the config does not list numerical features.

    Returns:
        The feature set.
    """
    import pandas as pd

    feats = cfg.features
    if feats.numerical is not None:
        return FeatureSet(list(feats.numerical), list(feats.categorical))
    skip = {cfg.target, cfg.data.time_column, *feats.exclude, *feats.categorical}
    numerical = [
        c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    categorical = list(feats.categorical) + [c for c in df.columns if c not in skip and c not in numerical]
    return FeatureSet(numerical, categorical)


def check_frame(
    df: pd.DataFrame, cfg: RetuneConfig, features: FeatureSet, *, where: str, need_target: bool = True
) -> pd.DataFrame:
    """Check a window against the config and return it cleaned.

    Checks: rows present (at least ``data.min_rows``), every feature and the target present,
    numerical features numeric, target without NaN or inf. Inf in a numerical feature is
    treated as missing (NaN), which every model family handles.

    Args:
        df: The window.
        cfg: The model config.
        features: The feature set.
        where: Names the window in errors, e.g. ``"production window [a, b) of path"``.
        need_target: Whether the target column is required.

    Returns:
        The window with inf features set to NaN and categorical features as strings.

    Raises:
        DataError: Naming the window and the column.
    """
    import numpy as np
    import pandas as pd

    if df.empty:
        raise DataError(f"{where}: the window is empty (0 rows)")
    if len(df) < cfg.data.min_rows:
        raise DataError(f"{where}: only {len(df)} rows, data.min_rows is {cfg.data.min_rows}")
    needed = features.columns + ([cfg.target] if need_target else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} (columns: {list(df.columns)})")
    for col in features.numerical:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise DataError(f"{where}: column {col!r} is declared numerical but has dtype {df[col].dtype}")
    out = df.copy()
    for col in features.numerical:
        values = out[col].to_numpy(dtype=float, na_value=np.nan)
        if np.isinf(values).any():
            out[col] = np.where(np.isinf(values), np.nan, values)
    for col in features.categorical:
        out[col] = out[col].astype("string").astype(object).where(out[col].notna(), None)
    if need_target:
        y = out[cfg.target]
        n_nan = int(y.isna().sum())
        if n_nan:
            raise DataError(f"{where}: target column {cfg.target!r} has {n_nan} NaN value(s)")
        if cfg.task == "regression":
            if not pd.api.types.is_numeric_dtype(y):
                raise DataError(f"{where}: target column {cfg.target!r} must be numeric for regression, has dtype {y.dtype}")
            if np.isinf(y.to_numpy(dtype=float)).any():
                raise DataError(f"{where}: target column {cfg.target!r} has inf values")
        elif y.nunique() < 2:
            raise DataError(f"{where}: target column {cfg.target!r} has a single class ({y.iloc[0]!r}); a classifier needs two")
    return out


def frame_digest(df: pd.DataFrame) -> str:
    """A SHA-256 over the full content of a frame: column names, dtypes and every value.

    Args:
        df: The frame.

    Returns:
        A 64-character hex digest.
    """
    import pandas as pd

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Window:
    """A time window ``[start, end)`` of one source."""

    kind: Literal["reference", "production"]
    start: datetime | None
    end: datetime | None

    def label(self) -> str:
        """``"production [2024-05-01, 2024-05-08)"``."""
        s = self.start.isoformat() if self.start else "-inf"
        e = self.end.isoformat() if self.end else "+inf"
        return f"{self.kind} [{s}, {e})"

    def to_json(self) -> dict[str, Any]:
        """A small JSON value for XCom."""
        return {
            "kind": self.kind,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Window:
        """The inverse of :meth:`to_json`."""
        from retune.config import parse_timestamp

        return cls(
            kind=value["kind"],
            start=parse_timestamp(value["start"]) if value.get("start") else None,
            end=parse_timestamp(value["end"]) if value.get("end") else None,
        )


def load_window(
    cfg: RetuneConfig,
    window: Window,
    *,
    variables: dict[str, str] | None = None,
    features: FeatureSet | None = None,
    need_target: bool = True,
) -> tuple[pd.DataFrame, FeatureSet]:
    """Read a window of the reference or production source and check it.

    Args:
        cfg: The model config.
        window: Which source and bounds.
        variables: Extra variables for ``${...}`` in paths.
        features: The feature set to check against (default: resolved from the window).
        need_target: Whether the target must be present.

    Returns:
        The checked rows, ordered by time, and the feature set.

    Raises:
        DataError: If the data is unusable; the message names the source and column.
    """
    spec: SourceConfig
    if window.kind == "reference" and cfg.data.reference.path is not None:
        spec = cfg.data.reference
    else:
        spec = cfg.data.production
    source = make_source(spec, cfg, variables)
    df = source.read(window.start, window.end)
    where = f"{window.label()} of {source.describe()}"
    feats = features or resolve_features(cfg, df)
    return check_frame(df, cfg, feats, where=where, need_target=need_target), feats


@dataclass(frozen=True)
class RetuneSplit:
    """A time-ordered split of a retune's data: tuning (train + validation) and holdout."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def tuning(self) -> pd.DataFrame:
        """Train and validation together: what the winner is refit on."""
        import pandas as pd

        return pd.concat([self.train, self.valid], ignore_index=True)


def split_for_retune(df: pd.DataFrame, cfg: RetuneConfig) -> RetuneSplit:
    """Split a time-ordered window: the newest ``holdout_fraction`` is the staging holdout,
    the newest ``validation_fraction`` of the rest scores trials, the oldest part trains.

    Raises:
        DataError: If a part would have fewer than 10 rows.
    """
    n = len(df)
    n_hold = int(round(n * cfg.data.holdout_fraction))
    n_rest = n - n_hold
    n_valid = int(round(n_rest * cfg.data.validation_fraction))
    n_train = n_rest - n_valid
    if min(n_hold, n_valid, n_train) < 10:
        raise DataError(
            f"retune window has {n} rows: too few to split into train ({n_train}), "
            f"validation ({n_valid}) and holdout ({n_hold}); widen data.train_window"
        )
    return RetuneSplit(
        train=df.iloc[:n_train].reset_index(drop=True),
        valid=df.iloc[n_train:n_rest].reset_index(drop=True),
        holdout=df.iloc[n_rest:].reset_index(drop=True),
    )

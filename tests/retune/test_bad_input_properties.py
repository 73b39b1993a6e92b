"""Bad input, property-based (hypothesis): every bad config or data window is refused with a
clear error, or handled as documented below, and nothing is registered on error.

Hypothesis draws configs and data windows with one to three defects each and checks the
checking functions (``load_config``, ``check_frame``, ``load_window``, ``resolve_features``,
``split_for_retune``, the drift detector, and ``retune.pipeline.prepare`` on a tiny file)
against this table. A handful of representative refusals then run through ``prepare`` and
``check_drift`` on a real MLflow registry (SQLite in a temporary folder) whose model has a
``champion``: its versions, aliases, runs, experiments and Optuna studies stay as they were.

=====================================  ==============================================================
input                                  behaviour
=====================================  ==============================================================
config: unknown key, wrong type,       refused: ``ConfigError`` ``<file>: <field>: <reason>``, every
out-of-range number, bad duration,     offending field named (a cross-field check, such as the
unsafe name, unknown task, family or   metric for the task or the target used as a feature, runs
metric, inverted search range,         when the fields themselves are valid)
reference start after end, a column
both numerical and categorical, the
target as a feature
config file missing                    refused: ``ConfigError`` ``<file>: config file does not exist``
no data file, unreadable file          refused: ``DataError`` ``<path>: no data file found`` /
                                       ``cannot read as csv``
missing feature or target column       refused: ``DataError`` ``<window> of <file>: missing
(also one renamed in the data)         column(s) [...]``
column renamed in a later file of one  handled: the files are concatenated, so the old name has no
glob (old files keep the old name)     value in the new rows: see all-NaN feature column below
missing / renamed time column          refused: ``DataError`` ``missing time column 'ts'``
new column not in ``features``         handled: ignored. With only ``features.exclude`` it becomes a
                                       feature of the next retune (typed by its dtype); a drift check
                                       types features by the reference, so a production window
                                       without one of them is refused (missing column). A date or
                                       time column is refused then (``DataError`` naming it: add it
                                       to ``features.exclude``)
numerical feature as text, bool or     refused: ``DataError`` ``column 'x' is declared numerical but
datetime                               has dtype ...``
integer or nullable numerical feature  handled: float64, pd.NA as NaN (the tree models cannot take
(Int64, Float64 with pd.NA: Parquet)   pd.NA; the logged model's signature says double, so a gap
                                       in a later window is no schema error)
categorical feature as numbers         handled: text labels; integer codes read as floats because of
                                       a gap (``3.0``) get the integer's label (``"3"``)
time column not parseable              refused: ``DataError`` ``time column 'ts' cannot be parsed``
regression target not numeric          refused: ``DataError`` ``must be numeric for regression``
NaN / inf in the target                refused: ``DataError`` ``target column 'y' has N NaN
                                       value(s)`` / ``has inf values``
inf in a numerical feature             handled: NaN (missing): the models take NaN, the drift tests
                                       drop it
NaN in a feature                       handled: kept as missing (categorical: ``None``)
all-NaN feature column                 drift check: no test can run; reported with method
                                       ``all values missing``, drifted when it has no value in one
                                       window only, not drifted when in neither. Retune: a numerical
                                       feature without a value in the train part is refused
                                       (``DataError`` naming it: the models cannot learn from it,
                                       gradient boosting fails on it); a categorical one is one
                                       missing category for the models
constant feature column                handled: tested as any column (equal constants: no drift,
                                       different ones: drift); the models fit (trees never split on
                                       it, linear models scale it to zero)
constant regression target             refused: ``DataError`` ``target column 'y' is constant``
single-class classification target     refused: ``DataError`` ``has a single class`` (the window, or
                                       the train, validation or holdout part of a retune)
very high-cardinality categorical      handled: tested with chi-square / Jensen-Shannon (new
(a distinct value per row)             categories are drift); the models bucket rare categories
                                       (ordinal encoder: 250, one-hot: 50, rest "infrequent")
duplicate timestamps                   handled: kept; ordered by time, ties in file order (files:
                                       deterministic); a SQL source orders ties by row content, so
                                       a re-read gives the same digest whatever order PostgreSQL
                                       returned them in
empty window (no row in its bounds,    refused: ``DataError`` ``<window> of <file>: the window is
a header-only file, a gap in the data) empty (0 rows)``
fewer rows than ``data.min_rows`` /    refused: ``DataError`` ``only N rows, data.min_rows is M`` /
too few to split                       ``too few to split``
=====================================  ==============================================================

Every refusal happens while the window is read and checked, before MLflow or Optuna is
touched: no run, no study, no model version, and ``champion`` stays where it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from retune.config import NAME_PATTERN, DriftConfig, RetuneConfig, load_config
from retune.data import (
    FeatureSet,
    Window,
    check_frame,
    frame_digest,
    load_window,
    order_by_time,
    resolve_features,
    split_for_retune,
)
from retune.drift import ALL_MISSING, EvidentlyDriftDetector
from retune.errors import ConfigError, DataError

T0 = pd.Timestamp("2025-01-01", tz="UTC")
NUM = ["x1", "x2", "count"]
CAT = ["color", "code"]
MIN_ROWS = 20
MODEL = "props-model"
WHERE = "production [a, b) of data.csv"

PROPS = settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    derandomize=os.environ.get("CI") == "true",  # CI: the same examples every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def base_config(task: str = "regression", **changes: Any) -> dict[str, Any]:
    """A small valid config: hourly rows, min_rows 20, a 4-day retune window."""
    cfg: dict[str, Any] = {
        "name": "props",
        "task": task,
        "target": "y" if task == "regression" else "label",
        "data": {
            "production": {"path": "data/*.csv"},
            "reference": {"start": "2025-01-01", "end": "2025-01-03"},
            "time_column": "ts",
            "window": "1d",
            "train_window": "4d",
            "min_rows": MIN_ROWS,
        },
        "features": {"numerical": list(NUM), "categorical": list(CAT)},
        "model": {
            "family": "hist_gradient_boosting",
            "fixed_params": {"max_iter": 10},
            "search_space": {"learning_rate": {"type": "log_float", "low": 0.05, "high": 0.3}},
        },
        "metric": {"name": "mae" if task == "regression" else "accuracy"},
        "drift": {"reference": "fixed"},
        "tuning": {"n_trials": 2, "n_steps": 2, "pruner": {"type": "median"}},
        "registry": {"model_name": MODEL},
    }
    cfg.update(changes)
    return cfg


def make_cfg(task: str = "regression", source_file: str | None = None, **changes: Any) -> RetuneConfig:
    data = base_config(task, **changes)
    if source_file is not None:
        data["source_file"] = source_file
    return RetuneConfig.model_validate(data)


def base_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Clean hourly rows from T0: three numerical features, a text and an integer-coded
    categorical, a regression target ``y`` and a class ``label``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ts": pd.date_range(T0, periods=n, freq="h"),
            "x1": rng.normal(size=n),
            "x2": rng.uniform(0, 10, n).round(2),
            "count": rng.integers(0, 100, n),
            "color": rng.choice(["red", "green", "blue"], n).astype(object),
            "code": rng.integers(1, 5, n),
            "y": rng.normal(50, 10, n).round(3),
            "label": np.where(np.arange(n) % 3 == 0, "yes", "no").astype(object),
        }
    )


# --------------------------------------------------------------------------- defects

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _present(df: pd.DataFrame, names: list[str]) -> list[str]:
    return [c for c in names if c in df.columns]


def _rows(draw: Draw, df: pd.DataFrame) -> np.ndarray:
    """Some row positions: none, a few, or every k-th row from an offset."""
    n = len(df)
    if n == 0:
        return np.array([], dtype=int)
    if draw(st.booleans()):
        return np.array(sorted(draw(st.sets(st.integers(0, n - 1), max_size=min(n, 6)))), dtype=int)
    offset, step = draw(st.integers(0, n - 1)), draw(st.integers(1, max(1, n // 2)))
    return np.arange(offset, n, step)


def _column(draw: Draw, df: pd.DataFrame, names: list[str]) -> str | None:
    names = _present(df, names)
    return draw(st.sampled_from(names)) if names else None


def d_drop(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, *CAT, target])
    return df if col is None else df.drop(columns=col)


def d_rename(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, *CAT, target])
    return df if col is None else df.rename(columns={col: f"{col}_v2"})


def d_add(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    kind = draw(st.sampled_from(["float", "text", "bool"]))
    values = {
        "float": np.linspace(0, 1, len(df)),
        "text": [f"v{i % 7}" for i in range(len(df))],
        "bool": np.arange(len(df)) % 2 == 0,
    }
    return df.assign(**{f"new_{kind}": values[kind]})


def d_num_as_text(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, NUM)
    if col is None or df.empty:
        return df
    df = df.copy()
    if draw(st.booleans()):
        df[col] = df[col].map(lambda v: str(v).replace(".", ","))  # a decimal comma
    else:
        df[col] = df[col].astype(object)
        df.loc[df.index[draw(st.integers(0, len(df) - 1))], col] = "n/a"
    return df


def d_num_as_bool_or_time(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, NUM)
    if col is None or not pd.api.types.is_numeric_dtype(df[col]):
        return df
    if draw(st.booleans()):
        return df.assign(**{col: df[col] > df[col].median()})
    return df.assign(**{col: pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(len(df)), unit="D")})


def d_nullable(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, ["x1", "x2", "count", target] if target == "y" else NUM)
    if col is None or not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
        return df
    values = df[col].astype("Int64" if pd.api.types.is_integer_dtype(df[col]) else "Float64")
    values.iloc[_rows(draw, df)] = pd.NA
    return df.assign(**{col: values})


def d_categorical_as_numbers(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    df = df.copy()
    if "color" in df.columns and draw(st.booleans()):
        df["color"] = np.arange(len(df)) % 4  # codes instead of names
    elif "code" in df.columns and pd.api.types.is_numeric_dtype(df["code"]):
        code = df["code"].astype(float)  # a gap turns integer codes into floats: 3 -> 3.0
        code.iloc[_rows(draw, df)] = np.nan
        df["code"] = code
    return df


def d_all_missing(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, *CAT])
    if col is None:
        return df
    return df.assign(**{col: np.nan if col in NUM else None})


def d_constant(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, *CAT, target])
    if col is None or df.empty:
        return df
    return df.assign(**{col: [df[col].iloc[0]] * len(df)})


def d_inf(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, target])
    if col is None or not is_numerical(df[col]):
        return df
    values = df[col].to_numpy(dtype=float, na_value=np.nan).copy()
    rows = _rows(draw, df)
    values[rows] = draw(st.sampled_from([np.inf, -np.inf]))
    return df.assign(**{col: values})


def d_nan(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, [*NUM, *CAT, target])
    if col is None:
        return df
    df = df.copy()
    if pd.api.types.is_integer_dtype(df[col]) and not isinstance(df[col].dtype, pd.api.extensions.ExtensionDtype):
        df[col] = df[col].astype(float)
    elif pd.api.types.is_bool_dtype(df[col]):
        df[col] = df[col].astype(object)
    df.loc[df.index[_rows(draw, df)], col] = None
    return df


def d_target_as_text(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    if target not in df.columns:
        return df
    return df.assign(**{target: [f"v{v}" for v in df[target]]})


def d_high_cardinality(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    col = _column(draw, df, CAT)
    if col is None:
        return df
    return df.assign(**{col: [f"id-{i}" for i in range(len(df))]})


def d_duplicate_timestamps(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    if "ts" not in df.columns or len(df) < 2:
        return df
    ts = df["ts"].copy()
    for i in _rows(draw, df.iloc[1:]) + 1:
        ts.iloc[i] = ts.iloc[i - 1]
    return df.assign(ts=ts)


def d_truncate(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    return df.iloc[: draw(st.sampled_from([0, 1, MIN_ROWS - 1, MIN_ROWS]))].reset_index(drop=True)


def d_single_class(df: pd.DataFrame, draw: Draw, target: str) -> pd.DataFrame:
    if target not in df.columns or df.empty:
        return df
    return df.assign(**{target: [df[target].iloc[-1]] * len(df)})


DEFECTS: dict[str, Callable[[pd.DataFrame, Draw, str], pd.DataFrame]] = {
    "drop": d_drop,
    "rename": d_rename,
    "add": d_add,
    "num_as_text": d_num_as_text,
    "num_as_bool_or_time": d_num_as_bool_or_time,
    "nullable": d_nullable,
    "categorical_as_numbers": d_categorical_as_numbers,
    "all_missing": d_all_missing,
    "constant": d_constant,
    "inf": d_inf,
    "nan": d_nan,
    "target_as_text": d_target_as_text,
    "high_cardinality": d_high_cardinality,
    "duplicate_timestamps": d_duplicate_timestamps,
    "truncate": d_truncate,
    "single_class": d_single_class,
}


def damage(df: pd.DataFrame, draw: Draw, target: str, names: list[str]) -> pd.DataFrame:
    for name in names:
        df = DEFECTS[name](df, draw, target)
    return df


defect_lists = st.lists(st.sampled_from(sorted(DEFECTS)), min_size=1, max_size=3)


# --------------------------------------------------------------------------- the table as an oracle


def outcome(expected: str | None) -> str:
    """A short label of a verdict, for hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if expected is None:
        return "handled"
    for word in (
        "empty",
        "only",
        "missing",
        "declared numerical",
        "NaN",
        "numeric for",
        "inf",
        "constant",
        "single class",
        "too few",
        "no value",
    ):
        if word in expected:
            return f"refused: {word}"
    return "refused"


def is_numerical(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def refusal(df: pd.DataFrame, cfg: RetuneConfig, features: FeatureSet, *, need_target: bool = True) -> str | None:
    """What the table says ``check_frame`` refuses first (a fragment of the message), or None."""
    if df.empty:
        return "the window is empty (0 rows)"
    if len(df) < cfg.data.min_rows:
        return f"only {len(df)} rows, data.min_rows is {cfg.data.min_rows}"
    missing = [c for c in features.columns + ([cfg.target] if need_target else []) if c not in df.columns]
    if missing:
        return f"missing column(s) {missing}"
    for col in features.numerical:
        if not is_numerical(df[col]):
            return f"column {col!r} is declared numerical but has dtype {df[col].dtype}"
    if not need_target:
        return None
    y = df[cfg.target]
    if y.isna().any():
        return f"target column {cfg.target!r} has {int(y.isna().sum())} NaN value(s)"
    if cfg.task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            return f"target column {cfg.target!r} must be numeric for regression"
        if np.isinf(y.to_numpy(dtype=float)).any():
            return f"target column {cfg.target!r} has inf values"
        if y.nunique() < 2:
            return f"target column {cfg.target!r} is constant"
    elif y.nunique() < 2:
        return f"target column {cfg.target!r} has a single class"
    return None


def split_refusal(df: pd.DataFrame, cfg: RetuneConfig, features: FeatureSet) -> str | None:
    """What the table says ``split_for_retune`` refuses in a checked window, or None."""
    n = len(df)
    n_hold = round(n * cfg.data.holdout_fraction)
    n_valid = round((n - n_hold) * cfg.data.validation_fraction)
    n_train = n - n_hold - n_valid
    if cfg.data.time_column in df.columns:  # a cut inside one time's rows moves back to its first row
        times = list(df[cfg.data.time_column])
        cuts = []
        for cut in (n - n_hold, n_train):
            while 0 < cut < n and times[cut] == times[cut - 1]:
                cut -= 1
            cuts.append(cut)
        n_hold, n_train = n - cuts[0], cuts[1]
        n_valid = cuts[0] - cuts[1]
    if min(n_hold, n_valid, n_train) < 10:
        return "too few to split"
    train = df.iloc[:n_train]
    empty = [c for c in features.numerical if train[c].isna().all()]
    if empty:
        return f"has no value in numerical feature(s) {empty}"
    if cfg.task == "classification" and train[cfg.target].nunique() < 2:
        return f"has a single class in target column {cfg.target!r}"
    if (
        cfg.task == "classification"
        and min(df.iloc[n_train : n - n_hold][cfg.target].nunique(), df.iloc[n - n_hold :][cfg.target].nunique()) < 2
    ):
        return f"in target column {cfg.target!r}, without the window's classes"
    return None


def assert_cleaned(before: pd.DataFrame, out: pd.DataFrame, features: FeatureSet) -> None:
    """The handled rows of the table: same rows and columns; numerical features float64
    with inf and pd.NA as NaN; categoricals text or None."""
    assert list(out.columns) == list(before.columns)
    assert len(out) == len(before)
    for col in features.numerical:
        assert out[col].dtype == np.float64, (col, out[col].dtype)
        expected = before[col].to_numpy(dtype=float, na_value=np.nan)
        expected = np.where(np.isinf(expected), np.nan, expected)
        np.testing.assert_array_equal(out[col].to_numpy(dtype=float), expected)
    for col in features.categorical:
        labels = out[col].tolist()
        assert all(v is None or isinstance(v, str) for v in labels), (col, labels[:5])
        assert [v is None for v in labels] == before[col].isna().tolist()
        if is_numerical(before[col]):  # codes: 3 and 3.0 are both "3"
            known = before[col].dropna().astype(float)
            if np.isfinite(known).all() and (known == known.round()).all():
                assert [labels[i] for i in np.flatnonzero(before[col].notna())] == [str(int(v)) for v in known]


# --------------------------------------------------------------------------- check_frame


@PROPS
@given(
    data=st.data(),
    n=st.integers(MIN_ROWS, 70),
    seed=st.integers(0, 2**16),
    task=st.sampled_from(["regression", "classification"]),
)
def test_check_frame_refuses_or_cleans_as_the_table_says(data: st.DataObject, n: int, seed: int, task: str) -> None:
    cfg = make_cfg(task)
    features = FeatureSet(list(NUM), list(CAT))
    defects = data.draw(defect_lists, label="defects")
    df = damage(base_frame(n, seed), data.draw, cfg.target, defects)
    before = df.copy()
    expected = refusal(df, cfg, features)
    event(outcome(expected))
    if expected is not None:
        with pytest.raises(DataError) as info:
            check_frame(df, cfg, features, where=WHERE)
        assert str(info.value).startswith(f"{WHERE}: "), info.value
        assert expected in str(info.value)
    else:
        assert_cleaned(before, check_frame(df, cfg, features, where=WHERE), features)
    pd.testing.assert_frame_equal(df, before)  # the input is never modified


@PROPS
@given(
    codes=st.lists(st.integers(-(2**40), 2**40), min_size=MIN_ROWS, max_size=40),
    gaps=st.sets(st.integers(0, 39), max_size=10),
)
def test_a_category_does_not_depend_on_gaps_in_the_window(codes: list[int], gaps: set[int]) -> None:
    """An integer-coded categorical read with a gap (floats) has the labels it has without one."""
    cfg = make_cfg(features={"numerical": [], "categorical": ["code"]})
    features = FeatureSet([], ["code"])
    df = pd.DataFrame({"code": codes, "y": np.arange(len(codes), dtype=float)})
    gappy = df.assign(code=[np.nan if i in gaps else float(v) for i, v in enumerate(codes)])
    whole = check_frame(df, cfg, features, where=WHERE)["code"].tolist()
    holed = check_frame(gappy, cfg, features, where=WHERE)["code"].tolist()
    assert whole == [str(v) for v in codes]
    assert holed == [None if i in gaps else str(v) for i, v in enumerate(codes)]


# --------------------------------------------------------------------------- resolve_features


@PROPS
@given(
    extra=st.dictionaries(
        st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z").filter(lambda s: s not in {"ts", "y", "label", *NUM, *CAT}),
        st.sampled_from(["float", "int", "text", "bool", "time"]),
        max_size=4,
    ),
    exclude=st.sets(st.sampled_from([*NUM, *CAT]), max_size=2),
    declared_categorical=st.sets(st.sampled_from(NUM), max_size=1),
)
def test_only_exclude_types_every_other_column_by_dtype(
    extra: dict[str, str], exclude: set[str], declared_categorical: set[str]
) -> None:
    """New columns become features of a config that lists only ``exclude``: numbers are
    numerical, text and bool categorical; target, time and the excluded columns never are.
    A date or time column is refused, naming it (each timestamp would be a category never
    seen in the reference: every window drifted)."""
    assume(not declared_categorical & exclude)  # both excluded and categorical: not a case here
    n = 30
    df = base_frame(n)
    makers = {
        "float": lambda: np.linspace(0, 1, n),
        "int": lambda: np.arange(n),
        "text": lambda: [f"t{i % 3}" for i in range(n)],
        "bool": lambda: np.arange(n) % 2 == 0,
        "time": lambda: pd.date_range("2020-01-01", periods=n, tz="UTC"),
    }
    df = df.assign(**{name: makers[kind]() for name, kind in extra.items()})
    cfg = make_cfg(features={"exclude": sorted(exclude | {"label"}), "categorical": sorted(declared_categorical)})
    times = [name for name, kind in extra.items() if kind == "time"]
    if times:
        with pytest.raises(DataError, match=re.escape(f"column(s) {times} hold dates or times")):
            resolve_features(cfg, df)
        return
    feats = resolve_features(cfg, df)
    assert not set(feats.numerical) & set(feats.categorical)
    assert set(feats.columns) == set(df.columns) - {"ts", "y", "label"} - exclude
    assert all(is_numerical(df[c]) for c in feats.numerical)
    assert set(declared_categorical) <= set(feats.categorical)
    for name, kind in extra.items():
        assert name in (feats.numerical if kind in ("float", "int") else feats.categorical)
    check_frame(df, cfg, feats, where=WHERE)  # and such a window passes the check


def test_a_column_renamed_in_production_is_missing_for_the_drift_check(tmp_path: Path) -> None:
    """Only ``exclude``: the reference decides the features; production renamed one of them."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "prod").mkdir()
    df = base_frame(96)
    df.iloc[:48].to_csv(tmp_path / "ref" / "rows.csv", index=False)
    df.iloc[48:].rename(columns={"x2": "x2_v2"}).to_csv(tmp_path / "prod" / "rows.csv", index=False)
    raw = base_config(features={"exclude": ["label"]})
    raw["data"]["production"] = {"path": "prod/*.csv"}
    raw["data"]["reference"]["path"] = "ref/*.csv"
    cfg = RetuneConfig.model_validate({**raw, "source_file": str(tmp_path / "props.yaml")})
    reference, feats = load_window(cfg, Window("reference", T0, T0 + pd.Timedelta("2D")), need_target=False)
    assert "x2" in feats.numerical and "x2_v2" not in feats.columns
    production = Window("production", T0 + pd.Timedelta("2D"), T0 + pd.Timedelta("4D"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['x2'\]") as info:
        load_window(cfg, production, features=feats, need_target=False)
    assert str(tmp_path / "prod" / "*.csv") in str(info.value)
    _, retune_feats = load_window(cfg, production)  # a retune on the new data takes the new name
    assert "x2_v2" in retune_feats.numerical and "x2" not in retune_feats.columns


def test_a_column_renamed_in_a_later_file_is_all_missing_in_the_new_rows(tmp_path: Path) -> None:
    """One glob, files with old and new names: the files are concatenated, so the old name
    has no value in the new rows. The drift check reports it (all values missing, drifted);
    a retune whose train part has no value of it is refused, naming it."""
    (tmp_path / "data").mkdir()
    df = base_frame(192)
    df.iloc[:96].to_csv(tmp_path / "data" / "a.csv", index=False)
    df.iloc[96:].rename(columns={"x2": "x2_v2"}).to_csv(tmp_path / "data" / "b.csv", index=False)
    cfg = make_cfg(source_file=str(tmp_path / "props.yaml"))
    reference, feats = load_window(cfg, Window("reference", T0, T0 + pd.Timedelta("2D")), need_target=False)
    current, _ = load_window(
        cfg, Window("production", T0 + pd.Timedelta("5D"), T0 + pd.Timedelta("6D")), features=feats, need_target=False
    )
    result = EvidentlyDriftDetector(html=False).detect(reference, current, numerical=NUM, categorical=CAT, policy=DriftConfig())
    x2 = next(c for c in result.summary.columns if c.column == "x2")
    assert (x2.method, x2.drifted) == (ALL_MISSING, True)
    retune, _ = load_window(cfg, Window("production", T0 + pd.Timedelta("4D"), T0 + pd.Timedelta("8D")))
    with pytest.raises(DataError, match=r"has no value in numerical feature\(s\) \['x2'\]"):
        split_for_retune(retune, cfg)


# --------------------------------------------------------------------------- load_window


@PROPS
@given(
    data=st.data(),
    n=st.integers(MIN_ROWS, 60),
    seed=st.integers(0, 2**16),
    files=st.integers(1, 2),
    time_defect=st.sampled_from(["none", "none", "none", "drop", "rename", "unparseable", "shuffle", "empty_file"]),
    bounds=st.tuples(st.integers(-5, 30), st.integers(0, 70) | st.none()),
)
def test_load_window_reads_orders_and_checks_as_the_table_says(
    data: st.DataObject, n: int, seed: int, files: int, time_defect: str, bounds: tuple[int, int | None]
) -> None:
    cfg_dir = Path(tempfile.mkdtemp(prefix="props-"))
    folder = cfg_dir / "data"
    folder.mkdir()
    cfg = make_cfg(source_file=str(cfg_dir / "props.yaml"))
    features = FeatureSet(list(NUM), list(CAT))
    defects = data.draw(
        st.lists(
            st.sampled_from(
                [
                    "drop",
                    "rename",
                    "add",
                    "all_missing",
                    "constant",
                    "inf",
                    "nan",
                    "high_cardinality",
                    "duplicate_timestamps",
                    "duplicate_timestamps",
                ]
            ),
            max_size=2,
        )
    )
    df = damage(base_frame(n, seed), data.draw, "y", defects).assign(rid=np.arange(n))
    if time_defect == "drop":
        df = df.drop(columns="ts")
    elif time_defect == "rename":
        df = df.rename(columns={"ts": "time"})
    elif time_defect == "unparseable":
        df["ts"] = df["ts"].astype(str)
        df.loc[data.draw(st.integers(0, n - 1)), "ts"] = "not a time"
    elif time_defect == "shuffle":
        df = df.sample(frac=1.0, random_state=seed)
    cut = len(df) // files
    parts = [df.iloc[:cut], df.iloc[cut:]] if files == 2 else [df]
    for i, part in enumerate(parts):
        path = folder / f"part-{i}.csv"
        if time_defect == "empty_file" and i == 0:
            path.write_text("")  # 0 bytes
        else:
            part.to_csv(path, index=False)
    start = T0 + pd.Timedelta(hours=bounds[0])
    end = None if bounds[1] is None else T0 + pd.Timedelta(hours=bounds[1])
    window = Window("production", start.to_pydatetime(), None if end is None else end.to_pydatetime())
    pattern = str(folder / "*.csv")

    if time_defect == "empty_file":
        with pytest.raises(DataError, match=r"cannot read as csv") as info:
            load_window(cfg, window)
        assert str(folder / "part-0.csv") in str(info.value)
        return
    if time_defect in ("drop", "rename"):
        with pytest.raises(DataError, match=r"missing time column 'ts'") as info:
            load_window(cfg, window)
        assert pattern in str(info.value)
        return
    if time_defect == "unparseable":
        with pytest.raises(DataError, match=r"time column 'ts' cannot be parsed") as info:
            load_window(cfg, window)
        assert pattern in str(info.value)
        return

    # The rows the table promises: in the bounds, all kept, by time, ties in file order.
    read = pd.concat([pd.read_csv(folder / f"part-{i}.csv") for i in range(files)], ignore_index=True)
    ts = pd.to_datetime(read["ts"], utc=True)
    inside = (ts >= start) & (ts < end) if end is not None else ts >= start
    expected = read.loc[inside].assign(ts=ts[inside]).sort_values("ts", kind="stable").reset_index(drop=True)
    reason = refusal(expected, cfg, features)
    event(outcome(reason))
    if reason is not None:
        with pytest.raises(DataError) as info:
            load_window(cfg, window)
        message = str(info.value)
        assert message.startswith(f"{window.label()} of {pattern}: "), message
        assert reason in message
        return
    out, feats = load_window(cfg, window)
    assert feats == features
    assert out["rid"].tolist() == expected["rid"].tolist()
    assert out["ts"].is_monotonic_increasing
    assert out["ts"].dt.tz is not None
    again, _ = load_window(cfg, window)
    assert frame_digest(again) == frame_digest(out)  # the same window reads the same


@PROPS
@given(
    times=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    values=st.data(),
)
def test_ties_ordered_by_content_do_not_depend_on_the_order_rows_came_in(times: list[int], values: st.DataObject) -> None:
    """The SQL source's order: the same rows give the same frame (and digest) in any order."""
    n = len(times)
    df = pd.DataFrame(
        {
            "ts": T0 + pd.to_timedelta(times, unit="h"),
            "x": values.draw(st.lists(st.sampled_from([0.0, 1.5, np.nan, -2.0]), min_size=n, max_size=n)),
            "c": values.draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n)),
        }
    )
    permutation = values.draw(st.permutations(range(n)))
    first = order_by_time(df, "ts", ties="content")
    second = order_by_time(df.iloc[permutation].reset_index(drop=True), "ts", ties="content")
    pd.testing.assert_frame_equal(first, second)
    assert frame_digest(first) == frame_digest(second)
    assert first["ts"].is_monotonic_increasing
    stable = order_by_time(df, "ts")
    assert stable.equals(df.sort_values("ts", kind="stable").reset_index(drop=True))


# --------------------------------------------------------------------------- the drift detector

DRIFT_DEFECTS = ["all_missing", "all_missing", "constant", "inf", "nan", "high_cardinality", "shift", "none"]


def damage_drift(df: pd.DataFrame, draw: Draw, names: list[str]) -> pd.DataFrame:
    for name in names:
        if name == "shift":
            df = df.assign(x1=df["x1"] + 4.0)
        elif name != "none":
            df = DEFECTS[name](df, draw, "y")
    return df


@settings(PROPS, max_examples=15)
@given(
    data=st.data(),
    sizes=st.tuples(st.integers(30, 100), st.integers(30, 100)),
    seed=st.integers(0, 2**16),
    same=st.booleans(),
    drift_share=st.sampled_from([0.1, 0.3, 0.5, 1.0]),
)
def test_the_drift_detector_tests_or_reports_every_column(
    data: st.DataObject, sizes: tuple[int, int], seed: int, same: bool, drift_share: float
) -> None:
    cfg = make_cfg()
    features = FeatureSet(list(NUM), list(CAT))
    ref_defects = data.draw(st.lists(st.sampled_from(DRIFT_DEFECTS), max_size=2), label="reference defects")
    reference = check_frame(
        damage_drift(base_frame(sizes[0], seed), data.draw, ref_defects), cfg, features, where=WHERE, need_target=False
    )
    if same:
        current = reference.copy()
    else:
        cur_defects = data.draw(st.lists(st.sampled_from(DRIFT_DEFECTS), max_size=2), label="current defects")
        current = check_frame(
            damage_drift(base_frame(sizes[1], seed + 1), data.draw, cur_defects), cfg, features, where=WHERE, need_target=False
        )
    policy = DriftConfig(drift_share=drift_share)
    result = EvidentlyDriftDetector(html=False).detect(reference, current, numerical=NUM, categorical=CAT, policy=policy)
    summary = result.summary
    by_column = {c.column: c for c in summary.columns}
    assert sorted(by_column) == sorted(NUM + CAT) and len(summary.columns) == len(NUM + CAT)
    for name, col in by_column.items():
        empty_ref, empty_cur = reference[name].isna().all(), current[name].isna().all()
        if empty_ref or empty_cur:
            assert col.method == ALL_MISSING and math.isnan(col.score)
            assert col.drifted == (empty_ref != empty_cur)
        else:
            assert col.method != ALL_MISSING and not math.isnan(col.score), col
        assert col.type == ("numerical" if name in NUM else "categorical")
    assert summary.n_drifted == sum(c.drifted for c in summary.columns)
    assert summary.drift_share == pytest.approx(summary.n_drifted / len(summary.columns))
    assert summary.drift_detected == (summary.drift_share >= drift_share)
    if same:
        assert not summary.drift_detected and summary.n_drifted == 0  # a window never drifts from itself
    json.dumps(summary.to_json(), allow_nan=False)  # JSON-safe for XCom and MLflow


def test_the_drift_detector_refuses_an_empty_window() -> None:
    cfg = make_cfg()
    features = FeatureSet(list(NUM), list(CAT))
    reference = check_frame(base_frame(40), cfg, features, where=WHERE, need_target=False)
    for ref, cur, label in ((reference.iloc[:0], reference, "reference"), (reference, reference.iloc[:0], "current")):
        with pytest.raises(DataError, match=f"the {label} window has no rows"):
            EvidentlyDriftDetector(html=False).detect(ref, cur, numerical=NUM, categorical=CAT, policy=DriftConfig())


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "random_forest", "linear"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_model_family_fits_the_handled_columns(family: str, task: str) -> None:
    """Constant, all-missing categorical, high-cardinality and gappy columns, as
    ``check_frame`` hands them on; the fitted model predicts categories it never saw."""
    from retune.models import get_family

    cfg = make_cfg(task)
    features = FeatureSet(["x1", "x2", "count"], ["color", "code", "id"])
    df = base_frame(300, seed=3).assign(
        x2=4.2,  # constant
        color=None,  # no value at all
        id=[f"id-{i}" for i in range(300)],  # a distinct value per row
    )
    df.loc[::7, "x1"] = np.inf
    df.loc[::5, "code"] = np.nan
    train = check_frame(df, cfg, features, where=WHERE)
    fam = get_family(family)
    params = {"hist_gradient_boosting": {"max_iter": 5}, "random_forest": {"n_estimators": 3}, "linear": {}}[family]
    pipe = fam.build(task, params, numerical=features.numerical, categorical=features.categorical, seed=0)
    for _ in fam.staged_fit(pipe, train[features.columns], train[cfg.target], n_steps=2):
        pass
    new = check_frame(base_frame(40, seed=9).assign(id="never-seen", color="purple"), cfg, features, where=WHERE)
    assert len(pipe.predict(new[features.columns])) == 40


# --------------------------------------------------------------------------- split_for_retune


@PROPS
@given(
    data=st.data(),
    n=st.integers(30, 120),
    seed=st.integers(0, 2**16),
    task=st.sampled_from(["regression", "classification"]),
    arrives_at=st.floats(0.0, 1.0),
)
def test_a_retune_refuses_a_train_part_it_cannot_learn_from(
    data: st.DataObject, n: int, seed: int, task: str, arrives_at: float
) -> None:
    """A numerical feature that starts arriving late (a new sensor), or a class that does."""
    cfg = make_cfg(task)
    features = FeatureSet(list(NUM), list(CAT))
    df = base_frame(n, seed)
    late = int(arrives_at * n)
    df["x2"] = df["x2"].where(df.index >= late)
    if task == "classification":
        df["label"] = np.where((df.index >= late) & (df.index % 2 == 0), "yes", "no")
    checked_refusal = refusal(df, cfg, features)
    if checked_refusal is not None:
        with pytest.raises(DataError, match="single class|constant"):
            check_frame(df, cfg, features, where=WHERE)
        return
    checked = check_frame(df, cfg, features, where=WHERE)
    expected = split_refusal(checked, cfg, features)
    if expected is None:
        split = split_for_retune(checked, cfg)
        assert len(split.train) + len(split.valid) + len(split.holdout) == n
        return
    with pytest.raises(DataError) as info:
        split_for_retune(checked, cfg)
    assert expected in str(info.value)
    assert str(info.value).startswith("retune window")


# --------------------------------------------------------------------------- configs

BAD_FIELDS: dict[str, tuple[str, str, st.SearchStrategy[Any]]] = {  # field: (where reported, text, bad values)
    "data.window": ("data.window", "", st.from_regex(r"\A[1-9][0-9]? ?(days|hours|weeks)\Z") | st.integers(-100, 0)),
    "data.train_window": ("data.train_window", "", st.sampled_from(["", "soon", "0d", "-1d", "1.5d"])),
    "data.holdout_fraction": ("data.holdout_fraction", "", st.floats(max_value=0.0) | st.floats(0.9, allow_infinity=False)),
    "data.validation_fraction": ("data.validation_fraction", "", st.floats(min_value=0.9, max_value=1e6)),
    "data.min_rows": ("data.min_rows", "", st.integers(max_value=0) | st.just("many")),
    "tuning.n_trials": ("tuning.n_trials", "", st.integers(max_value=0) | st.integers(min_value=10_001)),
    "tuning.n_steps": ("tuning.n_steps", "", st.integers(max_value=0) | st.integers(min_value=51)),
    "drift.drift_share": (
        "drift.drift_share",
        "",
        st.floats(max_value=0.0) | st.floats(min_value=1.0, exclude_min=True, allow_infinity=False),
    ),
    "name": ("name", "is not a valid name", st.text(max_size=12).filter(lambda s: not NAME_PATTERN.match(s))),
    "registry.model_name": (
        "registry.model_name",
        "is not a valid name",
        st.text(max_size=12).filter(lambda s: not NAME_PATTERN.match(s)),
    ),
    "task": ("task", "", st.text(max_size=12).filter(lambda s: s not in ("classification", "regression"))),
    "model.family": ("model.family", "unknown model family", st.sampled_from(["xgboost", "lightgbm", "", "Linear", "svm"])),
    "data.production.format": ("data.production.format", "", st.sampled_from(["xlsx", "json", "CSV"])),
    "tuning.pruner.type": ("tuning.pruner.type", "", st.sampled_from(["bogus", "Median", "asha"])),
    "data.reference.start": ("data.reference", "must be before end", st.sampled_from(["2025-01-03", "2025-02-01"])),
    "model.search_space.learning_rate.low": ("model.search_space", "learning_rate: low", st.floats(0.31, 100.0)),
    "model.search_space.learning_rate.high": (
        "model.search_space",
        "learning_rate: low and high must be finite",
        st.sampled_from([float("inf"), float("nan")]),
    ),
    "features.categorical": ("features", "declared both numerical and categorical: ['x1']", st.just(["x1"])),
}
UNKNOWN_KEY_SECTIONS = ["", "data.", "tuning.", "drift.", "validation.", "model."]
CROSS_FIELD: dict[str, tuple[str, Any]] = {  # checked once the fields themselves are valid
    "metric.name": ("metric.name", "median_error"),
    "features.numerical": ("the target 'y' cannot be a feature", ["x1", "y"]),
    "model.fixed_params": ("has no parameter 'n_estimators'", {"n_estimators": 10}),
}


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        cfg = cfg.setdefault(key, {})
    cfg[last] = value


@PROPS
@given(
    fields=st.lists(st.sampled_from(sorted(BAD_FIELDS)), min_size=1, max_size=3, unique=True),
    unknown=st.none() | st.tuples(st.sampled_from(UNKNOWN_KEY_SECTIONS), st.from_regex(r"\A[a-z]{4,10}_x\Z")),
    data=st.data(),
)
def test_a_bad_config_names_its_file_and_every_bad_field(
    fields: list[str], unknown: tuple[str, str] | None, data: st.DataObject
) -> None:
    raw = base_config()
    expected = []
    for dotted in fields:
        loc, text, values = BAD_FIELDS[dotted]
        _set(raw, dotted, data.draw(values, label=dotted))
        expected.append((loc, text))
    if unknown is not None:
        _set(raw, unknown[0] + unknown[1], 1)
        expected.append((unknown[0] + unknown[1], "Extra inputs are not permitted"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "props.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        with pytest.raises(ConfigError) as info:
            load_config(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    for loc, text in expected:  # every bad field has its line: "<file>: <field>: <reason>"
        assert any(line.startswith(f"{path}: {loc}: ") and text in line for line in lines), (loc, text, lines)


@pytest.mark.parametrize("field", sorted(CROSS_FIELD))
def test_a_cross_field_error_names_its_field(field: str, tmp_path: Path) -> None:
    raw = base_config()
    fragment, value = CROSS_FIELD[field]
    _set(raw, field, value)
    path = tmp_path / "props.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- the registry stays as it was


@dataclass
class State:
    root: Path
    configs: Path
    state: Path
    client: Any
    champion: str


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[State]:
    """A real MLflow registry (SQLite in a temporary folder) whose model has a champion.

    The champion is registered and promoted with Retune's own registry calls; its files are
    never read, since every input here is refused before a model is loaded.
    """
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from retune import registry, tracking
    from retune.settings import get_settings

    root = tmp_path_factory.mktemp("props")
    state, configs = root / "state", root / "configs"
    configs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETUNE_STATE_DIR", str(state))
        mp.setenv("RETUNE_CONFIG_DIR", str(configs))
        mp.setenv("RETUNE_GIT_COMMIT", "unit-test")
        for var in ("MLFLOW_TRACKING_URI", "RETUNE_OPTUNA_STORAGE", "RETUNE_ARTIFACT_ROOT", "RETUNE_POLICY_DB"):
            mp.delenv(var, raising=False)
        mp.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
        mp.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
        settings_ = get_settings()
        cl = tracking.client(settings_)
        exp = tracking.ensure_experiment(cl, "retune/props", settings_)
        run = cl.create_run(exp, tags={"retune.run_type": "retune", "retune.key": "boot"})
        version, _ = registry.register(cl, MODEL, f"{run.info.artifact_uri}/model", key="boot", tags={"retune.config": "props"})
        registry.promote(cl, MODEL, version.version)
        cl.set_terminated(run.info.run_id, "FINISHED")
        yield State(root, configs, state, cl, str(version.version))


def snapshot(st_: State) -> dict[str, Any]:
    """Registry versions and aliases, and every run, experiment and Optuna study."""
    import optuna

    cl = st_.client
    versions = sorted((str(v.version), v.run_id, v.source) for v in cl.search_model_versions(f"name = '{MODEL}'"))
    aliases = {k: str(v) for k, v in cl.get_registered_model(MODEL).aliases.items()}
    experiments = sorted(e.experiment_id for e in cl.search_experiments())
    runs = sorted(r.info.run_id for r in cl.search_runs(experiments, max_results=1000))
    studies = sorted(optuna.get_all_study_names(f"sqlite:///{st_.state / 'optuna.db'}"))
    return {"versions": versions, "aliases": aliases, "experiments": experiments, "runs": runs, "studies": studies}


def write_case(
    st_: State, name: str, df: pd.DataFrame, reference: pd.DataFrame | None = None, **changes: Any
) -> tuple[Path, Path]:
    """``<configs>/<name>.yaml`` reading ``<root>/data/<name>/rows.csv`` (and the reference
    from ``<root>/data/<name>-ref/rows.csv`` when given)."""
    folder = st_.root / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "rows.csv"
    df.to_csv(csv, index=False)
    raw = base_config(changes.pop("task", "regression"), **changes)
    raw["name"] = name
    raw["data"] = {**raw["data"], "production": {"path": str(folder / "*.csv")}}
    if reference is not None:
        (st_.root / "data" / f"{name}-ref").mkdir(exist_ok=True)
        reference.to_csv(st_.root / "data" / f"{name}-ref" / "rows.csv", index=False)
        raw["data"]["reference"] = {**raw["data"]["reference"], "path": str(st_.root / "data" / f"{name}-ref" / "*.csv")}
    path = st_.configs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, csv


WINDOW_END = "2025-01-05"  # the retune window [Jan 1, Jan 5): the 96 rows of base_frame(96)


def _late_sensor(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(x2=df["x2"].where(df.index >= 70))


REPRESENTATIVE: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], dict[str, Any], str]] = {
    "renamed-column": (lambda df: df.rename(columns={"x1": "x1_renamed"}), {}, "missing column(s) ['x1']"),
    "dtype-change": (
        lambda df: df.assign(x2=df["x2"].map(lambda v: f"{v:.2f}".replace(".", ","))),
        {},
        "column 'x2' is declared numerical",
    ),
    "inf-target": (lambda df: df.assign(y=np.where(df.index == 50, np.inf, df["y"])), {}, "target column 'y' has inf values"),
    "constant-target": (lambda df: df.assign(y=7.0), {}, "target column 'y' is constant"),
    "single-class": (lambda df: df.assign(label="no"), {"task": "classification"}, "target column 'label' has a single class"),
    "late-sensor": (_late_sensor, {}, "has no value in numerical feature(s) ['x2']"),
    "empty-window": (lambda df: df.assign(ts=df["ts"] - pd.Timedelta("30D")), {}, "the window is empty (0 rows)"),
    "missing-time-column": (lambda df: df.rename(columns={"ts": "timestamp"}), {}, "missing time column 'ts'"),
}


@pytest.mark.parametrize("case", sorted(REPRESENTATIVE))
def test_a_refused_window_leaves_the_registry_as_it_was(registry_state: State, case: str) -> None:
    from retune import pipeline

    corrupt, changes, expected = REPRESENTATIVE[case]
    _, csv = write_case(registry_state, case, corrupt(base_frame(96)), **changes)
    before = snapshot(registry_state)
    with pytest.raises(DataError) as info:
        pipeline.prepare(case, window_end=WINDOW_END, key=f"bad-{case}")
    assert expected in str(info.value)
    assert str(csv.parent) in str(info.value) or case == "late-sensor"  # names the source (the split names the rows)
    after = snapshot(registry_state)
    assert after["versions"] == before["versions"], "a model version was registered"
    assert after["aliases"]["champion"] == registry_state.champion, "the champion moved"
    assert after == before, "a refused window left a run, an experiment or a study behind"


DRIFT_CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "drift-renamed": (lambda df: df.rename(columns={"x1": "x1_v2"}), "missing column(s) ['x1']"),
    "drift-dtype": (lambda df: df.assign(count=df["count"].astype(str) + " cars"), "column 'count' is declared numerical"),
    "drift-gap": (lambda df: df.iloc[:0], "the window is empty (0 rows)"),
}


@pytest.mark.parametrize("case", sorted(DRIFT_CASES))
def test_a_refused_drift_check_leaves_everything_as_it_was(registry_state: State, case: str) -> None:
    """The reference (its own file) is fine; the production window [Jan 3, Jan 4) is bad."""
    from retune import pipeline

    corrupt, expected = DRIFT_CASES[case]
    df = base_frame(96)
    _, csv = write_case(registry_state, case, corrupt(df.iloc[48:]), reference=df.iloc[:48])
    before = snapshot(registry_state)
    with pytest.raises(DataError) as info:
        pipeline.check_drift(case, window_end="2025-01-04")
    message = str(info.value)
    assert expected in message and "production [2025-01-03" in message and str(csv.parent) in message
    assert snapshot(registry_state) == before


def test_a_bad_config_leaves_the_registry_as_it_was(registry_state: State) -> None:
    from retune import pipeline

    path, _ = write_case(registry_state, "bad-config", base_frame(96))
    raw = yaml.safe_load(path.read_text())
    raw["data"]["train_window"] = "4 days"
    raw["tuning"]["n_trials"] = 0
    path.write_text(yaml.safe_dump(raw))
    before = snapshot(registry_state)
    with pytest.raises(ConfigError) as info:
        pipeline.prepare("bad-config", window_end=WINDOW_END)
    for part in (str(path), "data.train_window", "tuning.n_trials"):
        assert part in str(info.value)
    assert snapshot(registry_state) == before


PREPARE_DEFECTS = sorted(set(DEFECTS) - {"truncate"}) + ["late_sensor"]


@settings(PROPS, max_examples=20)
@given(data=st.data(), seed=st.integers(0, 2**16), task=st.sampled_from(["regression", "classification"]))
def test_prepare_refuses_or_handles_every_defect_and_never_registers(
    registry_state: State, data: st.DataObject, seed: int, task: str
) -> None:
    """``prepare`` on a tiny file: refused as the table says (a ``DataError`` naming the
    column), or handled (the retune context, all rows kept); the registry never changes."""
    from retune import pipeline

    target = "y" if task == "regression" else "label"
    cfg = make_cfg(task)
    features = FeatureSet(list(NUM), list(CAT))
    defects = data.draw(st.lists(st.sampled_from(PREPARE_DEFECTS), min_size=1, max_size=2), label="defects")
    df = base_frame(96, seed)
    for name in defects:
        df = _late_sensor(df) if name == "late_sensor" else DEFECTS[name](df, data.draw, target)
    name = f"prop-{task[:3]}"
    _, csv = write_case(registry_state, name, df, task=task)
    read = pd.read_csv(csv)  # what the file holds, as the source reads it
    read["ts"] = pd.to_datetime(read["ts"], utc=True)
    read = read.sort_values("ts", kind="stable").reset_index(drop=True)
    expected = refusal(read, cfg, features)
    if expected is None:
        expected = split_refusal(check_frame(read, cfg, features, where=WHERE), cfg, features)
    event(outcome(expected))
    before = snapshot(registry_state)
    if expected is not None:
        with pytest.raises(DataError) as info:
            pipeline.prepare(name, window_end=WINDOW_END, key=f"p{seed}")
        assert expected in str(info.value)
        assert snapshot(registry_state) == before
        return
    ctx = pipeline.prepare(name, window_end=WINDOW_END, key=f"p{seed}")
    assert ctx["rows"]["total"] == len(read)
    after = snapshot(registry_state)
    assert (after["versions"], after["aliases"]) == (before["versions"], before["aliases"])


def test_no_data_file_and_no_config_file_leave_the_registry_as_it_was(registry_state: State) -> None:
    from retune import pipeline

    path, csv = write_case(registry_state, "no-file", base_frame(96))
    raw = yaml.safe_load(path.read_text())
    raw["data"]["production"]["path"] = str(csv.parent / "gone" / "*.csv")
    path.write_text(yaml.safe_dump(raw))
    before = snapshot(registry_state)
    with pytest.raises(DataError, match="no data file found") as info:
        pipeline.prepare("no-file", window_end=WINDOW_END)
    assert str(csv.parent / "gone" / "*.csv") in str(info.value)
    with pytest.raises(ConfigError, match="config file does not exist") as missing:
        pipeline.prepare("ghost", window_end=WINDOW_END)
    assert str(registry_state.configs / "ghost.yaml") in str(missing.value)
    assert snapshot(registry_state) == before


def test_the_champion_is_unchanged_after_all_of_it(registry_state: State) -> None:
    after = snapshot(registry_state)
    assert [v[0] for v in after["versions"]] == [registry_state.champion]
    assert after["aliases"]["champion"] == registry_state.champion

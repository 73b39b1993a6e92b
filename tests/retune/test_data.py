"""retune.data: reading windows, refusing bad data with errors naming window and column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retune.data import (
    FeatureSet,
    FileSource,
    Window,
    check_frame,
    frame_digest,
    load_window,
    resolve_features,
    split_for_retune,
)
from retune.errors import ConfigError, DataError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NUM = ["price", "temperature", "competitor_price", "footfall"]
CAT = ["promo", "region", "channel"]


def demand_frame(n: int = 200, *, seed: int = 0, hours: int = 1) -> pd.DataFrame:
    """Rows like the demo data, one every ``hours`` hours from T0, in time order."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ts": pd.date_range(T0, periods=n, freq=f"{hours}h"),
            "price": rng.normal(10, 1, n).round(2),
            "temperature": rng.normal(15, 5, n).round(1),
            "competitor_price": rng.normal(10, 1, n).round(2),
            "footfall": rng.integers(50, 150, n),
            "promo": rng.choice(["none", "discount"], n),
            "region": rng.choice(["north", "south"], n),
            "channel": rng.choice(["store", "app"], n),
            "demand": rng.normal(80, 5, n).round(2),
        }
    )


@pytest.fixture
def csv_cfg(tmp_path: Path, make_cfg):
    """Write a frame to ``<tmp>/data/prod.csv`` and return a config in ``<tmp>`` reading it
    by a path relative to the config file (min_rows 20)."""

    def build(df: pd.DataFrame, **overrides):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        df.to_csv(data / "prod.csv", index=False)
        over = {"data": {"production": {"path": "data/prod.csv"}, "min_rows": 20}, **overrides}
        return make_cfg(over, source_file=str(tmp_path / "demo.yaml"))

    return build


def window(days: int = 30) -> Window:
    return Window("production", T0, T0 + timedelta(days=days))


# --------------------------------------------------------------------------- happy path


def test_load_window_reads_only_the_window_in_time_order(tmp_path: Path, csv_cfg) -> None:
    df = demand_frame(200)
    shuffled = df.sample(frac=1.0, random_state=1)
    cfg = csv_cfg(shuffled)
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=110)

    out, feats = load_window(cfg, Window("production", start, end))

    assert len(out) == 100  # [start, end): hour 10 included, hour 110 excluded
    assert out["ts"].min() == pd.Timestamp(start) and out["ts"].max() == pd.Timestamp(end - timedelta(hours=1))
    assert out["ts"].is_monotonic_increasing
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]"
    assert feats == FeatureSet(NUM, CAT)
    assert out["promo"].map(type).eq(str).all()  # categorical as plain strings


def test_glob_reads_and_concatenates_files(tmp_path: Path, make_cfg) -> None:
    df = demand_frame(90)
    folder = tmp_path / "feed"
    folder.mkdir()
    for i in range(3):
        df.iloc[i * 30 : (i + 1) * 30].to_csv(folder / f"part_{i}.csv", index=False)
    (folder / "notes.txt").write_text("not data")
    cfg = make_cfg({"data": {"production": {"path": str(folder / "*.csv")}, "min_rows": 20}})
    out, _ = load_window(cfg, Window("production", None, None))
    assert len(out) == 90
    assert out["ts"].is_monotonic_increasing


def test_reference_window_uses_the_reference_path_when_set(tmp_path: Path, csv_cfg) -> None:
    ref = demand_frame(50, seed=3)
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cfg = csv_cfg(
        demand_frame(200),
        data={"production": {"path": "data/prod.csv"}, "reference": {"path": str(tmp_path / "ref.csv")}, "min_rows": 20},
    )
    out, _ = load_window(cfg, Window("reference", None, None))
    assert len(out) == 50
    np.testing.assert_allclose(out["price"], ref["price"])


def test_path_variables_are_expanded(tmp_path: Path, make_cfg) -> None:
    (tmp_path / "state" / "data").mkdir(parents=True)
    demand_frame(30).to_csv(tmp_path / "state" / "data" / "x.csv", index=False)
    cfg = make_cfg({"data": {"production": {"path": "${RETUNE_STATE_DIR}/data/x.csv"}, "min_rows": 20}})
    out, _ = load_window(cfg, Window("production", None, None), variables={"RETUNE_STATE_DIR": str(tmp_path / "state")})
    assert len(out) == 30


# --------------------------------------------------------------------------- bad data


def test_missing_column_names_column_and_window(tmp_path: Path, csv_cfg) -> None:
    cfg = csv_cfg(demand_frame().drop(columns=["footfall"]))
    with pytest.raises(DataError) as info:
        load_window(cfg, window())
    message = str(info.value)
    assert "missing column(s) ['footfall']" in message
    assert "production [2025-01-01" in message
    assert str(tmp_path / "data" / "prod.csv") in message


def test_missing_target_is_an_error_only_when_needed(csv_cfg) -> None:
    cfg = csv_cfg(demand_frame().drop(columns=["demand"]))
    with pytest.raises(DataError, match="'demand'"):
        load_window(cfg, window())
    out, _ = load_window(cfg, window(), need_target=False)
    assert "demand" not in out.columns


def test_numerical_column_with_strings(csv_cfg) -> None:
    df = demand_frame()
    df["price"] = df["price"].astype(str)
    df.loc[3, "price"] = "12,50"  # a decimal comma: pandas keeps the column as text
    cfg = csv_cfg(df)
    with pytest.raises(DataError, match=r"column 'price' is declared numerical but has dtype object"):
        load_window(cfg, window())


def test_empty_window_names_the_window(csv_cfg) -> None:
    cfg = csv_cfg(demand_frame())
    later = Window("production", T0 + timedelta(days=400), T0 + timedelta(days=407))
    with pytest.raises(DataError) as info:
        load_window(cfg, later)
    assert "empty (0 rows)" in str(info.value)
    assert later.label() in str(info.value)


def test_too_few_rows_names_min_rows(csv_cfg) -> None:
    cfg = csv_cfg(demand_frame(), data={"production": {"path": "data/prod.csv"}, "min_rows": 150})
    with pytest.raises(DataError, match=r"only 100 rows, data.min_rows is 150"):
        load_window(cfg, Window("production", T0, T0 + timedelta(hours=100)))


def test_nan_in_target(csv_cfg) -> None:
    df = demand_frame()
    df.loc[[5, 17], "demand"] = np.nan
    cfg = csv_cfg(df)
    with pytest.raises(DataError, match=r"target column 'demand' has 2 NaN value\(s\)"):
        load_window(cfg, window())


def test_inf_in_target_read_from_csv(csv_cfg) -> None:
    df = demand_frame()
    df["demand"] = df["demand"].astype(object)
    df.loc[9, "demand"] = "inf"  # pandas parses 'inf' as a float infinity
    cfg = csv_cfg(df)
    with pytest.raises(DataError, match=r"target column 'demand' has inf values"):
        load_window(cfg, window())


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_inf_in_target(make_cfg, bad: float) -> None:
    cfg = make_cfg({"data": {"min_rows": 10}})
    df = demand_frame(50)
    df.loc[0, "demand"] = bad
    with pytest.raises(DataError, match="'demand' has inf"):
        check_frame(df, cfg, FeatureSet(NUM, CAT), where="w")


def test_non_numeric_regression_target(make_cfg) -> None:
    cfg = make_cfg({"data": {"min_rows": 10}})
    df = demand_frame(50)
    df["demand"] = df["demand"].astype(str)
    with pytest.raises(DataError, match="must be numeric for regression"):
        check_frame(df, cfg, FeatureSet(NUM, CAT), where="w")


def test_single_class_classification_target(make_cfg, classification_overrides) -> None:
    cfg = make_cfg({**classification_overrides, "data": {"min_rows": 10}})
    df = demand_frame(50).drop(columns=["demand"]).assign(label="yes")
    with pytest.raises(DataError, match=r"target column 'label' has a single class \('yes'\)") as info:
        check_frame(df, cfg, FeatureSet(NUM, CAT), where="production [a, b) of f.csv")
    assert str(info.value).startswith("production [a, b) of f.csv: ")
    df.loc[0, "label"] = "no"
    assert len(check_frame(df, cfg, FeatureSet(NUM, CAT), where="w")) == 50


def test_missing_time_column(csv_cfg) -> None:
    cfg = csv_cfg(demand_frame().rename(columns={"ts": "time"}))
    with pytest.raises(DataError, match="missing time column 'ts'"):
        load_window(cfg, window())


def test_unparseable_time_column(csv_cfg) -> None:
    df = demand_frame().astype({"ts": str})
    df.loc[4, "ts"] = "yesterday-ish"
    cfg = csv_cfg(df)
    with pytest.raises(DataError, match="time column 'ts' cannot be parsed"):
        load_window(cfg, window())


def test_no_file_matches(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg({"data": {"production": {"path": str(tmp_path / "none" / "*.csv")}}})
    with pytest.raises(DataError, match="no data file found"):
        load_window(cfg, window())


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_text("this is not parquet")
    with pytest.raises(DataError, match="cannot read as parquet"):
        FileSource(str(path), time_column="ts").read(None, None)


# --------------------------------------------------------------------------- cleaning


def test_inf_in_a_numerical_feature_becomes_nan(make_cfg) -> None:
    cfg = make_cfg({"data": {"min_rows": 10}})
    df = demand_frame(50)
    df.loc[3, "price"] = np.inf
    df.loc[7, "temperature"] = -np.inf
    before = df.copy()

    out = check_frame(df, cfg, FeatureSet(NUM, CAT), where="w")

    assert np.isnan(out.loc[3, "price"]) and np.isnan(out.loc[7, "temperature"])
    assert out["price"].isna().sum() == 1 and out["temperature"].isna().sum() == 1
    np.testing.assert_allclose(out["price"].drop(index=3), before["price"].drop(index=3))
    pd.testing.assert_frame_equal(df, before)  # the input is not modified


def test_missing_categorical_values_stay_missing(make_cfg) -> None:
    cfg = make_cfg({"data": {"min_rows": 10}})
    df = demand_frame(50)
    df["region"] = df["region"].astype(object)
    df.loc[2, "region"] = None
    df["promo"] = 1  # numbers in a categorical column become strings
    out = check_frame(df, cfg, FeatureSet(NUM, CAT), where="w")
    assert out.loc[2, "region"] is None
    assert set(out["promo"]) == {"1"}


# --------------------------------------------------------------------------- digests


def test_frame_digest_is_stable_and_content_sensitive() -> None:
    df = demand_frame(100)
    digest = frame_digest(df)
    assert len(digest) == 64
    assert frame_digest(df.copy()) == digest
    assert frame_digest(demand_frame(100)) == digest  # same content, new object

    changed = df.copy()
    changed.loc[42, "price"] = changed.loc[42, "price"] + 0.01
    assert frame_digest(changed) != digest

    relabelled = df.copy()
    relabelled.loc[0, "region"] = "east"
    assert frame_digest(relabelled) != digest

    assert frame_digest(df.rename(columns={"price": "cost"})) != digest
    assert frame_digest(df.astype({"footfall": float})) != digest
    assert frame_digest(df.iloc[::-1]) != digest  # order matters
    assert frame_digest(df.iloc[:-1]) != digest


def test_parquet_decimal_columns_read_as_numbers(tmp_path: Path) -> None:
    """A Parquet export with decimal128 columns: pandas gives objects, so an exclude-only
    config made each price a category (drift at its maximum) and a declared one was refused."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from retune.data import FileSource

    table = pa.table(
        {
            "ts": pa.array(pd.date_range("2025-01-01", periods=3, freq="D", tz="UTC")),
            "price": pa.array([Decimal("1.50"), None, Decimal("3.25")], pa.decimal128(10, 2)),
            "name": ["a", "b", "c"],
        }
    )
    pq.write_table(table, tmp_path / "prices.parquet")
    df = FileSource(str(tmp_path / "prices.parquet"), time_column="ts").read(None, None)
    assert df["price"].dtype == "float64" and df["price"].tolist()[0] == 1.5 and np.isnan(df["price"].tolist()[1])
    assert df["name"].dtype == object


def test_frame_digest_of_json_and_array_cells() -> None:
    """A SQL source's json/jsonb and array columns arrive as dicts and lists, which pandas
    cannot hash: every retune of such a table failed in prepare with a TypeError (retried,
    naming nothing) while `retune check --data` said ok."""
    base = pd.DataFrame({"x": [1.0, 2.0], "j": [{"a": 1}, {"b": [1, 2]}], "arr": [[1, 2], []]})
    other = base.assign(j=[{"a": 2}, {"b": [1, 2]}])
    assert len(frame_digest(base)) == 64
    assert frame_digest(base) == frame_digest(base.copy())
    assert frame_digest(base) != frame_digest(other)


def test_frame_digest_ignores_the_index() -> None:
    df = demand_frame(20)
    assert frame_digest(df.set_axis(range(100, 120))) == frame_digest(df)


# --------------------------------------------------------------------------- split


def test_split_is_time_ordered_and_complete(make_cfg) -> None:
    cfg = make_cfg()  # holdout 0.2, validation 0.25
    df = demand_frame(200)
    split = split_for_retune(df, cfg)

    assert (len(split.train), len(split.valid), len(split.holdout)) == (120, 40, 40)
    assert split.train["ts"].max() < split.valid["ts"].min()
    assert split.valid["ts"].max() < split.holdout["ts"].min()
    assert split.holdout["ts"].max() == df["ts"].max()  # the holdout is the newest data
    pd.testing.assert_frame_equal(pd.concat([split.tuning, split.holdout], ignore_index=True), df)
    pd.testing.assert_frame_equal(split.tuning, df.iloc[:160].reset_index(drop=True))


def test_split_keeps_each_times_rows_in_one_part(make_cfg) -> None:
    """7 rows a day (a daily batch, one timestamp per day): a cut by row count put one day's
    rows in both the tuning data and the holdout the gates score on."""
    cfg = make_cfg()  # holdout 0.2, validation 0.25
    df = demand_frame(200)
    df["ts"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(200) // 7, unit="D")
    split = split_for_retune(df, cfg)
    assert split.train["ts"].max() < split.valid["ts"].min(), "a day in both the train and the validation part"
    assert split.valid["ts"].max() < split.holdout["ts"].min(), "a day in both the validation part and the holdout"
    # by count 120 / 40 / 40, cutting days 17 and 22; each cut moves back to its day's first row
    assert (len(split.train), len(split.valid), len(split.holdout)) == (119, 35, 46)


def test_split_after_load_window_holds_out_the_newest_rows(csv_cfg) -> None:
    df = demand_frame(200)
    cfg = csv_cfg(df.sample(frac=1.0, random_state=3))  # the file is not in time order
    out, _ = load_window(cfg, Window("production", None, None))
    split = split_for_retune(out, cfg)
    newest = df.sort_values("ts").tail(len(split.holdout))
    np.testing.assert_allclose(split.holdout["price"].to_numpy(), newest["price"].to_numpy())


def test_split_uses_the_feature_set_it_is_given(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_window resolved and checked the features already: split_for_retune (prepare, each
    trial worker, validate) takes them instead of typing every column again."""
    import retune.data as data

    cfg = make_cfg({"features!": {"exclude": []}})
    df = demand_frame(200)
    df.loc[:150, "footfall"] = np.nan  # the train part holds no value of it
    features = resolve_features(cfg, df)

    def again(*args: Any, **kwargs: Any) -> FeatureSet:
        raise AssertionError("features resolved again")

    monkeypatch.setattr(data, "resolve_features", again)
    with pytest.raises(DataError, match=r"no value in numerical feature\(s\) \['footfall'\]"):
        split_for_retune(df, cfg, features)
    df["footfall"] = 1.0
    assert len(split_for_retune(df, cfg, features).holdout) == 40


@pytest.mark.parametrize("n", [0, 10, 45])
def test_split_refuses_too_small_windows(make_cfg, n: int) -> None:
    with pytest.raises(DataError, match="too few to split") as info:
        split_for_retune(demand_frame(n), make_cfg())
    assert "data.train_window" in str(info.value)


def test_split_at_the_smallest_size(make_cfg) -> None:
    split = split_for_retune(demand_frame(50), make_cfg())
    assert min(len(split.train), len(split.valid), len(split.holdout)) >= 10


@pytest.mark.parametrize(
    ("rows", "part", "which"),
    [
        (slice(160, 200), "holdout", "the newest 40 of 200 rows, from 2025-01-07 16:00:00+00:00"),
        (slice(120, 160), "validation", "rows 121 to 160 of 200"),
    ],
)
def test_split_refuses_a_single_class_validation_or_holdout_part_naming_it(
    make_cfg, classification_overrides, rows: slice, part: str, which: str
) -> None:
    """Only the train part was checked: a single-class holdout gave roc_auc NaN (the
    challenger refused as 'not a finite number') or a raw sklearn ValueError in validate,
    after the MLflow run and the Optuna study existed. split_for_retune runs in prepare,
    before either is touched."""
    cfg = make_cfg(classification_overrides)
    df = demand_frame(200).drop(columns=["demand"])
    df["label"] = np.resize(["yes", "no", "maybe"], 200)
    df.loc[df.index[rows], "label"] = "yes"
    with pytest.raises(DataError) as info:
        split_for_retune(df, cfg)
    assert str(info.value).startswith(f"retune window: the {part} part ({which}")
    assert "has a single class ('yes') in target column 'label', without the window's classes ['maybe', 'no']" in str(info.value)


def test_split_scores_a_part_that_lacks_a_class_but_has_two(make_cfg, classification_overrides, caplog) -> None:
    cfg = make_cfg(classification_overrides)
    df = demand_frame(200).drop(columns=["demand"])
    df["label"] = np.resize(["yes", "no", "maybe"], 200)
    df.loc[df.index[160:], "label"] = np.resize(["yes", "no"], 40)  # 'maybe' retired
    split = split_for_retune(df, cfg)
    assert set(split.holdout["label"]) == {"yes", "no"}
    assert "the holdout part" in caplog.text and "['maybe']" in caplog.text


# --------------------------------------------------------------------------- features


def test_resolve_features_with_only_exclude_types_by_dtype(make_cfg) -> None:
    cfg = make_cfg({"features!": {"exclude": ["row_id"]}})
    df = pd.DataFrame(
        {
            "ts": pd.date_range(T0, periods=4, freq="h"),
            "row_id": [1, 2, 3, 4],
            "price": [1.0, 2.0, 3.0, 4.0],
            "footfall": [10, 20, 30, 40],
            "region": ["a", "b", "a", "b"],
            "is_holiday": [True, False, True, False],
            "level": pd.Series(["x", "y", "x", "y"], dtype="category"),
            "demand": [1.0, 2.0, 3.0, 4.0],
        }
    )
    feats = resolve_features(cfg, df)
    assert feats.numerical == ["price", "footfall"]
    assert feats.categorical == ["region", "is_holiday", "level"]
    assert "demand" not in feats.columns and "ts" not in feats.columns and "row_id" not in feats.columns


@pytest.mark.parametrize(
    "values",
    [
        pd.date_range("2024-06-01", periods=4, freq="D", tz="UTC"),  # Parquet, SQL timestamptz
        pd.date_range("2024-06-01", periods=4, freq="D"),
        pd.to_timedelta([1, 2, 3, 4], unit="h"),
        [datetime(2024, 6, d).date() for d in range(1, 5)],  # a SQL date column: datetime.date objects
        ["2024-06-01", None, "2024-06-03", "2024-06-04"],  # a CSV's date column: ISO text
        ["2024-06-01T10:00:00+00:00", "2024-06-02 11:30", "2024-06-03T12:00:00.5Z", "2024-06-04"],
    ],
)
def test_inferred_features_refuse_a_date_or_time_column_naming_it(make_cfg, values) -> None:
    """An exclude-only config made every datetime column but the time column a categorical
    feature: each timestamp a label never seen in the reference, so every window drifted."""
    cfg = make_cfg({"features!": {"exclude": []}}, source_file="/cfg/demo.yaml")
    df = demand_frame(4).assign(updated_at=values)
    with pytest.raises(DataError, match=r"/cfg/demo\.yaml: column\(s\) \['updated_at'\] hold dates or times") as info:
        resolve_features(cfg, df)
    assert "features.exclude" in str(info.value)
    excluded = make_cfg({"features!": {"exclude": ["updated_at"]}})
    assert resolve_features(excluded, df) == FeatureSet(NUM, CAT)
    declared = make_cfg({"features!": {"categorical": ["updated_at"]}})  # declared by the user: theirs to keep
    assert "updated_at" in resolve_features(declared, df).categorical


@pytest.mark.parametrize(
    "values",
    [
        ["2021", "2022", "2023", "2024"],  # a year alone
        ["1001", "1002", "1003", "1004"],  # a store code
        ["2024-06-01", "2024-06-02", "later", "2024-06-04"],  # not every value a date
        ["2024-06", "2024-07", "2024-08", "2024-09"],  # a month label
    ],
)
def test_text_that_is_not_all_iso_dates_stays_a_categorical_feature(make_cfg, values) -> None:
    cfg = make_cfg({"features!": {"exclude": []}})
    assert "label" in resolve_features(cfg, demand_frame(4).assign(label=values)).categorical


def test_a_csv_window_with_a_date_column_as_text_is_refused_naming_it(tmp_path: Path, make_cfg) -> None:
    """A CSV file reads every column but the time column as text: a second date column became
    a categorical feature with a new label per day (every window drifted)."""
    df = demand_frame(40).assign(updated_at=pd.date_range("2024-06-01", periods=40, freq="h", tz="UTC").strftime("%Y-%m-%d"))
    df.to_csv(tmp_path / "prod.csv", index=False)
    cfg = make_cfg(
        {"features!": {"exclude": []}, "data": {"production": {"path": "prod.csv"}, "min_rows": 20}},
        source_file=str(tmp_path / "demo.yaml"),
    )
    with pytest.raises(DataError, match=r"\['updated_at'\] hold dates or times") as info:
        load_window(cfg, Window("production", T0, T0 + timedelta(days=7)))
    assert "prod.csv" in str(info.value)


def test_a_window_with_a_datetime_column_is_refused_naming_the_window(tmp_path: Path, make_cfg) -> None:
    df = demand_frame(40).assign(updated_at=pd.date_range("2024-06-01", periods=40, freq="h", tz="UTC"))
    df.to_parquet(tmp_path / "prod.parquet")
    cfg = make_cfg(
        {"features!": {"exclude": []}, "data": {"production": {"path": "prod.parquet"}, "min_rows": 20}},
        source_file=str(tmp_path / "demo.yaml"),
    )
    with pytest.raises(DataError, match=r"\['updated_at'\] hold dates or times") as info:
        load_window(cfg, Window("production", T0, T0 + timedelta(days=7)))
    assert str(info.value).startswith("production [") and "prod.parquet" in str(info.value)


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"columns": {"pricee": {"threshold": 0.2}}}, "drift.columns: ['pricee'] are not features of this config"),
        ({"method": "ks"}, "drift.method: 'ks' cannot test the categorical column 'promo'"),
        ({"columns": {"region": {"method": "wasserstein"}}}, "drift.columns.region.method: 'wasserstein' cannot test"),
        ({"method": "chisquare", "columns": {"price": {"method": "psi"}}}, "cannot test the numerical column 'temperature'"),
    ],
)
def test_inferred_features_get_the_drift_checks_of_declared_ones(make_cfg, drift: dict, expected: str) -> None:
    """With only exclude the drift section was never checked: a typo in drift.columns was
    silently ignored, and ks on a categorical column failed inside Evidently naming neither."""
    cfg = make_cfg({"features!": {"exclude": []}, "drift": drift}, source_file="/cfg/demo.yaml")
    with pytest.raises(ConfigError) as info:
        resolve_features(cfg, demand_frame(4), where="reference [a, b) of x.csv")
    message = str(info.value)
    assert message.startswith("/cfg/demo.yaml: ") and expected in message
    assert "features inferred from reference [a, b) of x.csv" in message


def test_drift_settings_that_fit_the_inferred_features_pass(make_cfg) -> None:
    cfg = make_cfg({"features!": {"exclude": []}, "drift": {"method": "psi", "columns": {"price": {"method": "ks"}}}})
    assert resolve_features(cfg, demand_frame(4)) == FeatureSet(NUM, CAT)


def test_resolve_features_keeps_declared_categoricals_first(make_cfg) -> None:
    cfg = make_cfg({"features!": {"categorical": ["store_id"], "exclude": []}})
    df = pd.DataFrame({"ts": [T0], "store_id": [7], "price": [1.0], "region": ["a"], "demand": [1.0]})
    feats = resolve_features(cfg, df)
    assert feats.numerical == ["price"]  # store_id is numeric but declared categorical
    assert feats.categorical == ["store_id", "region"]


def test_resolve_features_with_declared_lists_ignores_the_frame(make_cfg) -> None:
    feats = resolve_features(make_cfg(), pd.DataFrame({"other": [1]}))
    assert feats == FeatureSet(NUM, CAT)
    assert feats.columns == NUM + CAT


# --------------------------------------------------------------------------- windows


def test_window_json_round_trip_and_label() -> None:
    w = Window("production", T0, T0 + timedelta(days=7))
    assert Window.from_json(w.to_json()) == w
    assert w.label() == "production [2025-01-01T00:00:00+00:00, 2025-01-08T00:00:00+00:00)"
    open_window = Window("reference", None, None)
    assert Window.from_json(open_window.to_json()) == open_window
    assert open_window.label() == "reference [-inf, +inf)"

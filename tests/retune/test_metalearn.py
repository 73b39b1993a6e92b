"""Meta-learning warm start: meta-features, the retune_meta store, nearest past tasks, seeds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retune import metalearn
from retune.settings import Settings

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _settings(tmp_path: Path, policy_db: str) -> Settings:
    return Settings(
        state_dir=tmp_path,
        config_dir=tmp_path / "configs",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=None,
        optuna_storage=f"sqlite:///{tmp_path}/optuna.db",
        policy_db=policy_db,
    )


def _dispose(url: str) -> None:
    engine, _ = metalearn._make_table(url)
    engine.dispose()
    metalearn._make_table.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = _settings(tmp_path, f"sqlite:///{tmp_path}/p.db")
    yield s
    _dispose(s.policy_db)


def _regression_frame(seed: int, rows: int = 1500, n_num: int = 4, noise: float = 0.5) -> pd.DataFrame:
    """Gaussian features, a linear target, one low-cardinality categorical, no missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n_num))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_num)])
    df["store"] = rng.choice(["a", "b", "c"], size=rows)
    df["y"] = 50 + x @ np.linspace(1.0, 2.0, n_num) + rng.normal(scale=noise, size=rows)
    return df


def _features(df: pd.DataFrame, task: str = "regression", target: str = "y") -> dict[str, float]:
    numerical = [c for c in df.columns if c.startswith("x")]
    categorical = [c for c in df.columns if c not in numerical and c != target]
    return metalearn.meta_features(df, target=target, task=task, numerical=numerical, categorical=categorical)


def _record(settings: Settings, config: str, features: dict[str, float], **over: Any) -> int:
    args: dict[str, Any] = {
        "config": config,
        "family": "hist_gradient_boosting",
        "task": "regression",
        "metric": "mae",
        "direction": "minimize",
        "features": features,
        "best_params": {"learning_rate": 0.1, "source": config},
        "best_value": 1.0,
    }
    args.update(over)
    return metalearn.record_task(settings, **args)


# --------------------------------------------------------------------------- meta-features


def test_meta_features_of_a_known_regression_frame() -> None:
    x = np.arange(10, dtype=float)  # 0..9
    df = pd.DataFrame(
        {
            "x0": x,
            "x1": 2 * x + 5,  # perfectly correlated with x0
            "c": ["a", "b"] * 4 + [None, None],  # 2 distinct, 2 missing
            "y": 3 * x + 1,  # exact linear target
        }
    )
    f = metalearn.meta_features(df, target="y", task="regression", numerical=["x0", "x1"], categorical=["c"])
    assert f["rows_log10"] == pytest.approx(1.0)
    assert f["n_numerical"] == 2.0
    assert f["n_categorical"] == 1.0
    assert f["target_corr"] == pytest.approx(1.0)
    assert f["feature_corr"] == pytest.approx(1.0)
    assert f["skewness"] == pytest.approx(0.0, abs=1e-12)  # symmetric
    assert f["kurtosis"] == pytest.approx(pd.Series(x).kurt())  # -1.2 for a uniform grid
    assert f["missing_share"] == pytest.approx(2 / 30)  # 2 of 10 rows x 3 features
    assert f["cat_cardinality_log"] == pytest.approx(math.log10(3.0))
    y = 3 * x + 1
    assert f["target_cv"] == pytest.approx(y.std(ddof=1) / y.mean())  # 9.083 / 14.5
    assert set(f) == {*metalearn.COMMON_FEATURES, *metalearn.REGRESSION_FEATURES}


def test_meta_features_of_a_30_70_classification_target() -> None:
    label = ["yes"] * 3 + ["no"] * 7
    df = pd.DataFrame(
        {
            "x0": [1.0 if v == "yes" else 0.0 for v in label],  # == the label encoding (no=0, yes=1)
            "x1": [5.0, 1.0, 5.0, 1.0, 5.0, 1.0, 5.0, 1.0, 5.0, 1.0],
            "label": label,
        }
    )
    f = metalearn.meta_features(df, target="label", task="classification", numerical=["x0", "x1"], categorical=[])
    assert f["minority_share"] == pytest.approx(0.3)
    assert f["class_entropy"] == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.7)) / math.log(2))  # 0.8813
    r1 = np.corrcoef(df["x1"], df["x0"])[0, 1]
    assert f["target_corr"] == pytest.approx((1.0 + abs(r1)) / 2)
    assert f["feature_corr"] == pytest.approx(abs(r1))
    assert f["skewness"] == pytest.approx((df["x0"].skew() + df["x1"].skew()) / 2)
    assert f["n_categorical"] == 0.0
    assert f["cat_cardinality_log"] == 0.0
    assert f["missing_share"] == 0.0
    assert set(f) == {*metalearn.COMMON_FEATURES, *metalearn.CLASSIFICATION_FEATURES}


def test_balanced_multiclass_has_entropy_one_and_a_single_class_zero() -> None:
    df = pd.DataFrame({"x0": np.arange(9.0), "k": list("abc") * 3})
    f = metalearn.meta_features(df, target="k", task="classification", numerical=["x0"], categorical=[])
    assert f["class_entropy"] == pytest.approx(1.0)
    assert f["minority_share"] == pytest.approx(1 / 3)
    single = metalearn.meta_features(df.assign(k="a"), target="k", task="classification", numerical=["x0"], categorical=[])
    assert single["class_entropy"] == 0.0
    assert single["minority_share"] == 1.0
    assert single["target_corr"] == 0.0  # a constant target correlates with nothing


def test_constant_all_nan_and_junk_columns_never_give_nan() -> None:
    df = pd.DataFrame(
        {
            "const": [3.0] * 6,
            "tenth": [0.1] * 6,  # constant, yet its float mean is not exactly 0.1
            "allnan": [np.nan] * 6,
            "inf": [np.inf, -np.inf, 3.0, 4.0, np.nan, 6.0],
            "text": ["a", "b", "c", "d", "e", "f"],  # declared numerical but is not
            "empty_cat": [None] * 6,
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    num = ["const", "tenth", "allnan", "inf", "text"]
    for task, target in (("regression", "y"), ("classification", "y"), ("regression", "const"), ("regression", "allnan")):
        f = metalearn.meta_features(df, target=target, task=task, numerical=num, categorical=["empty_cat"])
        assert all(isinstance(v, float) and math.isfinite(v) for v in f.values()), (task, target, f)
    f = metalearn.meta_features(df, target="y", task="regression", numerical=num, categorical=["empty_cat"])
    assert f["target_corr"] == pytest.approx(1.0 / 5)  # only "inf" (3, 4, 6 where y is 3, 4, 6) correlates: r = 1
    assert f["feature_corr"] == 0.0
    assert f["missing_share"] == pytest.approx((6 + 3 + 6 + 6) / 36)  # allnan, inf's 3, text, empty_cat
    assert f["cat_cardinality_log"] == 0.0
    zero = metalearn.meta_features(df, target="const", task="regression", numerical=[], categorical=[])
    assert zero["target_cv"] == 0.0
    assert zero["target_corr"] == zero["feature_corr"] == zero["skewness"] == zero["kurtosis"] == 0.0
    empty = metalearn.meta_features(df.iloc[:0], target="y", task="classification", numerical=num, categorical=["empty_cat"])
    assert all(math.isfinite(v) for v in empty.values())
    assert empty["rows_log10"] == 0.0


def test_meta_features_are_deterministic_and_ignore_row_order() -> None:
    df = _regression_frame(1, rows=300)
    df.loc[::7, "x1"] = np.nan
    df["label"] = np.where(df["y"] > 50, "hi", "lo")
    first = _features(df.drop(columns="label"))
    assert first == _features(df.drop(columns="label"))
    shuffled = df.sample(frac=1.0, random_state=3)
    again = _features(shuffled.drop(columns="label"))
    assert again == pytest.approx(first)
    clf = _features(df.drop(columns="y"), task="classification", target="label")
    assert _features(shuffled.drop(columns="y"), task="classification", target="label") == pytest.approx(clf)


def test_meta_features_refuse_unknown_task_and_missing_columns() -> None:
    df = pd.DataFrame({"x0": [1.0, 2.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown task"):
        metalearn.meta_features(df, target="y", task="ranking", numerical=["x0"], categorical=[])
    with pytest.raises(ValueError, match="gone"):
        metalearn.meta_features(df, target="y", task="regression", numerical=["x0", "gone"], categorical=[])


def test_search_space_hash_is_stable_and_sensitive() -> None:
    from retune.config import FloatParam, IntParam

    a = {"lr": FloatParam(type="log_float", low=0.01, high=0.3), "depth": IntParam(type="int", low=2, high=8)}
    b = {"depth": IntParam(type="int", low=2, high=8), "lr": FloatParam(type="log_float", low=0.01, high=0.3)}
    c = {"lr": FloatParam(type="log_float", low=0.01, high=0.5), "depth": IntParam(type="int", low=2, high=8)}
    assert metalearn.search_space_hash(a) == metalearn.search_space_hash(b)
    assert metalearn.search_space_hash(a) != metalearn.search_space_hash(c)
    assert len(metalearn.search_space_hash(a)) == 16


# --------------------------------------------------------------------------- store and neighbours


def _three_past_tasks(settings: Settings) -> dict[str, float]:
    """Record a near-copy of the query's data and two very different ones; return the query."""
    query = _features(_regression_frame(0))
    _record(settings, "near", _features(_regression_frame(1)), best_params={"learning_rate": 0.05, "max_depth": 4})
    # Few rows, many skewed features, no signal, lots of missing values and categoricals.
    rng = np.random.default_rng(2)
    far = pd.DataFrame(rng.lognormal(sigma=1.5, size=(60, 12)), columns=[f"x{i}" for i in range(12)])
    far = far.mask(rng.random(far.shape) < 0.3)
    for i in range(5):
        far[f"c{i}"] = rng.integers(0, 40, size=60).astype(str)
    far["y"] = rng.exponential(size=60)
    _record(settings, "skewed", _features(far), best_params={"learning_rate": 0.3})
    # Huge and wide, features strongly correlated with each other, target near zero mean.
    rng = np.random.default_rng(3)
    base = rng.normal(size=(20000, 1))
    wide = pd.DataFrame(base + 0.05 * rng.normal(size=(20000, 20)), columns=[f"x{i}" for i in range(20)])
    wide["y"] = rng.normal(size=20000)
    _record(settings, "wide", _features(wide), best_params={"learning_rate": 0.01})
    return query


def test_record_task_round_trips(settings: Settings) -> None:
    feats = {"rows_log10": 3.0, "target_corr": float("nan")}
    row_id = _record(settings, "a", feats, best_value=float("inf"), search_space_hash="abc", now=T0)
    assert row_id >= 1
    rows = metalearn._latest_rows(settings, family="hist_gradient_boosting", task="regression", exclude_config=None)
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == row_id
    assert row["config"] == "a"
    assert row["metric"] == "mae"
    assert row["direction"] == "minimize"
    assert row["best_value"] is None  # non-finite is stored as NULL
    assert row["search_space_hash"] == "abc"
    assert metalearn._loads(row["features"]) == {"rows_log10": 3.0, "target_corr": 0.0}
    assert metalearn._loads(row["best_params"]) == {"learning_rate": 0.1, "source": "a"}


def test_nearest_task_is_the_near_copy(settings: Settings) -> None:
    query = _three_past_tasks(settings)
    found = metalearn.nearest_tasks(
        settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new"
    )
    assert [f["config"] for f in found][0] == "near"
    assert {f["config"] for f in found} == {"near", "skewed", "wide"}
    assert [f["distance"] for f in found] == sorted(f["distance"] for f in found)
    assert found[0]["distance"] < 0.5 * found[1]["distance"]
    assert found[0]["best_params"] == {"learning_rate": 0.05, "max_depth": 4}
    assert found[0]["best_value"] == 1.0
    assert set(found[0]) >= {"id", "config", "distance", "best_params", "best_value"}
    assert (
        len(
            metalearn.nearest_tasks(
                settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=1
            )
        )
        == 1
    )
    assert (
        metalearn.nearest_tasks(
            settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=0
        )
        == []
    )


def test_nearest_tasks_filters_family_task_and_the_config_itself(settings: Settings) -> None:
    query = _three_past_tasks(settings)
    # Identical data (distance 0) but another family, another task, or the config itself: never chosen.
    _record(settings, "other-family", query, family="random_forest")
    _record(settings, "other-task", query, task="classification", metric="accuracy", direction="maximize")
    _record(settings, "new", query)
    found = metalearn.nearest_tasks(
        settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=10
    )
    assert {f["config"] for f in found} == {"near", "skewed", "wide"}
    rf = metalearn.nearest_tasks(settings, features=query, family="random_forest", task="regression", exclude_config="new")
    assert [(f["config"], f["distance"]) for f in rf] == [("other-family", 0.0)]
    clf = metalearn.nearest_tasks(
        settings, features=query, family="hist_gradient_boosting", task="classification", exclude_config="x"
    )
    assert [f["config"] for f in clf] == ["other-task"]
    assert metalearn.nearest_tasks(settings, features=query, family="linear", task="regression", exclude_config="new") == []


def test_nearest_tasks_uses_the_latest_row_per_config(settings: Settings) -> None:
    query = _three_past_tasks(settings)
    # "wide" is retuned on data like the query's: its newest row now makes it the nearest.
    newest = _record(
        settings, "wide", _features(_regression_frame(7)), best_params={"learning_rate": 0.07}, now=T0 + timedelta(days=1)
    )
    # "near" is retuned on something else entirely: its old near-copy row no longer counts.
    tiny = pd.DataFrame({"x0": [1.0, 5.0, 2.0, 40.0, 3.0], "y": [0.1, 9.0, 0.2, 0.3, 7.0]})
    _record(settings, "near", _features(tiny), best_params={"learning_rate": 0.2})
    found = metalearn.nearest_tasks(
        settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=10
    )
    assert [f["config"] for f in found].count("wide") == 1
    assert len(found) == 3, "a config with many retunes counts once"
    assert found[0]["config"] == "wide"
    assert found[0]["id"] == newest
    assert found[0]["best_params"] == {"learning_rate": 0.07}
    near = next(f for f in found if f["config"] == "near")
    assert near["best_params"] == {"learning_rate": 0.2}


def test_distance_ignores_zero_variance_features_and_imputes_missing_ones() -> None:
    query = {"a": 1.0, "same": 5.0, "new": 2.0}
    rows = [{"a": 1.0, "same": 5.0}, {"a": 3.0, "same": 5.0, "new": 2.0}]
    d = metalearn._distances(query, rows)
    assert d[0] < d[1]
    assert all(math.isfinite(v) for v in d)
    # z-scores of "a" over (1, 1, 3): mean 5/3, std sqrt(8/9); "new" over (2, 2, 2) has no variance.
    std = math.sqrt(8 / 9)
    assert d == pytest.approx([0.0, 2.0 / std])
    assert metalearn._distances({"a": 1.0}, [{"a": 1.0}, {"a": 1.0}]) == [0.0, 0.0]


def test_seeds_from_similar_label_their_source_and_fit_enqueue_seeds(settings: Settings) -> None:
    import optuna

    from retune.config import FloatParam, IntParam
    from retune.tuning import WARM_START_ATTR
    from retune.warmstart import enqueue_seeds

    query = _three_past_tasks(settings)
    _record(settings, "no-params", query, best_params={})
    seeds = metalearn.seeds_from_similar(
        settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=2
    )
    assert seeds[0] == ("meta:near", {"learning_rate": 0.05, "max_depth": 4})
    assert all(source.startswith(metalearn.SEED_PREFIX) for source, _ in seeds)
    assert "meta:no-params" not in [s for s, _ in seeds], "a task without params gives no seed"
    space = {"learning_rate": FloatParam(type="log_float", low=0.02, high=0.2), "max_depth": IntParam(type="int", low=2, high=6)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    enqueued = enqueue_seeds(study, seeds, space)
    assert enqueued[0] == {"source": "meta:near", "params": {"learning_rate": 0.05, "max_depth": 4}}
    trial = study.ask()
    assert trial.user_attrs[WARM_START_ATTR] == "meta:near"
    assert (
        metalearn.seeds_from_similar(settings, features=query, family="linear", task="regression", exclude_config="new") == []
    ), "no similar task: cold start"


def test_concurrent_first_use_creates_the_table_once(settings: Settings) -> None:
    import threading

    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            _record(settings, f"c{i}", {"rows_log10": float(i)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = metalearn.nearest_tasks(
        settings, features={"rows_log10": 3.2}, family="hist_gradient_boosting", task="regression", exclude_config="x", k=2
    )
    assert [f["config"] for f in found] == ["c3", "c4"]


@pytest.mark.postgres
def test_record_and_nearest_on_postgres(tmp_path: Path) -> None:
    from pg import temp_database  # type: ignore[import-not-found]

    with temp_database("retune_meta") as url:
        pg_url = url.replace("postgresql://", "postgresql+psycopg2://")
        settings = _settings(tmp_path, pg_url)
        try:
            query = _three_past_tasks(settings)
            _record(settings, "new", query)
            _record(settings, "near", _features(_regression_frame(4)), best_params={"learning_rate": 0.06})
            found = metalearn.nearest_tasks(
                settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=5
            )
            assert [f["config"] for f in found][0] == "near"
            assert found[0]["best_params"] == {"learning_rate": 0.06}, "the newest row of the config"
            assert len(found) == 3
            assert metalearn.seeds_from_similar(
                settings, features=query, family="hist_gradient_boosting", task="regression", exclude_config="new", k=1
            ) == [("meta:near", {"learning_rate": 0.06})]
        finally:
            _dispose(pg_url)

"""retune.models: every family builds, trains in growing stages and predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retune.models import FAMILIES, HistGradientBoosting, Linear, RandomForest, _schedule, get_family

NUM = ["x1", "x2"]
CAT = ["shop"]
N = 240

# small budgets keep the fits fast; each family's stage unit differs
BUDGET = {"hist_gradient_boosting": {"max_iter": 20}, "random_forest": {"n_estimators": 12}, "linear": {}}


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(5)
    X = pd.DataFrame(
        {
            "x1": rng.normal(size=N),
            "x2": rng.normal(size=N),
            "shop": rng.choice(["a", "b", "c"], N).astype(object),
        }
    )
    X.loc[::17, "x2"] = np.nan  # every family must cope with missing numbers
    shop_effect = X["shop"].map({"a": 0.0, "b": 2.0, "c": -2.0})
    y_reg = 3.0 * X["x1"] + shop_effect + rng.normal(0, 0.3, N)
    y_clf = pd.Series(np.where(X["x1"] + 0.5 * shop_effect > 0, "yes", "no"))
    return X, y_reg, y_clf


def total_budget(family: str, pipe, n_rows: int) -> int:
    attr = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}.get(family)
    return int(getattr(pipe.named_steps["model"], attr)) if attr else n_rows


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_staged_fit_grows_the_budget_and_predicts(frame, family: str, task: str) -> None:
    X, y_reg, y_clf = frame
    y = y_reg if task == "regression" else y_clf
    fam = get_family(family)
    pipe = fam.build(task, BUDGET[family], numerical=NUM, categorical=CAT, seed=0)
    total = total_budget(family, pipe, len(X))

    steps = [budget for budget, _ in fam.staged_fit(pipe, X, y, n_steps=4)]

    assert len(steps) == 4
    assert steps == sorted(set(steps))  # strictly increasing
    assert steps[-1] == total  # the last stage is the full fit
    model = pipe.named_steps["model"]
    assert not model.get_params().get("warm_start", False)  # left ready for a plain refit
    if family == "hist_gradient_boosting":
        assert model.n_iter_ == total
    elif family == "random_forest":
        assert len(model.estimators_) == total

    pred = pipe.predict(X)
    assert len(pred) == len(X)
    if task == "regression":
        assert np.isfinite(pred).all()
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        assert r2 > 0.8, f"{family} learned nothing: R2={r2:.3f}"
    else:
        assert set(pred) <= {"yes", "no"}
        assert np.mean(pred == y) > 0.8


def test_intermediate_stages_use_a_smaller_budget(frame) -> None:
    X, y, _ = frame
    fam = get_family("random_forest")
    pipe = fam.build("regression", {"n_estimators": 8}, numerical=NUM, categorical=CAT, seed=0)
    seen = [len(fitted.named_steps["model"].estimators_) for _, fitted in fam.staged_fit(pipe, X, y, n_steps=4)]
    assert seen == [2, 4, 6, 8]


def test_linear_stages_train_on_the_newest_rows(frame) -> None:
    X, y, _ = frame
    fam = get_family("linear")
    pipe = fam.build("regression", {}, numerical=NUM, categorical=CAT, seed=0)
    coefs = []
    for rows, fitted in fam.staged_fit(pipe, X, y, n_steps=2):
        coefs.append((rows, fitted.named_steps["model"].coef_.copy()))
    assert [r for r, _ in coefs] == [N // 2, N]
    newest_half = fam.build("regression", {}, numerical=NUM, categorical=CAT, seed=0).fit(X.iloc[N // 2 :], y.iloc[N // 2 :])
    np.testing.assert_allclose(coefs[0][1], newest_half.named_steps["model"].coef_)
    full = fam.build("regression", {}, numerical=NUM, categorical=CAT, seed=0).fit(X, y)
    np.testing.assert_allclose(coefs[1][1], full.named_steps["model"].coef_)


def test_staged_fit_with_more_steps_than_budget(frame) -> None:
    X, y, _ = frame
    fam = get_family("hist_gradient_boosting")
    pipe = fam.build("regression", {"max_iter": 3}, numerical=NUM, categorical=CAT, seed=0)
    assert [b for b, _ in fam.staged_fit(pipe, X, y, n_steps=10)] == [1, 2, 3]


def test_same_seed_same_model(frame) -> None:
    X, y, _ = frame
    fam = get_family("random_forest")
    preds = []
    for _ in range(2):
        pipe = fam.build("regression", {"n_estimators": 5}, numerical=NUM, categorical=CAT, seed=3)
        list(fam.staged_fit(pipe, X, y, n_steps=2))
        preds.append(pipe.predict(X))
    np.testing.assert_array_equal(preds[0], preds[1])


@pytest.mark.parametrize(
    ("total", "n_steps", "expected"),
    [(100, 4, [25, 50, 75, 100]), (3, 10, [1, 2, 3]), (10, 3, [4, 7, 10]), (7, 1, [7]), (1, 4, [1])],
)
def test_schedule(total: int, n_steps: int, expected: list[int]) -> None:
    assert _schedule(total, n_steps) == expected


# --------------------------------------------------------------------------- parameters


def test_hist_gradient_boosting_params() -> None:
    pipe = HistGradientBoosting().build(
        "classification", {"learning_rate": 0.2}, numerical=["a", "b"], categorical=["c", "d"], seed=9
    )
    model = pipe.named_steps["model"]
    assert type(model).__name__ == "HistGradientBoostingClassifier"
    assert model.learning_rate == 0.2
    assert model.random_state == 9
    assert model.early_stopping is False  # the pruner decides, not the estimator
    assert list(model.categorical_features) == [2, 3]  # after the numerical passthrough columns


def test_no_categorical_features_means_no_categorical_indices() -> None:
    model = HistGradientBoosting().build("regression", {}, numerical=["a"], categorical=[], seed=0).named_steps["model"]
    assert model.categorical_features in (None, "from_dtype")


def test_estimators_per_task() -> None:
    assert RandomForest().estimator("classification").__name__ == "RandomForestClassifier"
    assert RandomForest().estimator("regression").__name__ == "RandomForestRegressor"
    assert Linear().estimator("classification").__name__ == "LogisticRegression"
    assert Linear().estimator("regression").__name__ == "Ridge"


def test_explicit_params_win_over_defaults() -> None:
    clf = Linear().build("classification", {"max_iter": 50, "C": 0.5}, numerical=["a"], categorical=[], seed=1)
    assert clf.named_steps["model"].max_iter == 50 and clf.named_steps["model"].C == 0.5
    default = Linear().build("classification", {}, numerical=["a"], categorical=[], seed=1)
    assert default.named_steps["model"].max_iter == 1000
    rf = RandomForest().build("regression", {"random_state": 4}, numerical=["a"], categorical=[], seed=1)
    assert rf.named_steps["model"].random_state == 4


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_check_params_refuses_an_unknown_param(family: str) -> None:
    fam = get_family(family)
    with pytest.raises(ValueError, match=r"has no parameter 'not_a_param'"):
        fam.check_params("regression", {"not_a_param": 1})


def test_check_params_accepts_known_params() -> None:
    get_family("hist_gradient_boosting").check_params("regression", {"learning_rate": 0.1, "max_iter": 10})
    get_family("linear").check_params("classification", {"C": 1.0})
    with pytest.raises(ValueError, match="LogisticRegression has no parameter 'alpha'"):
        get_family("linear").check_params("classification", {"alpha": 1.0})


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match=r"model.family: unknown model family 'xgboost'") as info:
        get_family("xgboost")
    assert "random_forest" in str(info.value)


def test_unseen_category_at_predict_time(frame) -> None:
    X, y, _ = frame
    for family in sorted(FAMILIES):
        fam = get_family(family)
        pipe = fam.build("regression", BUDGET[family], numerical=NUM, categorical=CAT, seed=0)
        list(fam.staged_fit(pipe, X, y, n_steps=1))
        new = X.head(3).assign(shop=["zzz", "a", None])
        assert np.isfinite(pipe.predict(new)).all(), family


def test_linear_classifier_stages_survive_a_newest_slice_with_one_class(frame) -> None:
    X, _, _ = frame
    y = pd.Series(["no"] * N)
    y.iloc[: N // 2 : 7] = "yes"  # positives only in the older half, as with a rare, bursty class
    fam = get_family("linear")
    pipe = fam.build("classification", {}, numerical=NUM, categorical=CAT, seed=0)
    assert [b for b, _ in fam.staged_fit(pipe, X, y, n_steps=4)][-1] == N


@pytest.mark.parametrize("max_bins", [255, 16])
def test_hist_gradient_boosting_fits_more_categories_than_max_bins(max_bins: int) -> None:
    """The encoder kept up to 250 categories and the estimator refuses more categories than
    max_bins: every trial sampling (or a config fixing) max_bins below a feature's category
    count failed. The rarest categories now share one, so there are at most max_bins."""
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame({"x": rng.normal(size=n), "store": (rng.integers(0, 40, size=n)).astype(str)})
    y = pd.Series(2.0 * X["x"] + rng.normal(0, 0.1, n))
    fam = get_family("hist_gradient_boosting")
    pipe = fam.build("regression", {"max_iter": 5, "max_bins": max_bins}, numerical=["x"], categorical=["store"], seed=0)
    list(fam.staged_fit(pipe, X, y, n_steps=1))
    seen = len(pipe.named_steps["prep"].named_transformers_["cat"].categories_[0])
    assert np.isfinite(pipe.predict(X)).all()
    codes = pipe.named_steps["prep"].transform(X)[:, 1]
    assert seen == 40 and len(np.unique(codes)) == min(max_bins, 40)  # every category seen; the rarest share a code


@pytest.mark.parametrize("threads", [1, 3])
def test_a_forest_starts_as_many_threads_as_the_trial_may_use(threads: int) -> None:
    """threadpoolctl caps BLAS/OpenMP pools, not joblib's threads: the forest's own n_jobs is
    what bounds it, and it comes from tuning.threads_per_trial."""
    rf = RandomForest().build("regression", {"n_estimators": 4}, numerical=["a"], categorical=[], seed=0, threads=threads)
    assert rf.named_steps["model"].n_jobs == threads
    assert RandomForest().build("regression", {}, numerical=["a"], categorical=[], seed=0).named_steps["model"].n_jobs == 1


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "linear"])
def test_families_without_a_thread_param_are_built_without_n_jobs(family: str) -> None:
    """HistGradientBoosting has no n_jobs (OpenMP: threadpoolctl caps it); LogisticRegression's
    does nothing since scikit-learn 1.8 and warns when given."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe = get_family(family).build("classification", {}, numerical=["a"], categorical=[], seed=0, threads=2)
    assert get_family(family).thread_param is None
    assert pipe.named_steps["model"].get_params().get("n_jobs") is None

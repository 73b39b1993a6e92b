"""retune.metrics: names, tasks, directions and how each metric scores a model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from retune.metrics import get_metric

REGRESSION = {"mae": "minimize", "rmse": "minimize", "mape": "minimize", "r2": "maximize"}
CLASSIFICATION = {
    "accuracy": "maximize",
    "balanced_accuracy": "maximize",
    "f1": "maximize",
    "roc_auc": "maximize",
    "log_loss": "minimize",
}


class FixedModel:
    """A fitted-model stand-in returning fixed predictions and probabilities."""

    def __init__(self, pred=None, proba=None):
        self.pred, self.proba = pred, proba

    def predict(self, X):
        return np.asarray(self.pred)

    def predict_proba(self, X):
        return np.asarray(self.proba)


@pytest.mark.parametrize(
    ("name", "task", "direction"),
    [(n, "regression", d) for n, d in REGRESSION.items()] + [(n, "classification", d) for n, d in CLASSIFICATION.items()],
)
def test_directions(name: str, task: str, direction: str) -> None:
    metric = get_metric(name, task)
    assert (metric.name, metric.task, metric.direction) == (name, task, direction)
    assert metric.greater_is_better is (direction == "maximize")


def test_only_probability_metrics_need_probabilities() -> None:
    needs = {n for n in CLASSIFICATION if get_metric(n, "classification").needs_proba}
    assert needs == {"roc_auc", "log_loss"}


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'mse'") as info:
        get_metric("mse", "regression")
    assert "rmse" in str(info.value) and "roc_auc" in str(info.value)


def test_metric_of_the_other_task_lists_the_right_ones() -> None:
    with pytest.raises(ValueError, match="'accuracy' is for classification, not regression") as info:
        get_metric("accuracy", "regression")
    assert "['mae', 'mape', 'r2', 'rmse']" in str(info.value)


def test_better_is_strict_and_follows_the_direction() -> None:
    mae, r2 = get_metric("mae", "regression"), get_metric("r2", "regression")
    assert mae.better(1.0, 2.0) and not mae.better(2.0, 1.0) and not mae.better(1.0, 1.0)
    assert r2.better(0.9, 0.8) and not r2.better(0.8, 0.9) and not r2.better(0.5, 0.5)


def test_rmse_and_mae_values() -> None:
    model = FixedModel(pred=[3.0, 4.0, 0.0])
    y = [0.0, 0.0, 0.0]
    assert get_metric("rmse", "regression").score(model, None, y) == pytest.approx(math.sqrt(25 / 3))
    assert get_metric("mae", "regression").score(model, None, y) == pytest.approx(7 / 3)


def test_binary_probability_metrics_score_the_positive_column() -> None:
    y = np.array([0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8], [0.7, 0.3]])
    model = FixedModel(proba=proba)
    auc = get_metric("roc_auc", "classification").score(model, None, y)
    assert auc == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert auc != pytest.approx(skm.roc_auc_score(y, proba[:, 0]))
    loss = get_metric("log_loss", "classification").score(model, None, y)
    assert loss == pytest.approx(skm.log_loss(y, proba))


def test_multiclass_auc_is_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    auc = get_metric("roc_auc", "classification").score(FixedModel(proba=proba), None, y)
    assert auc == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))


def test_f1_is_binary_for_0_1_labels_and_macro_otherwise() -> None:
    f1 = get_metric("f1", "classification")
    y, p = np.array([0, 0, 1, 1, 1, 0]), np.array([0, 1, 1, 0, 1, 0])
    assert f1.score(FixedModel(pred=p), None, y) == pytest.approx(skm.f1_score(y, p))
    y3, p3 = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 1, 1, 0])
    assert f1.score(FixedModel(pred=p3), None, y3) == pytest.approx(skm.f1_score(y3, p3, average="macro"))
    ys, ps = np.array(["a", "b", "b", "a"]), np.array(["a", "b", "a", "a"])
    assert f1.score(FixedModel(pred=ps), None, ys) == pytest.approx(skm.f1_score(ys, ps, average="macro"))


def test_label_metrics_use_predict() -> None:
    y = np.array(["x", "y", "y", "y"])
    acc = get_metric("accuracy", "classification").score(FixedModel(pred=["x", "y", "x", "y"]), None, y)
    assert acc == pytest.approx(0.75)
    bal = get_metric("balanced_accuracy", "classification").score(FixedModel(pred=["x", "y", "x", "y"]), None, y)
    assert bal == pytest.approx((1.0 + 2 / 3) / 2)


# --------------------------------------------------------------------------- class sets


class FixedClassifier(FixedModel):
    """A fitted-classifier stand-in with ``classes_``."""

    def __init__(self, classes, proba):
        super().__init__(proba=proba)
        self.classes_ = np.asarray(classes)


P3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.3, 0.5, 0.2], [0.1, 0.8, 0.1], [0.4, 0.4, 0.2]])
Y_AB = np.array(["a", "b", "a", "b", "b", "a"])  # class 'c' absent (a rare or retired class)


@pytest.mark.parametrize("name", ["log_loss", "roc_auc"])
def test_a_class_the_holdout_lacks_still_scores(name: str) -> None:
    """A 3-class model on rows without 'c' raised sklearn's ValueError naming nothing."""
    value = get_metric(name, "classification").score(FixedClassifier(["a", "b", "c"], P3), None, Y_AB)
    if name == "log_loss":
        expected = skm.log_loss(Y_AB, P3, labels=["a", "b", "c"])
    else:  # one-vs-rest over the classes the rows have
        expected = np.mean([skm.roc_auc_score(Y_AB == k, P3[:, j]) for j, k in enumerate("ab")])
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("name", ["log_loss", "roc_auc"])
def test_a_binary_model_scores_the_same_on_a_wider_class_set(name: str) -> None:
    """Champion and challenger are scored on the union of their classes: a class neither
    the rows nor the binary model have changes nothing."""
    metric = get_metric(name, "classification")
    binary = FixedClassifier(["a", "b"], P3[:, :2] / P3[:, :2].sum(axis=1, keepdims=True))
    own = metric.score(binary, None, Y_AB)
    assert math.isfinite(own)
    assert metric.score(binary, None, Y_AB, labels=np.array(["a", "b", "c"])) == pytest.approx(own)


def test_a_class_the_model_never_saw_has_probability_zero() -> None:
    from retune.metrics import class_labels, class_probabilities

    model = FixedClassifier(["a", "c"], np.array([[0.9, 0.1], [0.3, 0.7]]))
    labels = class_labels(np.array(["b", "a"]), model)
    assert labels.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(class_probabilities(model, None, labels), [[0.9, 0.0, 0.1], [0.3, 0.0, 0.7]])
    loss = get_metric("log_loss", "classification").score(model, None, np.array(["b", "a"]))
    assert math.isfinite(loss) and loss > 10  # the unseen class costs (clipped) -log(eps), not a crash


@pytest.mark.parametrize(
    ("name", "task", "low", "high"),
    [
        ("mae", "regression", 0.0, math.inf),
        ("rmse", "regression", 0.0, math.inf),
        ("mape", "regression", 0.0, math.inf),
        ("r2", "regression", -math.inf, 1.0),
        ("accuracy", "classification", 0.0, 1.0),
        ("balanced_accuracy", "classification", 0.0, 1.0),
        ("f1", "classification", 0.0, 1.0),
        ("roc_auc", "classification", 0.0, 1.0),
        ("log_loss", "classification", 0.0, math.inf),
    ],
)
def test_every_metric_knows_its_range(name: str, task: str, low: float, high: float) -> None:
    metric = get_metric(name, task)
    assert (metric.low, metric.high) == (low, high)
    assert metric.out_of_range(0.5) is None
    assert metric.out_of_range(float("nan")) == "nan is not a finite number"
    if high < math.inf:
        assert (
            metric.out_of_range(high + 1)
            == f"{name} lies in {'(-inf' if low == -math.inf else '[0'}, 1], {high + 1:g} is outside it"
        )
    if low > -math.inf:
        assert metric.out_of_range(-1.0) is not None

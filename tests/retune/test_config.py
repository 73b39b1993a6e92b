"""retune.config: the demo config loads, and every error names the file and the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retune.config import (
    CategoricalParam,
    FloatParam,
    IntParam,
    config_path,
    load_config,
    parse_duration,
    parse_timestamp,
    resolve_path,
)
from retune.errors import ConfigError

DEMO_YAML = Path(__file__).resolve().parents[2] / "include" / "configs" / "demo.yaml"


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, f"the error does not name the file: {message}"
    return message


# --------------------------------------------------------------------------- the demo config


def test_demo_config_loads_with_typed_fields() -> None:
    cfg = load_config(DEMO_YAML)

    assert cfg.name == "demo"
    assert cfg.task == "regression"
    assert cfg.source_file == str(DEMO_YAML.resolve())
    assert cfg.data.window == timedelta(days=7)
    assert cfg.data.train_window == timedelta(days=28)
    assert cfg.data.reference.path is None
    assert cfg.data.reference.start == datetime(2025, 1, 1, tzinfo=UTC)
    assert cfg.data.reference.end == datetime(2025, 2, 26, tzinfo=UTC)
    assert cfg.direction == "minimize"  # mae, derived from the metric name
    space = cfg.model.search_space
    assert isinstance(space["learning_rate"], FloatParam) and space["learning_rate"].type == "log_float"
    assert isinstance(space["max_leaf_nodes"], IntParam) and space["max_leaf_nodes"].log is True
    assert cfg.tuning.pruner.type == "successive_halving" and cfg.tuning.pruner.args == {}
    assert cfg.registry.model_name == "demo-demand"


def test_snapshot_is_json_safe_and_drops_source_file() -> None:
    import json

    snap = load_config(DEMO_YAML).snapshot()
    assert "source_file" not in snap
    text = json.dumps(snap)
    assert "learning_rate" in text


def test_config_objects_are_frozen() -> None:
    cfg = load_config(DEMO_YAML)
    with pytest.raises(ValueError, match="frozen"):
        cfg.name = "other"  # type: ignore[misc]


def test_defaults_fill_optional_sections(demo_dict, write_yaml) -> None:
    for section in ("drift", "tuning", "validation", "description"):
        demo_dict.pop(section)
    cfg = load_config(write_yaml(demo_dict))
    assert cfg.tuning.n_trials == 30
    assert cfg.drift.drift_share == 0.5
    assert cfg.validation.min_improvement == 0.0


# --------------------------------------------------------------------------- file-level errors


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "ghost.yaml"
    message = load_error(path)
    assert "does not exist" in message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: demo\nmodel: {family: [unclosed\n")
    assert "not valid YAML" in load_error(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert "expected a mapping" in load_error(path)


# --------------------------------------------------------------------------- field errors


def test_unknown_model_family(demo_dict, write_yaml) -> None:
    demo_dict["model"]["family"] = "xgboost"
    message = load_error(write_yaml(demo_dict))
    assert "model.family" in message
    assert "'xgboost'" in message
    assert "hist_gradient_boosting" in message  # lists the valid choices


def test_unknown_metric(demo_dict, write_yaml) -> None:
    demo_dict["metric"]["name"] = "median_error"
    message = load_error(write_yaml(demo_dict))
    assert "metric.name" in message
    assert "'median_error'" in message


def test_metric_of_the_wrong_task(demo_dict, write_yaml) -> None:
    demo_dict["metric"]["name"] = "roc_auc"  # a classification metric on a regression task
    message = load_error(write_yaml(demo_dict))
    assert "metric.name" in message
    assert "classification" in message and "regression" in message


def test_direction_contradicting_the_metric(demo_dict, write_yaml) -> None:
    demo_dict["metric"]["direction"] = "maximize"
    message = load_error(write_yaml(demo_dict))
    assert "metric.direction" in message


def test_matching_direction_is_accepted(demo_dict, write_yaml) -> None:
    demo_dict["metric"]["direction"] = "minimize"
    assert load_config(write_yaml(demo_dict)).direction == "minimize"


@pytest.mark.parametrize(
    ("param", "low", "high"),
    [("learning_rate", 0.5, 0.1), ("min_samples_leaf", 80, 5)],
)
def test_search_space_low_above_high(demo_dict, write_yaml, param: str, low: float, high: float) -> None:
    demo_dict["model"]["search_space"][param].update(low=low, high=high)
    message = load_error(write_yaml(demo_dict))
    assert "model.search_space" in message
    assert param in message
    assert f"low ({low}) > high ({high})" in message


def test_search_space_low_equal_high_is_a_fixed_value(demo_dict, write_yaml) -> None:
    demo_dict["model"]["search_space"]["min_samples_leaf"].update(low=20, high=20)
    assert load_config(write_yaml(demo_dict)).model.search_space["min_samples_leaf"].low == 20


@pytest.mark.parametrize(
    ("param", "spec"),
    [
        ("learning_rate", {"type": "log_float", "low": 0.0, "high": 0.3}),
        ("learning_rate", {"type": "log_float", "low": -1.0, "high": 0.3}),
        ("max_leaf_nodes", {"type": "int", "low": 0, "high": 64, "log": True}),
    ],
)
def test_log_range_needs_a_positive_low(demo_dict, write_yaml, param: str, spec: dict) -> None:
    demo_dict["model"]["search_space"][param] = spec
    message = load_error(write_yaml(demo_dict))
    assert param in message
    assert "log range needs low > 0" in message


def test_linear_range_may_start_at_zero(demo_dict, write_yaml) -> None:
    demo_dict["model"]["search_space"]["l2_regularization"] = {"type": "float", "low": 0.0, "high": 1.0}
    assert load_config(write_yaml(demo_dict)).model.search_space["l2_regularization"].low == 0.0


@pytest.mark.parametrize("section", ["search_space", "fixed_params"])
def test_unknown_estimator_parameter(demo_dict, write_yaml, section: str) -> None:
    if section == "search_space":
        demo_dict["model"]["search_space"]["n_leaves"] = {"type": "int", "low": 2, "high": 8}
    else:
        demo_dict["model"]["fixed_params"]["n_leaves"] = 4
    message = load_error(write_yaml(demo_dict))
    assert "'n_leaves'" in message
    assert "model.search_space/fixed_params" in message
    assert "HistGradientBoostingRegressor" in message


def test_parameters_are_checked_against_the_family_of_the_task(demo_dict, write_yaml) -> None:
    # max_iter exists for HistGradientBoosting but not for Ridge (linear regression)
    demo_dict["model"] = {
        "family": "linear",
        "fixed_params": {"max_iter": 10, "solver": "auto"},
        "search_space": {"alpha": {"type": "log_float", "low": 0.01, "high": 10}},
    }
    assert load_config(write_yaml(demo_dict)).model.family == "linear"
    demo_dict["model"]["fixed_params"] = {"C": 1.0}  # LogisticRegression's, not Ridge's
    assert "'C'" in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize("value", ["7x", "0d", "seven days", "-3d", "7.5d"])
def test_bad_duration(demo_dict, write_yaml, value: str) -> None:
    demo_dict["data"]["window"] = value
    message = load_error(write_yaml(demo_dict))
    assert "data.window" in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("train_window", ["28d"], "not a duration"),
        ("train_window", {"days": 28}, "not a duration"),
        ("window", float("inf"), "not a duration"),
        ("window", float("nan"), "not a duration"),
        ("window", 1e300, "longer than 100 years"),
        ("window", "99999999999d", "longer than 100 years"),
        ("train_window", "36501d", "longer than 100 years"),
        ("window", True, "not a duration"),
    ],
)
def test_a_duration_of_the_wrong_type_or_out_of_range_names_the_field(
    demo_dict, write_yaml, field: str, value: object, reason: str
) -> None:
    """A list or mapping raised TypeError, .inf or a huge number OverflowError: no ConfigError,
    so `retune check` stopped with a traceback and the monitor's planning failed for every model."""
    demo_dict["data"][field] = value
    message = load_error(write_yaml(demo_dict))
    assert f"data.{field}" in message and reason in message


@pytest.mark.parametrize("field", ["cooldown", "lock_ttl"])
def test_a_policy_duration_of_the_wrong_type_names_the_field(demo_dict, write_yaml, field: str) -> None:
    demo_dict["policy"] = {field: [1, 2]}
    assert f"policy.{field}" in load_error(write_yaml(demo_dict))


def test_a_file_that_is_not_utf8_names_the_file(demo_dict, write_yaml) -> None:
    """A Latin-1 file raised UnicodeDecodeError, which no caller took for a config error."""
    path = write_yaml(demo_dict)
    path.write_bytes(path.read_bytes().replace(b"description: ", "description: café ".encode("latin-1")))
    assert "not UTF-8" in load_error(path)


def test_an_unreadable_file_names_the_file(demo_dict, write_yaml, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(demo_dict)

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    assert "cannot read the file: Permission denied" in load_error(path)


def test_empty_search_space(demo_dict, write_yaml) -> None:
    demo_dict["model"]["search_space"] = {}
    assert "search_space is empty" in load_error(write_yaml(demo_dict))


def test_unknown_param_type(demo_dict, write_yaml) -> None:
    demo_dict["model"]["search_space"]["learning_rate"]["type"] = "uniform"
    message = load_error(write_yaml(demo_dict))
    assert "model.search_space.learning_rate" in message


def test_misspelled_field_is_refused(demo_dict, write_yaml) -> None:
    demo_dict["tuning"]["n_trial"] = 5
    message = load_error(write_yaml(demo_dict))
    assert "tuning.n_trial" in message
    assert "Extra inputs are not permitted" in message


def test_target_cannot_be_a_feature(demo_dict, write_yaml) -> None:
    demo_dict["features"]["numerical"].append("demand")
    message = load_error(write_yaml(demo_dict))
    assert "features" in message and "'demand'" in message


def test_column_cannot_be_numerical_and_categorical(demo_dict, write_yaml) -> None:
    demo_dict["features"]["categorical"].append("price")
    message = load_error(write_yaml(demo_dict))
    assert "features" in message and "price" in message


@pytest.mark.parametrize(
    ("section", "features"),
    [
        ("numerical", {"numerical": ["price", "temperature", "price"]}),
        ("categorical", {"categorical": ["promo", "region", "promo"]}),
        ("exclude", {"numerical": None, "categorical": [], "exclude": ["price", "price"]}),
    ],
)
def test_a_feature_listed_twice_is_refused_naming_it(demo_dict, write_yaml, section: str, features: dict) -> None:
    """`numerical: [price, temperature, price]` loaded; Evidently then failed with "Grouper ...
    not 1-dimensional" naming nothing, and the profiled detector tested price twice."""
    demo_dict["features"].update(features)
    if demo_dict["features"]["numerical"] is None:
        del demo_dict["features"]["numerical"]
    message = load_error(write_yaml(demo_dict))
    assert f"features: {section}: column(s) listed more than once: " in message
    assert ("'promo'" if section == "categorical" else "'price'") in message


def test_reference_start_must_precede_end(demo_dict, write_yaml) -> None:
    demo_dict["data"]["reference"].update(start="2025-03-01", end="2025-02-01")
    assert "data.reference" in load_error(write_yaml(demo_dict))


def test_a_reference_read_from_production_needs_an_end(demo_dict, write_yaml, tmp_path: Path) -> None:
    """An open end over the production source put each production window inside its own
    reference: the check compared a window with itself plus the past, and drift was hidden."""
    demo_dict["data"]["reference"] = {"start": "2025-01-01"}
    message = load_error(write_yaml(demo_dict))
    assert "data.reference" in message and "end is required when the reference is read from data.production" in message
    # a reference of its own (a file kept for it) may stay open: it is not the production data
    (tmp_path / "ref.csv").write_text("ts\n")
    demo_dict["data"]["reference"] = {"path": str(tmp_path / "ref.csv"), "start": "2025-01-01"}
    assert load_config(write_yaml(demo_dict)).data.reference.end is None


@pytest.mark.parametrize(("field", "value"), [("holdout_fraction", 0.0), ("holdout_fraction", 0.95), ("min_rows", 0)])
def test_numeric_bounds(demo_dict, write_yaml, field: str, value: float) -> None:
    demo_dict["data"][field] = value
    assert f"data.{field}" in load_error(write_yaml(demo_dict))


def test_every_error_is_reported_on_its_own_line(demo_dict, write_yaml) -> None:
    demo_dict["data"]["window"] = "7x"
    demo_dict["registry"]["model_name"] = "Demo Demand"
    path = write_yaml(demo_dict)
    lines = load_error(path).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"data.window", "registry.model_name"}


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name", ["../etc", "..", "a/b", "Demo", "", "-demo", "demo.yaml", "x" * 64, "de mo"])
def test_config_path_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not valid"):
        config_path(name, tmp_path)


def test_config_path_refuses_a_trailing_newline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid"):
        config_path("demo\n", tmp_path)


def test_config_path_of_a_plain_name(tmp_path: Path) -> None:
    assert config_path("demo_2-b", tmp_path) == tmp_path / "demo_2-b.yaml"


@pytest.mark.parametrize("name", ["../demo", "Demo", "demo demand"])
def test_config_name_field_is_checked(demo_dict, write_yaml, name: str) -> None:
    demo_dict["name"] = name
    message = load_error(write_yaml(demo_dict))
    assert "name:" in message and repr(name) in message


def test_resolve_path_expands_variables_and_relative_paths(tmp_path: Path) -> None:
    base = tmp_path / "configs"
    assert (
        resolve_path("${RETUNE_STATE_DIR}/data/*.csv", base=base, variables={"RETUNE_STATE_DIR": "/state"}) == "/state/data/*.csv"
    )
    assert resolve_path("data/x.csv", base=base) == str(base / "data" / "x.csv")
    assert resolve_path("/abs/x.csv", base=base) == "/abs/x.csv"


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", timedelta(days=7)),
        (" 12h ", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        (3600, timedelta(hours=1)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_parse_duration(value, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", [0, -5, timedelta(0), "0s"])
def test_parse_duration_refuses_non_positive(value) -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_duration(value)


def test_parse_timestamp_is_utc() -> None:
    assert parse_timestamp("2025-01-01") == datetime(2025, 1, 1, tzinfo=UTC)
    converted = parse_timestamp("2025-01-01T12:00:00+02:00")
    assert converted.tzinfo == UTC and converted.hour == 10
    assert parse_timestamp(datetime(2025, 1, 1, 5)).tzinfo == UTC


def test_categorical_param_needs_a_choice(demo_dict, write_yaml) -> None:
    demo_dict["model"]["search_space"]["learning_rate"] = {"type": "categorical", "choices": []}
    assert "model.search_space.learning_rate" in load_error(write_yaml(demo_dict))
    demo_dict["model"]["search_space"]["learning_rate"] = {"type": "categorical", "choices": [0.05, 0.1]}
    spec = load_config(write_yaml(demo_dict)).model.search_space["learning_rate"]
    assert isinstance(spec, CategoricalParam) and spec.choices == [0.05, 0.1]


@pytest.mark.parametrize(
    ("param", "spec", "reason"),
    [
        ("l2_regularization", {"type": "float", "low": 0.0, "high": 1.0, "step": 0}, "step must be a positive number, got 0"),
        ("l2_regularization", {"type": "float", "low": 0.0, "high": 1.0, "step": -0.1}, "step must be a positive number"),
        ("l2_regularization", {"type": "float", "low": 0.0, "high": 1.0, "step": float("nan")}, "step must be a positive"),
        ("min_samples_leaf", {"type": "int", "low": 5, "high": 80, "step": 0}, "step must be a positive number, got 0"),
        ("min_samples_leaf", {"type": "int", "low": 5, "high": 80, "step": -5}, "step must be a positive number"),
        ("l2_regularization", {"type": "float", "low": 0.0, "high": float("inf")}, "low and high must be finite"),
        ("l2_regularization", {"type": "float", "low": float("nan"), "high": 1.0}, "low and high must be finite"),
        ("learning_rate", {"type": "log_float", "low": 0.01, "high": float("inf")}, "low and high must be finite"),
        ("learning_rate", {"type": "categorical", "choices": [0.1, {"value": 0.2}]}, "choices must be null"),
        ("learning_rate", {"type": "categorical", "choices": [[0.1, 0.2]]}, "choices must be null"),
    ],
)
def test_a_search_space_every_trial_would_fail_on_is_refused_naming_the_param(
    demo_dict, write_yaml, param: str, spec: dict, reason: str
) -> None:
    """These loaded and `retune check` said ok; then Optuna raised in every trial (step 0) or
    sampled nonsense (NaN, inf), or stored choices it cannot persist."""
    demo_dict["model"]["search_space"][param] = spec
    message = load_error(write_yaml(demo_dict))
    assert f"model.search_space: {param}: {reason}" in message


@pytest.mark.parametrize(
    ("section", "value"),
    [("fixed_params", -1), ("search_space", {"type": "int", "low": 1, "high": 4})],
)
def test_a_forests_n_jobs_is_refused_for_threads_per_trial(demo_dict, write_yaml, section: str, value: object) -> None:
    """n_jobs=-1 loaded and started a thread per core in every parallel trial worker, beyond
    the tuning.threads_per_trial that threadpoolctl enforces for BLAS/OpenMP only."""
    demo_dict["model"] = {
        "family": "random_forest",
        "fixed_params": {},
        "search_space": {"max_depth": {"type": "int", "low": 2, "high": 8}},
    }
    demo_dict["model"][section]["n_jobs"] = value
    message = load_error(write_yaml(demo_dict))
    assert f"model.{section}.n_jobs: random_forest takes its thread count from tuning.threads_per_trial" in message
    del demo_dict["model"][section]["n_jobs"]
    assert load_config(write_yaml(demo_dict)).model.family == "random_forest"


def test_a_search_space_that_passes_makes_optuna_distributions(demo_dict, write_yaml) -> None:
    from retune.tuning import distributions

    demo_dict["model"]["search_space"]["l2_regularization"] = {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25}
    demo_dict["model"]["search_space"]["min_samples_leaf"] = {"type": "int", "low": 5, "high": 80, "step": 5}
    demo_dict["model"]["search_space"]["learning_rate"] = {"type": "categorical", "choices": [None, True, 1, 0.1, "x"]}
    space = load_config(write_yaml(demo_dict)).model.search_space
    assert sorted(distributions(space)) == sorted(space)


# --------------------------------------------------------------------------- known gaps (see the report)


@pytest.mark.parametrize(
    ("param", "spec"),
    [
        ("max_leaf_nodes", {"type": "int", "low": 8, "high": 64, "log": True, "step": 2}),
        ("learning_rate", {"type": "log_float", "low": 0.02, "high": 0.3, "step": 0.01}),
    ],
)
def test_log_range_with_step_is_refused(demo_dict, write_yaml, param: str, spec: dict) -> None:
    demo_dict["model"]["search_space"][param] = spec
    assert param in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize(("value", "ok"), [(86_400, True), (86_401, False), (0, False), (None, True)])
def test_a_study_timeout_is_at_most_a_day(demo_dict, write_yaml, value: object, ok: bool) -> None:
    """The tune task's execution_timeout (25 h) allows the longest study plus an hour: a longer
    tuning.timeout would be cut there, then its retries, and would fail the run."""
    demo_dict["tuning"]["timeout"] = value
    if ok:
        assert load_config(write_yaml(demo_dict)).tuning.timeout == value
    else:
        assert "tuning.timeout" in load_error(write_yaml(demo_dict))


def test_bad_pruner_args_are_refused_on_load(demo_dict, write_yaml) -> None:
    demo_dict["tuning"]["pruner"] = {"type": "median", "args": {"n_startup": 4}}
    assert "tuning.pruner.args" in load_error(write_yaml(demo_dict))


def test_wilcoxon_with_too_few_steps_is_refused_on_load(demo_dict, write_yaml) -> None:
    """With n_steps 4 (the default) the Wilcoxon pruner can prune only at the last step, the
    full fit: the config loaded and the pruner saved nothing."""
    demo_dict["tuning"]["pruner"] = {"type": "wilcoxon"}
    demo_dict["tuning"]["n_steps"] = 4
    message = load_error(write_yaml(demo_dict))
    assert "tuning.pruner 'wilcoxon'" in message and "tuning.n_steps >= 5 (got 4)" in message
    demo_dict["tuning"]["n_steps"] = 5
    assert load_config(write_yaml(demo_dict)).tuning.pruner.type == "wilcoxon"


@pytest.mark.parametrize("value", [0, -3, "sometimes", 2.5])
def test_bad_early_stop_patience_is_refused(demo_dict, write_yaml, value: object) -> None:
    demo_dict["tuning"]["early_stop_patience"] = value
    assert "tuning.early_stop_patience" in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize(
    ("setting", "n_trials", "warm", "expected"),
    [
        ("auto", 30, True, 6),
        ("auto", 12, True, 5),
        ("auto", 100, True, 20),
        ("auto", 30, False, None),
        (None, 30, True, None),
        (3, 30, False, 3),
        (3, 30, True, 3),
    ],
)
def test_early_stop_patience_per_study(
    demo_dict, write_yaml, setting: object, n_trials: int, warm: bool, expected: int | None
) -> None:
    from retune.config import load_config

    demo_dict["tuning"]["early_stop_patience"] = setting
    cfg = load_config(write_yaml(demo_dict))
    assert cfg.tuning.patience_for(n_trials=n_trials, warm=warm) == expected


def test_multi_objective_studies_never_stop_early(demo_dict, write_yaml) -> None:
    from retune.config import load_config

    demo_dict["tuning"]["objectives"] = ["metric", "latency"]
    cfg = load_config(write_yaml(demo_dict))
    assert cfg.tuning.patience_for(n_trials=30, warm=True) is None


def test_unknown_drift_method_is_refused_on_load(demo_dict, write_yaml) -> None:
    demo_dict["drift"]["method"] = "kolmogorov"
    message = load_error(write_yaml(demo_dict))
    assert "drift.method" in message and "kolmogorov" in message and "wasserstein" in message


def test_unknown_per_column_drift_method_is_refused_on_load(demo_dict, write_yaml) -> None:
    demo_dict["drift"]["columns"] = {"price": {"method": "ks-test"}}
    assert "drift.columns.price.method" in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize(
    ("drift", "field", "column"),
    [
        ({"method": "chisquare"}, "drift.method", "price"),  # a categorical test on numerical columns
        ({"columns": {"promo": {"method": "ks"}}}, "drift.columns.promo.method", "promo"),  # numerical test, categorical column
    ],
)
def test_drift_method_that_cannot_test_a_column_type_is_refused(
    demo_dict, write_yaml, drift: dict, field: str, column: str
) -> None:
    demo_dict["drift"].update(drift)
    message = load_error(write_yaml(demo_dict))
    assert field in message and repr(column) in message


def test_drift_settings_for_a_column_that_is_no_feature_are_refused(demo_dict, write_yaml) -> None:
    demo_dict["drift"]["columns"] = {"prcie": {"threshold": 0.2}}
    assert "drift.columns" in load_error(write_yaml(demo_dict)) and "prcie" in load_error(write_yaml(demo_dict))


def test_drift_methods_accepted_on_load_are_evidentlys(demo_dict, write_yaml) -> None:
    from evidently.legacy.calculations.stattests import registry

    from retune.config import DRIFT_METHODS, load_config

    kinds = {"ColumnType.Numerical": "numerical", "ColumnType.Categorical": "categorical"}
    evidently = {
        name: frozenset(kinds[str(t)] for t in by_type if str(t) in kinds)
        for name, by_type in registry._registered_stat_tests.items()  # private: Evidently has no public list
    }
    assert DRIFT_METHODS == {name: types for name, types in evidently.items() if types}
    demo_dict["drift"]["method"] = "psi"  # numerical and categorical: fits every column of the demo
    demo_dict["drift"]["columns"] = {"price": {"method": "wasserstein", "threshold": 0.2}, "promo": {"method": "chisquare"}}
    cfg = load_config(write_yaml(demo_dict))
    assert cfg.drift.columns["price"].method == "wasserstein"


@pytest.mark.parametrize(
    ("setting", "n_seeds", "widened", "expected"),
    [
        ("auto", 0, False, 10),
        ("auto", 4, False, 5),
        ("auto", 1, False, 2),
        ("auto", 4, True, 10),
        (7, 0, False, 7),
        (7, 4, True, 7),
        (0, 4, False, 0),
    ],
)
def test_tpe_startup_trials_per_study(demo_dict, write_yaml, setting: object, n_seeds: int, widened: bool, expected: int) -> None:
    from retune.config import load_config

    demo_dict["tuning"]["startup_trials"] = setting
    assert load_config(write_yaml(demo_dict)).tuning.startup_trials_for(n_seeds, widened=widened) == expected


@pytest.mark.parametrize("value", [-1, "often", 2.5])
def test_bad_startup_trials_are_refused(demo_dict, write_yaml, value: object) -> None:
    demo_dict["tuning"]["startup_trials"] = value
    assert "tuning.startup_trials" in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize("schedule", ["0 0 * *", "@dayly", "0 25 * * *", "0 0 30 2 *"])
def test_a_drift_schedule_that_never_fires_is_refused_naming_the_field(demo_dict, write_yaml, schedule: str) -> None:
    """It passed and then failed the monitor's due_configs in every scheduled run."""
    demo_dict["drift"]["schedule"] = schedule
    assert "drift.schedule" in load_error(write_yaml(demo_dict))


@pytest.mark.parametrize("schedule", ["@daily", "@hourly", "*/15 * * * *", "0 6 * * 1", "0 0 29 2 *"])
def test_a_drift_schedule_that_fires_is_accepted(demo_dict, write_yaml, schedule: str) -> None:
    from retune.config import load_config

    demo_dict["drift"]["schedule"] = schedule
    assert load_config(write_yaml(demo_dict)).drift.schedule == schedule


@pytest.mark.parametrize(
    ("field", "objective", "objectives"),
    [
        ("max_latency_ms_per_1k", "latency", ["metric"]),
        ("max_latency_ms_per_1k", "latency", ["metric", "size"]),
        ("max_size_kb", "size", ["metric"]),
        ("max_size_kb", "size", ["metric", "latency"]),
    ],
)
def test_a_tuning_bound_without_its_objective_is_refused(
    demo_dict, write_yaml, field: str, objective: str, objectives: list[str]
) -> None:
    """The bound was accepted and then never checked: the winner was picked on the metric alone."""
    demo_dict["tuning"]["objectives"] = objectives
    demo_dict["tuning"][field] = 5.0
    assert f"tuning.{field}: needs '{objective}' in tuning.objectives" in load_error(write_yaml(demo_dict))


def test_a_tuning_bound_with_its_objective_is_accepted(demo_dict, write_yaml) -> None:
    demo_dict["tuning"].update(objectives=["metric", "latency", "size"], max_latency_ms_per_1k=5.0, max_size_kb=100.0)
    tuning = load_config(write_yaml(demo_dict)).tuning
    assert (tuning.max_latency_ms_per_1k, tuning.max_size_kb) == (5.0, 100.0)


def _classification(demo_dict: dict, metric: str) -> None:
    demo_dict.update(task="classification", target="label", registry={"model_name": "demo-clf"})
    demo_dict["metric"] = {"name": metric}
    demo_dict["model"] = {
        "family": "hist_gradient_boosting",
        "search_space": {"learning_rate": {"type": "log_float", "low": 0.01, "high": 0.3}},
    }


def _with_threshold(demo_dict: dict, task: str, metric: str, value: float) -> dict:
    """The demo config on ``metric`` (a classification config for a classification metric)
    with ``validation.metric_threshold: value``."""
    if task == "classification":
        _classification(demo_dict, metric)
    else:
        demo_dict["metric"] = {"name": metric}
    demo_dict["validation"]["metric_threshold"] = value
    return demo_dict


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metric_threshold", float("nan")),
        ("metric_threshold", float("inf")),
        ("min_absolute_improvement", float("inf")),
        ("max_latency_ms_per_1k", float("inf")),
    ],
)
def test_a_non_finite_validation_bound_is_refused(demo_dict, write_yaml, field: str, value: float) -> None:
    """It loaded, and then every retune, the first model included, failed a gate forever."""
    demo_dict["validation"][field] = value
    message = load_error(write_yaml(demo_dict))
    assert f"validation.{field}: " in message and "finite number" in message


@pytest.mark.parametrize(
    ("task", "metric", "value"),
    [
        ("regression", "r2", 80.0),
        ("regression", "mae", -1.0),
        ("regression", "rmse", -0.5),
        ("regression", "mape", -0.1),
        ("classification", "accuracy", 1.5),
        ("classification", "balanced_accuracy", -0.2),
        ("classification", "f1", 2.0),
        ("classification", "roc_auc", 1.01),
        ("classification", "log_loss", -1.0),
    ],
)
def test_a_metric_threshold_the_metric_cannot_take_is_refused(
    demo_dict, write_yaml, task: str, metric: str, value: float
) -> None:
    message = load_error(write_yaml(_with_threshold(demo_dict, task, metric, value)))
    assert f"validation.metric_threshold: {metric} lies in " in message and f"{value:g} is outside it" in message


@pytest.mark.parametrize(
    ("task", "metric", "value"),
    [
        ("regression", "r2", 1.0),
        ("regression", "r2", -3.0),
        ("regression", "mae", 0.0),
        ("regression", "mape", 0.2),
        ("classification", "accuracy", 1.0),
        ("classification", "roc_auc", 0.0),
        ("classification", "log_loss", 0.7),
    ],
)
def test_a_metric_threshold_within_the_metrics_range_is_accepted(
    demo_dict, write_yaml, task: str, metric: str, value: float
) -> None:
    assert load_config(write_yaml(_with_threshold(demo_dict, task, metric, value))).validation.metric_threshold == value

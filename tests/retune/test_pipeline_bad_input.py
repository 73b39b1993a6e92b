"""Library-level end to end: bad input stops a retune with a clear error and leaves the registry alone.

A champion is bootstrapped once for the module (prepare -> warm_start -> tune -> validate ->
register on the reference period). Then every bad input must fail in ``prepare`` (or in
loading the config) with an error naming the field, column or file, and the registered
model must keep exactly the same versions, with ``champion`` on the same version.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from retune import demo_data, pipeline
from retune.errors import ConfigError, DataError, RetuneError

MODEL = "demo-demand"
WINDOW_END = "2025-03-20"  # day 78 of 90: a full 28-day training window inside the data


@dataclass
class Boot:
    root: Path
    configs: Path
    state: Path
    config: dict[str, Any]
    registered: dict[str, Any]
    validation: dict[str, Any]
    client: Any


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory, demo_raw: dict[str, Any]) -> Iterator[Boot]:
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    root = tmp_path_factory.mktemp("pipeline")
    state, configs = root / "state", root / "configs"
    configs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETUNE_STATE_DIR", str(state))
        mp.setenv("RETUNE_CONFIG_DIR", str(configs))
        mp.setenv("RETUNE_GIT_COMMIT", "unit-test")  # no git subprocess for lineage
        for var in ("MLFLOW_TRACKING_URI", "RETUNE_OPTUNA_STORAGE", "RETUNE_ARTIFACT_ROOT"):
            mp.delenv(var, raising=False)
        # the pipeline sets MLflow's process-wide URIs: put them back afterwards
        mp.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
        mp.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)

        demo_data.write(state / "data" / "demo", days=90, rows_per_day=40)
        cfg = copy.deepcopy(demo_raw)
        cfg["data"]["reference"]["end"] = "2025-02-15"
        cfg["data"]["min_rows"] = 20
        cfg["model"]["fixed_params"]["max_iter"] = 30
        cfg["tuning"].update(n_trials=4, n_steps=2, timeout=300)
        (configs / "demo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

        ctx = pipeline.prepare("demo", window_kind="reference", key="boot")
        assert pipeline.warm_start(ctx)["mode"] == "cold"  # nothing to start from yet
        outcome = pipeline.tune(ctx)
        validation = pipeline.validate(ctx, outcome)
        registered = pipeline.register(ctx, validation, outcome)
        client = mlflow.MlflowClient(
            tracking_uri=f"sqlite:///{state / 'mlflow.db'}", registry_uri=f"sqlite:///{state / 'mlflow.db'}"
        )
        yield Boot(root, configs, state, cfg, registered, validation, client)


def snapshot(boot: Boot) -> dict[str, Any]:
    """Registry versions and aliases, plus every MLflow run and Optuna study (to catch any side effect)."""
    import optuna

    cl = boot.client
    versions = sorted((str(v.version), v.run_id, v.source) for v in cl.search_model_versions(f"name = '{MODEL}'"))
    aliases = {k: str(v) for k, v in cl.get_registered_model(MODEL).aliases.items()}
    experiments = [e.experiment_id for e in cl.search_experiments()]
    runs = sorted(r.info.run_id for r in cl.search_runs(experiments, max_results=1000))
    studies = sorted(optuna.get_all_study_names(f"sqlite:///{boot.state / 'optuna.db'}"))
    return {"versions": versions, "aliases": aliases, "experiments": sorted(experiments), "runs": runs, "studies": studies}


@pytest.fixture
def unchanged(boot: Boot) -> Iterator[None]:
    """Assert after the test that nothing was registered, promoted, logged or studied."""
    before = snapshot(boot)
    yield
    after = snapshot(boot)
    assert after["versions"] == before["versions"], "a model version was registered"
    assert after["aliases"] == before["aliases"], "an alias moved"
    assert after["aliases"]["champion"] == str(boot.registered["version"])
    assert after == before, "bad input left a run, an experiment or a study behind"


def write_config(boot: Boot, name: str, mutate: Callable[[dict[str, Any]], None] | None = None, csv: Path | None = None) -> Path:
    cfg = copy.deepcopy(boot.config)
    cfg["name"] = name
    if csv is not None:
        cfg["data"]["production"]["path"] = str(csv)
    if mutate is not None:
        mutate(cfg)
    path = boot.configs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_csv(boot: Boot, name: str, corrupt: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    df = demo_data.generate(days=90, rows_per_day=40, seed=0)
    path = boot.root / "bad" / f"{name}.csv"
    path.parent.mkdir(exist_ok=True)
    corrupt(df.copy()).to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- the bootstrap


def test_bootstrap_made_a_champion(boot: Boot) -> None:
    reg = boot.registered
    assert reg["created"] and reg["promoted"]
    assert reg["champion_before"] is None and str(reg["champion_after"]) == str(reg["version"])
    assert all(g["passed"] for g in boot.validation["gates"])
    champion = boot.client.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["retune.key"] == "boot"
    assert champion.tags["retune.window_kind"] == "reference"
    assert champion.tags[pipeline.TRAIN_END_TAG].startswith("2025-02-15")


def test_the_clean_copy_of_the_data_prepares(boot: Boot) -> None:
    """The control for the bad-data cases: the same config on an intact copy works."""
    csv = write_csv(boot, "clean", lambda df: df)
    write_config(boot, "clean-copy", csv=csv)
    before = snapshot(boot)
    ctx = pipeline.prepare("clean-copy", window_end=WINDOW_END, key="clean")
    assert ctx["rows"]["total"] == 28 * 40
    after = snapshot(boot)
    assert (after["versions"], after["aliases"]) == (before["versions"], before["aliases"])


# --------------------------------------------------------------------------- bad data


def drop_price(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["price"])


def price_as_text(df: pd.DataFrame) -> pd.DataFrame:
    df["price"] = df["price"].map(lambda v: f"{v:.2f}".replace(".", ","))  # a decimal comma
    return df


def nan_target(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df.index[::97], "demand"] = np.nan
    return df


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("case", "corrupt", "expected"),
    [
        ("missing-column", drop_price, "missing column(s) ['price']"),
        ("wrong-dtype", price_as_text, "column 'price' is declared numerical but has dtype object"),
        ("nan-target", nan_target, "target column 'demand' has"),
    ],
)
def test_bad_data_is_refused(boot: Boot, case: str, corrupt, expected: str) -> None:
    csv = write_csv(boot, case, corrupt)
    write_config(boot, f"bad-{case}", csv=csv)
    with pytest.raises(DataError) as info:
        pipeline.prepare(f"bad-{case}", window_end=WINDOW_END, key=f"bad-{case}")
    message = str(info.value)
    assert expected in message
    assert str(csv) in message  # names the source
    assert "production [2025-02-20" in message  # and the window


@pytest.mark.usefixtures("unchanged")
def test_empty_production_window_is_refused(boot: Boot) -> None:
    with pytest.raises(DataError) as info:
        pipeline.prepare("demo", window_end="2026-06-01", key="empty")
    message = str(info.value)
    assert "the window is empty (0 rows)" in message
    assert "production [2026-05-04T00:00:00+00:00, 2026-06-01T00:00:00+00:00)" in message
    assert str(boot.state / "data" / "demo") in message


# --------------------------------------------------------------------------- bad configs


def set_family(cfg: dict[str, Any]) -> None:
    cfg["model"]["family"] = "xgboost"


def set_metric(cfg: dict[str, Any]) -> None:
    cfg["metric"]["name"] = "median_error"


def invert_range(cfg: dict[str, Any]) -> None:
    cfg["model"]["search_space"]["learning_rate"].update(low=0.5, high=0.1)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("case", "mutate", "expected"),
    [
        ("family", set_family, ["model.family", "'xgboost'"]),
        ("metric", set_metric, ["metric.name", "'median_error'"]),
        ("range", invert_range, ["model.search_space", "learning_rate", "low (0.5) > high (0.1)"]),
    ],
)
def test_bad_config_is_refused(boot: Boot, case: str, mutate, expected: list[str]) -> None:
    path = write_config(boot, f"bad-{case}", mutate)
    with pytest.raises(ConfigError) as info:
        pipeline.prepare(f"bad-{case}", window_end=WINDOW_END, key=f"bad-{case}")
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message
    with pytest.raises(ConfigError, match=str(path)):
        pipeline.load_named_config(f"bad-{case}")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("case", "drift", "expected"),
    [
        ("typo", {"columns": {"pricee": {"threshold": 0.2}}}, "drift.columns: ['pricee'] are not features"),
        ("ks", {"method": "ks"}, "drift.method: 'ks' cannot test the categorical column 'promo'"),
    ],
)
def test_drift_settings_that_do_not_fit_inferred_features_fail_the_drift_check(
    boot: Boot, case: str, drift: dict[str, Any], expected: str
) -> None:
    """Exclude-only configs skipped the drift checks: a typo in drift.columns was ignored and
    ks on a categorical column failed inside Evidently ("Stattest ks isn't applicable to
    feature of type cat"), naming neither the field nor the column."""

    def infer(cfg: dict[str, Any]) -> None:
        cfg["features"] = {"exclude": []}
        cfg["drift"].update(drift)

    path = write_config(boot, f"drift-{case}", infer)
    with pytest.raises(ConfigError) as info:
        pipeline.check_drift(f"drift-{case}", window_end=WINDOW_END)
    assert str(info.value).startswith(f"{path.resolve()}: ") and expected in str(info.value)


@pytest.mark.usefixtures("unchanged")
def test_missing_config_file_is_refused(boot: Boot) -> None:
    with pytest.raises(ConfigError) as info:
        pipeline.prepare("ghost", window_end=WINDOW_END)
    assert str(boot.configs / "ghost.yaml") in str(info.value)
    assert "does not exist" in str(info.value)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", ["../configs/demo", "Demo", "demo/../demo"])
def test_unsafe_config_names_are_refused(boot: Boot, name: str) -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        pipeline.prepare(name, window_end=WINDOW_END)


@pytest.mark.usefixtures("unchanged")
def test_bad_pruner_and_window_arguments_are_refused(boot: Boot) -> None:
    with pytest.raises(ValueError, match="bogus"):
        pipeline.prepare("demo", window_end=WINDOW_END, pruner="bogus")
    with pytest.raises(RetuneError, match="window: must be 'latest' or 'reference'"):
        pipeline.prepare("demo", window_end=WINDOW_END, window_kind="yesterday")


def test_a_pruner_override_that_cannot_prune_the_configs_trials_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any]
) -> None:
    """The run's pruner override (the DAG form's ``pruner``) 'wilcoxon' on a config with
    n_steps 4 prunes at the last step at best: refused before any data is read or run opened."""
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    cfg = copy.deepcopy(demo_raw)
    cfg["tuning"]["n_steps"] = 4
    (configs / "demo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match=r"pruner: 'wilcoxon' does not fit config 'demo'.*tuning\.n_steps >= 5 \(got 4\)"):
        pipeline.prepare("demo", pruner="wilcoxon")
    assert not (tmp_path / "state" / "mlflow.db").exists()


# --------------------------------------------------------------------------- known gaps (see the report)


def test_bad_pruner_args_in_the_config_are_refused_by_prepare(boot: Boot) -> None:
    def bad_args(cfg: dict[str, Any]) -> None:
        cfg["tuning"]["pruner"] = {"type": "median", "args": {"n_startup": 4}}

    write_config(boot, "bad-pruner-args", bad_args)
    with pytest.raises(ValueError, match=r"tuning\.pruner\.args"):
        pipeline.prepare("bad-pruner-args", window_end=WINDOW_END, key="bad-pruner-args")


# --------------------------------------------------------------------------- a registry that cannot be read


def test_a_champion_that_cannot_be_fetched_stops_validation(boot: Boot) -> None:
    """The champion's files are unreachable (a store outage): validate raises, the task's
    retry can go on, and nothing is registered or promoted in between. A champion that
    could not be fetched is not a broken champion: the challenger is never waved through
    without the comparison. Once the files are back, the retry compares against it."""
    import mlflow

    from retune.errors import RegistryUnavailableError

    champion = boot.client.get_model_version_by_alias(MODEL, "champion")
    model_id = champion.model_id or champion.source.removeprefix("models:/")
    folder = Path(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    assert (folder / "MLmodel").exists()
    ctx = pipeline.prepare("demo", window_end=WINDOW_END, key="outage")
    outcome = pipeline.tune(ctx)
    before = snapshot(boot)
    moved = folder.with_name(folder.name + "-outage")
    folder.rename(moved)
    try:
        with pytest.raises(RegistryUnavailableError, match=f"{MODEL} version {champion.version} could not be fetched"):
            pipeline.validate(ctx, outcome)
    finally:
        moved.rename(folder)
    after = snapshot(boot)
    assert (after["versions"], after["aliases"]) == (before["versions"], before["aliases"])
    retried = pipeline.validate(ctx, outcome)
    assert retried["champion_error"] is None
    assert str(retried["champion_version"]) == str(champion.version)
    assert retried["champion"] is not None and cfg_metric(boot) in retried["champion"]


def cfg_metric(boot: Boot) -> str:
    return str(boot.config["metric"]["name"])


# --------------------------------------------------------------------------- a retune of an older window


def own_model(name: str) -> Callable[[dict[str, Any]], None]:
    """A config change giving config ``name`` its own registered model, ``<name>-demand``."""

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["registry"] = {"model_name": f"{name}-demand"}

    return mutate


def first_champion(boot: Boot, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Config ``name`` with its own model, retuned on the window ending WINDOW_END and promoted:
    ``(context, study outcome, register result)``."""
    write_config(boot, name, own_model(name))
    ctx = pipeline.prepare(name, window_end=WINDOW_END, key=f"{name}-1", n_trials=2)
    outcome = pipeline.tune(ctx)
    registered = pipeline.register(ctx, pipeline.validate(ctx, outcome), outcome)
    assert registered["promoted"] is True
    return ctx, outcome, registered


def test_a_retune_of_an_older_window_is_registered_but_never_promoted(boot: Boot) -> None:
    """A backfill, a monitor run for a past window or a manual run with a past window_end or
    window=reference is validated on that window's newest rows, where a champion trained on
    newer data can lose: it promoted a stale model. The training_window gate refuses it; the
    version is registered, with the reason on its tags and in `retune status`."""
    from retune.status import model_status, render

    _, _, first = first_champion(boot, "stale")
    older = pipeline.prepare("stale", window_kind="reference", key="stale-older", n_trials=2)
    outcome = pipeline.tune(older)
    validation = pipeline.validate(older, outcome)
    gate = {g["name"]: g for g in validation["gates"]}.get("training_window")
    assert gate is not None and gate["passed"] is False
    assert "up to 2025-02-15T00:00:00+00:00" in gate["detail"] and "up to 2025-03-20T00:00:00+00:00" in gate["detail"]
    assert validation["passed"] is False
    registered = pipeline.register(older, validation, outcome)
    assert registered["promoted"] is False and registered["created"] is True
    assert str(registered["champion_after"]) == str(first["version"])
    tags = boot.client.get_model_version("stale-demand", registered["version"]).tags
    assert tags["retune.gates"] == "failed" and "training_window: trained on data up to 2025-02-15" in tags["retune.gate_reason"]
    assert "training_window: trained on data up to 2025-02-15" in render(model_status("stale"))


def test_a_feature_dropped_from_the_config_still_lets_the_champion_be_compared(boot: Boot) -> None:
    """The champion was scored on the challenger's columns: with a feature taken out of the
    config (the data still has it), it "could not score the holdout", counted as no champion,
    and a challenger far worse than it was promoted without any comparison."""
    _, _, champion = first_champion(boot, "dropped")

    def without_footfall(cfg: dict[str, Any]) -> None:
        own_model("dropped")(cfg)
        cfg["features"]["numerical"] = [c for c in cfg["features"]["numerical"] if c != "footfall"]

    write_config(boot, "dropped", without_footfall)
    second = pipeline.prepare("dropped", window_end=WINDOW_END, key="dropped-2", n_trials=2)
    outcome = pipeline.tune(second)
    validation = pipeline.validate(second, outcome)
    assert validation["champion_error"] is None, validation["champion_error"]
    assert validation["champion"] is not None, "the champion was scored on the holdout"
    assert validation["champion"]["mae"] < validation["challenger"]["mae"], "footfall carries the demand signal"
    gates = {g["name"]: g for g in validation["gates"]}
    assert gates["beats_champion"]["passed"] is False and "vs champion" in gates["beats_champion"]["detail"]
    registered = pipeline.register(second, validation, outcome)
    assert registered["promoted"] is False
    assert str(registered["champion_after"]) == str(champion["version"])


def test_a_cleared_rerun_of_a_retune_that_promoted_still_reports_the_promotion(boot: Boot) -> None:
    """Cleared and run again, validate compares the version with itself (it is the champion
    now) and the significance gate fails on identical scores: register reported "not
    promoted", logged the champion as staying challenger and set retune.promoted=false."""
    ctx, outcome, first = first_champion(boot, "rerun")
    again = pipeline.validate(ctx, outcome)  # the cleared validate and register tasks
    assert again["passed"] is False and str(again["champion_version"]) == str(first["version"])
    rerun = pipeline.register(ctx, again, outcome)
    assert rerun["promoted"] is True and rerun["created"] is False
    assert str(rerun["version"]) == str(rerun["champion_after"]) == str(first["version"])
    assert boot.client.get_run(ctx["parent_run_id"]).data.tags["retune.promoted"] == "true"


# --------------------------------------------------------------------------- class sets


def write_classes(boot: Boot, name: str, relabel: Callable[[pd.DataFrame], None]) -> None:
    """A 3-class config ``name`` (log_loss, model ``<name>-model``) on hourly rows from
    2025-03-01 for 60 days, ``relabel`` applied to the rows."""
    rng = np.random.default_rng(0)
    n = 24 * 60
    x, z = rng.normal(size=n), rng.normal(size=n)
    noisy = x + rng.normal(0, 0.4, n)
    df = pd.DataFrame(
        {
            "ts": pd.date_range("2025-03-01", periods=n, freq="h", tz="UTC"),
            "x": x,
            "z": z,
            "label": np.where(noisy > 0.4, "high", np.where(noisy < -0.4, "low", "mid")),
        }
    )
    relabel(df)
    csv = boot.root / "classes" / f"{name}.csv"
    csv.parent.mkdir(exist_ok=True)
    df.to_csv(csv, index=False)
    cfg = {
        "name": name,
        "task": "classification",
        "target": "label",
        "data": {
            "production": {"path": str(csv)},
            "reference": {"start": "2025-03-01", "end": "2025-03-10"},
            "time_column": "ts",
            "window": "1d",
            "train_window": "20d",
            "min_rows": 20,
        },
        "features": {"numerical": ["x", "z"], "categorical": []},
        "model": {
            "family": "hist_gradient_boosting",
            "fixed_params": {"max_iter": 20},
            "search_space": {"learning_rate": {"type": "log_float", "low": 0.05, "high": 0.3}},
        },
        "metric": {"name": "log_loss"},
        "tuning": {"n_trials": 2, "n_steps": 2, "timeout": 300},
        "registry": {"model_name": f"{name}-model"},
    }
    (boot.configs / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.usefixtures("unchanged")
def test_a_single_class_holdout_is_refused_before_mlflow_or_optuna(boot: Boot) -> None:
    """Only the train part was checked: the retune ran until validate, which failed (log_loss)
    or refused the challenger as 'not a finite number (nan)' (roc_auc), naming no cause."""

    def one_class_from_the_16th(df: pd.DataFrame) -> None:
        df.loc[df["ts"] >= "2025-03-16", "label"] = "low"

    write_classes(boot, "one-class", one_class_from_the_16th)
    with pytest.raises(DataError) as info:
        pipeline.prepare("one-class", window_end="2025-03-21", key="one-class")
    message = str(info.value)
    assert message.startswith("retune window: the holdout part (the newest 96 of 480 rows, from 2025-03-17")
    assert "single class ('low') in target column 'label', without the window's classes ['high', 'mid']" in message


def test_a_retired_class_never_skips_the_champion_comparison(boot: Boot) -> None:
    """Class 'mid' stops occurring on 2025-03-24. The champion, trained while it existed,
    could not be scored on a holdout without it (sklearn's ValueError was taken for a broken
    champion, and the challenger promoted without any comparison); a challenger that knows
    'mid' failed validate with a raw ValueError. Both models are now scored on the same
    classes and compared."""

    def retire_mid(df: pd.DataFrame) -> None:
        gone = (df["ts"] >= "2025-03-24") & (df["label"] == "mid")
        df.loc[gone, "label"] = np.where(df.loc[gone, "x"] > 0, "high", "low")

    def retune(key: str, window_end: str) -> dict[str, Any]:
        ctx = pipeline.prepare("retired", window_end=window_end, key=key)
        outcome = pipeline.tune(ctx)
        validation = pipeline.validate(ctx, outcome)
        pipeline.register(ctx, validation, outcome)
        return validation

    write_classes(boot, "retired", retire_mid)
    first = retune("retired-1", "2025-03-21")  # the champion: 3 classes
    assert first["champion_version"] is None and first["passed"]
    for key, end in (("retired-2", "2025-04-20"), ("retired-3", "2025-03-28")):
        # 2: no 'mid' left in the window (a binary challenger); 3: 'mid' in train, not in the holdout
        validation = retune(key, end)
        assert validation["champion_error"] is None, validation["champion_error"]
        assert validation["champion"] is not None and np.isfinite(validation["champion"]["log_loss"])
        assert validation["bootstrap"] is not None and validation["bootstrap"]["valid_resamples"] > 0
        significance = {g["name"]: g for g in validation["gates"]}["significant_improvement"]
        assert "no champion to compare with" not in significance["detail"]


def test_a_metric_the_champions_predictions_cannot_be_scored_with_stops_validation(
    boot: Boot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion loads and predicts; only the metric fails on its predictions. That was
    taken for a broken champion and the challenger promoted without any comparison: it is a
    data problem, and validate fails naming the metric, the champion and the holdout."""
    from retune.metrics import Metric

    ctx = pipeline.prepare("demo", window_end=WINDOW_END, key="metric-error", n_trials=2)
    outcome = pipeline.tune(ctx)
    before = snapshot(boot)
    real, calls = Metric.value, []

    def fails_on_the_second_model(self: Metric, y: Any, y_score: Any, *, labels: Any = None) -> float:
        calls.append(1)
        if len(calls) == 2:  # the challenger is scored first, then the champion
            raise ValueError("undefined on these rows")
        return real(self, y, y_score, labels=labels)

    monkeypatch.setattr(Metric, "value", fails_on_the_second_model)
    champion = boot.client.get_model_version_by_alias(MODEL, "champion").version
    with pytest.raises(
        DataError, match=rf"holdout: the mae of champion v{champion} cannot be computed .*undefined on these rows"
    ):
        pipeline.validate(ctx, outcome)
    after = snapshot(boot)
    assert (after["versions"], after["aliases"]) == (before["versions"], before["aliases"])

"""Real messy data: Metro Interstate traffic volume (hourly, 2012-2018), through the library.

The file has what production data has: a gap of ten months (2014-08 to 2015-06) and
shorter ones, 7,629 duplicate timestamps (one row per weather condition of the hour), 0 K
temperatures, a 9,831 mm hourly rainfall, a ``holiday`` column that says ``None`` on most
rows (pandas reads that as NaN unless ``keep_default_na`` is off) and 38 weather
descriptions. It is read as it is: no cleaning outside Retune.

- A drift check compares a winter window with an autumn reference and finds drift.
- One small retune (prepare -> warm_start -> tune -> validate -> register, 5 trials) on a
  window with duplicate timestamps, the 0 K outliers and a holiday registers a version.
- A window inside the 2014-2015 gap is refused (empty window) by the retune and by the
  drift check, and nothing changes in MLflow or Optuna.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

CSV = Path("metro_traffic") / "Metro_Interstate_Traffic_Volume.csv"
WINDOW_END = "2014-02-07"  # retune window [2014-01-10, 2014-02-07): duplicates, 0 K, a holiday
GAP_END = "2015-01-01"  # inside the gap: no row from 2014-08-08 to 2015-06-11

CONFIG = """
name: metro
description: Hourly traffic volume on I-94, read as it is.
task: regression
target: traffic_volume
data:
  production:
    path: "{path}"
    read_options: {{keep_default_na: false}}   # the holiday "None" is a category, not NaN
  reference: {{start: "2013-10-01", end: "2013-11-01"}}
  time_column: date_time
  window: 14d
  train_window: 28d
  min_rows: 100
features:
  numerical: [temp, rain_1h, snow_1h, clouds_all]
  categorical: [holiday, weather_main, weather_description]
model:
  family: hist_gradient_boosting
  fixed_params: {{max_iter: 40}}
  search_space:
    learning_rate: {{type: log_float, low: 0.05, high: 0.3}}
    max_leaf_nodes: {{type: int, low: 8, high: 32, log: true}}
    min_samples_leaf: {{type: int, low: 5, high: 40}}
metric: {{name: mae}}
drift: {{drift_share: 0.3}}
tuning:
  n_trials: 5
  n_steps: 2
  seed: 1
  pruner: {{type: median, args: {{n_startup_trials: 2}}}}
validation: {{staging_sample_rows: 50}}
registry: {{model_name: metro-traffic}}
"""


@pytest.fixture
def metro(datasets: Path, retune_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The config ``metro`` in a private state folder; one thread for BLAS/OpenMP here and
    in the staging process (oversubscription makes tiny fits very slow on small machines)."""
    from threadpoolctl import threadpool_limits

    path = datasets / CSV
    (retune_env["configs"] / "metro.yaml").write_text(CONFIG.format(path=path))
    monkeypatch.setenv("RETUNE_GIT_COMMIT", "e2e-test")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threadpool_limits(limits=1):
        yield path


def snapshot(state: Path, model: str) -> dict[str, Any]:
    """Registry versions and aliases, and every run, experiment and Optuna study."""
    import mlflow
    import optuna

    uri = f"sqlite:///{state / 'mlflow.db'}"
    cl = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = sorted((str(v.version), v.run_id) for v in cl.search_model_versions(f"name = '{model}'"))
    aliases = {k: str(v) for k, v in cl.get_registered_model(model).aliases.items()}
    experiments = sorted(e.experiment_id for e in cl.search_experiments())
    runs = sorted(r.info.run_id for r in cl.search_runs(experiments, max_results=1000))
    studies = sorted(optuna.get_all_study_names(f"sqlite:///{state / 'optuna.db'}"))
    return {"versions": versions, "aliases": aliases, "experiments": experiments, "runs": runs, "studies": studies}


def test_the_messy_file_loads_as_documented(metro: Path) -> None:
    """Duplicates kept in file order, outliers kept, ``None`` a category, the gap empty."""
    from retune.data import Window, load_window
    from retune.errors import DataError
    from retune.pipeline import load_named_config, retune_window

    raw = pd.read_csv(metro, keep_default_na=False)
    times = pd.to_datetime(raw["date_time"])
    assert times.duplicated().sum() > 7000
    assert times.sort_values().diff().max() > pd.Timedelta(days=300)
    assert (raw["temp"] == 0).sum() >= 10 and raw["rain_1h"].max() > 9000
    assert raw["weather_description"].nunique() >= 30
    assert (raw["holiday"] == "None").sum() > 48_000
    assert pd.read_csv(metro, usecols=["holiday"])["holiday"].isna().sum() > 48_000  # why keep_default_na is off

    cfg = load_named_config("metro")
    window = retune_window(cfg, window_end=WINDOW_END, kind="latest")
    df, features = load_window(cfg, window)
    inside = raw[(times >= "2014-01-10") & (times < "2014-02-07")]
    assert len(df) == len(inside) == 718  # every duplicate kept
    assert df["date_time"].is_monotonic_increasing and df["date_time"].duplicated().sum() == 72
    expected = inside.assign(t=pd.to_datetime(inside["date_time"])).sort_values("t", kind="stable")
    assert df["weather_description"].tolist() == expected["weather_description"].tolist()  # ties in file order
    assert (df["temp"] == 0).sum() == 10  # outliers are data, not errors
    assert set(df["holiday"]) == {"None", "Martin Luther King Jr Day"}
    assert features.categorical == ["holiday", "weather_main", "weather_description"]

    with pytest.raises(DataError) as info:
        load_window(cfg, Window("production", pd.Timestamp("2014-10-01", tz="UTC"), pd.Timestamp("2014-10-15", tz="UTC")))
    assert "the window is empty (0 rows)" in str(info.value) and str(metro) in str(info.value)


def test_drift_retune_register_then_a_gap_window_is_refused(metro: Path, retune_env: dict[str, Path]) -> None:
    from retune import pipeline
    from retune.errors import DataError

    drift = pipeline.check_drift("metro", window_end=WINDOW_END)
    summary = drift["summary"]
    assert drift["drift_detected"] and summary["n_columns"] == 7
    drifted = {c["column"] for c in summary["drifted_columns"]}
    assert "temp" in drifted  # January against October

    ctx = pipeline.prepare("metro", window_end=WINDOW_END, key="metro-messy", trigger="drift", drift=drift)
    assert ctx["rows"]["total"] == 718
    assert pipeline.warm_start(ctx)["mode"] == "cold"
    outcome = pipeline.tune(ctx)
    assert outcome["n_complete"] >= 1 and outcome["best_value"] > 0
    validation = pipeline.validate(ctx, outcome)
    registered = pipeline.register(ctx, validation, outcome)
    assert registered["created"] and str(registered["version"]) == "1"
    assert registered["promoted"] and str(registered["champion_after"]) == "1", registered["reason"]

    before = snapshot(retune_env["state"], "metro-traffic")
    with pytest.raises(DataError) as info:
        pipeline.prepare("metro", window_end=GAP_END, key="metro-gap")
    message = str(info.value)
    assert "production [2014-12-04T00:00:00+00:00, 2015-01-01T00:00:00+00:00)" in message
    assert "the window is empty (0 rows)" in message and str(metro) in message
    with pytest.raises(DataError, match=r"the window is empty \(0 rows\)"):
        pipeline.check_drift("metro", window_end=GAP_END)
    after = snapshot(retune_env["state"], "metro-traffic")
    assert after == before, "a refused window registered, promoted, logged or studied something"
    assert after["aliases"]["champion"] == "1"

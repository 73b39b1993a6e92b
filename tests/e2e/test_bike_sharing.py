"""Real drift: bike sharing 2011 as reference, 2012 windows as production.

The monitor finds drift in a 2012 window, a retune runs on the newest 2012 data, and the new
champion beats the stale (2011) model on 2012 data that neither saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
name: bikes
task: regression
target: cnt
data:
  production: {{path: "{path}"}}
  reference: {{start: "2011-01-01", end: "2012-01-01"}}
  time_column: ts
  window: 14d
  train_window: 60d
  holdout_fraction: 0.2
features:
  exclude: [instant, casual, registered, dteday]
model:
  family: hist_gradient_boosting
  fixed_params: {{max_iter: 150}}
  search_space:
    learning_rate: {{type: log_float, low: 0.03, high: 0.3}}
    max_leaf_nodes: {{type: int, low: 8, high: 64, log: true}}
    min_samples_leaf: {{type: int, low: 5, high: 60}}
metric: {{name: mae}}
drift: {{drift_share: 0.3}}
tuning:
  n_trials: 10
  pruner: {{type: median, args: {{n_startup_trials: 3}}}}
  seed: 3
validation: {{min_improvement: 0.01}}
registry: {{model_name: bikes}}
"""


def _retune(config: str, **kwargs: object) -> dict:
    from retune import pipeline

    ctx = pipeline.prepare(config, **kwargs)  # type: ignore[arg-type]
    pipeline.warm_start(ctx)
    outcome = pipeline.tune(ctx)
    checked = pipeline.validate(ctx, outcome)
    return pipeline.register(ctx, checked, outcome)


def test_bike_sharing_drift_retune_beats_stale_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datasets: Path) -> None:
    import mlflow
    import pandas as pd

    from retune import pipeline, registry, tracking
    from retune.metrics import get_metric
    from retune.settings import get_settings

    raw = pd.read_csv(datasets / "bike_sharing" / "hour.csv")
    raw["ts"] = pd.to_datetime(raw["dteday"], utc=True) + pd.to_timedelta(raw["hr"], unit="h")
    data = tmp_path / "hour.parquet"  # a typed copy with one timestamp column, outside the repo
    raw.to_parquet(data)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "bikes.yaml").write_text(CONFIG.format(path=data))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    stale = _retune("bikes", window_kind="reference", trigger="bootstrap", key="bootstrap")
    assert stale["promoted"] and stale["version"] == 1

    drift = pipeline.check_drift("bikes", window_end="2012-06-01")
    assert drift["drift_detected"], drift["summary"]
    drifted = {c["column"] for c in drift["summary"]["drifted_columns"]}
    assert "yr" in drifted  # the year flag is 0 in all of 2011 and 1 in 2012

    gate = pipeline.should_retune("bikes", window_end="2012-06-01", drift=drift, force=False)
    assert gate["retune"]
    new = _retune("bikes", window_end="2012-06-01", trigger="drift", drift=drift, key="drift-2012-06")
    assert new["promoted"], new["reason"]
    assert new["champion_before"] == 1 and new["champion_after"] == 2

    # Held-out 2012 data after the retune's window: the new champion beats the stale model.
    later = raw[(raw["ts"] >= "2012-06-01") & (raw["ts"] < "2012-07-01")]
    X = later.drop(columns=["cnt", "ts"])
    settings = get_settings()
    tracking.client(settings)
    mae = get_metric("mae", "regression")
    stale_model = mlflow.sklearn.load_model(f"models:/bikes@{registry.PREVIOUS}")
    champion = mlflow.sklearn.load_model(f"models:/bikes@{registry.CHAMPION}")
    stale_mae = mae.score(stale_model, X, later["cnt"])
    new_mae = mae.score(champion, X, later["cnt"])
    print(f"June 2012 MAE: stale {stale_mae:.1f}, retuned {new_mae:.1f}")
    assert new_mae < 0.8 * stale_mae
    assert os.path.exists(settings.state_dir / "optuna.db")

"""``drift.detector``: the config picks the detector ``check_drift`` runs.

Real parts: the demo data as CSV files, the demo config (its reference has 2,240 rows, so the
profiled detector computes its own statistics rather than falling back to Evidently's), a
local MLflow store (SQLite) in a temporary folder.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from retune import demo_data, pipeline
from retune.config import DriftConfig, RetuneConfig
from retune.drift import EvidentlyDriftDetector, detector_for
from retune.errors import ConfigError
from retune.profile import ProfiledDriftDetector

WINDOW_END = "2025-05-10"  # day 129: the window after the demo's first regime change (day 120)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any]) -> Path:
    """A state folder with demo data and the demo config three times: default, ``evidently``, ``profiled``."""
    state, configs = tmp_path / "state", tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_GIT_COMMIT", "unit-test")
    for var in ("RETUNE_OPTUNA_STORAGE", "RETUNE_ARTIFACT_ROOT", "RETUNE_POLICY_DB"):
        monkeypatch.delenv(var, raising=False)
    demo_data.write(state / "data" / "demo", days=160, rows_per_day=40)
    for name, detector in (("default", None), ("ev", "evidently"), ("prof", "profiled")):
        cfg = copy.deepcopy(demo_raw)
        cfg["name"] = name
        cfg["registry"] = {"model_name": f"demo-{name}"}
        cfg["drift"].pop("detector", None)  # "default": the field left out
        if detector is not None:
            cfg["drift"]["detector"] = detector
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return state


def _run(out: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient().get_run(out["monitor_run_id"])


def _artifacts(run_id: str) -> set[str]:
    import mlflow

    return {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "drift")}


def test_profiled_gives_evidentlys_verdicts_and_records_which_detector_ran(state: Path) -> None:
    default = pipeline.check_drift("default", window_end=WINDOW_END, record=False)
    ev = pipeline.check_drift("ev", window_end=WINDOW_END, record=False)
    prof = pipeline.check_drift("prof", window_end=WINDOW_END, record=False)

    assert _run(default).data.params["detector"] == "EvidentlyDriftDetector"  # the default
    assert _run(ev).data.params["detector"] == "EvidentlyDriftDetector"
    assert _run(prof).data.params["detector"] == "ProfiledDriftDetector"

    import json

    import mlflow

    def columns(out: dict[str, Any]) -> dict[str, tuple[bool, str, float]]:
        path = mlflow.MlflowClient().download_artifacts(out["monitor_run_id"], "drift/summary.json")
        summary = json.loads(Path(path).read_text())
        return {c["column"]: (c["drifted"], c["method"], c["score"]) for c in summary["columns"]}

    ev_cols, prof_cols = columns(ev), columns(prof)
    assert (
        set(ev_cols) == set(prof_cols) == {"price", "temperature", "competitor_price", "footfall", "promo", "region", "channel"}
    )
    assert {c: v[0] for c, v in prof_cols.items()} == {c: v[0] for c, v in ev_cols.items()}
    assert {c: v[1] for c, v in prof_cols.items()} == {c: v[1] for c, v in ev_cols.items()}
    for c, (_, _, score) in prof_cols.items():
        assert math.isclose(score, ev_cols[c][2], rel_tol=1e-6, abs_tol=1e-9), c
    # the statistics are the profile's own, not Evidently's fallback for a small reference
    assert {v[1] for v in prof_cols.values()} == {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
    # a window where some columns drift and some do not: the verdicts could have differed
    assert 0 < sum(v[0] for v in ev_cols.values()) < len(ev_cols)
    assert prof["drift_detected"] == ev["drift_detected"]
    assert prof["summary"] == ev["summary"] | {"drifted_columns": prof["summary"]["drifted_columns"]}

    # Evidently's HTML report only with the evidently detector; the summary table with both
    assert _artifacts(ev["monitor_run_id"]) == {"drift/report.html", "drift/summary.json"}
    assert ev["report_uri"] and ev["report_uri"].endswith("drift/report.html")
    assert _artifacts(prof["monitor_run_id"]) == {"drift/summary.json"}
    assert prof["report_uri"] is None


def test_an_explicit_detector_argument_wins_over_the_config(state: Path) -> None:
    out = pipeline.check_drift("ev", window_end=WINDOW_END, record=False, detector=ProfiledDriftDetector())
    assert _run(out).data.params["detector"] == "ProfiledDriftDetector"


def test_detector_for_follows_the_config() -> None:
    assert type(detector_for(DriftConfig())) is EvidentlyDriftDetector
    assert type(detector_for(DriftConfig(detector="evidently"))) is EvidentlyDriftDetector
    assert type(detector_for(DriftConfig(detector="profiled"))) is ProfiledDriftDetector


def test_an_unknown_detector_is_refused_naming_the_field(demo_raw: dict[str, Any], state: Path) -> None:
    cfg = copy.deepcopy(demo_raw)
    cfg["drift"]["detector"] = "fast"
    with pytest.raises(ValidationError) as info:
        RetuneConfig.model_validate(cfg)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("drift", "detector")]
    assert "'evidently' or 'profiled'" in errors[0]["msg"]

    (Path(state).parent / "configs" / "bad.yaml").write_text(yaml.safe_dump(cfg | {"name": "bad"}, sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        pipeline.check_drift("bad", window_end=WINDOW_END)
    assert "drift.detector" in str(refused.value) and "bad.yaml" in str(refused.value)

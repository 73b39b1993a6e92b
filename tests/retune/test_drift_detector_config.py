"""``drift.detector`` and ``drift.report``: the config picks the detector ``check_drift`` runs
and when it logs Evidently's HTML report.

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
from retune.drift import EvidentlyDriftDetector, detector_for, wants_report
from retune.errors import ConfigError
from retune.profile import ProfiledDriftDetector

WINDOW_END = "2025-05-10"  # day 129: the window after the demo's first regime change (day 120)
CALM_END = "2025-04-20"  # day 109: a window before it, like the reference (no drift)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any]) -> Path:
    """A state folder with demo data and the demo config: default (no ``detector``/``report``),
    ``evidently``, ``profiled``, and each detector with ``report: always`` / ``never``."""
    state, configs = tmp_path / "state", tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_GIT_COMMIT", "unit-test")
    for var in ("RETUNE_OPTUNA_STORAGE", "RETUNE_ARTIFACT_ROOT", "RETUNE_POLICY_DB"):
        monkeypatch.delenv(var, raising=False)
    demo_data.write(state / "data" / "demo", days=160, rows_per_day=40)
    variants = [
        ("default", None, None),
        ("ev", "evidently", None),
        ("prof", "profiled", None),
        ("ev_always", "evidently", "always"),
        ("prof_always", "profiled", "always"),
        ("ev_never", "evidently", "never"),
        ("prof_never", "profiled", "never"),
    ]
    for name, detector, report in variants:
        cfg = copy.deepcopy(demo_raw)
        cfg["name"] = name
        cfg["registry"] = {"model_name": f"demo-{name.replace('_', '-')}"}
        cfg["drift"].pop("detector", None)  # "default": the fields left out
        cfg["drift"].pop("report", None)
        if detector is not None:
            cfg["drift"]["detector"] = detector
        if report is not None:
            cfg["drift"]["report"] = report
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

    assert _run(default).data.params["detector"] == "ProfiledDriftDetector"  # the default
    assert _run(default).data.params["report"] == "on_drift"
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
    assert prof["drift_detected"] == ev["drift_detected"] is True
    assert prof["summary"] == ev["summary"] | {"drifted_columns": prof["summary"]["drifted_columns"]}

    # a drifted window: Evidently's HTML report with either detector (report: on_drift)
    for out in (default, ev, prof):
        assert _artifacts(out["monitor_run_id"]) == {"drift/report.html", "drift/summary.json"}
        assert out["report_uri"] and out["report_uri"].endswith("drift/report.html")


def _report_text(out: dict[str, Any]) -> str:
    import mlflow

    return Path(mlflow.MlflowClient().download_artifacts(out["monitor_run_id"], "drift/report.html")).read_text()


def test_the_report_rule_decides_when_the_html_report_is_logged(state: Path) -> None:
    calm = pipeline.check_drift("default", window_end=CALM_END, record=False)
    assert calm["drift_detected"] is False  # a window that could have had a report and has none
    assert _artifacts(calm["monitor_run_id"]) == {"drift/summary.json"}
    assert calm["report_uri"] is None

    for name in ("ev_always", "prof_always"):
        out = pipeline.check_drift(name, window_end=CALM_END, record=False)
        assert out["drift_detected"] is False
        assert _run(out).data.params["report"] == "always"
        assert _artifacts(out["monitor_run_id"]) == {"drift/report.html", "drift/summary.json"}, name
        html = _report_text(out)
        assert "<html" in html.lower() and "footfall" in html, name  # Evidently's report of these columns

    for name in ("ev_never", "prof_never"):
        out = pipeline.check_drift(name, window_end=WINDOW_END, record=False)
        assert out["drift_detected"] is True  # drifted, and still no report
        assert _artifacts(out["monitor_run_id"]) == {"drift/summary.json"}, name
        assert out["report_uri"] is None


def test_an_explicit_detector_argument_wins_over_the_config(state: Path) -> None:
    out = pipeline.check_drift("ev", window_end=WINDOW_END, record=False, detector=ProfiledDriftDetector())
    assert _run(out).data.params["detector"] == "ProfiledDriftDetector"
    assert _run(out).data.params["report"] == "never"  # the argument's own rule
    assert out["report_uri"] is None


def test_detector_for_follows_the_config() -> None:
    default = detector_for(DriftConfig())
    assert type(default) is ProfiledDriftDetector and default.report == "on_drift"
    ev = detector_for(DriftConfig(detector="evidently"))
    assert type(ev) is EvidentlyDriftDetector and ev.report == "on_drift"
    assert detector_for(DriftConfig(detector="evidently", report="always")).report == "always"
    prof = detector_for(DriftConfig(detector="profiled", report="never"))
    assert type(prof) is ProfiledDriftDetector and prof.report == "never"


def test_wants_report() -> None:
    assert [wants_report(r, d) for r in ("on_drift", "always", "never") for d in (True, False)] == [
        True,
        False,
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("detector", "fast", "'profiled' or 'evidently'"), ("report", "sometimes", "'on_drift', 'always' or 'never'")],
)
def test_an_unknown_choice_is_refused_naming_the_field(demo_raw: dict[str, Any], field: str, value: str, allowed: str) -> None:
    cfg = copy.deepcopy(demo_raw)
    cfg["drift"][field] = value
    with pytest.raises(ValidationError) as info:
        RetuneConfig.model_validate(cfg)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("drift", field)]
    assert allowed in errors[0]["msg"]


def test_a_check_with_an_unknown_detector_names_the_field_and_the_file(demo_raw: dict[str, Any], state: Path) -> None:
    cfg = copy.deepcopy(demo_raw)
    cfg["drift"]["detector"] = "fast"
    (Path(state).parent / "configs" / "bad.yaml").write_text(yaml.safe_dump(cfg | {"name": "bad"}, sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        pipeline.check_drift("bad", window_end=WINDOW_END)
    assert "drift.detector" in str(refused.value) and "bad.yaml" in str(refused.value)


def test_a_report_whose_verdict_differs_keeps_the_profiles_verdict_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    """The two detectors' scores agree to rounding, so a threshold set exactly at a score can
    split them. Find such a column (scores differing in the last bits), put the threshold at
    the larger score, and check the profiled check with a report keeps its own verdict and
    names the column in a warning."""
    import logging

    import numpy as np
    import pandas as pd

    from retune.config import ColumnDrift

    kw: dict[str, Any] = {"numerical": ["x"], "categorical": []}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref = pd.DataFrame({"x": rng.normal(size=1500)})  # over 1,000 rows: the profile's own statistic
        cur = pd.DataFrame({"x": rng.normal(0.1, size=700)})
        ours = ProfiledDriftDetector().detect(ref, cur, **kw, policy=DriftConfig()).summary.columns[0].score
        theirs = EvidentlyDriftDetector(report="never").detect(ref, cur, **kw, policy=DriftConfig()).summary.columns[0].score
        if ours != theirs:
            break
    else:
        pytest.fail("no seed in 0-19 gave scores that differ in the last bits")
    policy = DriftConfig(columns={"x": ColumnDrift(threshold=max(ours, theirs))}, drift_share=0.5)
    with caplog.at_level(logging.WARNING, logger="retune.profile"):
        result = ProfiledDriftDetector(report="always").detect(ref, cur, **kw, policy=policy)
    assert result.summary.columns[0].drifted is (ours >= theirs)  # the profile's verdict
    assert result.html  # the report was made
    assert any("differs" in r.getMessage() and "'x'" in r.getMessage() for r in caplog.records)

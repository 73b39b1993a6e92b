"""The extra links' URL building (``plugins/retune_links.py``); the links on real serialized
tasks are in ``test_plugin_metadata_db.py``."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

BASE = "https://mlflow.example.com/ml"


def test_plugin_registers_three_global_links(links: ModuleType) -> None:
    from airflow.plugins_manager import AirflowPlugin
    from airflow.sdk import BaseOperatorLink

    plugin = links.RetuneLinksPlugin
    assert issubclass(plugin, AirflowPlugin)
    assert all(isinstance(link, BaseOperatorLink) for link in plugin.global_operator_extra_links)
    assert [link.name for link in plugin.global_operator_extra_links] == [
        "MLflow retune run",
        "MLflow model version",
        "Evidently drift report",
    ]


@pytest.mark.parametrize(
    ("ui", "tracking", "expected"),
    [
        ("https://mlflow.example.com/ml/", None, "https://mlflow.example.com/ml"),
        (None, "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://ui.example", "http://127.0.0.1:5000", "https://ui.example"),
        (None, "sqlite:////var/retune/mlflow.db", ""),
        (None, "file:///var/retune/mlruns", ""),
        (None, None, ""),
        ("", "databricks", ""),
    ],
)
def test_mlflow_ui_base(
    links: ModuleType, monkeypatch: pytest.MonkeyPatch, ui: str | None, tracking: str | None, expected: str
) -> None:
    for name, value in (("RETUNE_MLFLOW_UI_URL", ui), ("MLFLOW_TRACKING_URI", tracking)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert links.mlflow_ui_base() == expected


@pytest.mark.parametrize(
    ("ui", "tracking", "expected"),
    [
        (None, "https://retune:s3cret@mlflow.internal:5000/", "https://mlflow.internal:5000"),
        (None, "http://retune@mlflow.internal/ml/", "http://mlflow.internal/ml"),
        (None, "http://u:p%40ss@[::1]:5000", "http://[::1]:5000"),
        ("https://ops:pw@ui.example/mlflow", "https://retune:s3cret@mlflow.internal:5000", "https://ui.example/mlflow"),
    ],
)
def test_mlflow_ui_base_leaves_credentials_out_of_the_links(
    links: ModuleType, monkeypatch: pytest.MonkeyPatch, ui: str | None, tracking: str, expected: str
) -> None:
    """Basic auth in MLFLOW_TRACKING_URI was copied into every link the Airflow UI shows."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    if ui is None:
        monkeypatch.delenv("RETUNE_MLFLOW_UI_URL", raising=False)
    else:
        monkeypatch.setenv("RETUNE_MLFLOW_UI_URL", ui)
    base = links.mlflow_ui_base()
    assert base == expected
    assert links.run_url(base, "1", "abc") == f"{expected}/#/experiments/1/runs/abc"


def test_run_url(links: ModuleType) -> None:
    assert links.run_url(BASE, "4", "9f1c") == f"{BASE}/#/experiments/4/runs/9f1c"
    assert links.run_url(BASE, None, "9f1c") == f"{BASE}/#/runs/9f1c"  # MLflow resolves the experiment
    assert links.run_url(BASE, "4", None) == ""
    assert links.run_url("", "4", "9f1c") == ""


def test_model_version_url(links: ModuleType) -> None:
    assert links.model_version_url(BASE, "demo-demand", "3") == f"{BASE}/#/models/demo-demand/versions/3"
    assert links.model_version_url(BASE, "demo demand/eu", 3) == f"{BASE}/#/models/demo%20demand%2Feu/versions/3"
    assert links.model_version_url(BASE, "demo-demand", None) == ""
    assert links.model_version_url(BASE, None, "3") == ""


@pytest.mark.parametrize(
    ("report_uri", "experiment_id", "expected"),
    [
        (
            "mlflow-artifacts:/6/r1/artifacts/drift/report.html",
            None,
            f"{BASE}/#/experiments/6/runs/r1/artifacts/drift/report.html",
        ),
        (
            "s3://bucket/mlflow/6/r1/artifacts/drift/report.html",
            None,
            f"{BASE}/#/experiments/6/runs/r1/artifacts/drift/report.html",
        ),
        ("file:///s/mlartifacts/retune_demo_monitoring/r1/artifacts/drift/report.html", None, f"{BASE}/#/runs/r1"),
        (
            "file:///s/mlartifacts/retune_demo_monitoring/r1/artifacts/drift/report.html",
            "9",
            f"{BASE}/#/experiments/9/runs/r1/artifacts/drift/report.html",
        ),
        (None, "6", ""),  # the detector made no HTML report
    ],
)
def test_report_url(links: ModuleType, report_uri: str | None, experiment_id: str | None, expected: str) -> None:
    assert links.report_url(BASE, "r1", report_uri, experiment_id) == expected


def test_report_url_without_run(links: ModuleType) -> None:
    assert links.report_url(BASE, None, "mlflow-artifacts:/6/r1/artifacts/drift/report.html") == ""


def test_links_answer_only_for_retune_dags(links: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another DAG's task gets "" without touching the metadata DB."""
    from airflow.models.taskinstancekey import TaskInstanceKey

    monkeypatch.setenv("RETUNE_MLFLOW_UI_URL", BASE)

    def no_db(*_: object, **__: object) -> dict:
        raise AssertionError("read the metadata DB for another DAG")

    monkeypatch.setattr(links, "return_value", no_db)
    monkeypatch.setattr(links, "run_conf", no_db)
    key = TaskInstanceKey("etl_daily", "load", "scheduled__2025-06-01", 1, -1)
    for link in links.RetuneLinksPlugin.global_operator_extra_links:
        assert link.get_link(None, ti_key=key) == ""


def test_a_failing_lookup_gives_no_link(links: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstancekey import TaskInstanceKey

    monkeypatch.setenv("RETUNE_MLFLOW_UI_URL", BASE)

    def broken(*_: object, **__: object) -> dict:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(links, "return_value", broken)
    key = TaskInstanceKey("retune_model", "retune.register", "manual__x", 1, -1)
    assert links.MlflowModelVersionLink().get_link(None, ti_key=key) == ""


def test_stored_values_are_read_as_plain_json(links: ModuleType) -> None:
    assert links._as_dict('{"a": 1}') == {"a": 1}
    assert links._as_dict({"a": 1}) == {"a": 1}
    assert links._as_dict("not json") == {}
    assert links._as_dict(["a"]) == {}
    assert links._as_dict(None) == {}


def test_a_drift_retune_links_the_report_of_the_check_that_triggered_it(
    links: ModuleType, retune_state: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor's run conf for the retune carried the report's run and URI but not its
    experiment: with a local store (artifact URIs without the experiment id) the retune's link
    opened the bare run page instead of the report."""
    from datetime import UTC, datetime

    from airflow.models.taskinstancekey import TaskInstanceKey

    from retune import pipeline, policy

    monkeypatch.setenv("RETUNE_MLFLOW_UI_URL", BASE)
    policy.record_window("demo", datetime(2025, 6, 2, tzinfo=UTC), drift_detected=True, drift_share=0.5)
    checked = {  # what check_drift returns, a local store's report URI
        "config": "demo",
        "drift_detected": True,
        "window": {"end": "2025-06-02T00:00:00+00:00"},
        "summary": {"drift_share": 0.5},
        "monitor_run_id": "c75ef6",
        "experiment_id": "2",
        "report_uri": "file:///state/mlartifacts/retune_demo_monitoring/c75ef6/artifacts/drift/report.html",
    }
    [conf] = pipeline.plan_retunes([checked])
    key = TaskInstanceKey("monitor_drift", "check_drift", "scheduled__2025-06-02", 1, 0)
    monkeypatch.setattr(links, "return_value", lambda *_: checked)
    on_monitor = links.EvidentlyReportLink().get_link(None, ti_key=key)

    monkeypatch.setattr(links, "run_conf", lambda *_: json.loads(json.dumps(conf)))  # as stored
    key = TaskInstanceKey("retune_model", "retune.register", "drift__demo__x", 1, -1)
    on_retune = links.EvidentlyReportLink().get_link(None, ti_key=key)
    assert on_retune == on_monitor == f"{BASE}/#/experiments/2/runs/c75ef6/artifacts/drift/report.html"

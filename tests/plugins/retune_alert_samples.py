"""Realistic webhook payloads, shaped as Alertmanager 0.27 and Grafana 11 send them, and a
helper that writes model configs for the receiver to map alerts to."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
TOKEN = "test-token-3f9c1d7e2b"  # the api-server's RETUNE_ALERT_TOKEN in the tests

# Prometheus Alertmanager, webhook_config payload version 4: one firing and one resolved alert
# of the same group; startsAt with nanoseconds, as Alertmanager writes it.
_ALERTMANAGER: dict[str, Any] = {
    "receiver": "retune",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ModelErrorHigh",
                "model": "demo-demand",
                "severity": "warning",
                "job": "scoring",
                "instance": "scoring-1:9102",
            },
            "annotations": {
                "summary": "MAE of demo-demand above 12 for 30m",
                "description": "Rolling 1h MAE is 14.2 (threshold 12).",
                "runbook_url": "https://runbooks.example/retune",
            },
            "startsAt": "2025-06-01T10:15:30.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=scoring_mae%7Bmodel%3D%22demo-demand%22%7D+%3E+12&g0.tab=1",
            "fingerprint": "c6d3c1a4d0b5f3e2",
        },
        {
            "status": "resolved",
            "labels": {
                "alertname": "ModelErrorHigh",
                "model": "demo-demand",
                "severity": "warning",
                "job": "scoring",
                "instance": "scoring-2:9102",
            },
            "annotations": {"summary": "MAE of demo-demand above 12 for 30m"},
            "startsAt": "2025-06-01T08:00:00Z",
            "endsAt": "2025-06-01T09:30:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=scoring_mae&g0.tab=1",
            "fingerprint": "0a1b2c3d4e5f6071",
        },
    ],
    "groupLabels": {"alertname": "ModelErrorHigh"},
    "commonLabels": {"alertname": "ModelErrorHigh", "model": "demo-demand", "severity": "warning", "job": "scoring"},
    "commonAnnotations": {"summary": "MAE of demo-demand above 12 for 30m"},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}/{severity="warning"}:{alertname="ModelErrorHigh"}',
    "truncatedAlerts": 0,
}

# Grafana unified alerting, webhook contact point: one firing alert naming the config.
_GRAFANA: dict[str, Any] = {
    "receiver": "retune-webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "Feature drift", "grafana_folder": "ML", "retune_config": "shop", "team": "forecasting"},
            "annotations": {
                "summary": "Share of drifted features 0.42 > 0.3",
                "__dashboardUid__": "retune-ml",
                "__panelId__": "4",
            },
            "startsAt": "2025-06-01T12:20:00+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana:3000/alerting/grafana/bdq7n2/view?orgId=1",
            "fingerprint": "57c6d9296de2ad39",
            "silenceURL": "http://grafana:3000/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DFeature+drift",
            "dashboardURL": "http://grafana:3000/d/retune-ml?orgId=1",
            "panelURL": "http://grafana:3000/d/retune-ml?orgId=1&viewPanel=4",
            "values": {"B": 0.42, "C": 1},
            "valueString": "[ var='B' labels={} value=0.42 ], [ var='C' labels={} value=1 ]",
            "orgId": 1,
        }
    ],
    "groupLabels": {"alertname": "Feature drift", "grafana_folder": "ML"},
    "commonLabels": {"alertname": "Feature drift", "grafana_folder": "ML", "retune_config": "shop", "team": "forecasting"},
    "commonAnnotations": {"summary": "Share of drifted features 0.42 > 0.3"},
    "externalURL": "http://grafana:3000/",
    "version": "1",
    "groupKey": '{}/{retune_config="shop"}:{alertname="Feature drift", grafana_folder="ML"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] Feature drift ML (shop forecasting)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=0.42, C=1\nLabels:\n - alertname = Feature drift\n - retune_config = shop\n",
}


def alertmanager_payload(**alert_changes: Any) -> dict[str, Any]:
    """A fresh copy of the Alertmanager sample; ``alert_changes`` update its first (firing) alert."""
    payload = copy.deepcopy(_ALERTMANAGER)
    payload["alerts"][0].update(alert_changes)
    return payload


def grafana_payload(**alert_changes: Any) -> dict[str, Any]:
    """A fresh copy of the Grafana sample; ``alert_changes`` update its alert."""
    payload = copy.deepcopy(_GRAFANA)
    payload["alerts"][0].update(alert_changes)
    return payload


def write_config(folder: Path, name: str, model_name: str) -> Path:
    """Copy ``include/configs/demo.yaml`` as ``<folder>/<name>.yaml`` with its own registered model."""
    raw = yaml.safe_load((ROOT / "include" / "configs" / "demo.yaml").read_text())
    raw["name"] = name
    raw["registry"]["model_name"] = model_name
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path

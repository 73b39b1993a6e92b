"""The alert receiver's FastAPI app (``plugins/retune_alerts.py``) with TestClient: auth,
validation, mapping to configs, resolved alerts, payload parsing and the trigger path through
the real trigger policy. Run creation is recorded here; ``test_plugin_metadata_db.py`` creates
real runs in a metadata DB."""

from __future__ import annotations

import hashlib
import json
import logging
from types import ModuleType
from typing import Any

import pytest
from retune_alert_samples import TOKEN, alertmanager_payload, grafana_payload

AM = "/alerts/alertmanager"
GF = "/alerts/grafana"


def _post(client: Any, path: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return client.post(path, content=body, headers={"Content-Type": "application/json", **(headers or {})})


# --------------------------------------------------------------------------- plugin


def test_plugin_mounts_the_app_under_retune(alerts: ModuleType) -> None:
    from airflow.plugins_manager import AirflowPlugin

    plugin = alerts.RetuneAlertsPlugin
    assert issubclass(plugin, AirflowPlugin)
    assert plugin.fastapi_apps == [{"app": alerts.app, "url_prefix": "/retune", "name": "Retune alert receiver"}]
    paths = {(route.path, tuple(sorted(route.methods))) for route in alerts.app.routes if hasattr(route, "methods")}
    assert {("/alerts/alertmanager", ("POST",)), ("/alerts/grafana", ("POST",)), ("/health", ("GET",))} <= paths


def test_module_imports_no_retune_at_the_top(alerts: ModuleType) -> None:
    """The api-server imports the plugin at start: Retune and its ML stack load per request."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(alerts))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n and n.split(".")[0] in ("retune", "mlflow", "optuna", "evidently", "sklearn")}


def test_health_needs_no_token(client: Any, monkeypatch: pytest.MonkeyPatch, policy: ModuleType) -> None:
    monkeypatch.delenv("RETUNE_ALERT_TOKEN", raising=False)
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "token_configured": False, "policy_available": True}
    monkeypatch.setenv("RETUNE_ALERT_TOKEN", "x")
    assert client.get("/health").json()["token_configured"] is True


# --------------------------------------------------------------------------- 401


def test_no_token_configured_refuses_every_request(client: Any, monkeypatch: pytest.MonkeyPatch, created_runs: list) -> None:
    monkeypatch.delenv("RETUNE_ALERT_TOKEN", raising=False)
    for path, payload in ((AM, alertmanager_payload()), (GF, grafana_payload())):
        for headers in ({}, {"Authorization": "Bearer anything"}, {"Authorization": "Bearer "}):
            resp = _post(client, path, payload, headers)
            assert resp.status_code == 401, resp.text
            assert "RETUNE_ALERT_TOKEN is not set" in resp.json()["detail"]
    assert created_runs == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": ""}, "missing Authorization header"),
        ({"Authorization": f"Basic {TOKEN}"}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer    "}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer wrong-token"}, "invalid token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid token"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "invalid token"),
        ({"Authorization": "Bearer tökén".encode("latin-1")}, "invalid token"),  # non-ASCII bytes
    ],
)
@pytest.mark.parametrize("path", [AM, GF])
def test_bad_credentials_are_401(
    client: Any, token: str, created_runs: list, caplog: pytest.LogCaptureFixture, path: str, headers: dict, message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = _post(client, path, alertmanager_payload() if path == AM else grafana_payload(), headers)
    assert resp.status_code == 401
    assert message in resp.json()["detail"]
    assert resp.headers["www-authenticate"] == "Bearer"
    assert token not in resp.text
    assert token not in caplog.text
    assert created_runs == []


def test_auth_comes_before_parsing(client: Any, token: str) -> None:
    """An unauthenticated sender learns nothing about the payload schema."""
    resp = _post(client, AM, "{not json", {"Authorization": "Bearer nope"})
    assert resp.status_code == 401


@pytest.mark.parametrize("configured", [f"{TOKEN}\n", f"  {TOKEN}\r\n"])
def test_a_configured_token_with_a_trailing_newline_still_matches(
    client: Any, retune_state: dict, created_runs: list, monkeypatch: pytest.MonkeyPatch, configured: str
) -> None:
    """RETUNE_ALERT_TOKEN read from a secret file ends with a newline: no request ever matched."""
    monkeypatch.setenv("RETUNE_ALERT_TOKEN", configured)
    payload = alertmanager_payload(status="resolved")
    assert _post(client, AM, payload, {"Authorization": f"Bearer {TOKEN}"}).status_code == 202
    assert _post(client, AM, payload, {"Authorization": "Bearer wrong"}).status_code == 401
    monkeypatch.setenv("RETUNE_ALERT_TOKEN", " \n")  # only whitespace: not configured
    assert "is not set" in _post(client, AM, payload, {"Authorization": "Bearer x"}).json()["detail"]
    assert client.get("/health").json()["token_configured"] is False


def test_bearer_scheme_is_case_insensitive(client: Any, token: str, retune_state: dict, created_runs: list) -> None:
    payload = alertmanager_payload(status="resolved")
    assert _post(client, AM, payload, {"Authorization": f"bearer {token}"}).status_code == 202


# --------------------------------------------------------------------------- 422


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("{not json", None),
        ("[]", None),
        (json.dumps({k: v for k, v in alertmanager_payload().items() if k != "alerts"}), "alerts"),
        (json.dumps({**alertmanager_payload(), "alerts": []}), "alerts"),
        (json.dumps({**alertmanager_payload(), "version": "3"}), "version"),
        (json.dumps({**alertmanager_payload(), "status": "pending"}), "status"),
        (json.dumps(alertmanager_payload(status="unknown")), "status"),
        (json.dumps(alertmanager_payload(labels={"model": 7})), "labels"),
        (json.dumps(alertmanager_payload(labels=["model=demo-demand"])), "labels"),
        (json.dumps(alertmanager_payload(startsAt="yesterday")), "startsAt"),
        (json.dumps(alertmanager_payload(startsAt="2025-06-01T10:15:30")), "startsAt"),  # no zone
        (json.dumps(alertmanager_payload(startsAt="0001-01-01T00:00:00+02:00")), "startsAt"),  # before UTC's year 1
        (json.dumps(alertmanager_payload(fingerprint="../../etc")), "fingerprint"),
    ],
)
def test_malformed_alertmanager_payload_is_422(client: Any, auth: dict, created_runs: list, body: str, where: str | None) -> None:
    resp = _post(client, AM, body, auth)
    assert resp.status_code == 422, resp.text
    if where:
        assert any(where in [str(p) for p in err["loc"]] for err in resp.json()["detail"]), resp.json()
    assert created_runs == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"orgId": "main"}, "orgId"),
        ({"receiver": None}, "receiver"),
        ({"alerts": [{"status": "firing", "labels": {"retune_config": "shop"}}]}, "startsAt"),
    ],
)
def test_malformed_grafana_payload_is_422(client: Any, auth: dict, created_runs: list, change: dict, where: str) -> None:
    resp = _post(client, GF, {**grafana_payload(), **change}, auth)
    assert resp.status_code == 422, resp.text
    assert any(where in [str(p) for p in err["loc"]] for err in resp.json()["detail"])
    assert created_runs == []


def test_grafana_payload_is_not_an_alertmanager_payload(client: Any, auth: dict, created_runs: list) -> None:
    """Grafana's payload has version "1": posted to the Alertmanager endpoint it is refused."""
    assert _post(client, AM, grafana_payload(), auth).status_code == 422


def test_oversized_payload_is_413(client: Any, auth: dict, alerts: ModuleType, created_runs: list) -> None:
    payload = alertmanager_payload(annotations={"description": "x" * alerts.MAX_BODY_BYTES})
    assert _post(client, AM, payload, auth).status_code == 413
    chunked = (b"x" * 65536 for _ in range(alerts.MAX_BODY_BYTES // 65536 + 2))  # no Content-Length
    resp = client.post(AM, content=chunked, headers={"Content-Type": "application/json", **auth})
    assert resp.status_code == 413
    assert created_runs == []


# --------------------------------------------------------------------------- 404


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"alertname": "TestAlert", "instance": "Grafana"}, "neither"),
        ({"alertname": "X", "model": "nobody-knows"}, "no config's registry.model_name"),
        ({"alertname": "X", "retune_config": "nope"}, "names no model config"),
        ({"alertname": "X", "retune_config": "../configs/demo"}, "names no model config"),
        ({"alertname": "X", "retune_config": "Demo"}, "names no model config"),
    ],
)
def test_unknown_model_is_404(
    client: Any, auth: dict, retune_state: dict, created_runs: list, labels: dict, message: str
) -> None:
    resp = _post(client, AM, alertmanager_payload(labels=labels), auth)
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["alerts"][0]["alert"] == 0
    assert message in body["alerts"][0]["reason"]
    assert created_runs == []


def test_one_unknown_alert_fails_the_whole_payload(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    payload = alertmanager_payload()
    unknown = dict(payload["alerts"][0], labels={"alertname": "Other", "model": "unknown-model"})
    payload["alerts"].append(unknown)
    resp = _post(client, AM, payload, auth)
    assert resp.status_code == 404
    assert [a["alert"] for a in resp.json()["alerts"]] == [2]
    assert created_runs == []
    assert policy.history() == []  # nothing was put to the policy


def test_a_model_label_whose_config_cannot_be_loaded_names_that_config(
    client: Any, auth: dict, retune_state: dict, created_runs: list
) -> None:
    """The only config of model shop-sales has a typo: the 404 said the label was 'no
    config's registry.model_name', blaming the alert, not the config."""
    shop = retune_state["configs"] / "shop.yaml"
    shop.write_text(shop.read_text().replace("task: regression", "task: regresion"))
    (retune_state["configs"] / "junk.yaml").write_text("name: junk\ntask: [not, valid\n")  # not even YAML
    resp = _post(client, AM, alertmanager_payload(labels={"alertname": "X", "model": "shop-sales"}), auth)
    assert resp.status_code == 404, resp.text
    reason = resp.json()["alerts"][0]["reason"]
    assert reason.startswith("config 'shop' matches model='shop-sales' but cannot be loaded: ") and "task" in reason, reason
    resp = _post(client, AM, alertmanager_payload(labels={"alertname": "X", "model": "nobody"}), auth)
    reason = resp.json()["alerts"][0]["reason"]
    assert f"no config's registry.model_name in {retune_state['configs']}" in reason, reason
    assert "not checked, cannot be loaded: junk, shop" in reason
    assert created_runs == []


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_config_folder_that_is_missing_or_empty_is_503_naming_it(
    client: Any,
    auth: dict,
    retune_state: dict,
    created_runs: list,
    policy: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    folder: str,
) -> None:
    """A wrong RETUNE_CONFIG_DIR was a 404 blaming the alert's label, and the sender gave up:
    the server's mistake is a 503 naming the folder; resolved alerts need no config."""
    configs = retune_state["state"].parent / folder
    if folder == "empty":
        configs.mkdir()
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    resp = _post(client, AM, alertmanager_payload(labels={"alertname": "X", "retune_config": "demo"}), auth)
    assert resp.status_code == 503, resp.text
    assert str(configs) in resp.json()["detail"] and "RETUNE_CONFIG_DIR" in resp.json()["detail"]
    assert created_runs == [] and policy.history() == []
    resolved = alertmanager_payload(status="resolved")
    assert _post(client, AM, resolved, auth).status_code == 202


def test_broken_config_is_skipped_for_model_labels(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    (retune_state["configs"] / "broken.yaml").write_text("name: broken\ntask: [not, valid\n")
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 202, resp.text
    resp = _post(client, AM, alertmanager_payload(labels={"retune_config": "broken"}), auth)
    assert resp.status_code == 404
    assert "cannot be loaded" in resp.json()["alerts"][0]["reason"]


# --------------------------------------------------------------------------- resolved


def test_resolved_alerts_trigger_nothing(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    payload = alertmanager_payload(status="resolved", endsAt="2025-06-01T11:00:00Z")
    payload["status"] = "resolved"
    payload["alerts"].append(dict(payload["alerts"][0], labels={"alertname": "NotOurs"}))  # resolved: no mapping needed
    resp = _post(client, AM, payload, auth)
    assert resp.status_code == 202, resp.text
    results = resp.json()["results"]
    assert [(r["config"], r["status"], r["triggered"], r["dag_run_id"]) for r in results] == [
        ("demo", "resolved", False, None),
        ("demo", "resolved", False, None),
        (None, "resolved", False, None),
    ]
    assert all(r["reason"].startswith("resolved") for r in results)
    assert created_runs == []
    assert policy.history() == []


# --------------------------------------------------------------------------- parsing and keys


def test_alertmanager_sample_parses(alerts: ModuleType) -> None:
    payload = alerts.AlertmanagerPayload.model_validate(alertmanager_payload())
    assert (payload.version, payload.status, payload.receiver, len(payload.alerts)) == ("4", "firing", "retune", 2)
    first = payload.alerts[0]
    assert first.labels["model"] == "demo-demand"
    assert first.fingerprint == "c6d3c1a4d0b5f3e2"
    assert alerts.iso_utc(first.startsAt) == "2025-06-01T10:15:30.123456Z"  # nanoseconds cut to microseconds
    assert payload.alerts[1].status == "resolved"
    assert payload.groupKey.startswith("{}/")


def test_grafana_sample_parses(alerts: ModuleType) -> None:
    payload = alerts.GrafanaPayload.model_validate(grafana_payload())
    assert (payload.receiver, payload.status, payload.orgId, payload.state) == ("retune-webhook", "firing", 1, "alerting")
    alert = payload.alerts[0]
    assert alert.labels["retune_config"] == "shop"
    assert alert.values == {"B": 0.42, "C": 1}
    assert alerts.iso_utc(alert.startsAt) == "2025-06-01T10:20:00Z"  # +02:00 to UTC
    assert payload.title.startswith("[FIRING:1]")


def test_unknown_fields_are_ignored(alerts: ModuleType) -> None:
    payload = alertmanager_payload(newField={"a": 1})
    payload["someFutureField"] = True
    assert alerts.AlertmanagerPayload.model_validate(payload).alerts[0].fingerprint == "c6d3c1a4d0b5f3e2"


def test_idempotency_key(alerts: ModuleType) -> None:
    alert = alerts.Alert.model_validate(alertmanager_payload()["alerts"][0])
    assert alerts.idempotency_key("demo", alert) == "alert:demo:c6d3c1a4d0b5f3e2:2025-06-01T10:15:30.123456Z"
    same_instant = alerts.Alert.model_validate(
        dict(alertmanager_payload()["alerts"][0], startsAt="2025-06-01T12:15:30.123456+02:00")
    )
    assert alerts.idempotency_key("demo", same_instant) == alerts.idempotency_key("demo", alert)


def test_idempotency_key_without_fingerprint_hashes_sorted_labels(alerts: ModuleType) -> None:
    labels = {"b": "2", "a": "1", "model": "demo-demand"}
    one = alerts.Alert(status="firing", labels=labels, startsAt="2025-06-01T10:00:00Z")
    other = alerts.Alert(status="firing", labels=dict(reversed(labels.items())), startsAt="2025-06-01T10:00:00Z")
    digest = hashlib.sha256(json.dumps(sorted(labels.items()), separators=(",", ":")).encode()).hexdigest()
    assert alerts.idempotency_key("demo", one) == f"alert:demo:{digest}:2025-06-01T10:00:00Z"
    assert alerts.idempotency_key("demo", other) == alerts.idempotency_key("demo", one)
    changed = alerts.Alert(status="firing", labels={**labels, "a": "x"}, startsAt="2025-06-01T10:00:00Z")
    assert alerts.idempotency_key("demo", changed) != alerts.idempotency_key("demo", one)


def test_run_id_is_a_valid_airflow_run_id(alerts: ModuleType) -> None:
    import re
    from datetime import UTC, datetime

    run_id = alerts.run_id_for("demo", "alert:demo:abc:2025-06-01T10:00:00Z", now=datetime(2025, 6, 1, 10, 0, 5, tzinfo=UTC))
    assert run_id.startswith("alert__demo__20250601T100005_")
    assert re.match(r"^[A-Za-z0-9_.~:+-]+$", run_id)


# --------------------------------------------------------------------------- triggering (real policy)


def test_alertmanager_firing_alert_triggers_one_retune(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert (body["source"], body["receiver"]) == ("alertmanager", "retune")
    fired, resolved = body["results"]
    assert fired["config"] == "demo" and fired["triggered"] is True and fired["reason"] == "triggered"
    assert resolved == {
        "config": "demo",
        "status": "resolved",
        "fingerprint": "0a1b2c3d4e5f6071",
        "triggered": False,
        "dag_run_id": None,
        "reason": "resolved: acknowledged, nothing to trigger",
    }
    [run] = created_runs
    assert fired["dag_run_id"] == run["run_id"]
    key = "alert:demo:c6d3c1a4d0b5f3e2:2025-06-01T10:15:30.123456Z"
    [decision] = policy.history("demo")
    assert (decision["source"], decision["idempotency_key"], decision["triggered"]) == ("alert", key, True)
    assert run["conf"] == {
        "config": "demo",
        "trigger": "alert",
        "force": False,
        "window": "latest",
        "alert": {
            "labels": alertmanager_payload()["alerts"][0]["labels"],
            "annotations": alertmanager_payload()["alerts"][0]["annotations"],
            "startsAt": "2025-06-01T10:15:30.123456Z",
            "fingerprint": "c6d3c1a4d0b5f3e2",
            "receiver": "retune",
            "source": "alertmanager",
        },
        "policy_token": decision["token"],
        "idempotency_key": key,
    }
    assert "ModelErrorHigh" in run["note"]

    # Alertmanager resends the firing alert every repeat_interval: the same key, nothing new.
    again = _post(client, AM, alertmanager_payload(), auth).json()["results"][0]
    assert (again["triggered"], again["dag_run_id"]) == (False, None)
    assert "duplicate" in again["reason"]
    assert len(created_runs) == 1


def test_grafana_firing_alert_triggers_by_config_label(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    resp = _post(client, GF, grafana_payload(), auth)
    assert resp.status_code == 202, resp.text
    [result] = resp.json()["results"]
    assert (result["config"], result["triggered"]) == ("shop", True)
    [run] = created_runs
    assert run["conf"]["config"] == "shop"
    assert run["conf"]["alert"]["source"] == "grafana"
    assert run["conf"]["alert"]["receiver"] == "retune-webhook"
    assert run["conf"]["idempotency_key"] == "alert:shop:57c6d9296de2ad39:2025-06-01T10:20:00Z"
    assert run["run_id"].startswith("alert__shop__")


def test_an_alert_forces_its_retune_only_with_the_retune_force_label(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    """Every alert's run had force False, so a firing alert whose run found no drift tuned
    nothing, and its resends were duplicates. retune_force="true" sets the run's force (its
    drift gate); the policy still treats a resend as a duplicate, and in a grouped payload one
    forcing series forces the model's one retune."""
    from retune import pipeline

    plain = _post(client, AM, alertmanager_payload(), auth).json()["results"][0]
    assert plain["triggered"] and plain["force"] is False and created_runs[0]["conf"]["force"] is False
    policy.release("demo", created_runs[0]["conf"]["policy_token"], outcome="skipped: no drift")

    labels = {**alertmanager_payload()["alerts"][0]["labels"], "retune_force": "True"}
    forced = alertmanager_payload(labels=labels, startsAt="2025-06-02T08:00:00Z", fingerprint="aaaa000011112222")
    result = _post(client, AM, forced, auth).json()["results"][0]
    assert result["triggered"] and result["force"] is True, result
    conf = created_runs[1]["conf"]
    assert conf["force"] is True
    gate = pipeline.admit(  # the run's drift gate with its conf: no drift check (none could be read here)
        "demo",
        conf=conf,
        run_key="retune_model/x",
        window_kind="latest",
        window_end=None,
        force=conf["force"],
        trigger="alert",
        drift=None,
    )
    assert gate["retune"] and "forced" in gate["reason"], gate
    policy.release("demo", conf["policy_token"], outcome="registered v2, promoted")
    again = _post(client, AM, forced, auth).json()["results"][0]
    assert not again["triggered"] and "duplicate" in again["reason"], "forcing the run is not forcing the policy"

    grouped = _grouped_payload()
    for alert, fingerprint in zip(grouped["alerts"][:2], ("bbbb0001", "bbbb0002"), strict=True):
        alert.update(startsAt="2025-06-03T08:00:00Z", fingerprint=fingerprint)
    grouped["alerts"][1]["labels"]["retune_force"] = "true"  # the second series asks for it
    first, other, _ = _post(client, AM, grouped, auth).json()["results"]
    assert first["triggered"] and first["force"] is True and other["force"] is True
    assert created_runs[2]["conf"]["force"] is True and len(created_runs) == 3


@pytest.mark.parametrize("value", ["yes", "1", ""])
def test_a_retune_force_label_other_than_true_or_false_is_422(client: Any, auth: dict, created_runs: list, value: str) -> None:
    labels = {**alertmanager_payload()["alerts"][0]["labels"], "retune_force": value}
    resp = _post(client, AM, alertmanager_payload(labels=labels), auth)
    assert resp.status_code == 422, resp.text
    [err] = resp.json()["detail"]
    assert "labels" in err["loc"] and "retune_force" in err["msg"]
    assert created_runs == []


def test_second_alert_while_a_retune_runs_is_not_triggered(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    assert _post(client, AM, alertmanager_payload(), auth).json()["results"][0]["triggered"] is True
    later = alertmanager_payload(startsAt="2025-06-01T11:00:00Z", fingerprint="ffffeeee00001111")
    result = _post(client, AM, later, auth).json()["results"][0]
    assert result["triggered"] is False
    assert "already running" in result["reason"]
    assert len(created_runs) == 1


def _grouped_payload() -> dict[str, Any]:
    """The Alertmanager sample with a second firing series about the same model (another host)."""
    import copy

    payload = alertmanager_payload()
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"]["instance"] = "scoring-2:9100"
    second["fingerprint"] = "d7e8f9a0b1c2d3e4"
    payload["alerts"].insert(1, second)
    return payload


def _stub_run_creation(alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, *, fail: bool) -> list[str]:
    """Stand in for the metadata DB's run creation: it fails (``fail``) or records the run ids
    it creates, and which run carries a policy token."""
    import retune_links

    created: list[str] = []
    tokens: set[str] = set()

    def create(*, run_id: str, conf: dict[str, Any], note: str) -> str:
        if fail:
            raise RuntimeError("database is locked")
        created.append(run_id)
        tokens.add(conf["policy_token"])
        return run_id

    monkeypatch.setattr(alerts, "retune_dag_problem", lambda: None)
    monkeypatch.setattr(alerts, "create_retune_run", create)
    monkeypatch.setattr(retune_links, "retune_run_carries", lambda token: token in tokens)
    return created


def test_several_alert_series_about_one_model_in_one_payload_start_one_retune(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType
) -> None:
    """Alertmanager groups two series (two scoring hosts) about one model in one payload: one
    retune answers both, and the group's resend after it ended is a duplicate for both, not
    a second retune (the second series was 'already running' and so stayed open)."""
    payload = _grouped_payload()
    first, other, _resolved = _post(client, AM, payload, auth).json()["results"]
    [run] = created_runs
    assert first["triggered"] is True and first["dag_run_id"] == run["run_id"]
    assert other["triggered"] is False and other["dag_run_id"] == run["run_id"]
    assert other["reason"].startswith("covered by decision")
    policy.release("demo", run["conf"]["policy_token"], outcome="registered v2")

    again = _post(client, AM, payload, auth)
    assert again.status_code == 202, again.text
    assert [r["triggered"] for r in again.json()["results"]] == [False, False, False]
    assert all("duplicate" in r["reason"] for r in again.json()["results"][:2])
    assert len(created_runs) == 1, "one incident, one retune"


def test_a_grouped_payload_whose_retune_could_not_start_is_500_for_every_series(
    client: Any, auth: dict, retune_state: dict, alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, policy: ModuleType
) -> None:
    payload = _grouped_payload()
    _stub_run_creation(alerts, monkeypatch, fail=True)
    resp = _post(client, AM, payload, auth)
    assert resp.status_code == 500
    first, other, _ = resp.json()["results"]
    assert not first["triggered"] and not other["triggered"] and "run for this model failed" in other["reason"]
    assert policy.current_lock("demo") is None
    created = _stub_run_creation(alerts, monkeypatch, fail=False)
    first, other, _ = _post(client, AM, payload, auth).json()["results"]
    assert first["triggered"] and other["reason"].startswith("covered by") and other["dag_run_id"] == created[0]
    assert len(created) == 1


def test_a_decision_whose_run_was_never_created_is_decided_again(
    client: Any, auth: dict, retune_state: dict, created_runs: list, policy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api-server died between the policy's decision and creating the run: the resend
    found a duplicate, and the lock stayed held for lock_ttl with no retune. A decision older
    than ORPHAN_AFTER_S that no retune_model run carries is cancelled and decided again; a
    younger one (its run being created, or lost) is answered 503 with Retry-After, so the
    sender retries; one whose run exists stays a duplicate (202)."""
    from datetime import UTC, datetime, timedelta

    import retune_links

    key = "alert:demo:c6d3c1a4d0b5f3e2:2025-06-01T10:15:30.123456Z"
    runs_with_token: set[str] = set()
    monkeypatch.setattr(retune_links, "retune_run_carries", lambda token: token in runs_with_token)
    young = policy.decide("demo", source="alert", key=key)
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 503, resp.text
    assert 100 <= int(resp.headers["retry-after"]) <= 120
    assert "duplicate" in resp.json()["results"][0]["reason"] and "does not exist yet" in resp.json()["results"][0]["reason"]
    assert policy.holds("demo", young.token) and not created_runs
    runs_with_token.add(young.token)  # its run was being created: now a duplicate, 202
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 202 and "retry-after" not in resp.headers, resp.text
    assert "duplicate" in resp.json()["results"][0]["reason"]
    policy.cancel("demo", young.token, reason="test")

    lost = policy.decide("demo", source="alert", key=key, now=datetime.now(UTC) - timedelta(minutes=5))
    runs_with_token.add(lost.token)  # its run exists: still a duplicate
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 202 and "duplicate" in resp.json()["results"][0]["reason"]
    runs_with_token.clear()  # no run carries it: lost
    result = _post(client, AM, alertmanager_payload(), auth).json()["results"][0]
    assert result["triggered"] is True, result
    [run] = created_runs
    assert run["conf"]["policy_token"] != lost.token and policy.holds("demo", run["conf"]["policy_token"])
    old = next(r for r in policy.history("demo") if r["token"] == lost.token)
    assert old["triggered"] is False and "no retune_model run was created" in old["outcome"]


def test_a_retry_after_run_creation_and_cancelling_failed_is_503_not_a_duplicate(
    client: Any, auth: dict, retune_state: dict, alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, policy: ModuleType
) -> None:
    """The database blipped while the run was created and again while the decision was
    cancelled: the decision stayed open with no run. The sender's retry seconds later was
    answered 202 "duplicate", and Alertmanager and Grafana stop retrying on a 2xx, while the
    lock stayed held. It is a 503 with Retry-After instead, until the decision is
    ORPHAN_AFTER_S old and decided again."""

    def down(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("could not connect to server: Connection refused")

    _stub_run_creation(alerts, monkeypatch, fail=True)
    with monkeypatch.context() as m:
        m.setattr(policy, "cancel", down)
        assert _post(client, AM, alertmanager_payload(), auth).status_code == 500
    created = _stub_run_creation(alerts, monkeypatch, fail=False)  # the database is back
    retry = _post(client, AM, alertmanager_payload(), auth)
    assert retry.status_code == 503, retry.text
    assert 1 <= int(retry.headers["retry-after"]) <= alerts.ORPHAN_AFTER_S
    [result, _resolved] = retry.json()["results"]
    assert not result["triggered"] and "run does not exist yet" in result["reason"] and "retry in" in result["reason"]
    assert "retry" in retry.json()["detail"] and created == []

    assert policy.current_lock("demo") is not None, "held by the decision without a run"

    monkeypatch.setattr(alerts, "ORPHAN_AFTER_S", 0.0)  # the decision is now that old: lost, decided again
    later = _post(client, AM, alertmanager_payload(), auth)
    assert later.status_code == 202, later.text
    assert later.json()["results"][0]["triggered"] is True and len(created) == 1


def test_failed_run_creation_is_500_and_the_retry_triggers(
    client: Any, auth: dict, retune_state: dict, alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, policy: ModuleType
) -> None:
    """The sender retries a 500 with the same alert: the failed attempt gave its lock back and
    was cancelled, so the retry is decided afresh (not a duplicate, no cooldown) and runs."""
    _stub_run_creation(alerts, monkeypatch, fail=True)
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 500
    result = resp.json()["results"][0]
    assert (result["triggered"], result["dag_run_id"]) == (False, None)
    assert "database is locked" in result["reason"]
    [decision] = policy.history("demo")
    assert decision["outcome"].startswith("cancelled: alert receiver: creating the retune_model run failed")
    assert decision["triggered"] is False
    assert not policy.holds("demo", decision["token"])

    created = _stub_run_creation(alerts, monkeypatch, fail=False)
    retry = _post(client, AM, alertmanager_payload(), auth)
    assert retry.status_code == 202, retry.text
    again = retry.json()["results"][0]
    assert again["triggered"] is True and again["dag_run_id"] == created[0]
    assert again["idempotency_key"] == result["idempotency_key"]
    assert _post(client, AM, alertmanager_payload(), auth).json()["results"][0]["triggered"] is False, "then a duplicate"


def test_missing_dag_is_503_before_the_policy(
    client: Any, auth: dict, retune_state: dict, alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, policy: ModuleType
) -> None:
    monkeypatch.setattr(alerts, "retune_dag_problem", lambda: "DAG retune_model is not in the metadata database")
    resp = _post(client, AM, alertmanager_payload(), auth)
    assert resp.status_code == 503
    assert "not in the metadata database" in resp.json()["detail"]
    assert policy.history() == []


def test_missing_policy_is_503(
    client: Any, auth: dict, retune_state: dict, alerts: ModuleType, monkeypatch: pytest.MonkeyPatch, created_runs: list
) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'retune.policy'")

    monkeypatch.setattr(alerts, "_policy", missing)
    resp = _post(client, GF, grafana_payload(), auth)
    assert resp.status_code == 503
    assert "retune.policy" in resp.json()["detail"]
    assert created_runs == []

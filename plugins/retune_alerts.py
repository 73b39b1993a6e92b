"""Alert receiver: Prometheus Alertmanager and Grafana webhooks start ``retune_model`` runs.

A FastAPI app mounted in the Airflow api-server under ``/retune``:

- ``POST /retune/alerts/alertmanager``: Alertmanager webhook payload (version 4);
- ``POST /retune/alerts/grafana``: Grafana unified-alerting webhook payload;
- ``GET /retune/health``: liveness, no authentication.

Requests carry ``Authorization: Bearer <token>``, compared in constant time with the
``RETUNE_ALERT_TOKEN`` environment variable of the api-server. Without that variable every
alert request is refused (401).

An alert names its model with the label ``retune_config`` (a config name) or ``model`` (a
config's ``registry.model_name``). A firing alert goes to the trigger policy
(``retune.policy.decide``), which records the decision and says whether to retune; if it
does, a ``retune_model`` run is created in the metadata database with ``trigger=alert``, the
alert and the policy's token in its conf. Resolved alerts are acknowledged and do nothing.

``triggered`` means a run was started, not that the model will be retuned: like a manual
run, the run checks drift first (the model's features against its reference data, not the
alert's condition) and, finding none, skips and tunes nothing; a resend of the same alert
(same fingerprint and ``startsAt``) is a duplicate from then on, until it fires anew. The
label ``retune_force="true"`` makes the run retune without that check (conf ``force``; the
policy's duplicate, cooldown and one-at-a-time rules still apply); another value than
``true`` or ``false`` is refused (422).

Answers: 202 when every alert was handled (triggered, or skipped with the policy's reason: a
resend of an alert whose retune exists is a duplicate); 404 when a firing alert maps to no
config (the reason names the label and the config folder, or the matching config that cannot
be loaded); 500 when the policy or creating a run failed; 503 when the config folder
(``RETUNE_CONFIG_DIR``) is missing or holds no config, and, with ``Retry-After``, when a
resend's retune has no run yet (being created by a concurrent delivery, or the receiver
stopped before creating it: such a decision is cancelled and decided again
``ORPHAN_AFTER_S`` after it was taken), since Alertmanager and Grafana stop retrying on a 2xx.

Only the standard library, FastAPI and pydantic are imported here; Retune and the Airflow
models are imported when a request needs them, so the api-server starts fast.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
from datetime import UTC, datetime
from typing import Any, Literal

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

TOKEN_ENV = "RETUNE_ALERT_TOKEN"
RETUNE_DAG_ID = "retune_model"
CONFIG_LABEL = "retune_config"
MODEL_LABEL = "model"
FORCE_LABEL = "retune_force"  # "true": the run retunes without asking its drift gate
MAX_BODY_BYTES = 1 << 20
"""Alertmanager caps a group at its ``max_alerts``; a MiB is far beyond a sane group."""

# --------------------------------------------------------------------------- payloads


class _Lenient(BaseModel):
    """Senders add fields over versions: unknown fields are ignored, known ones are checked."""

    model_config = ConfigDict(extra="ignore")


class Alert(_Lenient):
    """One alert, as both Alertmanager and Grafana send it."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(default="", max_length=128, pattern=r"^[A-Za-z0-9_.:-]*$")

    @field_validator("startsAt")
    @classmethod
    def _in_utc_range(cls, moment: datetime) -> datetime:
        try:  # "0001-01-01T00:00:00+02:00" is before the first UTC datetime: the key needs it in UTC
            moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{moment.isoformat()} is out of range in UTC") from None
        return moment

    @field_validator("labels")
    @classmethod
    def _force_label(cls, labels: dict[str, str]) -> dict[str, str]:
        value = labels.get(FORCE_LABEL)
        if value is not None and value.strip().lower() not in ("true", "false"):
            raise ValueError(f"label {FORCE_LABEL}={value!r} must be 'true' or 'false'")
        return labels

    @property
    def force(self) -> bool:
        """Whether the alert asks to retune even without drift (label ``retune_force="true"``)."""
        return self.labels.get(FORCE_LABEL, "").strip().lower() == "true"


class AlertmanagerPayload(_Lenient):
    """Prometheus Alertmanager webhook payload, version 4."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: list[Alert] = Field(min_length=1, max_length=1000)
    groupKey: str = ""
    truncatedAlerts: int = 0
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""


class GrafanaAlert(Alert):
    """A Grafana alert: an Alertmanager alert plus the query values and links."""

    values: dict[str, Any] | None = None
    valueString: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    silenceURL: str = ""


class GrafanaPayload(_Lenient):
    """Grafana unified-alerting webhook payload."""

    receiver: str
    status: Literal["firing", "resolved"]
    orgId: int
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=1000)
    groupKey: str = ""
    truncatedAlerts: int = 0
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    version: str = ""
    title: str = ""
    state: str = ""
    message: str = ""


# --------------------------------------------------------------------------- helpers


def _problem(code: int, detail: Any, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
    return JSONResponse({"detail": detail, **extra}, status_code=code, headers=headers)


def check_token(authorization: str | None) -> str | None:
    """Why a request is refused, or None when its bearer token is the configured one.

    The configured token is read on every request and never logged or echoed; surrounding
    whitespace (a secret file's final newline) is not part of it.
    """
    expected = os.environ.get(TOKEN_ENV, "").strip()
    if not expected:
        return f"{TOKEN_ENV} is not set on the api-server: the alert receiver refuses every request"
    if not authorization:
        return "missing Authorization header (expected 'Bearer <token>')"
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "the Authorization header must be 'Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return "invalid token"
    return None


def iso_utc(moment: datetime) -> str:
    """A timestamp as ISO 8601 in UTC with a ``Z``, the same for every spelling of an instant."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def labels_digest(labels: dict[str, str]) -> str:
    """SHA-256 of the sorted labels: stands in for a missing fingerprint."""
    return hashlib.sha256(json.dumps(sorted(labels.items()), separators=(",", ":")).encode()).hexdigest()


def idempotency_key(config: str, alert: Alert) -> str:
    """``alert:<config>:<fingerprint or sha256 of sorted labels>:<startsAt>``.

    Alertmanager and Grafana resend a firing alert with the same fingerprint and start time
    until it resolves, so every resend maps to the same key.
    """
    return f"alert:{config}:{alert.fingerprint or labels_digest(alert.labels)}:{iso_utc(alert.startsAt)}"


def run_id_for(config: str, key: str, now: datetime | None = None) -> str:
    """A readable, unique run id: ``alert__<config>__<UTC time>_<key digest>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"alert__{config}__{stamp}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class ConfigIndex:
    """The model configs of this request, loaded once, by name and by registered model."""

    def __init__(self) -> None:
        from retune.schedule import list_configs
        from retune.settings import get_settings

        self.folder = get_settings().config_dir
        self.names = list_configs(str(self.folder))
        self._by_model: dict[str, list[str]] | None = None
        self._broken: dict[str, str] = {}  # config -> why it cannot be loaded

    def problem(self) -> str | None:
        """Why no alert can map to a config: the folder is missing or holds none (the server's
        problem, not the alert's), or None."""
        if not self.folder.is_dir():
            return f"the config folder {self.folder} (RETUNE_CONFIG_DIR) does not exist: no alert can map to a model config"
        if not self.names:
            return f"the config folder {self.folder} (RETUNE_CONFIG_DIR) holds no model config (<name>.yaml)"
        return None

    def _load(self, name: str) -> Any:
        from retune.pipeline import load_named_config

        return load_named_config(name)

    def resolve(self, labels: dict[str, str]) -> tuple[list[str], str]:
        """The configs an alert's labels name, and why none when the list is empty."""
        if CONFIG_LABEL in labels:
            name = labels[CONFIG_LABEL]
            if name not in self.names:
                return [], f"label {CONFIG_LABEL}={name!r} names no model config in {self.folder}"
            try:
                self._load(name)
            except Exception as exc:  # noqa: BLE001 (ConfigError, or a YAML/IO error: the alert cannot map)
                return [], f"config {name!r} cannot be loaded: {exc}"
            return [name], ""
        if MODEL_LABEL in labels:
            model = labels[MODEL_LABEL]
            names = self.by_model().get(model, [])
            if names:
                return names, ""
            broken = [n for n in self._broken if self._declared_model(n) == model]
            if broken:
                return [], "; ".join(
                    f"config {n!r} matches {MODEL_LABEL}={model!r} but cannot be loaded: {self._broken[n]}" for n in broken
                )
            return [], f"label {MODEL_LABEL}={model!r} is no config's registry.model_name in {self.folder}" + (
                f" (not checked, cannot be loaded: {', '.join(sorted(self._broken))})" if self._broken else ""
            )
        return [], f"the alert has neither a {CONFIG_LABEL!r} nor a {MODEL_LABEL!r} label"

    def by_model(self) -> dict[str, list[str]]:
        if self._by_model is None:
            self._by_model = {}
            for name in self.names:
                try:
                    cfg = self._load(name)
                except Exception as exc:  # noqa: BLE001 (one broken config must not hide the others)
                    log.warning("model config %s cannot be loaded; alerts cannot map to it", name, exc_info=True)
                    self._broken[name] = str(exc)
                    continue
                self._by_model.setdefault(cfg.registry.model_name, []).append(name)
        return self._by_model

    def _declared_model(self, name: str) -> Any:
        """The ``registry.model_name`` a config that cannot be loaded declares, if its YAML says."""
        import yaml

        try:
            return yaml.safe_load((self.folder / f"{name}.yaml").read_text())["registry"]["model_name"]
        except Exception:  # noqa: BLE001 (not even that can be read)
            return None


# --------------------------------------------------------------------------- Airflow


def retune_dag_problem() -> str | None:
    """Why ``retune_model`` cannot get a run now (not in the metadata DB, stale, import errors,
    paused), or None."""
    from airflow.models.dag import DagModel

    dm = DagModel.get_current(RETUNE_DAG_ID)
    if dm is None or dm.is_stale:
        return f"DAG {RETUNE_DAG_ID} is not in the metadata database (is the dag-processor running, or run `airflow dags reserialize`)"
    if dm.has_import_errors:
        return f"DAG {RETUNE_DAG_ID} has import errors"
    if dm.is_paused:
        # a run of a paused DAG stays queued while its policy lock expires: refuse, so the
        # sender retries, rather than accept an alert that will never retune
        return f"DAG {RETUNE_DAG_ID} is paused: unpause it (UI or `airflow dags unpause {RETUNE_DAG_ID}`) to let alerts retune"
    return None


def create_retune_run(*, run_id: str, conf: dict[str, Any], note: str) -> str:
    """Create a queued ``retune_model`` run in the metadata database, as the REST API does.

    ``airflow.api.common.trigger_dag.trigger_dag`` is the function behind ``airflow dags
    trigger``: it takes the newest serialized version of the DAG from the database, checks the
    conf against the DAG's Params and creates the run (state queued) with its task instances.

    Returns:
        The run id.
    """
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(
        RETUNE_DAG_ID,
        run_id=run_id,
        conf=conf,
        triggered_by=DagRunTriggeredByType.REST_API,
        triggering_user_name="retune-alert-receiver",
        note=note,
    )
    if run is None:  # pragma: no cover (trigger_dag raises instead)
        raise RuntimeError(f"no run created for {RETUNE_DAG_ID}")
    return str(run.run_id)


def _cancel(config: str, token: str | None, reason: str) -> None:
    """Undo a decision whose run could not be created (``retune.policy.cancel``): the lock is
    given back and the decision no longer counts, so the sender's retry with the same
    idempotency key is decided afresh instead of being skipped as a duplicate."""
    if not token:
        return
    try:
        from retune.policy import cancel

        cancel(config, token, reason=reason)
    except Exception:  # noqa: BLE001 (the lock then expires after policy.lock_ttl)
        log.exception("could not release the policy lock of %s", config)


ORPHAN_AFTER_S = 120.0  # a decision this old whose run does not exist lost it: creating one takes seconds


def _runless(config: str, key: str) -> dict[str, Any] | None:
    """``key``'s open triggered decision (``retune.policy.open_decision``, with its ``age`` in
    seconds) when no ``retune_model`` run carries its token (yet), else ``None`` (no open
    decision, or its run exists).

    A young one's run is being created (a concurrent delivery of the same alert), or the
    receiver stopped between deciding and creating it; one ``ORPHAN_AFTER_S`` old lost its run
    (api-server killed, a database failure while cancelling)."""
    from retune_links import retune_run_carries

    from retune.policy import open_decision

    found = open_decision(config, key)
    if found is None or retune_run_carries(found["token"]):
        return None
    return {**found, "age": (datetime.now(UTC) - found["created_at"]).total_seconds()}


def _orphaned(config: str, key: str, found: dict[str, Any]) -> None:
    """Cancel a decision that lost its run (:func:`_runless`, ``ORPHAN_AFTER_S`` or older), so
    the sender's resend is decided afresh instead of skipped as a duplicate while the lock
    stays held until ``policy.lock_ttl``."""
    log.warning(
        "decision %s for %s (%s) has no %s run: cancelling it and deciding again", found["id"], config, key, RETUNE_DAG_ID
    )
    _cancel(config, found["token"], f"alert receiver: no {RETUNE_DAG_ID} run was created for it (the receiver stopped before)")


def _cover(entry: dict[str, Any], config: str, key: str, decision: Any, run_id: str | None) -> bool:
    """Answer one more alert about ``config`` with the retune this payload started for it
    (``retune.policy.cover``); fills ``entry``. False when that retune could not be started,
    or recording failed: the sender should retry."""
    if run_id is None:
        entry["reason"] = f"not decided: creating the {RETUNE_DAG_ID} run for this model failed"
        return False
    try:
        from retune.policy import cover

        covered = cover(config, key, decision)
    except Exception as exc:  # noqa: BLE001 (reported to the sender, who retries)
        entry["reason"] = f"the trigger policy failed: {exc}"
        log.exception("trigger policy failed for %s (%s)", config, key)
        return False
    entry["reason"] = covered.reason
    if covered.token:  # answered by that run
        entry["dag_run_id"] = run_id
    return True


def _policy() -> Any:
    """``retune.policy.decide``; ImportError when the policy module is missing."""
    from retune.policy import decide

    return decide


# --------------------------------------------------------------------------- the work


def handle(source: str, receiver: str, alerts: list[Alert]) -> JSONResponse:
    """Map, decide and trigger for one payload (blocking: runs in a worker thread)."""
    index = ConfigIndex()
    problem = index.problem() if any(alert.status == "firing" for alert in alerts) else None
    if problem:  # a deployment's mistake: the sender retries until it is fixed
        log.error("cannot map alerts: %s", problem)
        return _problem(status.HTTP_503_SERVICE_UNAVAILABLE, problem)
    mapped: list[tuple[Alert, list[str]]] = []
    unknown = []
    for i, alert in enumerate(alerts):
        names, why = index.resolve(alert.labels)
        if alert.status == "firing" and not names:
            unknown.append({"alert": i, "labels": alert.labels, "reason": why})
        mapped.append((alert, names))
    if unknown:
        log.warning("%s alert(s) from %s map to no model config: %s", len(unknown), source, unknown)
        return _problem(status.HTTP_404_NOT_FOUND, "alert labels map to no model config; nothing was triggered", alerts=unknown)

    results: list[dict[str, Any]] = []
    decide: Any = None
    if any(alert.status == "firing" for alert, _ in mapped):
        try:
            decide = _policy()
        except ImportError as exc:
            log.error("trigger policy unavailable: %s", exc)
            return _problem(status.HTTP_503_SERVICE_UNAVAILABLE, f"trigger policy unavailable (retune.policy): {exc}")
        problem = retune_dag_problem()
        if problem:
            log.error("cannot trigger retunes: %s", problem)
            return _problem(status.HTTP_503_SERVICE_UNAVAILABLE, problem)

    failed = False
    retry_after: int | None = None  # seconds: a duplicate whose run does not exist yet
    # one retune per model per payload: further alert series about a model whose retune this
    # payload started are covered by it (their resends are duplicates, not one retune each)
    started: dict[str, tuple[Any, str | None]] = {}  # config -> (decision, run id or None: failed)
    # that retune is forced when any firing series about the model asks for it
    forced = {name for alert, names in mapped if alert.status == "firing" and alert.force for name in names}
    for alert, names in mapped:
        targets: list[str | None] = list(names) or [None]  # a resolved alert may map to nothing
        for name in targets:
            entry: dict[str, Any] = {
                "config": name,
                "status": alert.status,
                "fingerprint": alert.fingerprint or None,
                "triggered": False,
                "dag_run_id": None,
            }
            results.append(entry)
            if alert.status == "resolved" or name is None:
                entry["reason"] = "resolved: acknowledged, nothing to trigger"
                continue
            key = idempotency_key(name, alert)
            entry["idempotency_key"] = key
            entry["force"] = name in forced
            if name in started:
                failed |= not _cover(entry, name, key, *started[name])
                continue
            try:
                decision = decide(name, source="alert", key=key, force=False)
                runless = None if decision.triggered else _runless(name, key)
                if runless is not None and runless["age"] >= ORPHAN_AFTER_S:  # decided, but its run never created
                    _orphaned(name, key, runless)
                    decision, runless = decide(name, source="alert", key=key, force=False), None
            except Exception as exc:  # noqa: BLE001 (reported to the sender, who retries)
                failed = True
                entry["reason"] = f"the trigger policy failed: {exc}"
                log.exception("trigger policy failed for %s (%s)", name, key)
                continue
            entry["reason"] = decision.reason
            if runless is not None and not decision.triggered:
                # a 2xx ends the sender's retries: while this decision's run may still never
                # come, ask for a retry (decided again once ORPHAN_AFTER_S old)
                wait = max(1, math.ceil(ORPHAN_AFTER_S - runless["age"]))
                retry_after = max(retry_after or 0, wait)
                entry["reason"] = (
                    f"{decision.reason}, whose {RETUNE_DAG_ID} run does not exist yet (being created, or the receiver "
                    f"stopped first; it is decided again {ORPHAN_AFTER_S:.0f} s after the decision): retry in {wait} s"
                )
                continue
            if not decision.triggered:
                log.info("%s alert for %s not triggered (%s): %s", source, name, key, decision.reason)
                continue
            conf = {
                "config": name,
                "trigger": "alert",
                # the run's drift gate: not the policy's force (a resend must stay a duplicate)
                "force": name in forced,
                "window": "latest",
                "alert": {
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "startsAt": iso_utc(alert.startsAt),
                    "fingerprint": alert.fingerprint or None,
                    "receiver": receiver,
                    "source": source,
                },
                "policy_token": decision.token,
                "idempotency_key": key,
            }
            alertname = alert.labels.get("alertname", "alert")
            try:
                entry["dag_run_id"] = create_retune_run(
                    run_id=run_id_for(name, key), conf=conf, note=f"{source} alert {alertname!r} ({receiver})"
                )
            except Exception as exc:  # noqa: BLE001 (reported to the sender, who retries)
                failed = True
                entry["reason"] = f"the policy triggered, but creating the {RETUNE_DAG_ID} run failed: {exc}"
                log.exception("creating a %s run for %s (%s) failed", RETUNE_DAG_ID, name, key)
                _cancel(name, decision.token, f"alert receiver: creating the {RETUNE_DAG_ID} run failed: {exc}")
                started[name] = (decision, None)
                continue
            started[name] = (decision, entry["dag_run_id"])
            entry["triggered"] = True
            log.info("%s alert %r for %s: %s run %s (%s)", source, alertname, name, RETUNE_DAG_ID, entry["dag_run_id"], key)
    body: dict[str, Any] = {"source": source, "receiver": receiver, "results": results}
    if failed:
        return JSONResponse(body, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if retry_after is not None:
        body["detail"] = f"an alert's retune has no {RETUNE_DAG_ID} run yet: retry (Retry-After)"
        return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(retry_after)})
    return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED)


async def _read_capped(request: Request) -> bytes | None:
    """The request body, or None as soon as it passes ``MAX_BODY_BYTES`` (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _receive(request: Request, model: type[AlertmanagerPayload] | type[GrafanaPayload], source: str) -> JSONResponse:
    refused = check_token(request.headers.get("authorization"))
    if refused:
        log.warning("%s alert from %s refused: %s", source, request.client.host if request.client else "?", refused)
        return _problem(status.HTTP_401_UNAUTHORIZED, refused)
    body = await _read_capped(request)
    if body is None:
        return _problem(status.HTTP_413_CONTENT_TOO_LARGE, f"payload over {MAX_BODY_BYTES} bytes")
    try:
        payload = model.model_validate_json(body)
    except ValidationError as exc:
        # exc.json() makes every error context JSON-safe; the input is not echoed back.
        return _problem(status.HTTP_422_UNPROCESSABLE_CONTENT, json.loads(exc.json(include_url=False, include_input=False)))
    return await run_in_threadpool(handle, source, payload.receiver, list(payload.alerts))


# --------------------------------------------------------------------------- app and plugin

app = FastAPI(
    title="Retune alert receiver",
    description="Alertmanager and Grafana webhooks that start retune_model runs through the trigger policy.",
    version="1",
)


@app.get("/health")
def health() -> dict[str, Any]:
    """Liveness; says whether a token is configured and the trigger policy is installed."""
    import importlib.util

    try:
        policy = importlib.util.find_spec("retune.policy") is not None
    except ImportError:
        policy = False
    return {"status": "ok", "token_configured": bool(os.environ.get(TOKEN_ENV, "").strip()), "policy_available": policy}


@app.post("/alerts/alertmanager", status_code=status.HTTP_202_ACCEPTED)
async def alertmanager(request: Request) -> JSONResponse:
    """Prometheus Alertmanager webhook (payload version 4)."""
    return await _receive(request, AlertmanagerPayload, "alertmanager")


@app.post("/alerts/grafana", status_code=status.HTTP_202_ACCEPTED)
async def grafana(request: Request) -> JSONResponse:
    """Grafana unified-alerting webhook."""
    return await _receive(request, GrafanaPayload, "grafana")


class RetuneAlertsPlugin(AirflowPlugin):
    """Mounts the alert receiver in the api-server under ``/retune``."""

    name = "retune_alerts"
    fastapi_apps = [{"app": app, "url_prefix": "/retune", "name": "Retune alert receiver"}]

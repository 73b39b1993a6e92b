"""The steps of monitoring and retuning, each a plain function from small JSON to small JSON.

The Airflow tasks in ``dags/`` call these and nothing else, so every step also runs from a
Python shell, a notebook or a test. Between steps only ids, URIs, window bounds, digests and
scores travel; each step reads the rows it needs from the data source again and checks the
content digest, so a step never works on other data than the one before it.

Flow::

    check_drift ──> (drift?) ──> should_retune ──> prepare ──> warm_start ──> tune ──> validate ──> register
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from retune.config import RetuneConfig, config_path, load_named_file, parse_timestamp
from retune.data import FeatureSet, Window, frame_digest, load_window, split_for_retune
from retune.drift import DriftDetector, detector_for
from retune.errors import ChampionChangedError, ConfigError, DataError, ParamError, RegistryUnavailableError, RetuneError
from retune.metrics import get_metric
from retune.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TRAIN_START_TAG = "retune.train_start"
TRAIN_END_TAG = "retune.train_end"


def load_named_config(name: str, settings: Settings | None = None) -> RetuneConfig:
    """Load ``<config_dir>/<name>.yaml``.

    Raises:
        ConfigError: If the name is unsafe, the file missing (the config folder missing:
            naming ``RETUNE_CONFIG_DIR``) or the config invalid, or its ``name`` is not
            ``name`` (:func:`retune.config.load_named_file`).
    """
    settings = settings or get_settings()
    path = config_path(name, settings.config_dir)
    if not path.exists():
        settings.require_config_dir()
    return load_named_file(path)


def _now() -> datetime:
    return datetime.now(UTC)


def _end(window_end: str | datetime | None) -> datetime:
    """The window's end: now when not given.

    Raises:
        ParamError: ``window_end`` is not an ISO date or datetime (say ``2025-02-30``).
    """
    if window_end in (None, ""):
        return _now()
    try:
        return parse_timestamp(window_end)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ParamError(f"window_end: {window_end!r} is not an ISO date or datetime ({exc})") from None


def slug(text: str, *, limit: int = 80) -> str:
    """A name-safe version of a run id or key, one to one: the text itself when it is safe and
    at most ``limit`` characters, else its safe characters cut to fit and 12 hex digits of its
    SHA-256. Two keys never share a slug (a cut used to let two long alert run ids share a
    study).

    Example:
        >>> slug("retune_model/scheduled__2025-05-29")
        'retune_model_scheduled__2025-05-29-d2a38be537b2'
    """
    if not text:
        return "run"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    if safe == text and len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    safe = safe[: max(limit - len(digest) - 1, 0)].strip("_")
    return f"{safe}-{digest}" if safe else digest


def study_name(cfg: RetuneConfig, key: str) -> str:
    """The Optuna study of the retune ``key`` (its run) of a model."""
    return f"{_study_prefix(cfg)}{slug(key)}"


def experiment_name(cfg: RetuneConfig, kind: str = "retune") -> str:
    """MLflow experiment of a model's retunes (``retune/<name>``) or drift checks."""
    return f"retune/{cfg.name}" if kind == "retune" else f"retune/{cfg.name}/monitoring"


# --------------------------------------------------------------------------- drift


def drift_windows(cfg: RetuneConfig, end: datetime, cl: MlflowClient | None) -> tuple[Window, Window]:
    """The reference and production windows of a drift check ending at ``end``.

    The reference is the champion's training window when the policy says so and a champion
    exists; otherwise the config's fixed reference period.
    """
    from retune import registry

    production = Window("production", end - cfg.data.window, end)
    if cfg.drift.reference == "champion_training" and cl is not None:
        champ = registry.get_alias(cl, cfg.registry.model_name, registry.CHAMPION)
        if champ is not None and (champ.tags.get(TRAIN_START_TAG) or champ.tags.get(TRAIN_END_TAG)):
            # either bound may be open (a reference period with only a start): "" or no tag
            start, stop = (
                parse_timestamp(champ.tags[t]) if champ.tags.get(t) else None for t in (TRAIN_START_TAG, TRAIN_END_TAG)
            )
            kind: Literal["reference", "production"] = (
                "reference" if champ.tags.get("retune.window_kind") == "reference" else "production"
            )
            return Window(kind, start, stop), production
    ref = cfg.data.reference
    return Window("reference", ref.start, ref.end), production


def check_drift(
    config_name: str,
    *,
    window_end: str | datetime | None = None,
    detector: DriftDetector | None = None,
    settings: Settings | None = None,
    run_tags: dict[str, str] | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Compare the production window ending at ``window_end`` with the reference data.

    Logs a monitoring run to MLflow: drift share and counts as metrics, the detector and its
    report rule as the ``detector`` and ``report`` params, the per-column JSON summary as an
    artifact and, when the config's ``drift.report`` asks for it (by default: the window
    drifted), Evidently's HTML report (otherwise ``report_uri`` is None).

    Args:
        config_name: The model config.
        window_end: End of the production window (default: now).
        detector: The drift detector (default: the one the config's ``drift.detector`` names,
            :func:`retune.drift.detector_for`).
        settings: State locations (default: from the environment).
        run_tags: Extra MLflow tags (for example the Airflow dag and run id).
        record: Record the verdict for the policy's hysteresis (``retune_windows``): the
            schedule's checks do; a person's look (a manual monitor run) and a retune's own
            drift gate do not, so they never make up the consecutive windows it asks for.

    Returns:
        ``{"config", "model_name", "drift_detected", "summary", "window", "reference",
        "monitor_run_id", "experiment_id", "report_uri"}``.
    """
    from retune import tracking

    settings = settings or get_settings()
    cfg = load_named_config(config_name, settings)
    cl = tracking.client(settings)
    end = _end(window_end)
    ref_window, prod_window = drift_windows(cfg, end, cl)
    reference, features = load_window(cfg, ref_window, variables=settings.variables, need_target=False)
    current, _ = load_window(cfg, prod_window, variables=settings.variables, features=features, need_target=False)
    detector = detector or detector_for(cfg.drift)
    result = detector.detect(reference, current, numerical=features.numerical, categorical=features.categorical, policy=cfg.drift)
    summary = result.summary
    exp_id = tracking.ensure_experiment(cl, experiment_name(cfg, "monitoring"), settings)
    run = cl.create_run(
        exp_id,
        run_name=f"drift {end.date().isoformat()}",
        tags={
            "retune.run_type": "monitor",
            "retune.config": cfg.name,
            "retune.window_start": prod_window.start.isoformat() if prod_window.start else "",
            "retune.window_end": end.isoformat(),
            "retune.reference": ref_window.label(),
            "retune.drift_detected": str(summary.drift_detected).lower(),
            **(run_tags or {}),
        },
    )
    run_id = run.info.run_id
    from mlflow.entities import Metric as MlMetric
    from mlflow.entities import Param

    now_ms = int(_now().timestamp() * 1000)
    cl.log_batch(
        run_id,
        metrics=[
            MlMetric("drift_share", summary.drift_share, now_ms, 0),
            MlMetric("n_drifted", float(summary.n_drifted), now_ms, 0),
            MlMetric("reference_rows", float(len(reference)), now_ms, 0),
            MlMetric("current_rows", float(len(current)), now_ms, 0),
        ],
        params=[
            Param("drift_share_threshold", str(cfg.drift.drift_share)),
            Param("detector", type(detector).__name__),
            Param("report", detector.report),
        ],
    )
    summary_json = summary.to_json()
    tracking.log_json(cl, run_id, summary_json, "drift/summary.json")
    report_uri = None
    if result.html:
        tracking.log_text(cl, run_id, result.html, "drift/report.html")
        report_uri = tracking.artifact_uri(cl, run_id, "drift/report.html")
    cl.set_terminated(run_id, "FINISHED")
    from retune import policy

    if record:
        policy.record_window(
            cfg.name, end, drift_detected=summary.drift_detected, drift_share=summary.drift_share, settings=settings
        )
    verdict = "DRIFT" if summary.drift_detected else "no drift"
    log.info(
        "%s: %s (share %.2f of %d columns, threshold %.2f) in %s vs %s; drifted: %s",
        cfg.name,
        verdict,
        summary.drift_share,
        summary.n_columns,
        summary.drift_share_threshold,
        prod_window.label(),
        ref_window.label(),
        [c.column for c in summary.drifted_columns],
    )
    return {
        "config": cfg.name,
        "model_name": cfg.registry.model_name,
        "drift_detected": summary.drift_detected,
        "summary": compact_summary(summary_json),
        "window": prod_window.to_json(),
        "reference": ref_window.to_json(),
        "monitor_run_id": run_id,
        "experiment_id": exp_id,
        "report_uri": report_uri,
    }


def compact_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The part of a drift summary worth passing on in XCom and run conf."""
    return {
        "drift_share": summary["drift_share"],
        "n_columns": summary["n_columns"],
        "n_drifted": summary["n_drifted"],
        "drift_share_threshold": summary["drift_share_threshold"],
        "drift_detected": summary["drift_detected"],
        "drifted_columns": [
            {"column": c["column"], "method": c["method"], "score": c["score"]} for c in summary["columns"] if c["drifted"]
        ],
    }


# --------------------------------------------------------------------------- retune


def should_retune(
    config_name: str,
    *,
    window_end: str | datetime | None,
    drift: dict[str, Any] | None,
    force: bool,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The drift gate in front of a retune.

    A retune triggered by the monitor carries its drift result; a manual or alert trigger
    without one gets a fresh drift check. ``force`` skips the gate.

    Returns:
        ``{"retune": bool, "reason": str, "drift": dict | None}``.
    """
    if force:
        return {"retune": True, "reason": "forced", "drift": drift}
    if drift is None:
        drift = check_drift(config_name, window_end=window_end, settings=settings, record=False)
    detected = bool(drift.get("drift_detected") or drift.get("summary", {}).get("drift_detected"))
    reason = "drift detected" if detected else "no drift in the window: nothing to retune (use force to retune anyway)"
    log.info("drift gate for %s: %s", config_name, reason)
    return {"retune": detected, "reason": reason, "drift": drift}


def plan_retunes(
    results: list[dict[str, Any]], *, source: str = "drift", settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Run confs of ``retune_model`` for the drift checks the trigger policy lets through.

    Every drifted model is put to :func:`retune.policy.decide` (idempotency key
    ``drift:<config>:<window end>``); a model whose retune is triggered gets a conf carrying
    the policy token, which the retune releases when it ends.

    Args:
        results: Outputs of :func:`check_drift`.
        source: ``drift`` (found by the monitor) or ``schedule``.
        settings: State locations.

    Returns:
        Run confs, one per retune to start.
    """
    from retune import policy

    confs: list[dict[str, Any]] = []
    try:
        for r in results:
            conf = _plan_one(r, source, settings) if r["drift_detected"] else None
            if conf is not None:
                confs.append(conf)
    except BaseException as exc:
        # the task fails and its retry decides again: the decisions taken so far must not
        # hold their locks (or count as duplicates) for runs that will never start
        for conf in confs:
            policy.cancel(conf["config"], conf["policy_token"], reason=f"planning failed: {exc!r}"[:200], settings=settings)
        raise
    return confs


def _plan_one(r: dict[str, Any], source: str, settings: Settings | None) -> dict[str, Any] | None:
    """Put one drifted model to the policy: its run conf when triggered, else ``None``."""
    from retune import policy

    key = f"drift:{r['config']}:{r['window']['end']}"
    end = parse_timestamp(r["window"]["end"])
    # retry: this task retried after its first attempt decided (and died before any run was
    # triggered), or another monitor run of the same window, gets the open decision's token
    # again; trigger_retune names the run after the token, so it is never started twice
    decision = policy.decide(r["config"], source=source, key=key, window_end=end, retry=True, settings=settings)
    print(f"{r['config']}: {'TRIGGER' if decision.triggered else 'SKIP'} ({decision.reason})")
    if not decision.triggered:
        return None
    return {
        "config": r["config"],
        "window": "latest",
        "window_end": r["window"]["end"],
        "force": False,
        "trigger": "drift",
        "drift": {
            "summary": r["summary"],
            "monitor_run_id": r["monitor_run_id"],
            # the report's link needs the experiment: a local store's artifact URIs do not name it
            "experiment_id": r.get("experiment_id"),
            "report_uri": r["report_uri"],
        },
        "policy_token": decision.token,
        "idempotency_key": key,
    }


def admit(
    config_name: str,
    *,
    conf: dict[str, Any],
    run_key: str,
    window_kind: str,
    window_end: str | None,
    force: bool,
    trigger: str,
    drift: dict[str, Any] | None,
    retry: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The gate in front of a retune run: the trigger policy, then the drift gate.

    A run started by the monitor or an alert carries the policy token of its decision; a run
    started by a person or the REST API is put to the policy here (idempotency key: the
    conf's ``idempotency_key``, else the run). A run whose retune ended and gave its lock back,
    then cleared by a person, is decided again as the same request (``rerun``: no duplicate,
    no hysteresis, no cooldown; the lock still one at a time). Without drift (and without
    ``force``) the lock is given back at once.

    Args:
        config_name: The model config.
        conf: The Airflow run's conf (``policy_token``, ``idempotency_key``).
        run_key: The Airflow run (``dag_id/run_id``): the key of a request without its own.
        window_kind: ``latest`` or ``reference`` (a reference window skips the drift gate).
        window_end: End of the production window (default: when the run was asked for).
        force: Skip idempotency, hysteresis, cooldown and the drift gate (never the lock).
        trigger: Who asked: a :data:`retune.policy.SOURCES` name (else ``manual``).
        drift: The monitor's drift result, when it found the drift (the gate checks again without).
        retry: The gate task runs again (its try number above 1): a decision of the same
            key whose retune still holds the lock is taken for this run's own, made by an
            attempt that died before it could hand the token on, and the run goes on with
            it (:func:`retune.policy.decide`'s ``retry``). Without it, a request with its own
            ``idempotency_key`` skipped as a duplicate of itself and the model stayed locked
            for ``policy.lock_ttl``.
        settings: State locations.

    Returns:
        ``{"retune": bool, "reason": str, "token": str | None}``.
    """
    from retune import policy

    settings = settings or get_settings()
    token = conf.get("policy_token")
    cleared = False
    if token and not policy.holds(config_name, token, settings=settings):
        if not policy.ended(config_name, token, settings=settings):  # expired while it ran: taken over
            return {"retune": False, "reason": "the policy lock of this run expired", "token": None}
        # the run ended and gave its lock back, and a person cleared it: the same request again
        token, cleared = None, True
    if token:
        policy.renew(config_name, token, settings=settings)  # queued until now: lock_ttl counts from here
        reason = "admitted by the trigger policy"
    else:
        source = trigger if trigger in policy.SOURCES else "manual"
        key = str(conf.get("idempotency_key") or run_key)
        decision = policy.decide(
            config_name,
            source=source,
            key=key,
            force=force or window_kind == "reference",
            rerun=cleared or key == run_key,  # the same Airflow run again (cleared): not a new request
            retry=retry,
            settings=settings,
        )
        print(f"trigger policy: {'TRIGGER' if decision.triggered else 'SKIP'} ({decision.reason})")
        if not decision.triggered:
            return {"retune": False, "reason": decision.reason, "token": None}
        token, reason = decision.token, decision.reason
    if window_kind == "reference":
        return {"retune": True, "reason": f"{reason}; reference window", "token": token}
    try:
        gate = should_retune(config_name, window_end=window_end, drift=drift, force=force, settings=settings)
    except BaseException as exc:
        if cleared or not conf.get("policy_token"):  # the lock was taken here: this run's retry decides again
            policy.cancel(config_name, str(token), reason=f"the drift gate failed: {exc!r}"[:200], settings=settings)
        raise
    if not gate["retune"]:
        policy.skip(config_name, str(token), reason=gate["reason"], settings=settings)
        return {"retune": False, "reason": gate["reason"], "token": None}
    return {"retune": True, "reason": f"{reason}; {gate['reason']}", "token": token}


def finish(
    config_name: str,
    token: str | None,
    *,
    registered: dict[str, Any] | None,
    parent_run_id: str | None = None,
    study_name: str | None = None,
    conf_token: str | None = None,
    gate_ran: bool = True,
    settings: Settings | None = None,
) -> str:
    """End a retune run, however it ended: give the model's policy lock back and, when the
    retune failed after its MLflow parent run was opened, fail the study's trials its killed
    workers left RUNNING (with their child runs) and close that run as FAILED (a rerun of
    the same retune reopens it).

    A run started by the monitor or an alert carries its decision's token in its conf; when
    its drift gate failed (an empty window, MLflow down) the gate never handed the token on,
    and that decision admitted no retune: it is cancelled (:func:`retune.policy.cancel`: the
    lock goes back and the decision no longer counts), so the same request again (the
    alert's resend, the monitor's next check of the window) is decided afresh instead of
    being a duplicate of a retune that never started, and the model is not locked for
    ``policy.lock_ttl``.

    Call it only once every trial worker of the retune has ended (the DAG's ``release_lock``
    waits for all of them): a failed retune never reaches the study summary, which otherwise
    fails the trials a killed worker left RUNNING.

    Args:
        config_name: The model config.
        token: The policy lock token the drift gate handed on (``None``: it held none, or the
            gate did not finish).
        registered: What :func:`register` returned (``None``: nothing was registered).
        parent_run_id: The retune's MLflow parent run (``None``: it was never opened).
        study_name: The retune's Optuna study (default: the parent run's ``study_name`` param).
        conf_token: The run conf's ``policy_token`` (``None``: a run started by a person).
        gate_ran: Whether the drift gate finished (whatever it decided); ``False`` with a
            ``conf_token`` cancels that token's decision.
        settings: State locations.

    Returns:
        The outcome noted on the decision.
    """
    from retune import policy

    if registered:
        outcome = f"registered v{registered['version']}, " + ("promoted" if registered["promoted"] else "champion kept")
    else:
        outcome = "ended without registering (failed or skipped)"
    if token:
        policy.release(config_name, token, outcome=outcome, settings=settings)
    elif conf_token and not gate_ran:
        outcome = "cancelled: the drift gate failed before it admitted the retune"
        # only a decision still open: one a person's cleared run already ended keeps its outcome
        policy.cancel(config_name, conf_token, reason=outcome.removeprefix("cancelled: "), settings=settings)
    if parent_run_id and not registered:
        fail_abandoned_trials(config_name, study_name, parent_run_id=parent_run_id, settings=settings)
        close_failed_run(parent_run_id, settings=settings)
    return outcome


def fail_abandoned_trials(
    config_name: str, study_name: str | None, *, parent_run_id: str | None = None, settings: Settings | None = None
) -> list[int]:
    """Mark FAIL the trials of a failed retune's study still RUNNING, and their child runs
    FAILED (:func:`retune.tuning.fail_abandoned`), once every worker has ended. Errors are
    logged, never raised: the lock is already free and the run must still be closed.

    Args:
        config_name: The model config (where its studies are stored).
        study_name: The study (``None``: the parent run's ``study_name`` param).
        parent_run_id: The retune's MLflow parent run.
        settings: State locations.

    Returns:
        The numbers of the trials marked FAIL.
    """
    import optuna

    from retune import tracking
    from retune.storage import lookup_storages
    from retune.tuning import fail_abandoned

    settings = settings or get_settings()
    try:
        cl = tracking.client(settings)
        if study_name is None and parent_run_id:
            study_name = cl.get_run(parent_run_id).data.params.get("study_name")
        if not study_name:
            return []
        cfg = load_named_config(config_name, settings)
        for storage in lookup_storages(settings, cfg.tuning):  # one worker: SQLite; more: its journal
            try:
                study = optuna.load_study(study_name=study_name, storage=storage)
            except KeyError:  # not in this storage (or never created: the retune failed before tuning)
                continue
            return fail_abandoned(study, cl)
    except Exception as exc:  # noqa: BLE001 - cleanup after a failure must not fail the lock release
        log.warning("could not fail the abandoned trials of study %s: %s", study_name, exc)
    return []


def close_failed_run(run_id: str, *, settings: Settings | None = None) -> None:
    """Mark a retune's parent run FAILED if it is still RUNNING (the lock is already free:
    an unreachable MLflow is logged, never raised)."""
    from retune import tracking

    try:
        cl = tracking.client(settings or get_settings())
        if cl.get_run(run_id).info.status == "RUNNING":
            cl.set_tag(run_id, "retune.outcome", "failed: ended without registering")
            cl.set_terminated(run_id, "FAILED")
            log.info("parent run %s closed as FAILED", run_id)
    except Exception as exc:  # noqa: BLE001 - cleanup after a failure must not fail the lock release
        log.warning("could not close parent run %s as FAILED: %s", run_id, exc)


def retune_window(cfg: RetuneConfig, *, window_end: str | datetime | None, kind: str) -> Window:
    """The data a retune trains on: the newest ``train_window`` or the reference period."""
    if kind == "reference":
        return Window("reference", cfg.data.reference.start, cfg.data.reference.end)
    end = _end(window_end)
    return Window("production", end - cfg.data.train_window, end)


def _load_checked(cfg: RetuneConfig, ctx: dict[str, Any], settings: Settings) -> tuple[pd.DataFrame, FeatureSet]:
    """Read the retune's window again and make sure it is the same data ``prepare`` saw."""
    features = FeatureSet(ctx["features"]["numerical"], ctx["features"]["categorical"])
    df, _ = load_window(cfg, Window.from_json(ctx["window"]), variables=settings.variables, features=features)
    digest = frame_digest(df)
    if digest != ctx["data_digest"]:
        raise DataError(
            f"{Window.from_json(ctx['window']).label()}: the data changed since the retune started "
            f"(digest {digest[:12]} != {ctx['data_digest'][:12]}); rerun the retune"
        )
    return df, features


def prepare(
    config_name: str,
    *,
    window_end: str | datetime | None = None,
    window_kind: str = "latest",
    n_trials: int | None = None,
    timeout: int | None = None,
    pruner: str | None = None,
    n_workers: int | None = None,
    trigger: str = "manual",
    drift: dict[str, Any] | None = None,
    key: str | None = None,
    lineage: dict[str, str] | None = None,
    policy_token: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Load and check the retune's data, and open its MLflow parent run.

    Args:
        config_name: The model config.
        window_end: End of the training window (default: now).
        window_kind: ``"latest"`` (newest ``train_window`` of production) or ``"reference"``.
        n_trials: Trial budget (default: the config's).
        timeout: Seconds (default: the config's).
        pruner: Pruner type (default: the config's).
        n_workers: Parallel trial workers (default: the config's ``tuning.n_workers``).
        trigger: What started the retune: ``schedule``, ``drift``, ``manual`` or ``alert``.
        drift: The drift result that triggered it, if any.
        key: Idempotency key (default: a new one); a retry with the same key reuses the run.
        lineage: Extra tags (dag_id, run_id).
        policy_token: The trigger policy's lock of this retune, which the trial workers keep
            (:func:`retune.policy.renew`) while trials finish.
        settings: State locations.

    Returns:
        The retune context: small JSON that every later step takes.

    Raises:
        ConfigError: For a bad config or parameter.
        DataError: For bad data; nothing is registered and the champion is unchanged.
    """
    from pydantic import ValidationError

    from retune import registry, tracking
    from retune.config import PrunerConfig
    from retune.tuning import make_pruner

    settings = settings or get_settings()
    cfg = load_named_config(config_name, settings)
    if pruner:
        try:
            make_pruner(PrunerConfig(type=pruner), n_steps=cfg.tuning.n_steps)  # type: ignore[arg-type]
        except ValidationError:
            raise ConfigError(f"pruner: unknown pruner {pruner!r}") from None
        except ValueError as exc:  # it cannot prune this config's trials (wilcoxon, too few tuning.n_steps)
            raise ConfigError(f"pruner: {pruner!r} does not fit config {cfg.name!r}: {exc}") from None
    if window_kind not in ("latest", "reference"):
        raise RetuneError(f"window: must be 'latest' or 'reference', got {window_kind!r}")
    window = retune_window(cfg, window_end=window_end, kind=window_kind)
    df, features = load_window(cfg, window, variables=settings.variables)
    split = split_for_retune(df, cfg, features)
    key = registry.check_key(key or f"adhoc/{_now().strftime('%Y%m%dT%H%M%S%f')}")
    cl = tracking.client(settings)
    exp_id = tracking.ensure_experiment(cl, experiment_name(cfg), settings)
    digests = {
        "data": frame_digest(df),
        "train": frame_digest(split.train),
        "valid": frame_digest(split.valid),
        "holdout": frame_digest(split.holdout),
    }
    existing = cl.search_runs([exp_id], filter_string=f"tags.`retune.key` = '{key}' and tags.`retune.run_type` = 'retune'")
    drift_share = None if not drift else (drift.get("summary") or drift).get("drift_share")
    tags = {
        "retune.run_type": "retune",
        "retune.key": key,
        "retune.config": cfg.name,
        "retune.trigger": trigger,
        "retune.window": window.label(),
        "retune.data_digest": digests["data"],
        "retune.drift_share": "" if drift_share is None else f"{drift_share:.4f}",
        "retune.seed": str(cfg.tuning.seed),
        "retune.git_commit": tracking.git_commit() or "unknown",
        **{f"version.{k}": v for k, v in tracking.library_versions().items()},
        **{f"airflow.{k}": v for k, v in (lineage or {}).items()},
    }
    if existing:
        parent_id = existing[0].info.run_id
        if existing[0].info.status != "RUNNING":  # closed by a failed attempt: this rerun reopens it
            cl.update_run(parent_id, status="RUNNING")
        log.info("resuming parent run %s of retune %s", parent_id, key)
    else:
        run = cl.create_run(exp_id, run_name=f"retune {window.end.date() if window.end else ''} ({trigger})", tags=tags)
        parent_id = run.info.run_id
        tracking.log_json(cl, parent_id, cfg.snapshot(), "config/config.json")
        tracking.log_json(cl, parent_id, digests, "data/digests.json")
        if drift:
            tracking.log_json(cl, parent_id, drift, "drift/trigger.json")
    from retune import adaptive, registry

    plan = adaptive.plan_for(cfg, drift_share=drift_share, champion_params=registry.champion_params(cl, cfg.registry.model_name))
    n = n_trials or plan.n_trials  # an explicit budget wins over the mode's
    t = timeout if timeout is not None else cfg.tuning.timeout
    ctx = {
        "config": cfg.name,
        "model_name": cfg.registry.model_name,
        "key": key,
        "trigger": trigger,
        "window": window.to_json(),
        "features": {"numerical": features.numerical, "categorical": features.categorical},
        "rows": {"total": len(df), "train": len(split.train), "valid": len(split.valid), "holdout": len(split.holdout)},
        "data_digest": digests["data"],
        "experiment_id": exp_id,
        "parent_run_id": parent_id,
        "study_name": study_name(cfg, key),
        "n_trials": n,
        "timeout": t,
        "pruner": pruner or cfg.tuning.pruner.type,
        "n_workers": int(n_workers or cfg.tuning.n_workers),
        "drift_share": drift_share,
        "mode": plan.mode,
        "mode_reason": plan.reason,
        "warm": plan.warm,
        "space": plan.space_json(),
        "meta_features": _meta_features(cfg, split.tuning, features),
        "transfer_from": _previous_study(cfg, key, settings) if cfg.tuning.transfer == "cmaes" else None,
        "lineage": lineage or {},
        "policy_token": policy_token,
    }
    from mlflow.entities import Param

    if not existing:
        cl.log_batch(
            parent_id,
            params=[
                Param("n_trials", str(n)),
                Param("timeout", str(t)),
                Param("pruner", ctx["pruner"]),
                Param("n_workers", str(ctx["n_workers"])),
                Param("mode", plan.mode),
                Param("model_family", cfg.model.family),
                Param("metric", cfg.metric.name),
                Param("seed", str(cfg.tuning.seed)),
                Param("rows_train", str(len(split.train))),
                Param("rows_valid", str(len(split.valid))),
                Param("rows_holdout", str(len(split.holdout))),
                Param("data_digest", digests["data"]),
                Param("study_name", ctx["study_name"]),
            ],
        )
    cl.set_tag(parent_id, "retune.mode", plan.mode)
    tracking.log_json(cl, parent_id, {"mode": plan.mode, "reason": plan.reason, "space": ctx["space"]}, "study/plan.json")
    log.info("mode %s: %s", plan.mode, plan.reason)
    log.info(
        "retune %s of %s: %d rows (%s), study %s, %d trials, pruner %s",
        key,
        cfg.name,
        len(df),
        window.label(),
        ctx["study_name"],
        n,
        ctx["pruner"],
    )
    return ctx


def _previous_study(cfg: RetuneConfig, key: str, settings: Settings) -> str | None:
    from retune.storage import lookup_storages
    from retune.warmstart import previous_study_top_k

    name, _ = previous_study_top_k(
        lookup_storages(settings, cfg.tuning),
        cfg.registry.model_name,
        exclude=study_name(cfg, key),
        k=1,
    )
    return name


def _meta_features(cfg: RetuneConfig, df: pd.DataFrame, features: FeatureSet) -> dict[str, float]:
    from retune.metalearn import meta_features

    return meta_features(df, target=cfg.target, task=cfg.task, numerical=features.numerical, categorical=features.categorical)


def _study_prefix(cfg: RetuneConfig) -> str:
    from retune.warmstart import study_prefix

    return study_prefix(cfg.registry.model_name)


def worker_seed(seed: int, worker: int, n_finished: int) -> int:
    """The sampler seed of one trial worker.

    Worker 0's first attempt uses the config's ``tuning.seed`` (a one-worker retune is
    reproducible); each other worker, and a retried worker (by the trials already finished
    when it starts), gets another, so parallel or retried workers never replay one random
    sequence: with one seed, two workers proposed the same random trials in pairs.

    Example:
        >>> worker_seed(7, 0, 0), worker_seed(7, 1, 0) != 7
        (7, True)
    """
    return (seed + 1009 * worker + 7919 * n_finished) % 2**32


def _create_study(cfg: RetuneConfig, ctx: dict[str, Any], settings: Settings, *, worker: int = 0) -> Any:
    """The retune's study (created once, loaded after) with this worker's sampler."""
    import optuna
    from optuna.trial import TrialState

    from retune.config import PrunerConfig
    from retune.storage import open_storage
    from retune.tuning import fit_sampler_to_seeds, make_pruner, make_sampler

    pruner_cfg = cfg.tuning.pruner if ctx["pruner"] == cfg.tuning.pruner.type else PrunerConfig(type=ctx["pruner"])
    multi = cfg.tuning.multi_objective
    study = optuna.create_study(
        storage=open_storage(settings, cfg.tuning, n_workers=int(ctx.get("n_workers", 1))),
        study_name=ctx["study_name"],
        directions=[cfg.direction] + ["minimize"] * (len(cfg.tuning.objectives) - 1) if multi else None,  # type: ignore[operator]
        direction=None if multi else cfg.direction,
        sampler=make_sampler(cfg.tuning, n_seeds=0),
        pruner=optuna.pruners.NopPruner() if multi else make_pruner(pruner_cfg, n_steps=cfg.tuning.n_steps),
        load_if_exists=True,
    )
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    seed = worker_seed(cfg.tuning.seed, worker, len(finished))
    transfer = None
    if cfg.tuning.transfer == "cmaes" and not multi and ctx.get("transfer_from"):
        transfer = _cmaes_transfer_sampler(cfg, ctx, settings, seed=seed)
    if transfer is not None:
        study.sampler = transfer
    else:  # TPE's random start depends on the seeds already enqueued (warm_start ran)
        fit_sampler_to_seeds(study, cfg.tuning, mode=ctx.get("mode"), seed=seed)
    return study


def _cmaes_transfer_sampler(cfg: RetuneConfig, ctx: dict[str, Any], settings: Settings, *, seed: int) -> Any:
    """A CMA-ES sampler warm-started from the previous study's trials (``source_trials``), when
    the search space is numeric and the same as the previous study's, and that study had one
    objective with this config's direction (CMA-ES reads the source trials' values in the new
    study's direction: a maximized study's best would be its worst); else ``None``."""
    import optuna
    from optuna.trial import TrialState

    from retune.config import CategoricalParam, parse_space
    from retune.storage import find_study

    space = parse_space(ctx["space"]) if "space" in ctx else cfg.model.search_space
    if any(isinstance(s, CategoricalParam) for s in space.values()):
        log.info("transfer: CMA-ES needs a numeric space; enqueueing only")
        return None
    previous = find_study(settings, cfg.tuning, ctx["transfer_from"])
    if previous is None:
        return None
    if [d.name.lower() for d in previous.directions] != [cfg.direction]:
        log.info("transfer: %s had other objectives or directions; enqueueing only", ctx["transfer_from"])
        return None
    wanted = tuning_distributions(space)
    source = [t for t in previous.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.distributions == wanted]
    if len(source) < 10:  # CMA-ES keeps the best 10% of the source trials: it needs at least 10
        log.info(
            "transfer: %d usable trials in %s (space changed or too few); enqueueing only", len(source), ctx["transfer_from"]
        )
        return None
    log.info("transfer: CMA-ES from %d trials of %s", len(source), ctx["transfer_from"])
    return optuna.samplers.CmaEsSampler(source_trials=source, seed=seed, warn_independent_sampling=False)


def tuning_distributions(space: dict[str, Any]) -> dict[str, Any]:
    """The Optuna distributions of a search space."""
    from retune.tuning import distributions

    return distributions(space)


def warm_start(ctx: dict[str, Any], *, settings: Settings | None = None) -> dict[str, Any]:
    """Create the study and enqueue the champion's params and the previous study's top-k.

    The first retune of a model has neither: it starts cold.

    Returns:
        ``{"study_name", "previous_study", "seeds": [{"source", "params"}], "mode"}``.
    """
    from retune import registry, tracking
    from retune.warmstart import enqueue_seeds, previous_study_top_k

    settings = settings or get_settings()
    cfg = load_named_config(ctx["config"], settings)
    cl = tracking.client(settings)
    study = _create_study(cfg, ctx, settings)
    from retune.config import parse_space

    space = parse_space(ctx["space"]) if "space" in ctx else cfg.model.search_space
    seeds: list[tuple[str, dict[str, Any]]] = []
    champ = registry.champion_params(cl, cfg.registry.model_name)
    if champ:
        seeds.append(("champion", champ))
    from retune.storage import lookup_storages

    previous, top = previous_study_top_k(
        lookup_storages(settings, cfg.tuning),
        cfg.registry.model_name,
        exclude=ctx["study_name"],
        k=cfg.tuning.warm_start_top_k,
    )
    seeds.extend(("previous_study", p) for p in top)
    similar: list[dict[str, Any]] = []
    if not seeds and ctx.get("meta_features"):
        # No history of its own: seed from the most similar past tasks (meta-learning).
        from retune.metalearn import nearest_tasks, seeds_from

        similar = nearest_tasks(
            settings,
            features=ctx["meta_features"],
            family=cfg.model.family,
            task=cfg.task,
            exclude_config=cfg.name,
            k=max(1, cfg.tuning.warm_start_top_k),
        )
        seeds.extend(seeds_from(similar))
        if similar:
            log.info("no history: seeding from similar tasks %s", [(s["config"], round(s["distance"], 3)) for s in similar])
    if not ctx.get("warm", True) and not similar:
        log.info("mode %s starts cold: %d seed(s) not used", ctx.get("mode"), len(seeds))
        seeds = []
    enqueued = enqueue_seeds(study, seeds, space)
    mode = "warm" if enqueued else "cold"
    cl.set_tag(ctx["parent_run_id"], "retune.warm_start", mode)
    cl.set_tag(ctx["parent_run_id"], "retune.warm_start_sources", ",".join(e["source"] for e in enqueued) or "none")
    similar_json = [{k: s[k] for k in ("config", "distance", "id")} for s in similar]
    tracking.log_json(
        cl,
        ctx["parent_run_id"],
        {"previous_study": previous, "seeds": enqueued, "similar_tasks": similar_json},
        "warm_start/seeds.json",
    )
    if similar_json:
        cl.set_tag(ctx["parent_run_id"], "retune.similar_tasks", ",".join(s["config"] for s in similar_json))
    log.info("%s start for %s: %d seed(s), previous study %s", mode, ctx["study_name"], len(enqueued), previous)
    return {
        "study_name": ctx["study_name"],
        "previous_study": previous,
        "seeds": enqueued,
        "mode": mode,
        "similar_tasks": similar_json,
    }


def tune(ctx: dict[str, Any], *, settings: Settings | None = None) -> dict[str, Any]:
    """Run the pruned study in this process and summarize it (one worker).

    Returns:
        The :class:`~retune.tuning.StudyOutcome` as JSON.
    """
    tune_worker(ctx, 0, settings=settings)
    return summarize_study(ctx, settings=settings)


class LockKeeper:
    """Optuna callback of a trial worker: keeps the retune's policy lock while its trials
    finish (:func:`retune.policy.renew`, at most every ``every`` seconds), so a study longer
    than ``policy.lock_ttl`` is not taken for dead and retuned twice over."""

    def __init__(self, config_name: str, token: str, *, settings: Settings | None = None, every: float = 60.0) -> None:
        self.config_name, self.token, self.settings, self.every = config_name, token, settings, every
        self._last: float | None = None
        self.held = True

    def __call__(self, study: Any, trial: Any) -> None:
        from retune import policy

        now = time.monotonic()
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        try:
            held = policy.renew(self.config_name, self.token, settings=self.settings)
        except Exception:  # noqa: BLE001 (a policy database blip must not stop the trials)
            log.warning(
                "could not renew the policy lock of %s; trying again after the next trial", self.config_name, exc_info=True
            )
            self._last = None
            return
        if not held and self.held:
            log.warning(
                "the policy lock of this retune of %s expired and was taken over or given back: "
                "another retune of the model may follow this one",
                self.config_name,
            )
        self.held = held


WORKER_CTX_KEYS = (
    "config",
    "window",
    "features",
    "data_digest",
    "experiment_id",
    "parent_run_id",
    "study_name",
    "pruner",
    "n_trials",
    "timeout",
)
"""The keys of :func:`prepare`'s context that :func:`tune_worker` needs."""


def tune_worker(ctx: dict[str, Any], worker: int, *, settings: Settings | None = None) -> dict[str, Any]:
    """One trial worker on the retune's shared study; run several at once to spread trials.

    Every trial is a child run of the retune's parent run. The workers share the trial
    budget; each one stops when the study has reached it.

    Args:
        ctx: The retune context from :func:`prepare`.
        worker: This worker's index (recorded on its trials).
        settings: State locations.

    Returns:
        ``{"worker", "trials", "seconds"}``: what this worker ran.

    Raises:
        RetuneError: The embedded default's MLflow database does not exist (a wrong
            ``RETUNE_STATE_DIR``), or the data changed since :func:`prepare`.
    """
    from retune import tracking
    from retune.tuning import Objective, run_study

    settings = settings or get_settings()
    cfg = load_named_config(ctx["config"], settings)
    tracking.require_store(settings)  # prepare wrote the parent run there: a missing file is the wrong state
    cl = tracking.client(settings)
    df, features = _load_checked(cfg, ctx, settings)
    split = split_for_retune(df, cfg, features)
    study = _create_study(cfg, ctx, settings, worker=worker)
    from retune.config import parse_space

    objective = Objective(
        cfg,
        split,
        features,
        cl=cl,
        experiment_id=ctx["experiment_id"],
        parent_run_id=ctx["parent_run_id"],
        worker=worker,
        space=parse_space(ctx["space"]) if "space" in ctx else None,
    )
    keeper = [LockKeeper(cfg.name, ctx["policy_token"], settings=settings)] if ctx.get("policy_token") else []
    outcome = run_study(study, objective, n_trials=int(ctx["n_trials"]), timeout=ctx["timeout"], callbacks=keeper)
    mine = sum(t.user_attrs.get("worker") == worker for t in study.get_trials(deepcopy=False))
    log.info("worker %d of %s ran %d trial(s) in %.1f s", worker, ctx["study_name"], mine, outcome.elapsed_s)
    return {"worker": worker, "trials": mine, "seconds": outcome.elapsed_s}


def summarize_study(ctx: dict[str, Any], *, settings: Settings | None = None) -> dict[str, Any]:
    """Summarize the retune's study after its workers finished; log it to the parent run.

    Returns:
        The :class:`~retune.tuning.StudyOutcome` as JSON.

    Raises:
        RetuneError: If no trial completed.
    """
    from mlflow.entities import Metric as MlMetric

    from retune import tracking
    from retune.tuning import fail_abandoned, outcome_of, stop_reason_of

    settings = settings or get_settings()
    cfg = load_named_config(ctx["config"], settings)
    cl = tracking.client(settings)
    study = _create_study(cfg, ctx, settings)
    fail_abandoned(study, cl)  # every worker ended: a RUNNING trial lost its worker
    started = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    ended = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    elapsed = (max(ended) - min(started)).total_seconds() if started and ended else 0.0
    outcome = outcome_of(
        study,
        elapsed_s=elapsed,
        stop_reason=stop_reason_of(study, int(ctx["n_trials"])),
        objectives=cfg.tuning.objectives,
        max_latency_ms_per_1k=cfg.tuning.max_latency_ms_per_1k,
        max_size_kb=cfg.tuning.max_size_kb,
    )
    if outcome.best_value is None and outcome.pareto_front:
        raise RetuneError(f"study {outcome.study_name}: {outcome.selection}; nothing to validate")
    if outcome.best_value is None:
        raise RetuneError(
            f"study {outcome.study_name}: no trial completed ({outcome.n_pruned} pruned, {outcome.n_failed} failed)"
        )
    now_ms = int(_now().timestamp() * 1000)
    cl.log_batch(
        ctx["parent_run_id"],
        metrics=[
            MlMetric(f"best_valid_{cfg.metric.name}", outcome.best_value, now_ms, 0),
            MlMetric("trials_complete", float(outcome.n_complete), now_ms, 0),
            MlMetric("trials_pruned", float(outcome.n_pruned), now_ms, 0),
            MlMetric("trials_failed", float(outcome.n_failed), now_ms, 0),
            MlMetric("study_seconds", outcome.elapsed_s, now_ms, 0),
        ],
    )
    tracking.log_json(cl, ctx["parent_run_id"], outcome.to_json(), "study/outcome.json")
    cl.set_tag(ctx["parent_run_id"], "retune.stop_reason", outcome.stop_reason)
    if ctx.get("meta_features") and outcome.best_value is not None and not _already_recorded(cl, ctx):
        from retune.metalearn import record_task, search_space_hash

        record_task(
            settings,
            config=cfg.name,
            family=cfg.model.family,
            task=cfg.task,
            metric=cfg.metric.name,
            direction=cfg.direction,
            features=ctx["meta_features"],
            best_params=outcome.best_params,
            best_value=outcome.best_value,
            search_space_hash=search_space_hash(cfg.model.search_space),
        )
        cl.set_tag(ctx["parent_run_id"], "retune.meta_recorded", "true")
    _log_study_plots(cl, ctx["parent_run_id"], study, objectives=cfg.tuning.objectives, metric=cfg.metric.name)
    log.info(
        "study %s done (%s): %d complete, %d pruned, %d failed; best %s=%.6g (trial %s%s)",
        outcome.study_name,
        outcome.stop_reason,
        outcome.n_complete,
        outcome.n_pruned,
        outcome.n_failed,
        cfg.metric.name,
        outcome.best_value,
        outcome.best_trial,
        f", warm start from {outcome.best_is_warm_start}" if outcome.best_is_warm_start else "",
    )
    return outcome.to_json()


def _already_recorded(cl: MlflowClient, ctx: dict[str, Any]) -> bool:
    """A retried summary must not record the same retune twice for meta-learning."""
    return cl.get_run(ctx["parent_run_id"]).data.tags.get("retune.meta_recorded") == "true"


def _log_study_plots(cl: MlflowClient, run_id: str, study: Any, *, objectives: list[str], metric: str) -> None:
    """Optimization history, intermediate values, parameter importances and parallel
    coordinates (of the metric), and the Pareto front of a multi-objective study: HTML and PNG."""
    import warnings

    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    matplotlib.use("Agg")
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    multi = len(objectives) > 1
    names = [metric if o == "metric" else o for o in objectives]
    kwargs: dict[str, Any] = {"target": (lambda t: t.values[0]), "target_name": metric} if multi else {}
    plots: list[tuple[str, Any, Any, dict[str, Any]]] = [
        ("optimization_history", vis.plot_optimization_history, vis_mpl.plot_optimization_history, kwargs),
        ("param_importances", vis.plot_param_importances, vis_mpl.plot_param_importances, kwargs),
        ("parallel_coordinate", vis.plot_parallel_coordinate, vis_mpl.plot_parallel_coordinate, kwargs),
    ]
    if multi:
        plots.append(("pareto_front", vis.plot_pareto_front, vis_mpl.plot_pareto_front, {"target_names": names}))
    else:
        plots.append(("intermediate_values", vis.plot_intermediate_values, vis_mpl.plot_intermediate_values, {}))
    for name, plotly_fn, mpl_fn, kw in plots:
        try:
            cl.log_figure(run_id, plotly_fn(study, **kw), f"plots/{name}.html")
            ax = mpl_fn(study, **kw)
            fig = ax.figure if hasattr(ax, "figure") else ax
            cl.log_figure(run_id, fig, f"plots/{name}.png")
            plt.close("all")
        except (ValueError, RuntimeError, ImportError, TypeError) as exc:  # plots are a courtesy, never a failure
            log.warning("could not plot %s: %s", name, exc)


def _log_feature_importances(
    cl: MlflowClient, run_id: str, model: Any, metric: Any, X: pd.DataFrame, y: pd.Series, *, seed: int
) -> None:
    """Permutation importances of the challenger on (a sample of) the holdout: JSON and a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.inspection import permutation_importance

    from retune import tracking

    sample = X.iloc[:2000]
    ys = y.iloc[:2000]

    def scorer(est: Any, Xs: Any, yv: Any) -> float:
        value = metric.score(est, Xs, yv)
        return value if metric.greater_is_better else -value

    try:
        result = permutation_importance(model, sample, ys, scoring=scorer, n_repeats=3, random_state=seed, n_jobs=1)
    except (ValueError, TypeError) as exc:  # a courtesy, never a failure
        log.warning("could not compute feature importances: %s", exc)
        return
    order = sorted(range(len(sample.columns)), key=lambda i: -result.importances_mean[i])
    table = {str(sample.columns[i]): float(result.importances_mean[i]) for i in order}
    tracking.log_json(cl, run_id, table, "model/feature_importances.json")
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1))
    ax.barh([str(sample.columns[i]) for i in reversed(order)], [result.importances_mean[i] for i in reversed(order)])
    ax.set_xlabel(f"drop in {metric.name} when shuffled (holdout)")
    ax.set_title("Challenger feature importances (permutation)")
    fig.tight_layout()
    tracking.log_figure(cl, run_id, fig, "plots/feature_importances.png")
    plt.close(fig)


def _metric_value(metric: Any, y: pd.Series, scores: Any, labels: Any, *, who: str, where: str) -> float:
    """``metric`` of ``who``'s holdout predictions.

    Raises:
        DataError: The metric cannot be computed on these rows (say a class set it cannot
            score): a data problem, never a reason to replace the champion uncompared.
    """
    try:
        return float(metric.value(y, scores, labels=labels))
    except ValueError as exc:
        classes = sorted(y.unique().tolist(), key=str)
        raise DataError(f"{where}: the {metric.name} of {who} cannot be computed (holdout classes {classes}): {exc}") from None


def _champion_inputs(model: Any, holdout: pd.DataFrame, challenger_inputs: pd.DataFrame) -> pd.DataFrame:
    """The holdout's columns the champion was fitted on (``feature_names_in_``), in its order.

    Args:
        model: The champion's fitted estimator.
        holdout: The holdout rows with every column the window has.
        challenger_inputs: The challenger's feature columns of the same rows (used when the
            champion records no input names, or the data lacks some of them: its predict
            then fails naming them, and it counts as unable to score the data).
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None or any(str(n) not in holdout.columns for n in names):
        return challenger_inputs
    return holdout[[str(n) for n in names]]


def validate(ctx: dict[str, Any], outcome: dict[str, Any], *, settings: Settings | None = None) -> dict[str, Any]:
    """Refit the winner, score challenger and champion on the same holdout, run the staging
    check in a fresh process and apply the gates.

    Both models predict every holdout row; a paired bootstrap of those per-row predictions
    (``validation.confidence``, ``validation.bootstrap_resamples``, seed ``tuning.seed``)
    decides the ``significant_improvement`` gate. The ``training_window`` gate refuses a
    challenger whose window ends before the champion's (``retune.train_end``). Only scores
    travel on; no rows leave here.

    Returns:
        ``{"model_uri", "challenger", "champion", "champion_version", "champion_error",
        "bootstrap", "gates", "passed", "params"}``.
    """
    import mlflow
    import numpy as np
    from mlflow.entities import Metric as MlMetric

    from retune import registry, tracking
    from retune.metrics import class_labels
    from retune.models import get_family
    from retune.validation import (
        LATENCY,
        BootstrapResult,
        apply_gates,
        gates_json,
        latency_ms_per_1k,
        paired_bootstrap,
        predict_scores,
        staging_check,
        training_window_gate,
    )

    settings = settings or get_settings()
    cfg = load_named_config(ctx["config"], settings)
    cl = tracking.client(settings)
    metric = get_metric(cfg.metric.name, cfg.task)
    df, features = _load_checked(cfg, ctx, settings)
    split = split_for_retune(df, cfg, features)
    tuning_df = split.tuning
    params = dict(outcome["best_params"])
    family = get_family(cfg.model.family)
    from threadpoolctl import threadpool_limits

    pipe = family.build(
        cfg.task,
        {**cfg.model.fixed_params, **params},
        numerical=features.numerical,
        categorical=features.categorical,
        seed=cfg.tuning.seed,
        threads=cfg.tuning.threads_per_trial,
    )
    X_hold, y_hold = split.holdout[features.columns], split.holdout[cfg.target]
    where = f"{Window.from_json(ctx['window']).label()}: holdout"
    with threadpool_limits(limits=cfg.tuning.threads_per_trial):
        pipe.fit(tuning_df[features.columns], tuning_df[cfg.target])
    champion_version = registry.get_alias(cl, cfg.registry.model_name, registry.CHAMPION)
    champion: dict[str, float] | None = None
    champion_error = None
    bootstrap: BootstrapResult | None = None
    champ_model: Any = None
    if champion_version is not None:
        try:
            # by version, not alias: the scores must be those of the version recorded below.
            # A registry that cannot be read raises RegistryUnavailableError here and the task
            # retries: only a champion that loads and fails, or does not unpickle, is broken.
            champ_model = registry.load_sklearn(cl, cfg.registry.model_name, champion_version.version)
        except RegistryUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - a champion that cannot score new data is reported, not fatal
            champion_error = f"champion v{champion_version.version} could not score the holdout: {exc}"
    # Both models score probabilities on the same classes (theirs and the holdout's): a class
    # one of them never saw, or the holdout lacks, must not make the comparison impossible.
    try:
        labels = class_labels(y_hold, pipe, champ_model) if metric.needs_proba else None
    except TypeError as exc:
        raise DataError(
            f"{where}: the classes of target column {cfg.target!r} and of the champion cannot be compared ({exc})"
        ) from None
    with threadpool_limits(limits=cfg.tuning.threads_per_trial):
        challenger_scores = predict_scores(metric, pipe, X_hold, labels=labels)
        challenger = {
            metric.name: _metric_value(metric, y_hold, challenger_scores, labels, who="the challenger", where=where),
            LATENCY: latency_ms_per_1k(pipe, X_hold),
        }
    if champ_model is not None and champion_version is not None:
        try:
            # the champion gets the columns it was fitted on, not the challenger's: a feature
            # the config no longer lists is still in the data, and withholding it made the
            # champion "unable to score" and so replaced without any comparison
            X_champ = _champion_inputs(champ_model, split.holdout, X_hold)
            champion_scores = predict_scores(metric, champ_model, X_champ, labels=labels)
            champion_latency = latency_ms_per_1k(champ_model, X_champ)
            if champion_scores.dtype.kind in "fc" and not np.all(np.isfinite(champion_scores)):
                raise ValueError("it predicted NaN or infinite values")
        except Exception as exc:  # noqa: BLE001 - a champion that cannot predict new data is reported, not fatal
            champion_error = f"champion v{champion_version.version} could not score the holdout: {exc}"
        else:
            # its predictions are fine: a metric that cannot score them is a data problem
            who = f"champion v{champion_version.version}"
            champion = {metric.name: _metric_value(metric, y_hold, champion_scores, labels, who=who, where=where)}
            champion[LATENCY] = champion_latency
            bootstrap = paired_bootstrap(
                metric,
                y_hold.to_numpy(),
                champion_scores,
                challenger_scores,
                confidence=cfg.validation.confidence,
                resamples=cfg.validation.bootstrap_resamples,
                seed=cfg.tuning.seed,
                labels=labels,
            )
    if champion_error:
        log.warning(champion_error)
    sample = X_hold.iloc[: cfg.validation.staging_sample_rows]
    with tracking.active_run(ctx["parent_run_id"]):
        info = mlflow.sklearn.log_model(
            pipe,
            name="model",
            input_example=sample.head(5),
            serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={tracking.library_versions().get('scikit-learn', '')}"],
        )
    model_uri = info.model_uri
    staging = staging_check(model_uri, sample, tracking_uri=settings.tracking_uri)
    expected = pipe.predict(sample)
    got = staging.get("predictions")
    if got is None:
        match = False
    elif cfg.task == "regression":
        match = bool(np.allclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol=1e-6, atol=1e-9))
    else:
        match = [str(v) for v in got] == [str(v) for v in expected]
    gates = apply_gates(
        cfg,
        metric,
        challenger=challenger,
        champion=champion,
        staging=staging,
        predictions_match=match,
        bootstrap=bootstrap,
        champion_error=champion_error,
    )
    gates.append(
        training_window_gate(
            Window.from_json(ctx["window"]).end,
            champion_version.version if champion_version else None,
            (champion_version.tags or {}).get(TRAIN_END_TAG) if champion_version else None,
        )
    )
    passed = all(g.passed for g in gates)
    now_ms = int(_now().timestamp() * 1000)
    ml_metrics = [MlMetric(f"challenger_{k}", v, now_ms, 0) for k, v in challenger.items()]
    if champion:
        ml_metrics += [MlMetric(f"champion_{k}", v, now_ms, 0) for k, v in champion.items()]
    if bootstrap is not None:
        ml_metrics += [
            MlMetric(f"bootstrap_{k}", float(getattr(bootstrap, k)), now_ms, 0)
            for k in ("improvement", "lower_bound", "share_not_better")
            if np.isfinite(getattr(bootstrap, k))
        ]
    if staging.get("latency_ms_per_1k") is not None:
        ml_metrics.append(MlMetric("staging_latency_ms_per_1k", float(staging["latency_ms_per_1k"]), now_ms, 0))
    cl.log_batch(ctx["parent_run_id"], metrics=ml_metrics)
    result = {
        "model_uri": model_uri,
        "params": params,
        "challenger": challenger,
        "champion": champion,
        "champion_version": champion_version.version if champion_version else None,
        "champion_error": champion_error,
        "bootstrap": bootstrap.to_json() if bootstrap is not None else None,
        "gates": gates_json(gates),
        "passed": passed,
    }
    tracking.log_json(cl, ctx["parent_run_id"], result, "validation/gates.json")
    _log_feature_importances(cl, ctx["parent_run_id"], pipe, metric, X_hold, y_hold, seed=cfg.tuning.seed)
    for g in gates:
        log.info("gate %-16s %s  %s", g.name, "PASS" if g.passed else "FAIL", g.detail)
    return result


def register(
    ctx: dict[str, Any], validation: dict[str, Any], outcome: dict[str, Any], *, settings: Settings | None = None
) -> dict[str, Any]:
    """Register the challenger (once per retune) and promote it if every gate passed.

    A rerun (retried or cleared task) whose version this retune already promoted reports that
    promotion again (``promoted`` true, ``champion_before`` the champion it replaced).

    Returns:
        ``{"model_name", "version", "promoted", "champion_before", "champion_after", "reason", "created"}``.
    """
    from retune import registry, tracking

    settings = settings or get_settings()
    cfg = load_named_config(ctx["config"], settings)
    cl = tracking.client(settings)
    name = cfg.registry.model_name
    before = registry.get_alias(cl, name, registry.CHAMPION)
    failed = [g for g in validation["gates"] if not g["passed"]]
    reason = "all gates passed" if not failed else "; ".join(f"{g['name']}: {g['detail']}" for g in failed)
    window = Window.from_json(ctx["window"])
    tags = {
        "retune.trigger": ctx["trigger"],
        "retune.drift_share": "" if ctx.get("drift_share") is None else f"{ctx['drift_share']:.4f}",
        "retune.study": ctx["study_name"],
        "retune.parent_run_id": ctx["parent_run_id"],
        "retune.data_digest": ctx["data_digest"],
        "retune.config": cfg.name,
        "retune.metric": cfg.metric.name,
        f"retune.holdout_{cfg.metric.name}": f"{validation['challenger'][cfg.metric.name]:.6g}",
        "retune.params": json.dumps(validation["params"], sort_keys=True),
        "retune.gates": "passed" if not failed else "failed",
        "retune.gate_reason": reason[:4000],
        "retune.window_kind": window.kind,
        TRAIN_START_TAG: window.start.isoformat() if window.start else "",
        TRAIN_END_TAG: window.end.isoformat() if window.end else "",
        **{f"airflow.{k}": str(v) for k, v in ctx.get("lineage", {}).items()},
    }
    for bound in (TRAIN_START_TAG, TRAIN_END_TAG):  # an open bound has no tag
        if not tags[bound]:
            tags.pop(bound)
    version, created = registry.register(cl, name, validation["model_uri"], key=ctx["key"], tags=tags)
    promoted = False
    champion_before = before.version if before else None
    is_champion = before is not None and str(before.version) == str(version.version)
    # whatever the gates said: a cleared rerun validates the version against itself (it is the
    # champion now), the significance gate fails on identical scores, and the promotion this
    # retune made must still be reported as made, not as "stays challenger"
    made = registry.promotion_by(cl, name, version.version, ctx["key"]) if is_champion else None
    if made is not None:
        # a retry or rerun of a register that promoted: report that promotion (not "champion
        # kept"), and record its alias moves if the first attempt failed before it could
        if failed:
            log.info(
                "%s version %s: promoted by this retune (%s) before; its rerun compared it with itself",
                name,
                version.version,
                ctx["key"],
            )
        registry.promote(cl, name, version.version, key=ctx["key"])
        promoted = True
        # as the store gives versions (int from SQL stores, str over REST), like champion_after
        champion_before = None if made["from"] is None else type(version.version)(made["from"])
    elif not failed and not is_champion:
        # Also on a retry that found the version already registered: a crash between
        # registering and promoting must not leave a model that passed every gate unpromoted.
        # Only over the champion the gates compared against: a rollback meanwhile wins.
        try:
            registry.promote(
                cl,
                name,
                version.version,
                who=_mover(ctx),
                why=_promotion_reason(ctx, validation),
                key=ctx["key"],
                expected_champion=validation["champion_version"],
            )
            promoted = True
        except ChampionChangedError as exc:
            reason = f"champion changed during the retune: {exc}; a new retune compares against it"
            cl.set_model_version_tag(name, version.version, "retune.gate_reason", reason[:4000])
            log.warning("%s version %s stays challenger: %s", name, version.version, reason)
    elif failed:
        log.warning("%s version %s stays challenger: %s", name, version.version, reason)
    after = registry.get_alias(cl, name, registry.CHAMPION)
    result = {
        "model_name": name,
        "version": version.version,
        "created": created,
        "promoted": promoted,
        "champion_before": champion_before,
        "champion_after": after.version if after else None,
        "reason": reason,
    }
    cl.set_tag(ctx["parent_run_id"], "retune.registered_version", str(version.version))
    cl.set_tag(ctx["parent_run_id"], "retune.promoted", str(promoted).lower())
    tracking.log_text(cl, ctx["parent_run_id"], render_summary(ctx, outcome, validation, result), "summary.md")
    cl.set_terminated(ctx["parent_run_id"], "FINISHED")
    log.info(
        "%s: version %s %s; champion %s -> %s (%s)",
        name,
        version.version,
        "PROMOTED" if promoted else "not promoted",
        result["champion_before"],
        result["champion_after"],
        reason,
    )
    return result


def _mover(ctx: dict[str, Any]) -> str:
    """Who a retune's alias moves are recorded as: ``airflow:<dag_id>/<run_id>`` or ``python:<os user>``."""
    from retune.registry import default_who

    lineage = ctx.get("lineage") or {}
    if lineage.get("dag_id") and lineage.get("run_id"):
        return f"airflow:{lineage['dag_id']}/{lineage['run_id']}"
    return default_who("python")


def _promotion_reason(ctx: dict[str, Any], validation: dict[str, Any]) -> str:
    """Why a retune promoted its challenger, for the alias history."""
    why = f"retune {ctx['key']} ({ctx.get('trigger', 'manual')}): all gates passed"
    boot = validation.get("bootstrap")
    if boot:
        why += (
            f"; {boot['metric']} improvement {boot['improvement']:.4g}, {boot['confidence']:.0%} lower bound "
            f"{boot['lower_bound']:.4g}, not better in {boot['share_not_better']:.1%} of resamples"
        )
    elif not validation.get("champion"):
        why += "; no champion yet" if not validation.get("champion_error") else "; the champion could not score the holdout"
    return why


def render_summary(ctx: dict[str, Any], outcome: dict[str, Any], validation: dict[str, Any], result: dict[str, Any]) -> str:
    """A short Markdown account of a retune, logged as ``summary.md`` on the parent run."""
    lines = [
        f"# Retune of `{ctx['config']}` ({ctx['trigger']})",
        "",
        f"- window: {Window.from_json(ctx['window']).label()}, rows {ctx['rows']}",
        f"- drift share: {ctx.get('drift_share')}; mode **{ctx.get('mode', 'moderate')}**: {ctx.get('mode_reason', '')}",
        f"- budget: {ctx.get('n_trials')} trials, {ctx.get('n_workers', 1)} worker(s), pruner {ctx.get('pruner')}",
        f"- study `{outcome['study_name']}`: {outcome['n_complete']} complete, {outcome['n_pruned']} pruned, "
        f"{outcome['n_failed']} failed ({outcome['stop_reason']})",
        f"- warm-start seeds: {len(outcome.get('seeds', []))}; best trial {outcome['best_trial']} "
        f"(seed: {outcome.get('best_is_warm_start') or 'no'})",
        f"- best params: `{json.dumps(outcome['best_params'], sort_keys=True)}`",
        "",
        "| model | " + " | ".join(validation["challenger"]) + " |",
        "|---|" + "---|" * len(validation["challenger"]),
        "| challenger | " + " | ".join(f"{v:.6g}" for v in validation["challenger"].values()) + " |",
    ]
    if validation.get("champion"):
        lines.append("| champion | " + " | ".join(f"{v:.6g}" for v in validation["champion"].values()) + " |")
    lines += ["", "| gate | verdict | detail |", "|---|---|---|"]
    lines += [f"| {g['name']} | {'pass' if g['passed'] else 'FAIL'} | {g['detail']} |" for g in validation["gates"]]
    lines += [
        "",
        f"Registered `{result['model_name']}` version {result['version']}; "
        f"champion {result['champion_before']} -> {result['champion_after']} ({result['reason']}).",
    ]
    return "\n".join(lines) + "\n"

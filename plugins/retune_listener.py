"""Gives trigger-policy locks back when a run ends without giving them back itself.

``retune_model`` releases the model's lock in its ``release_lock`` task (trigger rule
``all_done``), however the retune ended. A run that a person marks *failed* or *success*
(Airflow UI or ``PATCH /api/v2/dags/retune_model/dagRuns/<run>``) never runs that task:
Airflow skips every task that had not finished. Without this listener the model would then be locked until
``policy.lock_ttl`` (6 hours by default) and every retune request meanwhile skipped.

Airflow calls :func:`on_dag_run_failed` when a DAG run fails: in the api-server when a person
marks it failed, in the scheduler when its tasks failed or it timed out; and
:func:`on_dag_run_success` when a run succeeds or is marked success. For a
``retune_model`` run whose ``release_lock`` did not succeed, the listener reads the lock's
token and config from the run's XCom (``retune.drift_gate``, keys ``policy_token`` and
``policy_config``; before that task finished, from the run conf of a run the monitor or an
alert started), releases the lock (``retune.policy.release``, outcome ``failed: ...``) and
closes the retune's MLflow parent run as FAILED in a background thread, so an unreachable
MLflow server never holds up the api-server or the scheduler. A run whose drift gate never
finished admitted no retune: the decision in its conf is cancelled instead
(``retune.policy.cancel``), so the same request again (an alert's resend) triggers. Errors are logged, never raised: the lock
then still expires after ``policy.lock_ttl``.

A ``monitor_drift`` run takes the locks in ``retunes_to_trigger`` and starts the retunes in
``trigger_retune``. When it fails (``trigger_retune`` out of retries, or a person marks it
failed) or is marked success by hand before every retune started, each decision whose
``retune_model`` run does not exist (no run's conf carries its token) is cancelled
(``retune.policy.cancel``): the lock goes back and the next monitor run decides afresh.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from retune_links import LOAD_DATA_TASK, MONITOR_DAG, RETUNE_DAG, decoded, retune_run_carries, return_value, xcom_value

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)

GATE_TASK = "retune.drift_gate"
RELEASE_TASK = "retune.release_lock"
PLAN_TASK = "retunes_to_trigger"  # monitor_drift's task that decides, returning the retunes' confs


def _task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )
    return None if state is None else str(state)


def abandoned_lock(dag_id: str, run_id: str, conf: dict[str, Any] | None) -> tuple[str, str, str | None, bool] | None:
    """The lock a failed ``retune_model`` run still holds: ``(config, token, parent_run_id,
    gated)``, or ``None`` when it holds none or its ``release_lock`` task released it.
    ``gated`` is False when the drift gate never finished (the token is the run conf's)."""
    if dag_id != RETUNE_DAG or _task_state(dag_id, run_id, RELEASE_TASK) == "success":
        return None
    conf = conf or {}
    gate_config = decoded(xcom_value(dag_id, run_id, GATE_TASK, key="policy_config"))
    token = decoded(xcom_value(dag_id, run_id, GATE_TASK, key="policy_token")) or conf.get("policy_token")
    config = gate_config or conf.get("config")
    if not (isinstance(token, str) and token and isinstance(config, str) and config):
        return None
    parent = return_value(dag_id, run_id, LOAD_DATA_TASK).get("parent_run_id")
    return config, token, parent if isinstance(parent, str) and parent else None, gate_config is not None


def release_abandoned_lock(
    dag_id: str, run_id: str, conf: dict[str, Any] | None, msg: str, *, state: str = "failed"
) -> str | None:
    """Release the lock of a run that ended (``state``: ``failed`` or ``success``) without
    releasing it; close its MLflow parent run in a background thread. A run whose drift gate
    never finished admitted no retune: the decision in its conf is cancelled instead, as
    ``release_lock`` does (``retune.pipeline.finish``), so the same request again triggers.

    Returns:
        The config whose lock was released, or ``None``.
    """
    found = abandoned_lock(dag_id, run_id, conf)
    if found is None:
        return None
    config, token, parent, gated = found
    from retune.pipeline import close_failed_run
    from retune.policy import cancel, release

    if gated:
        held = release(config, token, outcome=f"{state}: run {run_id} ended without release_lock ({msg})"[:256])
    else:
        held = cancel(config, token, reason=f"run {run_id} ended {state} before its drift gate admitted the retune ({msg})"[:200])
    log.warning(
        "retune_model run %s ended %s without release_lock (%s): lock of %s %s",
        run_id,
        state,
        msg,
        config,
        "released" if held else "was already free",
    )
    if parent:
        threading.Thread(target=close_failed_run, args=(parent,), name=f"retune-close-{parent}", daemon=True).start()
    return config


def untriggered_retunes(run_id: str) -> list[tuple[str, str]]:
    """The decisions a ``monitor_drift`` run took whose ``retune_model`` run was never
    created: ``[(config, token)]``."""
    confs = decoded(xcom_value(MONITOR_DAG, run_id, PLAN_TASK))
    found: list[tuple[str, str]] = []
    for conf in confs if isinstance(confs, list) else []:
        if not isinstance(conf, dict):
            continue
        config, token = conf.get("config"), conf.get("policy_token")
        if isinstance(config, str) and config and isinstance(token, str) and token and not retune_run_carries(token):
            found.append((config, token))
    return found


def cancel_untriggered_retunes(run_id: str, msg: str, *, state: str = "failed") -> list[str]:
    """Cancel the decisions of a ``monitor_drift`` run that ended (``state``) before it
    started their retunes.

    Returns:
        The configs whose decision was cancelled.
    """
    from retune.policy import cancel

    cancelled = []
    for config, token in untriggered_retunes(run_id):
        held = cancel(
            config, token, reason=f"monitor_drift run {run_id} ended {state} before triggering its retune ({msg})"[:200]
        )
        log.warning(
            "monitor_drift run %s ended %s (%s) before triggering the retune of %s: decision cancelled, lock %s",
            run_id,
            state,
            msg,
            config,
            "released" if held else "was already free",
        )
        cancelled.append(config)
    return cancelled


def _release_logged(dag_id: str, run_id: str, conf: dict[str, Any], msg: str, state: str) -> None:
    try:
        if dag_id == MONITOR_DAG:
            cancel_untriggered_retunes(run_id, msg, state=state)
        else:
            release_abandoned_lock(dag_id, run_id, conf, msg, state=state)
    except Exception:  # noqa: BLE001 - a listener must never break the api-server or the scheduler
        log.exception("could not release the trigger-policy lock(s) of %s/%s", dag_id, run_id)


def _in_background(dag_run: DagRun, msg: str, state: str) -> None:
    """Look for an abandoned lock in a thread of its own, never in the caller's.

    The scheduler calls the hooks inside its own transaction, before it commits the run's new
    state. Reading the metadata DB from a new session there waits on that very transaction
    on SQLite (``airflow standalone``): the scheduler hung, with every task of a retune done
    and the run never marked success. A thread reads once the caller has moved on.
    """
    args = (dag_run.dag_id, dag_run.run_id, dict(dag_run.conf or {}), msg, state)
    threading.Thread(target=_release_logged, args=args, name=f"retune-lock-{dag_run.run_id}", daemon=True).start()


@hookimpl
def on_dag_run_failed(dag_run: DagRun, msg: str) -> None:
    """Airflow's DAG-run listener hook: see the module docstring."""
    if dag_run.dag_id in (RETUNE_DAG, MONITOR_DAG):
        _in_background(dag_run, msg, "failed")


@hookimpl
def on_dag_run_success(dag_run: DagRun, msg: str) -> None:
    """A run marked *success* by hand: Airflow skips its unfinished tasks, ``release_lock``
    (or ``trigger_retune``) among them. A run that succeeded on its own ran them: not looked at."""
    if dag_run.dag_id in (RETUNE_DAG, MONITOR_DAG) and "manually set" in msg:
        _in_background(dag_run, msg, "success")


class RetuneListenerPlugin(AirflowPlugin):
    """Registers :func:`on_dag_run_failed` and :func:`on_dag_run_success` (for ``retune_model`` and
    ``monitor_drift`` runs) with Airflow's listener manager."""

    name = "retune_listener"
    listeners = [sys.modules[__name__]]

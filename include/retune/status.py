"""Where a monitored model stands: ``python -m retune status --config NAME``.

One view for the questions an on-call engineer asks first: which version serves (``champion``)
and what it was trained on, what the newest candidate is and why it was or was not promoted,
the last alias move, whether a retune is running (the policy lock), and the newest trigger
decisions with their reasons (why a retune did or did not start). The registry and the policy
database are read independently: if either is unreachable, the other part still shows, with
the unreachable one's error. Read-only: it creates no state folder, database or table, and
gives up on an unreachable MLflow server after one retry of 10 s at most
(:data:`QUICK_HTTP`, unless ``MLFLOW_HTTP_REQUEST_*`` are set), not MLflow's ~4 minutes.

Example:
    >>> from retune.status import model_status  # doctest: +SKIP
    >>> model_status("demo")["champion"]["version"]  # doctest: +SKIP
    '3'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from retune.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

VERSION_TAGS = (
    "retune.trigger",
    "retune.gates",
    "retune.gate_reason",
    "retune.train_start",
    "retune.train_end",
    "retune.parent_run_id",
    "airflow.run_id",
)
"""The tags of a model version that the status shows."""

QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""MLflow's HTTP settings while the status reads the registry, where the environment does
not set them (MLflow's defaults, 7 retries with backoff and 120 s, wait ~4 minutes for a
server that is down)."""


@contextmanager
def quick_http() -> Iterator[None]:
    """:data:`QUICK_HTTP` for the variables the environment does not set, for the block's length."""
    unset = {k: v for k, v in QUICK_HTTP.items() if k not in os.environ}
    os.environ.update(unset)
    try:
        yield
    finally:
        for k in unset:
            os.environ.pop(k, None)


def _version(cl: MlflowClient, name: str, alias: str, metric: str) -> dict[str, Any] | None:
    from retune import registry

    found = registry.get_alias(cl, name, alias)
    if found is None:
        return None
    tags = dict(found.tags or {})
    shown = {k.removeprefix("retune."): tags[k] for k in VERSION_TAGS if tags.get(k)}
    holdout = tags.get(f"retune.holdout_{metric}")
    if holdout:
        shown[f"holdout_{metric}"] = holdout
    return {"version": str(found.version), **shown}


def registry_status(cl: MlflowClient, name: str, metric: str) -> dict[str, Any]:
    """The aliases of a registered model, the last move of ``champion`` and, for a challenger
    that was champion and is no longer (promoted, then rolled back), the move that took
    ``champion`` from it (``challenger_left_champion``, else ``None``)."""
    from retune import registry

    out: dict[str, Any] = {
        alias: _version(cl, name, alias, metric) for alias in (registry.CHAMPION, registry.PREVIOUS, registry.CHALLENGER)
    }
    moves = [e for e in registry.alias_history(cl, name) if e.get("alias") == registry.CHAMPION]
    out["last_move"] = moves[-1] if moves else None
    challenger, champion = out[registry.CHALLENGER], out[registry.CHAMPION]
    out["challenger_left_champion"] = None
    if challenger and (not champion or champion["version"] != challenger["version"]):
        # the version's own history: the model's tag drops old entries after dozens of moves
        mine = registry.alias_history(cl, name, challenger["version"])
        out["challenger_left_champion"] = next(
            (e for e in reversed(mine) if e.get("alias") == registry.CHAMPION and e.get("from") == challenger["version"]), None
        )
    return out


def model_status(config_name: str, *, decisions: int = 5, settings: Settings | None = None) -> dict[str, Any]:
    """Everything :mod:`retune.status` shows, as a JSON-ready dict.

    Args:
        config_name: The model config.
        decisions: How many of the newest trigger decisions to include.
        settings: State locations.

    Returns:
        ``{"config", "model_name", "metric", "registry" | "registry_error", "lock" and
        "decisions" | "policy_error"}``: an ``*_error`` names a part that could not be read.

    Raises:
        RetuneError: Unknown or invalid config (``ConfigError``), or the embedded default's
            MLflow database does not exist (a wrong ``RETUNE_STATE_DIR``).
    """
    from retune import policy, tracking
    from retune.db import sqlite_file
    from retune.pipeline import load_named_config

    settings = settings or get_settings(create=False)
    cfg = load_named_config(config_name, settings)
    tracking.require_store(settings)  # opening a missing SQLite file would create it
    out: dict[str, Any] = {"config": config_name, "model_name": cfg.registry.model_name, "metric": cfg.metric.name}
    try:
        with quick_http():
            out["registry"] = registry_status(tracking.client(settings), cfg.registry.model_name, cfg.metric.name)
    except Exception as exc:  # noqa: BLE001 - an unreachable registry is reported, the rest still shown
        out["registry_error"] = _error(exc)
    policy_file = sqlite_file(settings.policy_db)
    if policy_file is not None and not policy_file.exists():  # no decision yet: nothing to read, nothing created
        out["lock"], out["decisions"] = None, []
        return out
    try:  # reads only: tables that do not exist yet are no lock and no decisions, not created
        out["lock"] = policy.current_lock(config_name, settings=settings)
        rows = policy.history(config_name, limit=decisions, settings=settings)
    except Exception as exc:  # noqa: BLE001 - an unreachable policy database is reported, the registry still shown
        out.pop("lock", None)
        out["policy_error"] = _error(exc)
        return out
    out["decisions"] = [
        {
            "id": d["id"],
            "at": d["created_at"].isoformat(timespec="seconds"),
            "source": d["source"],
            "triggered": bool(d["triggered"]),
            "covered": bool(d["covered"]),
            "reason": d["reason"],
            "outcome": d["outcome"],
        }
        for d in rows
    ]
    return out


def _error(exc: Exception) -> str:
    """An exception as one line of at most ~300 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def render(status: dict[str, Any]) -> str:
    """The status as lines for a terminal."""
    lines = [f"{status['config']}: registered model {status['model_name']} (metric {status['metric']})"]
    if "registry_error" in status:
        lines.append(f"  registry: unreachable: {status['registry_error']}")
    else:
        reg = status["registry"]
        for alias in ("champion", "previous_champion", "challenger"):
            v = reg.get(alias)
            if v is None:
                lines.append(f"  {alias:<18} -")
                continue
            extra = [f"{k} {v[k]}" for k in (f"holdout_{status['metric']}", "trigger", "gates") if v.get(k)]
            if v.get("train_start"):
                extra.append(f"trained on {v['train_start']} .. {v.get('train_end', '?')}")
            lines.append(f"  {alias:<18} v{v['version']}" + (f"  ({', '.join(extra)})" if extra else ""))
        challenger, champion, left = reg.get("challenger"), reg.get("champion"), reg.get("challenger_left_champion")
        if left:  # it was promoted: its gate reason ("all gates passed") is not why it does not serve
            how = "rolled back" if left.get("action") == "rollback" else "no longer champion"
            lines.append(
                f"  {how}: v{left['from']} was champion until {left['when']} ({left['action']} to v{left['to']} "
                f"by {left['who']}: {left['why']})"
            )
        elif challenger and challenger.get("gate_reason") and (not champion or challenger["version"] != champion["version"]):
            lines.append(f"  not promoted: {challenger['gate_reason']}")
        move = reg.get("last_move")
        if move:
            lines.append(
                f"  last move: {move['when']} {move['action']} {move['alias']} {move['from']} -> {move['to']} "
                f"by {move['who']}: {move['why']}"
            )
    if "policy_error" in status:
        lines.append(f"  policy: unreachable: {status['policy_error']}")
        return "\n".join(lines)
    lock = status["lock"]
    if lock:
        lines.append(
            f"  retune running: lock taken {lock['acquired_at']} (decision {lock['decision_id']}, {lock['source']}), "
            f"expires {lock['expires_at']}"
        )
    else:
        lines.append("  retune running: no (lock free)")
    lines.append(f"  newest decisions ({len(status['decisions'])}):")
    for d in status["decisions"]:
        verdict = "TRIGGER" if d["triggered"] else "covered" if d.get("covered") else "skip"
        outcome = f" -> {d['outcome']}" if d["outcome"] else ""
        lines.append(f"    {d['at']}  {d['source']:<9} {verdict:<7} {d['reason']}{outcome}")
    return "\n".join(lines)

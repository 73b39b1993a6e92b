"""The MLflow Model Registry: versions, lineage tags and the champion alias.

Aliases: ``challenger`` marks the newest candidate, ``champion`` the model in production,
``previous_champion`` the one before it. ``champion`` only ever moves to a version that
passed every gate, including loading and predicting in a fresh process, or, by
:func:`rollback`, back to ``previous_champion`` after that version loaded and predicted.
Registration is idempotent, keyed by the retune (``retune.key``): a rerun of a finished
retune finds its version instead of registering a second one.

Every move of ``champion`` and ``previous_champion`` is recorded (who, when, why, from and
to version) as a JSON list in the tag ``retune.alias_history`` of the registered model
(oldest first, the newest 100 entries that fit the tag) and of each version it moved from
or to, and the newest move as a line in the registered model's tag ``retune.last_alias_move``.
A retune's promotion is noted on its version (``retune.promotion``) before the aliases move,
so its retry can tell a promotion it made from one it has still to make.

Example:
    >>> from retune import registry  # doctest: +SKIP
    >>> registry.rollback(cl, "demo-demand", who="cli:ana", why="v7 over-forecasts")  # doctest: +SKIP
    {'model_name': 'demo-demand', 'champion_before': '7', 'champion_after': '6', ...}
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retune.errors import ChampionChangedError, NothingToRollBackError, RegistryError, RegistryUnavailableError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from retune.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
KEY_TAG = "retune.key"
PARAMS_TAG = "retune.params"
HISTORY_TAG = "retune.alias_history"
LAST_MOVE_TAG = "retune.last_alias_move"
ROLLBACK_TAG = "retune.rollback"
PROMOTION_TAG = "retune.promotion"
"""Version tag: the promotion a retune key began (key, from, previous, who, why, when), set before the aliases move."""
HISTORY_LIMIT = 100
"""Entries kept in a ``retune.alias_history`` tag (the newest)."""
UNCHECKED: Any = object()
"""``expected_champion`` of :func:`promote` when any current champion will do."""
MODEL_TAG_MAX_CHARS = 5000
"""Registered-model tag values are ``VARCHAR(5000)`` in MLflow's SQL stores (PostgreSQL
enforces it; version tags are ``TEXT``): the model's history drops its oldest entries to fit."""


NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
"""The error codes with which MLflow answers "no such model, version or alias"."""


def _not_found(exc: Exception) -> bool:
    """Whether an MLflow error means "not there", as opposed to "could not ask" (a server
    that is down or failing): only the first may be read as "no champion" or "no history"."""
    return getattr(exc, "error_code", None) in NOT_FOUND_CODES


def get_alias(cl: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or ``None`` when the alias or the model does not exist.

    Raises:
        MlflowException: The registry could not be asked (unreachable, failing): never
            mistaken for "no champion", which would let a challenger skip the comparison.
    """
    from mlflow.exceptions import MlflowException

    try:
        return cl.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def champion_params(cl: MlflowClient, name: str) -> dict[str, Any] | None:
    """The tuned params of the champion, from its ``retune.params`` tag."""
    version = get_alias(cl, name, CHAMPION)
    if version is None or PARAMS_TAG not in version.tags:
        return None
    return dict(json.loads(version.tags[PARAMS_TAG]))


KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:+/@-]{1,250}\Z")


def check_key(key: str) -> str:
    """Refuse retune keys that could not be matched safely in an MLflow filter.

    Raises:
        ValueError: If the key has characters outside ``[A-Za-z0-9_.:+/@-]``.
    """
    if not KEY_PATTERN.match(key):
        raise ValueError(f"retune key {key!r} has characters outside [A-Za-z0-9_.:+/@-]")
    return key


def find_by_key(cl: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The version a retune registered already, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = cl.search_model_versions(f"name = '{name}' and tags.`{KEY_TAG}` = '{key}'")
    except MlflowException as exc:  # anything but "no such model" must not register a second version
        if _not_found(exc):
            return None
        raise
    return versions[0] if versions else None


def register(cl: MlflowClient, name: str, model_uri: str, *, key: str, tags: dict[str, str]) -> tuple[ModelVersion, bool]:
    """Register a model version once per retune key and mark it ``challenger``.

    Args:
        cl: MLflow client.
        name: Registered model name.
        model_uri: The logged model.
        key: The retune's idempotency key.
        tags: Lineage tags.

    Returns:
        The version and whether it was created now (``False``: it existed).
    """
    from mlflow.exceptions import MlflowException

    check_key(key)
    existing = find_by_key(cl, name, key)
    if existing is not None:
        log.info("retune %s already registered %s version %s; not registering again", key, name, existing.version)
        return existing, False
    try:
        cl.create_registered_model(name, description="Registered by Retune.")
    except MlflowException as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
    from mlflow.store.artifact.utils.models import _parse_model_id_if_present

    # A tracking server needs the logged model's id with a models:/<model_id> source.
    version = cl.create_model_version(
        name, model_uri, tags={**tags, KEY_TAG: key}, model_id=_parse_model_id_if_present(model_uri)
    )
    cl.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("registered %s version %s as %s", name, version.version, CHALLENGER)
    return version, True


def default_who(kind: str = "python") -> str:
    """``<kind>:<os user>``, e.g. ``cli:ana``: who moved an alias when nothing better is known."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = os.environ.get("USER") or (f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown")
    return f"{kind}:{user}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load_history(value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        log.warning("ignoring an unreadable %s tag", HISTORY_TAG)
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _dump(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, separators=(",", ":"), sort_keys=False)


def _capped(entries: list[dict[str, Any]], *, max_chars: int | None) -> str:
    entries = entries[-HISTORY_LIMIT:]
    text = _dump(entries)
    while max_chars is not None and len(text) > max_chars and len(entries) > 1:
        entries = entries[1:]
        text = _dump(entries)
    return text


def alias_history(cl: MlflowClient, name: str, version: str | int | None = None) -> list[dict[str, Any]]:
    """The recorded alias moves of a registered model (or of one version), oldest first.

    Each entry: ``alias``, ``from`` and ``to`` (versions as strings, ``from`` ``None`` for the
    first), ``who``, ``when`` (ISO 8601 UTC), ``why``, ``action`` (``promote`` or
    ``rollback``) and ``key`` (the retune or Airflow run that moved it, if any).
    """
    from mlflow.exceptions import MlflowException

    try:
        if version is None:
            return _load_history(cl.get_registered_model(name).tags.get(HISTORY_TAG))
        return _load_history(cl.get_model_version(name, str(version)).tags.get(HISTORY_TAG))
    except MlflowException as exc:  # a failed read must not let record_moves overwrite the history
        if _not_found(exc):
            return []
        raise


def _entry(
    alias: str, old: str | None, new: str, *, who: str, why: str, action: str, key: str | None, when: str
) -> dict[str, Any]:
    return {
        "alias": alias,
        "from": old,
        "to": new,
        "who": who[:200],
        "when": when,
        "why": why[:300],
        "action": action,
        "key": key,
    }


def _unrecorded(entries: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries not in ``history`` (keyless entries are never matched)."""
    seen = {(e.get("key"), e.get("alias"), e.get("to")) for e in history if e.get("key")}
    return [e for e in entries if not e.get("key") or (e["key"], e["alias"], e["to"]) not in seen]


def record_moves(cl: MlflowClient, name: str, entries: list[dict[str, Any]]) -> None:
    """Append alias moves to the registered model's and the versions' history tags.

    An entry whose ``key``, ``alias`` and ``to`` are already recorded in a tag (a retried
    task) is not added to it again, so a retry completes a record a failed write left
    half done. The registered model's tag keeps the newest :data:`HISTORY_LIMIT` entries
    that fit :data:`MODEL_TAG_MAX_CHARS`; each version's tag the newest
    :data:`HISTORY_LIMIT` of its own moves.
    """
    model_history = alias_history(cl, name)
    new = _unrecorded(entries, model_history)
    if new:
        cl.set_registered_model_tag(name, HISTORY_TAG, _capped(model_history + new, max_chars=MODEL_TAG_MAX_CHARS))
        last = new[-1] if new[-1]["alias"] == CHAMPION else next((e for e in reversed(new) if e["alias"] == CHAMPION), new[-1])
        line = f"{last['when']} {last['action']}: {last['alias']} {last['from']} -> {last['to']} by {last['who']}: {last['why']}"
        cl.set_registered_model_tag(name, LAST_MOVE_TAG, line[:MODEL_TAG_MAX_CHARS])
    for version in sorted({str(v) for e in entries for v in (e["from"], e["to"]) if v is not None}, key=int):
        history = alias_history(cl, name, version)
        mine = _unrecorded([e for e in entries if version in (e["from"], e["to"])], history)
        if mine:
            cl.set_model_version_tag(name, version, HISTORY_TAG, _capped(history + mine, max_chars=None))
    for e in new:
        log.info("%s: %s %s -> %s (%s by %s: %s)", name, e["alias"], e["from"], e["to"], e["action"], e["who"], e["why"])


def promote(
    cl: MlflowClient,
    name: str,
    version: str | int,
    *,
    who: str | None = None,
    why: str = "",
    key: str | None = None,
    expected_champion: str | int | None = UNCHECKED,
) -> str | None:
    """Move ``champion`` to ``version`` and ``previous_champion`` to the old champion, and
    record both moves in the alias history.

    Args:
        cl: MLflow client.
        name: Registered model name.
        version: The version to promote.
        who: Who moves it, e.g. ``airflow:<dag_id>/<run_id>`` (default ``python:<os user>``).
        why: Why, e.g. the gates' verdict.
        key: The retune's key. The promotion is noted on the version (tag
            ``retune.promotion``: key, from, who, why, when) before any alias moves: a retry
            whose first attempt moved the aliases but did not record the moves (a failed
            history write) records them, once, with the first attempt's who, why and when.
        expected_champion: The champion ``version`` was validated against (``None``: there
            was none). If the champion is another version now, nothing moves. The check
            runs just before the move; MLflow has no atomic compare-and-set of aliases, so
            it narrows the race with a rollback to milliseconds rather than closing it.

    Returns:
        The previous champion's version, if there was one (``None`` when ``version`` is the
        champion already).

    Raises:
        ChampionChangedError: The champion is not ``expected_champion`` any more, or this
            ``key`` already promoted ``version`` and the champion has moved since (a retried
            or cleared task must not undo a rollback made after its promotion).
    """
    target = str(version)
    old = get_alias(cl, name, CHAMPION)
    now = None if old is None else str(old.version)
    tags = cl.get_model_version(name, target).tags if key is not None else {}
    plan = _plan_of(tags.get(PROMOTION_TAG), key)
    history = _load_history(tags.get(HISTORY_TAG))  # the version's own: the model's is capped and drops old moves
    left = any(e.get("alias") == CHAMPION and e.get("from") == target for e in history)  # champion moved away from it
    if now == target:
        if plan is not None and not left:  # a retry: record the moves if the first attempt could not
            record_moves(cl, name, _promotion_entries(target, plan))
        return None
    done = any(e.get("key") == key and e.get("alias") == CHAMPION and e.get("to") == target for e in history)
    if key is not None and (done or (plan is not None and left)):
        last = cl.get_registered_model(name).tags.get(LAST_MOVE_TAG, "")
        raise ChampionChangedError(
            f"{name}: version {version} was already promoted by {key} and the champion has moved since "
            f"(now version {now}); not promoted again" + (f" (last move: {last})" if last else "")
        )
    if expected_champion is not UNCHECKED:
        expected = None if expected_champion is None else str(expected_champion)
        if now != expected:
            last = ""
            with contextlib.suppress(Exception):
                last = cl.get_registered_model(name).tags.get(LAST_MOVE_TAG, "")
            raise ChampionChangedError(
                f"{name}: champion is version {now} but version {version} was validated against "
                f"version {expected}; not promoted" + (f" (last move: {last})" if last else "")
            )
    previous = get_alias(cl, name, PREVIOUS)
    before = None if previous is None else str(previous.version)
    if plan is not None and plan.get("from") == now and before == now:
        before = plan.get("previous")  # the first attempt moved previous_champion only
    plan = {"key": key, "from": now, "previous": before, "who": who or default_who(), "why": why or "promoted", "when": _now()}
    if key is not None:
        cl.set_model_version_tag(name, target, PROMOTION_TAG, json.dumps(plan))
    if now is not None:
        cl.set_registered_model_alias(name, PREVIOUS, now)
    cl.set_registered_model_alias(name, CHAMPION, target)
    log.info("promoted %s version %s to %s (previous: %s)", name, target, CHAMPION, now)
    record_moves(cl, name, _promotion_entries(target, plan))
    return now


def _plan_of(value: str | None, key: str | None) -> dict[str, Any] | None:
    """A ``retune.promotion`` tag's plan if ``key`` wrote it."""
    if key is None or not value:
        return None
    try:
        plan = json.loads(value)
    except ValueError:
        return None
    return plan if isinstance(plan, dict) and plan.get("key") == key else None


def _promotion_entries(version: str, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The history entries of a promotion plan: ``champion`` and, if there was one, ``previous_champion``."""
    how: dict[str, Any] = {"who": plan["who"], "why": plan["why"], "action": "promote", "key": plan["key"], "when": plan["when"]}
    entries = [_entry(CHAMPION, plan["from"], version, **how)]
    if plan["from"] is not None:
        entries.append(_entry(PREVIOUS, plan.get("previous"), plan["from"], **how))
    return entries


def promotion_by(cl: MlflowClient, name: str, version: str | int, key: str) -> dict[str, Any] | None:
    """The promotion of ``version`` that ``key`` made or began, or ``None``.

    From the version's ``retune.promotion`` tag, written before the aliases move (whether
    they moved, the champion tells), else from the version's alias history (promotions
    recorded before the tag existed).

    Returns:
        ``{"key", "from", "previous", "who", "why", "when"}``: ``from`` is the champion it
        replaced, ``previous`` the ``previous_champion`` before it (``None`` if unknown).
    """
    tags = cl.get_model_version(name, str(version)).tags
    plan = _plan_of(tags.get(PROMOTION_TAG), key)
    if plan is not None:
        return plan
    for e in reversed(_load_history(tags.get(HISTORY_TAG))):
        if e.get("key") == key and e.get("alias") == CHAMPION and e.get("to") == str(version):
            return {
                "key": key,
                "from": e.get("from"),
                "previous": None,
                "who": e.get("who"),
                "why": e.get("why"),
                "when": e.get("when"),
            }
    return None


def _registry_uri(cl: MlflowClient) -> str:
    """The client's registry URI (MLflow keeps it private), else its tracking URI."""
    return str(getattr(cl, "_registry_uri", None) or cl.tracking_uri)


def load_sklearn(cl: MlflowClient, name: str, version: str | int) -> Any:
    """Load a registered scikit-learn version, telling a registry that failed apart from a
    model that is broken.

    The files are fetched first, then unpickled: a fetch that fails (server error, timeout,
    deleted artifacts) says nothing about the model, so it must stop the caller (its task
    retries), never let a challenger replace a champion it was not compared with.

    Args:
        cl: MLflow client (its tracking and registry URI are used).
        name: Registered model name.
        version: The version.

    Returns:
        The fitted estimator.

    Raises:
        RegistryUnavailableError: The version's files could not be fetched.
        RegistryError: The files were fetched but do not load as a scikit-learn model.
    """
    import tempfile

    import mlflow

    what = f"{name} version {version}"
    uri = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory(prefix="retune-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=tmp,
                tracking_uri=cl.tracking_uri,
                registry_uri=_registry_uri(cl),
            )
        except Exception as exc:  # noqa: BLE001 - whatever the store raised, the model is unknown
            raise RegistryUnavailableError(
                f"{what} could not be fetched from the registry: {type(exc).__name__}: {str(exc)[:500]}"
            ) from exc
        if not os.path.exists(os.path.join(local, "MLmodel")):  # a local store hands back an empty folder
            raise RegistryUnavailableError(f"{what} could not be fetched from the registry: no MLmodel file came back")
        try:
            return mlflow.sklearn.load_model(local)
        except Exception as exc:  # noqa: BLE001 - the files are here: the model itself is broken
            raise RegistryError(f"{what} does not load: {type(exc).__name__}: {str(exc)[:500]}") from exc


def check_loads(cl: MlflowClient, name: str, version: str | int, *, sample: pd.DataFrame | None = None) -> int:
    """Load a registered version (pyfunc, as a user would) and predict a tiny sample.

    Args:
        cl: MLflow client (its tracking and registry URI are used).
        name: Registered model name.
        version: The version.
        sample: Feature rows (default: the model's logged input example).

    Returns:
        The number of rows predicted.

    Raises:
        RegistryError: If the version does not load, has nothing to predict, or predicts
            the wrong number of rows or non-finite values.
    """
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(cl.tracking_uri)
    mlflow.set_registry_uri(_registry_uri(cl))
    what = f"{name} version {version}"
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
        raise RegistryError(f"{what} does not load: {type(exc).__name__}: {str(exc)[:500]}") from exc
    rows = sample if sample is not None else model.input_example
    if rows is None or len(rows) == 0:
        raise RegistryError(f"{what} has no input example to check that it predicts; pass a sample")
    try:
        predictions = np.asarray(model.predict(rows))
    except Exception as exc:  # noqa: BLE001
        raise RegistryError(f"{what} loads but does not predict: {type(exc).__name__}: {str(exc)[:500]}") from exc
    if len(predictions) != len(rows):
        raise RegistryError(f"{what} predicted {len(predictions)} values for {len(rows)} rows")
    if predictions.dtype.kind in "fc" and not np.all(np.isfinite(predictions)):
        raise RegistryError(f"{what} predicts non-finite values")
    return len(rows)


def rollback(
    cl: MlflowClient,
    name: str,
    *,
    who: str,
    why: str,
    key: str | None = None,
    sample: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to ``previous_champion`` in one step, and ``previous_champion``
    to the version that was champion, so a second rollback undoes the first.

    The target version must load and predict a tiny sample first (:func:`check_loads`);
    otherwise nothing moves. Both moves are recorded in the alias history.

    Args:
        cl: MLflow client.
        name: Registered model name.
        who: Who rolls back, e.g. ``cli:<os user>`` or ``airflow:<dag_id>/<run_id>``.
        why: Why (recorded).
        key: Makes a retried rollback idempotent (e.g. the Airflow run): a rollback with a key
            already carried out is not repeated, one interrupted half-way is completed.
        sample: Feature rows to check the target with (default: its logged input example).

    Returns:
        ``{"model_name", "champion_before", "champion_after", "previous_champion_after",
        "who", "why", "when", "repeated"}``.

    Raises:
        NothingToRollBackError: No champion, no previous champion, or both the same version.
        RegistryError: The target does not load and predict (the champion is then unchanged).
        ChampionChangedError: A retried rollback whose first attempt never moved the
            champion finds another champion than the one it was asked to roll back, or
            ``champion`` or ``previous_champion`` moved while the target was checked
            (nothing is written then).
    """
    champion = get_alias(cl, name, CHAMPION)
    previous = get_alias(cl, name, PREVIOUS)
    started = _pending_rollback(cl, name, key)
    if started is not None and champion is not None and str(champion.version) == started["to"]:
        # the first attempt moved champion already: finish, never undo it
        if previous is None or str(previous.version) != started["from"]:
            cl.set_registered_model_alias(name, PREVIOUS, started["from"])
        return _finish_rollback(cl, name, started, who=who, why=why, key=key, repeated=True)
    if started is not None and champion is not None and str(champion.version) != started["from"]:
        # this key rolled back (or began to) and the champion has moved since: a retried task
        # must not roll back a promotion it never saw
        # the target version's own history: the model's is capped and drops old moves
        done = any(
            e.get("key") == key and e.get("action") == "rollback" and e.get("alias") == CHAMPION and e.get("to") == started["to"]
            for e in alias_history(cl, name, started["to"])
        )
        if not done:
            raise ChampionChangedError(
                f"{name}: rollback {key} was to move champion {started['from']} -> {started['to']}, but the champion "
                f"is version {champion.version} now; not rolled back (start a new rollback if it is still wanted)"
            )
        log.warning(
            "%s: rollback %s was done (champion %s -> %s); the champion has moved since to version %s: not repeated",
            name,
            key,
            started["from"],
            started["to"],
            champion.version,
        )
        return {  # recorded already; recording again would put an aged-out move back as the model's last
            **_finish_rollback(cl, name, started, who=who, why=why, key=key, repeated=True, record=False),
            "champion_now": str(champion.version),
        }
    if champion is None:
        raise NothingToRollBackError(f"{name} has no champion: nothing to roll back")
    if previous is None:
        raise NothingToRollBackError(f"{name} has no previous_champion to roll back to (champion is version {champion.version})")
    if str(previous.version) == str(champion.version):
        raise NothingToRollBackError(f"{name}: previous_champion and champion are both version {champion.version}")
    target, current = str(previous.version), str(champion.version)
    check_loads(cl, name, target, sample=sample)
    # loading takes seconds: a retune may have promoted meanwhile, and moving now would drop its version
    champion_now, previous_now = get_alias(cl, name, CHAMPION), get_alias(cl, name, PREVIOUS)
    moved = (
        None if champion_now is None else str(champion_now.version),
        None if previous_now is None else str(previous_now.version),
    )
    if moved != (current, target):
        raise ChampionChangedError(
            f"{name}: champion and previous_champion were versions {current} and {target} when the rollback began, "
            f"{moved[0]} and {moved[1]} after version {target} was checked; not rolled back "
            "(roll back again if it is still wanted)"
        )
    plan = {"key": key, "from": current, "to": target, "when": _now()}
    if key:
        cl.set_registered_model_tag(name, ROLLBACK_TAG, json.dumps(plan))
    cl.set_registered_model_alias(name, CHAMPION, target)
    cl.set_registered_model_alias(name, PREVIOUS, current)
    return _finish_rollback(cl, name, plan, who=who, why=why, key=key, repeated=False)


def _pending_rollback(cl: MlflowClient, name: str, key: str | None) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException

    if not key:
        return None
    try:
        value = cl.get_registered_model(name).tags.get(ROLLBACK_TAG)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    try:
        plan = json.loads(value) if value else None
    except ValueError:
        return None
    return plan if isinstance(plan, dict) and plan.get("key") == key else None


def _finish_rollback(
    cl: MlflowClient,
    name: str,
    plan: dict[str, Any],
    *,
    who: str,
    why: str,
    key: str | None,
    repeated: bool,
    record: bool = True,
) -> dict[str, Any]:
    current, target, when = plan["from"], plan["to"], plan["when"]
    why = why or "rollback"
    if record:
        record_moves(
            cl,
            name,
            [
                _entry(CHAMPION, current, target, who=who, why=why, action="rollback", key=key, when=when),
                _entry(PREVIOUS, target, current, who=who, why=why, action="rollback", key=key, when=when),
            ],
        )
    log.info("rolled %s back: champion %s -> %s, previous_champion %s", name, current, target, current)
    return {
        "model_name": name,
        "champion_before": current,
        "champion_after": target,
        "previous_champion_after": current,
        "who": who,
        "why": why,
        "when": when,
        "repeated": repeated,
    }


def rollback_model(
    config_name: str, *, who: str, why: str, key: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """:func:`rollback` the registered model of a model config (``registry.model_name``).

    Args:
        config_name: The model config (``<config_dir>/<name>.yaml``).
        who: Who rolls back.
        why: Why.
        key: Idempotency key of the request (e.g. ``<dag_id>/<run_id>``).
        settings: State locations.

    Returns:
        As :func:`rollback`.

    Raises:
        ConfigError: Unknown or invalid config.
        RetuneError: The embedded default's MLflow database does not exist (a wrong
            ``RETUNE_STATE_DIR``): nothing is created.
        RegistryError: As :func:`rollback`.
    """
    from retune import tracking
    from retune.pipeline import load_named_config
    from retune.settings import get_settings

    settings = settings or get_settings(create=False)
    cfg = load_named_config(config_name, settings)
    tracking.require_store(settings)  # opening a missing SQLite file would create it: "no champion"
    cl = tracking.client(settings)
    return rollback(cl, cfg.registry.model_name, who=who, why=why, key=key)

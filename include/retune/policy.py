"""Trigger policy: when a retune may start, and a record of every decision.

Retunes are asked for by the schedule (drift found by ``monitor_drift``), by a person (the
Airflow form or the REST API) and by alerts. Before one starts, :func:`decide` applies, per
model config (``policy`` section of the YAML):

1. **idempotency**: a request whose key already triggered a retune is a duplicate and is
   skipped (a request that was skipped, or whose run could not be started and was
   :func:`cancel`-led, may be sent again);
2. **hysteresis**: for drift from the schedule, drift must have been found in
   ``policy.hysteresis`` consecutive windows;
3. **cooldown**: no new retune within ``policy.cooldown`` of the last one that started (a
   retune whose drift gate found nothing to do, :func:`skip`, does not count);
4. **one at a time**: a retune holds the model's lock until it ends (``release``); another
   request meanwhile is skipped. A retune that shows no sign of life for ``policy.lock_ttl``
   (it :func:`renew`-s the lock when it starts and as its trials finish) is presumed dead.

``force`` skips 1 to 3, never 4. Every decision, triggered or skipped with its reason, is a
row of the ``retune_decisions`` table (PostgreSQL in production, SQLite embedded) and a log
line. The lock is a row of ``retune_locks`` whose primary key is the config name, so of many
concurrent requests exactly one wins, on SQLite and PostgreSQL alike.

Example:
    >>> from retune.policy import decide  # doctest: +SKIP
    >>> decide("demo", source="alert", key="alert:demo:abc").reason  # doctest: +SKIP
    'triggered'
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from retune.settings import Settings, get_settings

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

SOURCES = ("drift", "schedule", "manual", "alert", "api", "bootstrap")
MAX_KEY = 512  # the idempotency_key column's width
SKIPPED = "skipped: "  # the outcome of a retune that its drift gate let go: no cooldown from it
CANCELLED = "cancelled: "  # the outcome of a decision undone (:func:`cancel`): it no longer counts
COVERED = "covered by decision "  # the reason of a request another decision's retune answers (:func:`cover`)


def stored_key(key: str) -> str:
    """The key as stored: itself up to :data:`MAX_KEY` characters, else a prefix and its
    SHA-256 (two long keys that differ only at the end stay two keys)."""
    import hashlib

    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: MAX_KEY - len(digest) - 1]}#{digest}"


@dataclass(frozen=True)
class Decision:
    """One decision of the policy."""

    triggered: bool
    reason: str
    config: str
    source: str
    key: str
    token: str | None = None
    decision_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A small dict for XCom and API answers."""
        return asdict(self)


_TABLES_LOCK = threading.Lock()
_CREATED: dict[str, sa.Engine] = {}  # url -> the engine whose database has the tables (created or checked once)


def _tables(url: str) -> tuple[sa.Engine, sa.Table, sa.Table, sa.Table]:
    """The tables, created on first use in this process (idempotent: ``checkfirst``)."""
    import sqlalchemy as sa

    with _TABLES_LOCK:  # the first use from many threads at once creates the tables once
        found = _make_tables(url)
        if _CREATED.get(url) is not found[0]:
            meta = found[1].metadata
            try:
                meta.create_all(found[0], checkfirst=True)
            except sa.exc.SQLAlchemyError:  # created concurrently by another process
                meta.create_all(found[0], checkfirst=True)
            _CREATED[url] = found[0]
        return found


def _existing_tables(url: str) -> tuple[sa.Engine, sa.Table, sa.Table, sa.Table] | None:
    """The tables for a read, not created: ``None`` while the database has none (nothing was
    decided there yet), so a read-only look (``retune status``) leaves the database as it was.
    It shares :func:`_tables`' engine (one pool per database and process)."""
    import sqlalchemy as sa

    with _TABLES_LOCK:
        found = _make_tables(url)
    inspector = sa.inspect(found[0])
    return found if all(inspector.has_table(t.name) for t in (found[1], found[3])) else None


@cache
def _make_tables(url: str) -> tuple[sa.Engine, sa.Table, sa.Table, sa.Table]:
    """The engine and the table definitions for ``url``, one per process; creates nothing."""
    import sqlalchemy as sa

    from retune.db import make_engine

    engine = make_engine(url)

    meta = sa.MetaData()
    decisions = sa.Table(
        "retune_decisions",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("config", sa.String(64), nullable=False, index=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(512), nullable=False, index=True),
        sa.Column("triggered", sa.Boolean, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False, default=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("token", sa.String(64), nullable=True, index=True),
        sa.Column("outcome", sa.String(256), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    windows = sa.Table(
        "retune_windows",
        meta,
        sa.Column("config", sa.String(64), primary_key=True),
        sa.Column("window_end", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("drift_detected", sa.Boolean, nullable=False),
        sa.Column("drift_share", sa.Float, nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    locks = sa.Table(
        "retune_locks",
        meta,
        sa.Column("config", sa.String(64), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    return engine, decisions, windows, locks


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def record_window(
    config_name: str, window_end: datetime, *, drift_detected: bool, drift_share: float | None, settings: Settings | None = None
) -> None:
    """Remember a drift check's verdict (for hysteresis); a repeated window replaces the old row."""
    import sqlalchemy as sa

    settings = settings or get_settings()
    engine, _, windows, _ = _tables(settings.policy_db)
    end = _aware(window_end)
    with engine.begin() as conn:
        conn.execute(sa.delete(windows).where(windows.c.config == config_name, windows.c.window_end == end))
        conn.execute(
            sa.insert(windows).values(
                config=config_name, window_end=end, drift_detected=drift_detected, drift_share=drift_share, recorded_at=_now()
            )
        )


def _consecutive_drifted(conn: Any, windows: sa.Table, config_name: str, n: int, until: datetime | None = None) -> int:
    """How many of the newest ``n`` checked windows ending at or before ``until`` drifted, in a row."""
    import sqlalchemy as sa

    which = [windows.c.config == config_name] + ([windows.c.window_end <= _aware(until)] if until is not None else [])
    rows = conn.execute(sa.select(windows.c.drift_detected).where(*which).order_by(windows.c.window_end.desc()).limit(n)).all()
    count = 0
    for (drifted,) in rows:
        if not drifted:
            break
        count += 1
    return count


def _newest_triggered(conn: Any, decisions: sa.Table, config_name: str, key: str) -> Any:
    """The newest decision that answered ``key`` with a retune (``id, token, outcome,
    created_at``): one that triggered, or one another decision's retune covers (:func:`cover`)
    and that was not cancelled with it; or ``None``."""
    import sqlalchemy as sa

    covered = sa.and_(
        decisions.c.reason.startswith(COVERED, autoescape=True),
        decisions.c.token.is_not(None),
        sa.or_(decisions.c.outcome.is_(None), sa.not_(decisions.c.outcome.startswith(CANCELLED, autoescape=True))),
    )
    return conn.execute(
        sa.select(decisions.c.id, decisions.c.token, decisions.c.outcome, decisions.c.created_at)
        .where(
            decisions.c.config == config_name,
            decisions.c.idempotency_key == stored_key(key),
            sa.or_(decisions.c.triggered.is_(True), covered),
        )
        .order_by(decisions.c.id.desc())
        .limit(1)
    ).first()


def _record(
    conn: Any, decisions: sa.Table, row: dict[str, Any], *, reason: str, token: str | None, covered: bool = False
) -> int | None:
    """Insert one decision (triggered when it has a lock ``token`` of its own, not ``covered``
    by another's); its id."""
    import sqlalchemy as sa

    triggered = token is not None and not covered
    inserted = conn.execute(sa.insert(decisions).values(**row, triggered=triggered, reason=reason, token=token))
    return int(inserted.inserted_primary_key[0]) if inserted.inserted_primary_key else None


def decide(
    config_name: str,
    *,
    source: str,
    key: str,
    force: bool = False,
    rerun: bool = False,
    retry: bool = False,
    window_end: datetime | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide whether a retune of ``config_name`` may start now, record it, and take the lock.

    Args:
        config_name: The model config.
        source: ``drift``, ``schedule``, ``manual``, ``alert``, ``api`` or ``bootstrap``.
        key: Idempotency key: requests with the same key are one request.
        force: Skip idempotency, hysteresis and cooldown (never the one-at-a-time lock).
        rerun: The request may be a rerun of the same Airflow run (cleared by a person): a
            decision with the same key is then not a duplicate once its retune has ended,
            and hysteresis and cooldown do not apply. Without an earlier triggered decision
            for the key it is a first request, decided as any other. Registration stays
            idempotent per run.
        retry: The request may be a retry of one its key already triggered (a task retried
            after deciding): while that retune has not ended and holds the lock, it is
            triggered again with the same token; once it ended, the request is a duplicate
            (``rerun`` implies this, and then decides an ended one afresh).
        window_end: End of the drifted window being decided: hysteresis counts the windows
            up to it (a check of an older window is not judged by newer ones).
        settings: State locations (``policy_db``).
        now: The time of the decision (tests).

    Returns:
        The decision; when triggered, ``token`` identifies the lock to :func:`release`.
    """
    import sqlalchemy as sa

    from retune.pipeline import load_named_config

    settings = settings or get_settings()
    cfg = load_named_config(config_name, settings)
    policy = cfg.policy
    engine, decisions, windows, locks = _tables(settings.policy_db)
    now = now or _now()
    token: str | None = None
    reason = ""
    with engine.begin() as conn:
        dup = None if force else _newest_triggered(conn, decisions, config_name, key)
        # a rerun waives hysteresis and cooldown only when this request was decided before: a
        # run's first attempt (every form or REST run without an idempotency_key passes rerun,
        # its key being the run) is a new request like any other
        again = rerun and dup is not None
        if not force:
            if dup is not None and (rerun or retry) and dup.outcome is None and dup.token:
                held = conn.execute(
                    sa.select(locks.c.token).where(
                        locks.c.config == config_name, locks.c.token == dup.token, locks.c.expires_at >= now
                    )
                ).first()
                if held is not None:  # the same run's task again (a retry after it took the lock)
                    token, reason = dup.token, "triggered (the same run again, its lock still held)"
            if not token and dup is not None and not (rerun and dup.outcome is not None):
                reason = f"duplicate of decision {dup.id} (same idempotency key)"
        if not reason and not force and not again and source in ("drift", "schedule") and policy.hysteresis > 1:
            seen = _consecutive_drifted(conn, windows, config_name, policy.hysteresis, until=window_end)
            if seen < policy.hysteresis:
                reason = f"hysteresis: drift in {seen} of the last {policy.hysteresis} consecutive windows needed"
        if not reason and not force and not again and policy.cooldown.total_seconds() > 0:
            last = conn.execute(
                sa.select(sa.func.max(decisions.c.created_at)).where(
                    decisions.c.config == config_name,
                    decisions.c.triggered.is_(True),
                    # a retune its drift gate skipped tuned nothing: it starts no cooldown
                    sa.or_(decisions.c.outcome.is_(None), sa.not_(decisions.c.outcome.startswith(SKIPPED, autoescape=True))),
                )
            ).scalar()
            if last is not None and _aware(last) + policy.cooldown > now:
                reason = f"cooldown: the last retune started {_aware(last).isoformat()}, cooldown {policy.cooldown}"
        if not reason:
            conn.execute(sa.delete(locks).where(locks.c.config == config_name, locks.c.expires_at < now))
    row = {"created_at": now, "config": config_name, "source": source, "idempotency_key": stored_key(key), "forced": force}
    decision_id: int | None = None
    if not reason:
        token = secrets.token_hex(16)
        reason = "triggered (forced)" if force else "triggered"
        try:
            # the lock and the decision that took it in one transaction: a failure between
            # the two must not leave a lock that no decision, and so no run, gives back
            with engine.begin() as conn:
                conn.execute(
                    sa.insert(locks).values(config=config_name, token=token, acquired_at=now, expires_at=now + policy.lock_ttl)
                )
                decision_id = _record(conn, decisions, row, reason=reason, token=token)
        except sa.exc.IntegrityError:
            token = None
            with engine.connect() as conn:
                holder = conn.execute(sa.select(locks.c.acquired_at).where(locks.c.config == config_name)).first()
            since = _aware(holder.acquired_at).isoformat() if holder else "just now"
            reason = f"a retune of {config_name} is already running (since {since}); one at a time"
    if decision_id is None:  # skipped, or the same run again with the lock it kept
        with engine.begin() as conn:
            decision_id = _record(conn, decisions, row, reason=reason, token=token)
    triggered = token is not None
    decision = Decision(triggered, reason, config_name, source, key, token, decision_id)
    log.info("policy %s %s (source=%s key=%s): %s", config_name, "TRIGGER" if triggered else "SKIP", source, key, reason)
    return decision


def cover(config_name: str, key: str, by: Decision, *, settings: Settings | None = None) -> Decision:
    """Record a request that a triggered decision of the same moment answers (another alert
    series about the same model in one alert payload): no retune of its own (the row is not
    ``triggered``, its reason ``covered by decision N``), but its key counts as answered, so
    its resends are duplicates, and it ends with ``by`` (release, cancel). A key that
    already triggered is a duplicate, as :func:`decide` would say.

    Args:
        config_name: The model config.
        key: The request's idempotency key.
        by: The triggered decision that answers it.
        settings: State locations (``policy_db``).

    Returns:
        The recorded decision (``triggered`` False: no retune of its own; ``token`` is ``by``'s).
    """

    settings = settings or get_settings()
    engine, decisions, _, _ = _tables(settings.policy_db)
    now = _now()
    with engine.begin() as conn:
        dup = _newest_triggered(conn, decisions, config_name, key)
        reason = f"duplicate of decision {dup.id} (same idempotency key)" if dup else f"{COVERED}{by.decision_id}"
        row = {"created_at": now, "config": config_name, "source": by.source, "idempotency_key": stored_key(key), "forced": False}
        decision_id = _record(conn, decisions, row, reason=reason, token=None if dup else by.token, covered=True)
    log.info("policy %s SKIP (source=%s key=%s): %s", config_name, by.source, key, reason)
    return Decision(False, reason, config_name, by.source, key, None if dup else by.token, decision_id)


def open_decision(config_name: str, key: str, *, settings: Settings | None = None) -> dict[str, Any] | None:
    """The newest triggered (or covered) decision for ``key`` whose retune has not ended (no
    outcome): ``{"id", "token", "created_at"}`` (aware UTC), or ``None``."""

    settings = settings or get_settings()
    engine, decisions, _, _ = _tables(settings.policy_db)
    with engine.connect() as conn:
        row = _newest_triggered(conn, decisions, config_name, key)
    if row is None or row.outcome is not None:
        return None
    return {"id": row.id, "token": row.token, "created_at": _aware(row.created_at)}


def holds(config_name: str, token: str, *, settings: Settings | None = None) -> bool:
    """Whether ``token`` still holds the model's lock."""
    import sqlalchemy as sa

    settings = settings or get_settings()
    engine, _, _, locks = _tables(settings.policy_db)
    with engine.connect() as conn:
        row = conn.execute(sa.select(locks.c.token).where(locks.c.config == config_name)).first()
    return row is not None and row.token == token


def renew(config_name: str, token: str, *, settings: Settings | None = None, now: datetime | None = None) -> bool:
    """Keep a working retune's lock: its expiry moves to ``now + policy.lock_ttl``. So
    ``lock_ttl`` bounds a retune's silence (queued behind another model's retune, or a
    trial), not its length.

    Returns:
        Whether ``token`` still held the lock (``False``: it expired and was taken over, or
        was given back).
    """
    import sqlalchemy as sa

    from retune.pipeline import load_named_config

    settings = settings or get_settings()
    ttl = load_named_config(config_name, settings).policy.lock_ttl
    engine, _, _, locks = _tables(settings.policy_db)
    now = now or _now()
    with engine.begin() as conn:
        renewed = conn.execute(
            sa.update(locks)
            .where(locks.c.config == config_name, locks.c.token == token, locks.c.expires_at >= now)
            .values(expires_at=now + ttl)
        ).rowcount
    return bool(renewed)


def ended(config_name: str, token: str, *, settings: Settings | None = None) -> bool:
    """Whether the decision that took ``token`` has ended: its retune gave the lock back
    (:func:`release`, :func:`skip`) or it was :func:`cancel`-led. A lock that expired
    while its retune was still going has not."""
    import sqlalchemy as sa

    settings = settings or get_settings()
    engine, decisions, _, _ = _tables(settings.policy_db)
    with engine.connect() as conn:
        outcome = conn.execute(
            sa.select(decisions.c.id).where(
                decisions.c.config == config_name, decisions.c.token == token, decisions.c.outcome.is_not(None)
            )
        ).first()
    return outcome is not None


def release(config_name: str, token: str, *, outcome: str, settings: Settings | None = None) -> bool:
    """Release the model's lock held by ``token`` and note how the retune ended.

    Returns:
        Whether the lock was held by ``token`` (releasing twice is harmless).
    """
    deleted = _give_back(config_name, token, settings=settings, outcome=outcome, open_only=True)
    log.info("policy %s: released (%s)", config_name, outcome)
    return deleted


def skip(config_name: str, token: str, *, reason: str, settings: Settings | None = None) -> bool:
    """Release the lock of a retune that its drift gate let go (no drift): the decision stays
    triggered, so the same request again is a duplicate, but it starts no cooldown.

    Returns:
        Whether the lock was held by ``token``.
    """
    return release(config_name, token, outcome=f"{SKIPPED}{reason}", settings=settings)


def cancel(config_name: str, token: str, *, reason: str, settings: Settings | None = None) -> bool:
    """Undo a triggered decision whose retune never started (its run could not be created,
    planning failed after the decision, or the run's drift gate failed): give the lock back
    and mark the decision not triggered, so a retry with the same key is not a duplicate and
    no cooldown starts. A decision that has already ended (released, skipped, cancelled)
    keeps its outcome.

    Args:
        config_name: The model config.
        token: The decision's lock token.
        reason: Why the retune did not start (noted as the outcome).
        settings: State locations (``policy_db``).

    Returns:
        Whether the lock was still held by ``token``.
    """
    deleted = _give_back(config_name, token, settings=settings, outcome=f"{CANCELLED}{reason}", open_only=True, triggered=False)
    log.info("policy %s: cancelled (%s)", config_name, reason)
    return deleted


def _give_back(
    config_name: str,
    token: str,
    *,
    settings: Settings | None,
    outcome: str,
    open_only: bool = False,
    triggered: bool | None = None,
) -> bool:
    """Delete the lock ``token`` holds and note ``outcome`` on its decision(s), in one
    transaction; ``open_only`` keeps an outcome already noted, ``triggered`` rewrites the flag.

    Returns:
        Whether the lock was held by ``token``.
    """
    import sqlalchemy as sa

    settings = settings or get_settings()
    engine, decisions, _, locks = _tables(settings.policy_db)
    which = [decisions.c.token == token] + ([decisions.c.outcome.is_(None)] if open_only else [])
    values: dict[str, Any] = {"outcome": outcome[:256], "finished_at": _now()}
    if triggered is not None:
        values["triggered"] = triggered
    with engine.begin() as conn:
        deleted = conn.execute(sa.delete(locks).where(locks.c.config == config_name, locks.c.token == token)).rowcount
        conn.execute(sa.update(decisions).where(*which).values(**values))
    return bool(deleted)


def current_lock(config_name: str, *, settings: Settings | None = None, now: datetime | None = None) -> dict[str, Any] | None:
    """The model's lock if a retune holds it: ``{"acquired_at", "expires_at", "decision_id",
    "source", "key"}`` (the decision that took it); ``None`` when free or expired (or no
    table exists yet: a read creates none)."""
    import sqlalchemy as sa

    settings = settings or get_settings()
    tables = _existing_tables(settings.policy_db)
    if tables is None:
        return None
    engine, decisions, _, locks = tables
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(locks.c.acquired_at, locks.c.expires_at, decisions.c.id, decisions.c.source, decisions.c.idempotency_key)
            .select_from(locks.outerjoin(decisions, decisions.c.token == locks.c.token))
            .where(locks.c.config == config_name)
            .order_by(decisions.c.id)  # the decision that took it, not one it covers
        ).first()
    if row is None or _aware(row.expires_at) < (now or _now()):
        return None
    return {
        "acquired_at": _aware(row.acquired_at).isoformat(),
        "expires_at": _aware(row.expires_at).isoformat(),
        "decision_id": row.id,
        "source": row.source,
        "key": row.idempotency_key,
    }


def history(config_name: str | None = None, *, limit: int = 50, settings: Settings | None = None) -> list[dict[str, Any]]:
    """The newest decisions, newest first; ``created_at`` and ``finished_at`` are aware UTC
    datetimes on every backend (SQLite hands them back naive). ``covered`` says a request was
    answered by another decision's retune (:func:`cover`); such a row is not ``triggered``
    (databases written before stored it as triggered: it reads as covered all the same). No
    table yet: ``[]``, and none is created."""
    import sqlalchemy as sa

    settings = settings or get_settings()
    tables = _existing_tables(settings.policy_db)
    if tables is None:
        return []
    engine, decisions, _, _ = tables
    query = sa.select(decisions).order_by(decisions.c.id.desc()).limit(limit)
    if config_name:
        query = query.where(decisions.c.config == config_name)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        for key in ("created_at", "finished_at"):
            if row[key] is not None:
                row[key] = _aware(row[key])
        row["covered"] = row["token"] is not None and row["reason"].startswith(COVERED)
        row["triggered"] = bool(row["triggered"]) and not row["covered"]
    return rows

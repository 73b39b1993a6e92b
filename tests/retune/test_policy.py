"""The trigger policy: idempotency, hysteresis, cooldown, one retune at a time, decision table."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from retune import policy
from retune.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    configs = tmp_path / "configs"
    configs.mkdir()
    raw = yaml.safe_load((ROOT / "include" / "configs" / "demo.yaml").read_text())
    raw["policy"] = {"hysteresis": 2, "cooldown": "6h", "lock_ttl": "2h"}
    (configs / "demo.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RETUNE_POLICY_DB", raising=False)
    monkeypatch.delenv("RETUNE_OPTUNA_STORAGE", raising=False)
    return get_settings()


def test_first_request_triggers_and_takes_the_lock(env) -> None:  # noqa: ANN001
    d = policy.decide("demo", source="manual", key="k1", now=T0)
    assert d.triggered
    assert d.token
    assert policy.holds("demo", d.token)
    rows = policy.history("demo")
    assert rows[0]["triggered"] is True
    assert rows[0]["reason"] == "triggered"
    assert rows[0]["created_at"] == T0 and rows[0]["created_at"].tzinfo is not None  # aware, also on SQLite
    assert rows[0]["finished_at"] is None


def test_one_at_a_time_then_cooldown_then_duplicate(env) -> None:  # noqa: ANN001
    first = policy.decide("demo", source="manual", key="k1", now=T0)
    second = policy.decide("demo", source="alert", key="k2", now=T0 + timedelta(minutes=1), force=True)
    assert not second.triggered, "force never overrides the one-at-a-time lock"
    assert "already running" in second.reason
    assert first.token is not None
    assert policy.release("demo", first.token, outcome="registered v2")
    assert not policy.release("demo", first.token, outcome="again"), "releasing twice is harmless"
    cooling = policy.decide("demo", source="alert", key="k3", now=T0 + timedelta(hours=1))
    assert not cooling.triggered
    assert cooling.reason.startswith("cooldown")
    dup = policy.decide("demo", source="manual", key="k1", now=T0 + timedelta(hours=7))
    assert not dup.triggered
    assert "duplicate" in dup.reason
    forced = policy.decide("demo", source="manual", key="k1", now=T0 + timedelta(hours=1), force=True)
    assert forced.triggered, "force overrides cooldown and idempotency"
    outcome = [r for r in policy.history("demo") if r["token"] == first.token][0]
    assert outcome["outcome"] == "registered v2"


def test_hysteresis_needs_consecutive_drifted_windows(env) -> None:  # noqa: ANN001
    policy.record_window("demo", T0, drift_detected=True, drift_share=0.5)
    d = policy.decide("demo", source="drift", key="w1", now=T0)
    assert not d.triggered
    assert d.reason.startswith("hysteresis: drift in 1 of the last 2")
    policy.record_window("demo", T0 + timedelta(days=1), drift_detected=False, drift_share=0.1)
    policy.record_window("demo", T0 + timedelta(days=2), drift_detected=True, drift_share=0.6)
    assert not policy.decide("demo", source="drift", key="w2", now=T0 + timedelta(days=2)).triggered
    policy.record_window("demo", T0 + timedelta(days=3), drift_detected=True, drift_share=0.6)
    assert policy.decide("demo", source="drift", key="w3", now=T0 + timedelta(days=3)).triggered
    # Alerts and people are not subject to hysteresis.
    assert "hysteresis" not in policy.decide("demo", source="alert", key="a1", now=T0 + timedelta(days=3)).reason


def test_hysteresis_of_an_older_window_counts_the_windows_up_to_it(env) -> None:  # noqa: ANN001
    """A backfill or manual check of an old window used to be judged by the newest windows:
    today's drift let a retune on March's data through."""
    march = T0 + timedelta(days=1)
    policy.record_window("demo", T0, drift_detected=False, drift_share=0.1)
    policy.record_window("demo", march, drift_detected=True, drift_share=0.6)  # the backfilled window
    for day in (10, 11):  # the newest windows drifted
        policy.record_window("demo", T0 + timedelta(days=day), drift_detected=True, drift_share=0.7)
    old = policy.decide("demo", source="drift", key="march", window_end=march, now=T0 + timedelta(days=11))
    assert not old.triggered and old.reason.startswith("hysteresis: drift in 1 of the last 2"), old.reason
    new = policy.decide("demo", source="drift", key="today", window_end=T0 + timedelta(days=11), now=T0 + timedelta(days=11))
    assert new.triggered, new.reason


def test_an_expired_lock_is_taken_over(env) -> None:  # noqa: ANN001
    dead = policy.decide("demo", source="manual", key="k1", now=T0)
    assert dead.triggered
    later = policy.decide("demo", source="manual", key="k2", now=T0 + timedelta(hours=8))
    assert later.triggered, "a lock past lock_ttl (2h) and past the cooldown (6h) is presumed dead"
    assert dead.token is not None
    assert not policy.holds("demo", dead.token)


def _burst(n: int) -> list[policy.Decision]:
    out: list[policy.Decision] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            d = policy.decide("demo", source="alert", key=f"alert:demo:{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            return
        with lock:
            out.append(d)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_a_burst_of_ten_triggers_exactly_one_on_sqlite(env) -> None:  # noqa: ANN001
    decisions = _burst(10)
    assert sum(d.triggered for d in decisions) == 1
    assert len(policy.history("demo")) == 10
    # The losers see the winner's lock, or (once its decision is committed) its cooldown.
    assert all("already running" in d.reason or d.reason.startswith("cooldown") for d in decisions if not d.triggered)


@pytest.mark.postgres
def test_a_burst_of_ten_triggers_exactly_one_on_postgres(env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from pg import temp_database  # type: ignore[import-not-found]

    with temp_database("retune_policy") as url:
        monkeypatch.setenv("RETUNE_POLICY_DB", url.replace("postgresql://", "postgresql+psycopg2://"))
        decisions = _burst(10)
        assert sum(d.triggered for d in decisions) == 1
        assert len(policy.history("demo")) == 10
        policy._make_tables.cache_clear()


@pytest.mark.postgres
def test_a_decision_behind_a_held_lock_fails_after_the_lock_timeout(env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Another session holds an exclusive lock on the decisions table (a migration, a VACUUM
    FULL): a decision fails after the lock timeout (retune.db), leaves no lock row and no
    decision behind, and the same request triggers once the table is free. Without the
    timeout it waited as long as the lock was held (here: until the test's safety timer
    gave the lock back, 20 s, and then decided)."""
    import time

    import psycopg2
    import sqlalchemy as sa
    from pg import temp_database  # type: ignore[import-not-found]

    from retune import db

    monkeypatch.setattr(db, "LOCK_TIMEOUT_S", 1)
    with temp_database("retune_db_lock") as url:
        monkeypatch.setenv("RETUNE_POLICY_DB", url.replace("postgresql://", "postgresql+psycopg2://", 1))
        policy._make_tables.cache_clear()
        try:
            warm = policy.decide("demo", source="alert", key="warm-up", force=True)  # creates the tables
            assert warm.triggered and warm.token is not None
            policy.release("demo", warm.token, outcome="test")
            holder = psycopg2.connect(url)
            holder.cursor().execute("LOCK TABLE retune_decisions IN ACCESS EXCLUSIVE MODE")
            release = threading.Timer(20, holder.rollback)  # bounds the old behaviour's wait: fail, not hang
            release.start()
            try:
                start = time.monotonic()
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    policy.decide("demo", source="alert", key="alert:locked", force=True)
                waited = time.monotonic() - start
            finally:
                release.cancel()
                holder.rollback()
                holder.close()
            assert waited < 10, f"waited {waited:.1f} s for a 1 s lock timeout"
            assert policy.current_lock("demo") is None, "no lock left by the failed decision"
            assert [d["idempotency_key"] for d in policy.history("demo")] == ["warm-up"]
            assert policy.decide("demo", source="alert", key="alert:locked", force=True).triggered, "the resend triggers"
        finally:
            policy._make_tables.cache_clear()


def test_a_cleared_rerun_of_the_same_run_is_admitted_once_the_first_attempt_ended(env) -> None:  # noqa: ANN001
    """The key of a run's own decision is the run: a retry of its gate task while it holds the
    lock gets that lock again (without it the retry would skip and the lock leak until
    lock_ttl); after the run ended, a cleared rerun is decided afresh; another run waits."""
    first = policy.decide("demo", source="manual", key="retune_model/run-1", rerun=True, now=T0)
    assert first.triggered
    while_running = policy.decide("demo", source="manual", key="retune_model/run-1", rerun=True, now=T0 + timedelta(minutes=1))
    assert while_running.triggered and while_running.token == first.token, "the same run's retried task keeps its lock"
    assert while_running.reason == "triggered (the same run again, its lock still held)"
    assert first.token is not None
    policy.release("demo", first.token, outcome="ended without registering (failed or skipped)")
    kept = [r for r in policy.history("demo") if r["token"] == first.token]
    assert len(kept) == 2 and all(r["outcome"] for r in kept), "both decisions recorded, both closed by the release"
    again = policy.decide("demo", source="manual", key="retune_model/run-1", rerun=True, now=T0 + timedelta(minutes=2))
    assert again.triggered, "a person cleared the run: it may run again (registration stays idempotent)"
    other = policy.decide("demo", source="manual", key="retune_model/run-2", now=T0 + timedelta(minutes=3))
    assert not other.triggered


def test_a_new_run_is_held_to_the_cooldown_and_only_its_rerun_is_not(env) -> None:  # noqa: ANN001
    """admit passes rerun for every run without an idempotency_key (its key is the run): every
    unforced form or REST run skipped the cooldown, which only force should."""
    first = policy.decide("demo", source="manual", key="retune_model/run-1", rerun=True, now=T0)
    assert first.triggered and first.token is not None
    policy.release("demo", first.token, outcome="registered v1, promoted")
    second = policy.decide("demo", source="manual", key="retune_model/run-2", rerun=True, now=T0 + timedelta(hours=1))
    assert not second.triggered and second.reason.startswith("cooldown"), second.reason
    cleared = policy.decide("demo", source="manual", key="retune_model/run-1", rerun=True, now=T0 + timedelta(hours=2))
    assert cleared.triggered, "run-1 cleared by a person: the same request again, no cooldown"


def test_a_skipped_request_may_be_sent_again(env) -> None:  # noqa: ANN001
    """Only a request that triggered a retune makes its key a duplicate: an alert skipped
    (here by the cooldown of another retune) is decided afresh when its sender repeats it."""
    running = policy.decide("demo", source="manual", key="k1", now=T0)
    skipped = policy.decide("demo", source="alert", key="alert:a", now=T0 + timedelta(minutes=1))
    assert not skipped.triggered and skipped.reason.startswith("cooldown")
    assert running.token is not None
    policy.release("demo", running.token, outcome="registered v2")
    repeated = policy.decide("demo", source="alert", key="alert:a", now=T0 + timedelta(hours=7))
    assert repeated.triggered, repeated.reason
    again = policy.decide("demo", source="alert", key="alert:a", now=T0 + timedelta(hours=20))
    assert not again.triggered and "duplicate" in again.reason


def test_a_cancelled_decision_gives_the_lock_back_and_does_not_count(env) -> None:  # noqa: ANN001
    """The run of a triggered decision could not be created: cancel frees the lock, starts no
    cooldown, and the retry with the same key triggers."""
    first = policy.decide("demo", source="alert", key="alert:b", now=T0)
    assert first.triggered and first.token is not None
    assert policy.cancel("demo", first.token, reason="creating the run failed: HTTP 500")
    assert not policy.holds("demo", first.token)
    row = next(r for r in policy.history("demo") if r["token"] == first.token)
    assert row["triggered"] is False and row["outcome"] == "cancelled: creating the run failed: HTTP 500"
    retry = policy.decide("demo", source="alert", key="alert:b", now=T0 + timedelta(minutes=1))
    assert retry.triggered, "no duplicate and no cooldown from a cancelled decision"
    assert not policy.cancel("demo", first.token, reason="again"), "the old token holds nothing"
    assert policy.holds("demo", str(retry.token)), "cancelling an old token leaves the new lock alone"


def test_long_keys_stay_distinct_and_idempotent(env) -> None:  # noqa: ANN001
    a, b = "x" * 600 + "a", "x" * 600 + "b"
    assert len(policy.stored_key(a)) == policy.MAX_KEY and policy.stored_key(a) != policy.stored_key(b)
    assert policy.stored_key("short") == "short"
    first = policy.decide("demo", source="alert", key=a, now=T0)
    assert first.token is not None
    policy.release("demo", first.token, outcome="done")
    assert "duplicate" in policy.decide("demo", source="alert", key=a, now=T0 + timedelta(hours=7)).reason
    assert policy.decide("demo", source="alert", key=b, now=T0 + timedelta(hours=7)).triggered


def _drifted(config: str, end: str) -> dict:
    return {
        "config": config,
        "drift_detected": True,
        "window": {"end": end},
        "summary": {"drift_share": 0.5},
        "monitor_run_id": "r",
        "report_uri": "u",
    }


def test_planning_that_fails_midway_cancels_what_it_decided(env) -> None:  # noqa: ANN001
    """plan_retunes fails on the second model (its config is gone): the first model's
    decision must not keep its lock for a run that will never be created, and the task's
    retry triggers it again."""
    from retune import pipeline
    from retune.errors import ConfigError

    for day in (0, 1):  # the two windows up to the one decided (2025-06-02): hysteresis met
        policy.record_window("demo", T0 + timedelta(days=day), drift_detected=True, drift_share=0.5)
    with pytest.raises(ConfigError, match="ghost"):
        pipeline.plan_retunes([_drifted("demo", "2025-06-02"), _drifted("ghost", "2025-06-02")])
    [decision] = policy.history("demo")
    assert decision["triggered"] is False and decision["outcome"].startswith("cancelled: planning failed")
    assert policy.current_lock("demo") is None
    [conf] = pipeline.plan_retunes([_drifted("demo", "2025-06-02")])
    assert policy.holds("demo", conf["policy_token"])


def test_a_retried_plan_triggers_its_open_decision_again(env) -> None:  # noqa: ANN001
    """retunes_to_trigger died after plan_retunes returned (worker lost, XCom push failed): its
    retry was answered "duplicate" and planned nothing, so no retune started and the model
    stayed locked until lock_ttl. The retry gets the same conf; once the retune has ended,
    the window is a duplicate again."""
    from retune import pipeline

    for day in (0, 1):
        policy.record_window("demo", T0 + timedelta(days=day), drift_detected=True, drift_share=0.5)
    [first] = pipeline.plan_retunes([_drifted("demo", "2025-06-02")])
    [again] = pipeline.plan_retunes([_drifted("demo", "2025-06-02")])
    assert again == first, "the same decision, the same token"
    assert policy.holds("demo", first["policy_token"])
    policy.release("demo", first["policy_token"], outcome="registered v2, promoted")
    assert pipeline.plan_retunes([_drifted("demo", "2025-06-02")]) == [], "its retune ended: a duplicate"
    assert policy.history("demo")[0]["reason"].startswith("duplicate")


def test_a_bad_window_end_names_the_param_and_gives_the_lock_back(env) -> None:  # noqa: ANN001
    from retune import pipeline
    from retune.errors import ParamError

    kwargs = {"window_kind": "latest", "force": False, "trigger": "manual", "drift": None}
    with pytest.raises(ParamError, match=r"window_end: '2025-02-30' is not an ISO date"):
        pipeline.admit("demo", conf={}, run_key="retune_model/r1", window_end="2025-02-30", **kwargs)  # type: ignore[arg-type]
    [decision] = policy.history("demo")
    assert decision["triggered"] is False and "window_end" in decision["outcome"]
    assert policy.current_lock("demo") is None
    again = policy.decide("demo", source="manual", key="retune_model/r1", rerun=True)
    assert again.triggered, "the cleared run is decided afresh"


def test_a_failure_recording_the_decision_leaves_no_lock(env) -> None:  # noqa: ANN001
    """The database fails between taking the lock and recording the decision (a dropped
    connection): nothing is kept, so the sender's retry triggers instead of being told for
    lock_ttl that a retune that never started is running."""
    import sqlalchemy as sa

    engine = policy._tables(env.policy_db)[0]
    failures = []

    def fail_once(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        if statement.lstrip().upper().startswith("INSERT INTO RETUNE_DECISIONS") and not failures:
            failures.append(statement)
            raise sa.exc.OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))

    sa.event.listen(engine, "before_cursor_execute", fail_once)
    try:
        with pytest.raises(sa.exc.OperationalError, match="server closed"):
            policy.decide("demo", source="alert", key="alert:x", now=T0)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_once)
    assert failures, "the fault was injected"
    assert policy.current_lock("demo", now=T0) is None, "a lock without its decision was left behind"
    assert policy.history("demo") == []
    retry = policy.decide("demo", source="alert", key="alert:x", now=T0 + timedelta(minutes=1))
    assert retry.triggered, retry.reason


def test_a_retune_its_drift_gate_skipped_starts_no_cooldown(env) -> None:  # noqa: ANN001
    """An alert's retune found no drift and tuned nothing: the monitor's drift an hour later
    is not refused by a cooldown (6 h here); the alert's resend is still a duplicate, and a
    retune that did run still starts the cooldown."""
    alert = policy.decide("demo", source="alert", key="alert:perf", now=T0)
    assert alert.token is not None
    assert policy.skip("demo", alert.token, reason="no drift in the window: nothing to retune")
    row = next(r for r in policy.history("demo") if r["token"] == alert.token)
    assert row["triggered"] is True and row["outcome"] == "skipped: no drift in the window: nothing to retune"
    assert "duplicate" in policy.decide("demo", source="alert", key="alert:perf", now=T0 + timedelta(minutes=30)).reason
    ran = policy.decide("demo", source="manual", key="k-drift", now=T0 + timedelta(hours=1))
    assert ran.triggered, ran.reason
    assert ran.token is not None
    policy.release("demo", ran.token, outcome="registered v2")
    later = policy.decide("demo", source="manual", key="k-next", now=T0 + timedelta(hours=2))
    assert not later.triggered and later.reason.startswith("cooldown")


def test_a_cleared_run_of_the_monitor_or_an_alert_retunes_again(env) -> None:  # noqa: ANN001
    """A monitor- or alert-triggered run failed (MLflow down) and gave its lock back; a person
    fixes MLflow and clears the run: it is decided again as the same request (no duplicate,
    no hysteresis against newer windows) instead of every task skipping. A run whose lock
    expired while it ran, and was taken over, still skips."""
    from retune import pipeline

    for day in (0, 1):
        policy.record_window("demo", T0 + timedelta(days=day), drift_detected=True, drift_share=0.5)
    [conf] = pipeline.plan_retunes([_drifted("demo", "2025-06-02")])
    policy.record_window("demo", T0 + timedelta(days=2), drift_detected=False, drift_share=0.0)  # a later window
    kwargs = {"window_kind": "latest", "window_end": "2025-06-02", "force": False, "trigger": "drift"}
    drift = {"drift_detected": True}
    first = pipeline.admit("demo", conf=conf, run_key="retune_model/m1", drift=drift, **kwargs)  # type: ignore[arg-type]
    assert first["retune"] and first["token"] == conf["policy_token"]
    pipeline.finish("demo", first["token"], registered=None)  # the run failed: lock given back
    cleared = pipeline.admit("demo", conf=conf, run_key="retune_model/m1", drift=drift, **kwargs)  # type: ignore[arg-type]
    assert cleared["retune"], cleared["reason"]
    assert cleared["token"] != conf["policy_token"] and policy.holds("demo", cleared["token"])
    pipeline.finish("demo", cleared["token"], registered=None)

    alert = policy.decide("demo", source="alert", key="alert:late", force=True, now=T0)  # lock_ttl 2 h: long expired
    taken = policy.decide("demo", source="manual", key="k-other", force=True)
    assert taken.triggered, "the expired lock was taken over"
    stale = {"config": "demo", "policy_token": alert.token, "idempotency_key": "alert:late"}
    skipped = pipeline.admit("demo", conf=stale, run_key="retune_model/a1", drift=drift, **{**kwargs, "trigger": "alert"})  # type: ignore[arg-type]
    assert not skipped["retune"] and "expired" in skipped["reason"]
    assert policy.holds("demo", str(taken.token)), "the run that took the lock over keeps it"


def test_a_working_retune_keeps_its_lock_past_lock_ttl(env, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    """lock_ttl (2 h here) bounds a retune's silence, not its length: the run renews its lock
    when it starts (it may have queued behind another model's retune) and as trials finish,
    so a long study is not taken for dead and retuned again right after it."""
    import logging

    from retune import pipeline

    now = datetime.now(UTC)
    queued = policy.decide("demo", source="alert", key="alert:q", now=now - timedelta(minutes=90))  # 30 min left
    conf = {"config": "demo", "policy_token": queued.token, "idempotency_key": "alert:q"}
    kwargs = {"window_kind": "latest", "window_end": "2025-06-02", "force": False, "trigger": "alert"}
    admitted = pipeline.admit("demo", conf=conf, run_key="retune_model/q1", drift={"drift_detected": True}, **kwargs)  # type: ignore[arg-type]
    assert admitted["retune"]
    lock = policy.current_lock("demo")
    assert lock is not None and datetime.fromisoformat(lock["expires_at"]) > now + timedelta(minutes=110)

    keeper = pipeline.LockKeeper("demo", str(queued.token), every=0.0)
    assert policy.renew("demo", str(queued.token), now=datetime.now(UTC) - timedelta(minutes=110))  # 10 min left
    keeper(None, None)  # a trial finished
    lock = policy.current_lock("demo")
    assert lock is not None and datetime.fromisoformat(lock["expires_at"]) > datetime.now(UTC) + timedelta(minutes=110)

    assert queued.token is not None
    policy.release("demo", queued.token, outcome="failed")
    with caplog.at_level(logging.WARNING, logger="retune.pipeline"):
        keeper(None, None)
    assert not keeper.held and "expired and was taken over or given back" in caplog.text
    assert not policy.renew("demo", queued.token), "a lock given back is not taken again"


def test_a_run_whose_drift_gate_failed_cancels_the_decision_in_its_conf(env) -> None:  # noqa: ANN001
    """An alert's run: its drift gate fails (here: no data file) after renewing the conf's
    token, and pushes no token, so release_lock had none and the model stayed locked for
    lock_ttl while the alert's resend was a duplicate. finish() with the conf's token of a
    gate that did not finish cancels that decision: lock back, the resend triggers. A
    decision that already ended (a cleared run's) keeps its outcome."""
    from retune import pipeline
    from retune.errors import DataError

    key = "alert:demo:c6d3c1a4:2025-06-01T10:00:00Z"
    decided = policy.decide("demo", source="alert", key=key)
    conf = {"config": "demo", "trigger": "alert", "policy_token": decided.token, "idempotency_key": key}
    kwargs = {"window_kind": "latest", "window_end": None, "force": False, "trigger": "alert", "drift": None}
    with pytest.raises(DataError, match="no data file"):
        pipeline.admit("demo", conf=conf, run_key="retune_model/a1", **kwargs)  # type: ignore[arg-type]
    assert policy.holds("demo", str(decided.token)), "kept for the gate's retry"

    gated = pipeline.finish("demo", None, registered=None, conf_token=decided.token)  # the gate finished: not ours
    assert gated.startswith("ended without registering") and policy.holds("demo", str(decided.token))
    outcome = pipeline.finish("demo", None, registered=None, conf_token=decided.token, gate_ran=False)
    assert outcome == "cancelled: the drift gate failed before it admitted the retune"
    assert policy.current_lock("demo") is None
    row = next(r for r in policy.history("demo") if r["token"] == decided.token)
    assert row["triggered"] is False and row["outcome"] == outcome
    resend = policy.decide("demo", source="alert", key=key)
    assert resend.triggered, resend.reason

    assert resend.token is not None
    policy.release("demo", resend.token, outcome="registered v2, promoted")
    pipeline.finish("demo", None, registered=None, conf_token=resend.token, gate_ran=False)
    row = next(r for r in policy.history("demo") if r["token"] == resend.token)
    assert (row["triggered"], row["outcome"]) == (True, "registered v2, promoted"), "an ended decision is not cancelled"


def test_a_covered_request_is_not_a_triggered_decision_but_its_resend_is_a_duplicate(env) -> None:  # noqa: ANN001
    """Two alert series about one model in one payload: the second is covered by the first's
    retune. It was stored triggered, so `retune status` showed two TRIGGER lines for one
    retune. It is stored not triggered (covered) and still makes its resend a duplicate; a
    cancelled retune takes its covered requests with it; and a database written before (a
    covered row stored triggered) reads the same."""
    import sqlalchemy as sa

    by = policy.decide("demo", source="alert", key="alert:a", now=T0)
    covered = policy.cover("demo", "alert:b", by)
    assert not covered.triggered and covered.reason == f"covered by decision {by.decision_id}"
    rows = {r["idempotency_key"]: r for r in policy.history("demo")}
    assert (rows["alert:a"]["triggered"], rows["alert:a"]["covered"]) == (True, False)
    assert (rows["alert:b"]["triggered"], rows["alert:b"]["covered"]) == (False, True)
    engine, decisions, _, _ = policy._tables(env.policy_db)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(decisions.c.idempotency_key).where(decisions.c.triggered.is_(True))).scalars().all()
    assert stored == ["alert:a"], "one retune, one triggered row"
    assert policy.open_decision("demo", "alert:b") is not None
    resend = policy.decide("demo", source="alert", key="alert:b", now=T0 + timedelta(minutes=1))
    assert not resend.triggered and "duplicate" in resend.reason

    assert by.token is not None
    policy.cancel("demo", by.token, reason="creating the run failed")
    assert policy.open_decision("demo", "alert:b") is None
    assert policy.decide("demo", source="alert", key="alert:b", now=T0 + timedelta(minutes=2)).triggered, "decided afresh"

    with engine.begin() as conn:  # what cover() wrote before
        conn.execute(
            sa.insert(decisions).values(
                created_at=T0,
                config="demo",
                source="alert",
                idempotency_key="alert:old",
                forced=False,
                triggered=True,
                reason="covered by decision 1",
                token="ab" * 16,
            )
        )
    [old] = [r for r in policy.history("demo") if r["idempotency_key"] == "alert:old"]
    assert (old["triggered"], old["covered"]) == (False, True)
    assert "duplicate" in policy.decide("demo", source="alert", key="alert:old", now=T0 + timedelta(minutes=3)).reason


def test_a_read_creates_no_table_and_shares_the_writers_engine(env) -> None:  # noqa: ANN001
    """status reads through _existing_tables, the policy writes through _tables: before any
    decision a read finds nothing and creates nothing; after one, both use one engine (one
    connection pool per database and process; the read used to build a second)."""
    import sqlalchemy as sa

    url = env.policy_db
    assert policy._existing_tables(url) is None
    assert policy.history("demo") == []
    assert not sa.inspect(policy._make_tables(url)[0]).get_table_names()  # the reads created nothing
    policy.decide("demo", source="manual", key="k1")
    read = policy._existing_tables(url)
    assert read is not None
    assert read[0] is policy._tables(url)[0]
    assert [d["source"] for d in policy.history("demo")] == ["manual"]


def test_a_retried_gate_of_a_request_with_its_own_key_takes_back_the_lock_its_killed_attempt_took(env) -> None:  # noqa: ANN001
    """A REST run with its own idempotency_key: its gate's first attempt decided (lock taken)
    and was killed before it handed the token on. The retry (try 2) goes on with that lock,
    where it used to skip as a duplicate of itself, leaving the model locked for lock_ttl
    with no retune. Another run with the same key stays a duplicate, and so does the retry
    once that retune ended."""
    from retune import pipeline

    conf = {"config": "demo", "idempotency_key": "deploy-42"}
    kwargs = {"window_kind": "latest", "window_end": "2025-06-02", "force": False, "trigger": "api"}
    drift = {"drift_detected": True}
    lost = policy.decide("demo", source="api", key="deploy-42")  # the killed attempt's decision
    assert lost.triggered and lost.token is not None
    other = pipeline.admit("demo", conf=conf, run_key="retune_model/r2", drift=drift, **kwargs)  # type: ignore[arg-type]
    assert not other["retune"] and "duplicate" in other["reason"], "a first attempt is a new run: a duplicate"
    retried = pipeline.admit("demo", conf=conf, run_key="retune_model/r1", drift=drift, retry=True, **kwargs)  # type: ignore[arg-type]
    assert retried["retune"], retried["reason"]
    assert retried["token"] == lost.token and policy.holds("demo", lost.token)
    assert "the same run again" in retried["reason"]
    pipeline.finish("demo", retried["token"], registered=None)
    assert policy.current_lock("demo") is None, "the retry's release gives the lock back"
    ended = pipeline.admit("demo", conf=conf, run_key="retune_model/r1", drift=drift, retry=True, **kwargs)  # type: ignore[arg-type]
    assert not ended["retune"] and "duplicate" in ended["reason"]

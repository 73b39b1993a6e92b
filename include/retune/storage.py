"""Optuna storage for one or many trial workers.

- PostgreSQL (or any RDB URL but SQLite): :class:`optuna.storages.RDBStorage` with trial
  heartbeats. A worker that dies mid-trial stops beating; after ``grace_period`` seconds the
  next worker to start a trial marks it FAIL and re-enqueues it (up to ``max_retry`` times),
  and its MLflow child run is marked FAILED. Optuna never fails a RUNNING trial that has
  not recorded a single heartbeat (its worker died between ``ask`` and the first beat, e.g.
  while the database restarted); :class:`HeartbeatStorage` treats such a trial as stale too
  once it is ``grace_period`` seconds old, so it cannot stay RUNNING for ever.
- SQLite with one worker: a plain RDBStorage (the embedded default).
- SQLite with more than one worker: Optuna's FAQ advises against SQLite for parallel
  optimization ("database is locked"), so the study goes to a JournalStorage file beside it
  (``<state>/optuna.journal``). JournalStorage has no heartbeats in Optuna 5: a trial whose
  worker died stays RUNNING and does not count towards the budget.
- ``journal:///path/to/file``: a JournalStorage file, explicitly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retune.config import TuningConfig
from retune.settings import Settings

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

JOURNAL_SCHEME = "journal://"


class StaleTrialCallback:
    """Re-enqueue a trial whose worker died and mark its MLflow child run FAILED.

    Args:
        tracking_uri: MLflow tracking URI of the child runs.
        max_retry: How often one trial may be retried.
    """

    def __init__(self, tracking_uri: str, max_retry: int) -> None:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        self.tracking_uri = tracking_uri
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=False)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log.warning("trial %d of %s lost its worker (no heartbeat): marked FAIL, retrying", trial.number, study.study_name)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            from mlflow import MlflowClient

            from retune.tracking import fail_trial_run

            fail_trial_run(MlflowClient(tracking_uri=self.tracking_uri), run_id, "worker died (heartbeat stale)")
        self.retry(study, trial)


def never_beaten_trial_ids(storage: optuna.storages.RDBStorage, study_id: int, grace_period: float) -> list[int]:
    """RUNNING trials of a study that never recorded a heartbeat and started more than
    ``grace_period`` seconds ago.

    A live worker records its trial's first heartbeat right after ``ask`` (milliseconds), so
    a trial without one after the grace period lost its worker before the first beat.
    ``datetime_start`` is the creating worker's clock, compared with this one's.

    Args:
        storage: The study's RDB storage.
        study_id: The study.
        grace_period: Seconds.

    Returns:
        The trial ids.
    """
    from datetime import datetime, timedelta

    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    cutoff = datetime.now() - timedelta(seconds=grace_period)
    session = storage.scoped_session()
    try:
        unbeaten = (
            session.query(models.TrialModel)
            .outerjoin(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(
                models.TrialModel.study_id == study_id,
                models.TrialModel.state == TrialState.RUNNING,
                models.TrialHeartbeatModel.trial_heartbeat_id.is_(None),
            )
            .all()
        )
        # datetime_start: naive local time (Optuna converts from the naive UTC it stores)
        ids = [int(t.trial_id) for t in unbeaten if t.datetime_start is not None and t.datetime_start < cutoff]
        session.commit()
    finally:
        session.close()
    return ids


def _heartbeat_storage_class() -> type[optuna.storages.RDBStorage]:
    from optuna.storages import RDBStorage

    class HeartbeatStorage(RDBStorage):
        """An RDBStorage whose stale trials include RUNNING trials that never beat.

        Optuna's ``fail_stale_trials`` (run before every trial) only looks at trials with a
        heartbeat row; this adds those without one (see :func:`never_beaten_trial_ids`).
        """

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            stale = list(super()._get_stale_trial_ids(study_id))
            grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
            stale += [t for t in never_beaten_trial_ids(self, study_id, grace) if t not in stale]
            return stale

    return HeartbeatStorage


def journal_path(settings: Settings) -> Path:
    """The JournalStorage file used for parallel studies on the embedded default."""
    return settings.state_dir / "optuna.journal"


def open_storage(settings: Settings, tuning: TuningConfig, *, n_workers: int = 1) -> optuna.storages.BaseStorage:
    """The storage a study with ``n_workers`` parallel workers should use.

    Args:
        settings: Where state lives (``optuna_storage`` URL).
        tuning: Heartbeat interval, grace period and retries.
        n_workers: Parallel workers on the study.

    Returns:
        An Optuna storage.
    """
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = settings.optuna_storage
    if url.startswith(JOURNAL_SCHEME):
        path = url[len(JOURNAL_SCHEME) :]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite"):
        if n_workers > 1:
            journal = journal_path(settings)
            journal.parent.mkdir(parents=True, exist_ok=True)
            log.info("%d workers on SQLite: using the journal file %s (SQLite locks under parallel writers)", n_workers, journal)
            return JournalStorage(JournalFileBackend(str(journal)))
        return RDBStorage(url)
    return _heartbeat_storage_class()(
        url,
        engine_kwargs={"pool_pre_ping": True},
        heartbeat_interval=tuning.heartbeat_interval,
        grace_period=tuning.grace_period,
        heartbeat_stale_trial_callback=StaleTrialCallback(settings.tracking_uri, tuning.max_retry),
    )


def lookup_storages(settings: Settings, tuning: TuningConfig) -> list[Any]:
    """Every storage a model's earlier studies may be in (for warm start)."""
    out: list[Any] = [open_storage(settings, tuning)]
    if settings.optuna_storage.startswith("sqlite") and journal_path(settings).exists():
        out.append(open_storage(settings, tuning, n_workers=2))
    return out


def find_study(settings: Settings, tuning: TuningConfig, study_name: str) -> optuna.Study | None:
    """The study ``study_name`` from whichever of :func:`lookup_storages` holds it, or ``None``."""
    import optuna

    for storage in lookup_storages(settings, tuning):
        try:
            return optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not in this storage
            continue
    return None

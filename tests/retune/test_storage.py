"""retune.storage on a real PostgreSQL database: trials whose worker died are failed and
retried, including a trial that died before its first heartbeat (Optuna leaves those RUNNING)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from pg import age_trial  # type: ignore[import-not-found]

from retune.config import TuningConfig
from retune.settings import get_settings
from retune.storage import never_beaten_trial_ids, open_storage
from retune.tuning import fail_stale

pytestmark = pytest.mark.postgres

optuna.logging.set_verbosity(optuna.logging.WARNING)
TUNING = TuningConfig(heartbeat_interval=1, grace_period=5, max_retry=1)


@pytest.fixture
def pg_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from pg import temp_database  # type: ignore[import-not-found]

    with temp_database("retune_storage") as url:
        sa_url = url.replace("postgresql://", "postgresql+psycopg2://")
        monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("RETUNE_OPTUNA_STORAGE", sa_url)
        yield sa_url
        sqlalchemy.orm.close_all_sessions()


def _study(url: str) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    storage = open_storage(get_settings(), TUNING)
    assert isinstance(storage, optuna.storages.RDBStorage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.create_study(study_name="s", storage=storage, load_if_exists=True), storage


def _states(study: optuna.Study) -> list[tuple[int, str]]:
    return [(t.number, t.state.name) for t in study.get_trials(deepcopy=False)]


def test_a_trial_that_never_beat_is_failed_and_retried_once_past_the_grace_period(pg_url: str) -> None:
    study, storage = _study(pg_url)
    lost = study.ask()  # RUNNING, and no heartbeat yet: a worker that dies here leaves no beat

    fail_stale(study)
    assert _states(study) == [(0, "RUNNING")], "a fresh trial between ask and its first beat is alive"
    assert never_beaten_trial_ids(storage, study._study_id, TUNING.grace_period) == []

    age_trial(pg_url, lost._trial_id, start=True)
    assert never_beaten_trial_ids(storage, study._study_id, TUNING.grace_period) == [lost._trial_id]
    fail_stale(study)
    trials = study.get_trials(deepcopy=False)
    assert _states(study) == [(0, "FAIL"), (1, "WAITING")], "failed, and re-enqueued by the stale-trial callback"
    assert trials[1].system_attrs.get("failed_trial") == 0


def test_a_beating_trial_stays_running_and_one_whose_beats_stopped_is_failed(pg_url: str) -> None:
    study, storage = _study(pg_url)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    age_trial(pg_url, trial._trial_id, start=True)  # old, but it beat just now

    fail_stale(study)
    assert _states(study) == [(0, "RUNNING")]

    age_trial(pg_url, trial._trial_id, heartbeat=True)
    fail_stale(study)
    assert [s for _, s in _states(study)] == ["FAIL", "WAITING"]


def test_fail_stale_is_a_no_op_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RETUNE_OPTUNA_STORAGE", raising=False)
    study = optuna.create_study(storage=open_storage(get_settings(), TUNING))
    study.ask()
    fail_stale(study)
    assert [t.state for t in study.trials] == [TrialState.RUNNING]

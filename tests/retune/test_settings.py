"""Where Retune keeps its state (retune.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune.errors import ConfigError
from retune.settings import get_settings


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MLFLOW_TRACKING_URI", "RETUNE_OPTUNA_STORAGE", "RETUNE_POLICY_DB", "RETUNE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_embedded_default_keeps_every_database_in_the_state_folder(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    s = get_settings()
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert s.optuna_storage == f"sqlite:///{tmp_path / 'state' / 'optuna.db'}"
    assert s.policy_db == f"sqlite:///{tmp_path / 'state' / 'policy.db'}"
    assert (tmp_path / "state").is_dir()


@pytest.mark.parametrize("folder", ["50%20off", "what?", "take#2"])
def test_a_state_folder_a_sqlite_url_cannot_carry_is_refused(embedded: pytest.MonkeyPatch, tmp_path: Path, folder: str) -> None:
    """SQLAlchemy reads sqlite:///.../50%20off as '50 off' and cuts at '?': the databases
    would be written somewhere else than the folder named."""
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / folder))
    with pytest.raises(ConfigError, match=r"RETUNE_STATE_DIR: .* a SQLite URL cannot carry"):
        get_settings()
    assert not (tmp_path / folder).exists(), "nothing created"


def test_such_a_folder_is_fine_when_no_sqlite_url_is_built_from_it(embedded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    embedded.setenv("RETUNE_STATE_DIR", str(tmp_path / "50%20off"))
    embedded.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    embedded.setenv("RETUNE_OPTUNA_STORAGE", "postgresql+psycopg2://postgres@127.0.0.1:5432/optuna")
    assert get_settings().policy_db.startswith("postgresql")

"""Where Retune keeps its state, read from the environment when asked (never on import).

The embedded default keeps everything in one folder (``RETUNE_STATE_DIR``, default
``./.retune``): SQLite files for MLflow and Optuna and the MLflow artifacts. The production
topology sets the URLs instead:

=========================  ==========================================  ==========================
variable                   meaning                                     default
=========================  ==========================================  ==========================
``RETUNE_STATE_DIR``       folder for embedded state                   ``./.retune``
``RETUNE_CONFIG_DIR``      folder of model configs                     ``<repo>/include/configs``
``MLFLOW_TRACKING_URI``    MLflow tracking server or database          ``sqlite:///<state>/mlflow.db``
``RETUNE_ARTIFACT_ROOT``   artifact root for new experiments           ``<state>/mlartifacts``, unless
                                                                       the tracking URI is a server
``RETUNE_OPTUNA_STORAGE``  Optuna storage URL                          ``sqlite:///<state>/optuna.db``
``RETUNE_POLICY_DB``       trigger decisions and locks (SQLAlchemy)    the Optuna DB if PostgreSQL,
                                                                       else ``sqlite:///<state>/policy.db``
=========================  ==========================================  ==========================

The artifact root defaults to ``<state>/mlartifacts`` for every tracking URI that MLflow opens
itself (SQLite, PostgreSQL, MySQL, MS SQL, a ``file:`` or plain path): without one, MLflow
puts a new experiment's artifacts in ``./mlruns`` under the working directory of whichever
process created it. A tracking server (``http``, ``https``, ``databricks``) decides its own
artifact location (``--artifacts-destination``), so there it stays unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = PACKAGE_DIR.parent / "configs"
# Tracking URI schemes of an MLflow server, which chooses the artifact location itself.
SERVER_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc", "uc"})


@dataclass(frozen=True)
class Settings:
    """Resolved locations of Retune's state."""

    state_dir: Path
    config_dir: Path
    tracking_uri: str
    artifact_root: str | None
    optuna_storage: str
    policy_db: str

    @property
    def variables(self) -> dict[str, str]:
        """Variables that config paths may use, such as ``${RETUNE_STATE_DIR}``."""
        return {"RETUNE_STATE_DIR": str(self.state_dir)}

    def require_config_dir(self) -> Path:
        """The config folder, checked to exist.

        Returns:
            ``config_dir``.

        Raises:
            ConfigError: The folder does not exist. The message names ``RETUNE_CONFIG_DIR``:
                unset, it defaults to ``configs`` beside the package, which only a source
                checkout has (an installed package resolves it inside site-packages).
        """
        if self.config_dir.is_dir():
            return self.config_dir
        from retune.errors import ConfigError

        given = os.environ.get("RETUNE_CONFIG_DIR")
        why = (
            f"RETUNE_CONFIG_DIR is {given!r}"
            if given
            else "RETUNE_CONFIG_DIR is unset, and its default (include/configs beside the retune package) "
            "exists only in a source checkout, not where the package is installed"
        )
        raise ConfigError(
            f"config folder {self.config_dir} does not exist ({why}): "
            "set RETUNE_CONFIG_DIR to the folder holding the model configs (<name>.yaml)"
        )


def get_settings(*, create: bool = True) -> Settings:
    """Read the settings from the environment, creating the state folder when it is used.

    Args:
        create: Create the state folder of the embedded default (``False``: only read, for
            commands that write nothing, such as ``retune status``).

    Returns:
        The settings.

    Raises:
        ConfigError: ``RETUNE_STATE_DIR`` holds ``%``, ``?`` or ``#`` while a default SQLite
            URL is built from it: SQLAlchemy would read ``%20`` as a space and cut the path at
            ``?``, so the databases would land in another folder than the one named.
    """
    state = Path(os.environ.get("RETUNE_STATE_DIR", ".retune")).resolve()
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state / 'mlflow.db'}"
    optuna_url = os.environ.get("RETUNE_OPTUNA_STORAGE") or f"sqlite:///{state / 'optuna.db'}"
    artifact_root = os.environ.get("RETUNE_ARTIFACT_ROOT")
    if artifact_root is None and not is_tracking_server(tracking):
        artifact_root = (state / "mlartifacts").as_uri()
    policy_db = os.environ.get("RETUNE_POLICY_DB") or (
        optuna_url if optuna_url.startswith("postgresql") else f"sqlite:///{state / 'policy.db'}"
    )
    if "sqlite:" in tracking or "sqlite:" in optuna_url or "sqlite:" in policy_db:
        unsafe = sorted({c for c in "%?#" if c in str(state)})
        if unsafe and str(state) in f"{tracking} {optuna_url} {policy_db}":
            from retune.errors import ConfigError

            raise ConfigError(
                f"RETUNE_STATE_DIR: {str(state)!r} holds {' '.join(unsafe)}, which a SQLite URL cannot carry "
                "(SQLAlchemy reads %20 as a space and cuts the path at ?): choose a folder without them"
            )
        if create:
            state.mkdir(parents=True, exist_ok=True)
    return Settings(
        state_dir=state,
        config_dir=Path(os.environ.get("RETUNE_CONFIG_DIR", str(DEFAULT_CONFIG_DIR))).resolve(),
        tracking_uri=tracking,
        artifact_root=artifact_root,
        optuna_storage=optuna_url,
        policy_db=policy_db,
    )


def is_tracking_server(tracking_uri: str) -> bool:
    """Whether a tracking URI names an MLflow server, which decides where artifacts go.

    Example:
        >>> is_tracking_server("http://mlflow:5000"), is_tracking_server("databricks")
        (True, True)
        >>> is_tracking_server("postgresql+psycopg2://u@db/mlflow"), is_tracking_server("/srv/mlruns")
        (False, False)
    """
    return tracking_uri.partition(":")[0].strip().lower() in SERVER_SCHEMES

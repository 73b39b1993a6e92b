"""The MLflow Model Registry: versions, lineage tags and the champion alias.

Aliases: ``challenger`` marks the newest candidate, ``champion`` the model in production,
``previous_champion`` the one before it. ``champion`` only ever moves to a version that
passed every gate, including loading and predicting in a fresh process. Registration is
idempotent, keyed by the retune (``retune.key``): a rerun of a finished retune finds its
version instead of registering a second one.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
KEY_TAG = "retune.key"
PARAMS_TAG = "retune.params"


def get_alias(cl: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or ``None`` (also when the model does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return cl.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


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
    except MlflowException:
        return None
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
    except MlflowException:
        pass  # exists
    from mlflow.store.artifact.utils.models import _parse_model_id_if_present

    # A tracking server needs the logged model's id with a models:/<model_id> source.
    version = cl.create_model_version(
        name, model_uri, tags={**tags, KEY_TAG: key}, model_id=_parse_model_id_if_present(model_uri)
    )
    cl.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("registered %s version %s as %s", name, version.version, CHALLENGER)
    return version, True


def promote(cl: MlflowClient, name: str, version: str) -> str | None:
    """Move ``champion`` to ``version`` and ``previous_champion`` to the old champion.

    Returns:
        The previous champion's version, if there was one.
    """
    old = get_alias(cl, name, CHAMPION)
    if old is not None and str(old.version) == str(version):
        return None
    if old is not None:
        cl.set_registered_model_alias(name, PREVIOUS, old.version)
    cl.set_registered_model_alias(name, CHAMPION, str(version))
    log.info("promoted %s version %s to %s (previous: %s)", name, version, CHAMPION, old.version if old else None)
    return str(old.version) if old else None

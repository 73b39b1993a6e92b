"""Errors Retune raises for bad input: each message names the file, field or column."""

from __future__ import annotations


class RetuneError(Exception):
    """Base class of the errors Retune raises on purpose."""


class ConfigError(RetuneError, ValueError):
    """A model config is missing or invalid; the message names the file and field."""


class ParamError(ConfigError):
    """A run parameter (a Params field, a conf key, a CLI option) is invalid; the message
    names it."""


class DataError(RetuneError, ValueError):
    """A data window is unusable; the message names the source and the column."""


class RegistryError(RetuneError):
    """The model registry is not in the state a step expects."""


class RegistryUnavailableError(RegistryError):
    """The registry or its artifact store could not be read (a 5xx, a timeout, missing files):
    retry later. Never read as "no champion" or "the champion is broken"."""


class NothingToRollBackError(RegistryError):
    """The registered model has no version to roll back to (no champion, no
    ``previous_champion``, or both the same version): retrying cannot change that."""


class ChampionChangedError(RegistryError):
    """The champion moved (a rollback, a promotion by hand) after a challenger was validated
    against it: the challenger's gates no longer say it beats the model in production."""

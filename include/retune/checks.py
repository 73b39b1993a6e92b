"""Checking model configs before they are deployed: ``python -m retune check``.

Each YAML file in the config folder (or each named config) is loaded and validated as the
DAGs would load it; with ``data=True`` its reference period and its newest training window
are also read and checked (columns, dtypes, target, minimum rows), so a config that would
fail its first drift check or retune fails here, with the same message naming the file,
field or column. Nothing is written: no MLflow run, no Optuna study, no policy decision.

Example:
    >>> from retune.checks import check_configs  # doctest: +SKIP
    >>> [c.line() for c in check_configs(["demo"], data=True)]  # doctest: +SKIP
    ['ok    demo  include/configs/demo.yaml  reference 3,360 rows, latest 1,680 rows, features 4 numerical + 3 categorical']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from retune.config import NAME_PATTERN, config_path, load_named_file
from retune.errors import RetuneError
from retune.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class ConfigCheck:
    """The verdict on one config file."""

    name: str
    path: Path
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the config (and its data, when checked) is usable."""
        return self.error is None

    def line(self) -> str:
        """One line for a terminal: ``ok`` or ``FAIL``, the name, the file, and what was read or why not."""
        what = self.error if self.error is not None else ", ".join(f"{k} {v}" for k, v in self.details.items())
        return f"{'ok' if self.ok else 'FAIL':<5} {self.name}  {self.path}  {what}".rstrip()

    def to_json(self) -> dict[str, Any]:
        """A dict for ``--json``."""
        return {"name": self.name, "path": str(self.path), "ok": self.ok, "error": self.error, "details": self.details}


def config_files(config_dir: Path) -> list[Path]:
    """Every ``*.yaml`` and ``*.yml`` file of the config folder, sorted by name.

    Unlike :func:`retune.schedule.list_configs` this includes files whose names are not
    usable config names, so that a check reports them instead of the monitor skipping them.
    """
    return sorted([*config_dir.glob("*.yaml"), *config_dir.glob("*.yml")], key=lambda p: p.name)


def check_config(
    path: Path, *, data: bool = False, window_end: str | datetime | None = None, settings: Settings | None = None
) -> ConfigCheck:
    """Validate one config file and, with ``data``, read and check its windows.

    Args:
        path: The YAML file.
        data: Also read the reference period and the newest ``data.train_window`` before
            ``window_end``, and check them as a retune would.
        window_end: End of the training window (default: now).
        settings: State locations (``${VARS}`` for paths).

    Returns:
        The verdict; errors are the messages Retune raises for bad input. Any other
        exception is a bug: it is logged with its traceback and reported as this file's
        error, so the other configs are still checked.
    """
    from retune.data import load_window
    from retune.pipeline import retune_window

    settings = settings or get_settings()
    check = ConfigCheck(path.stem, path)
    if path.suffix != ".yaml" or not NAME_PATTERN.match(path.stem):
        check.error = (
            f"{path}: not a usable config file name: the monitor reads <name>.yaml with a lowercase name "
            "of letters, digits, '-' and '_' (it would never check this file)"
        )
        return check
    try:
        cfg = load_named_file(path)
        if data:
            reference, features = load_window(
                cfg, retune_window(cfg, window_end=None, kind="reference"), variables=settings.variables
            )
            latest, _ = load_window(
                cfg, retune_window(cfg, window_end=window_end, kind="latest"), variables=settings.variables, features=features
            )
            check.details["reference"] = f"{len(reference):,} rows"
            check.details["latest"] = f"{len(latest):,} rows"
            check.details["features"] = f"{len(features.numerical)} numerical + {len(features.categorical)} categorical"
    except RetuneError as exc:
        check.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug met on one config must not hide the verdicts on the others
        log.exception("retune check: %s failed with an unexpected error", path)
        check.error = f"{path}: unexpected error while checking this config (a bug in Retune; please report it): {type(exc).__name__}: {exc}"
    return check


def check_configs(
    names: list[str] | None = None,
    *,
    data: bool = False,
    window_end: str | datetime | None = None,
    settings: Settings | None = None,
) -> list[ConfigCheck]:
    """Check the named configs, or every file in the config folder.

    Args:
        names: Config names (``<config_dir>/<name>.yaml``); ``None``: every YAML file.
        data: Also read and check each config's data windows.
        window_end: End of the newest training window (default: now).
        settings: State locations (``config_dir``).

    Returns:
        One verdict per config, in order; an empty folder gives an empty list.
    """
    settings = settings or get_settings()
    if not names:
        return [check_config(p, data=data, window_end=window_end, settings=settings) for p in config_files(settings.config_dir)]
    checks = []
    for name in names:
        try:
            path = config_path(name, settings.config_dir)
            if not path.exists():
                settings.require_config_dir()
        except RetuneError as exc:
            checks.append(ConfigCheck(name, Path(name), error=str(exc)))
            continue
        checks.append(check_config(path, data=data, window_end=window_end, settings=settings))
    return checks

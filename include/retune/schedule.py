"""Which model configs a monitor run checks: each config's own cron decides."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from retune.config import NAME_PATTERN
from retune.settings import get_settings

log = logging.getLogger(__name__)


def list_configs(config_dir: str | None = None) -> list[str]:
    """Names of the model configs in the config folder, sorted.

    Args:
        config_dir: Config folder (default: from settings).

    Raises:
        ConfigError: The settings' config folder does not exist (naming ``RETUNE_CONFIG_DIR``):
            a monitor run would otherwise check no model, and say nothing.
    """
    from pathlib import Path

    folder = Path(config_dir) if config_dir else get_settings().require_config_dir()
    return sorted(p.stem for p in folder.glob("*.yaml") if NAME_PATTERN.match(p.stem))


def cron_fires(expression: str, start: datetime, end: datetime) -> bool:
    """Whether a cron expression (or preset such as ``@daily``) fires in ``(start, end]``.

    Example:
        >>> from datetime import timezone
        >>> cron_fires("@daily", datetime(2025, 1, 1, 23, tzinfo=timezone.utc), datetime(2025, 1, 2, 0, tzinfo=timezone.utc))
        True
    """
    from croniter import croniter

    nxt = croniter(expression, start).get_next(datetime)
    return bool(nxt <= end)


def check_interval(
    start: datetime | None, end: datetime | None, *, every: timedelta, previous_end: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """The interval ``(start, end]`` whose cron times make a config due in a scheduled monitor run.

    A run's own interval is ``(end - every, end]`` (trigger timetables give runs an empty data
    interval). When the previous successful run ended before that (the scheduler was down for
    longer than ``every``, or runs failed), the interval reaches back to it: with ``catchup``
    off, the run after a gap covered only its last ``every``, so a daily cron time inside the
    gap was never checked, and nothing said so. Each config is still checked once, on its
    newest window.

    Args:
        start: Start of the run's data interval (``None`` or ``>= end``: empty).
        end: End of the run's data interval (``None``: no interval, every config is due).
        every: How often the monitor runs.
        previous_end: End of the previous successful run's data interval, if any.

    Example:
        >>> from datetime import timezone
        >>> end = datetime(2025, 1, 2, 1, 30, tzinfo=timezone.utc)
        >>> check_interval(end, end, every=timedelta(hours=1), previous_end=datetime(2025, 1, 1, 23, tzinfo=timezone.utc))[0].hour
        23
    """
    if end is None:
        return start, end
    if start is None or start >= end:
        start = end - every
    if previous_end is not None and previous_end < start:
        start = previous_end
    return start, end


def due_configs(
    *, only: str | None, start: datetime | None, end: datetime | None, every: bool, config_dir: str | None = None
) -> list[str]:
    """The configs a monitor run should check.

    Args:
        only: Check only this config.
        start: Start of the run's data interval.
        end: End of the run's data interval.
        every: Check every config regardless of its cron (manual runs).
        config_dir: Config folder (default: from settings).

    Returns:
        Config names.
    """
    from retune.config import config_path, load_config
    from retune.errors import ConfigError

    folder = config_dir or str(get_settings().config_dir)
    names = [only] if only else list_configs(config_dir)
    if only or every or start is None or end is None:
        return names
    due = []
    for name in names:
        try:
            cfg = load_config(config_path(name, folder))
        except ConfigError as exc:  # its own check fails, naming the field; the others go on
            log.error("config %s is invalid; it is checked so that its check fails and says why: %s", name, exc)
            due.append(name)
            continue
        if cron_fires(cfg.drift.schedule, start, end):
            due.append(name)
    return due

"""Celery settings for a CeleryExecutor deployment of Retune: Airflow's defaults, plus
``imports = ("retune.preload",)``.

Not a plugin (``plugins/.airflowignore`` keeps the plugin manager from loading it); it lives
here because Airflow puts this folder on ``sys.path`` in every component. Point Airflow at it
with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=retune_celery.CELERY_CONFIG`` (docker-compose.yaml
and ``make stack-up`` do). The Celery worker's main process then imports Retune's libraries
(``include/retune/preload.py``) before it forks its pool, and every task process, forked from
a pool process, starts with them imported instead of importing them again (3-5 CPU s a task).
The scheduler reads the same settings to send tasks; it never imports ``imports``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "imports": ("retune.preload",)}

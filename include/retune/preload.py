"""Import Retune's heavy libraries once, in a parent process that task processes fork from.

The one module of the package whose import is its purpose. Every Airflow task runs in a
process of its own, and each of Retune's tasks imports pandas, scikit-learn, MLflow and Optuna
(and the drift check Evidently): 3-5 s of CPU per task before any work on an ordinary core,
about 10 s on a slow one. The LocalExecutor can fork its workers from a ``forkserver`` that has
imported them already (Airflow 3.3's ``[scheduler] mp_start_method`` and
``mp_forkserver_preload``); each task process is then forked from such a worker and starts
with them imported::

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=airflow.executors.local_executor,airflow.sdk.execution_time.task_runner,retune.preload

Importing this module imports :data:`MODULES` and then freezes the garbage collector
(``gc.freeze``), as Airflow does before it forks the LocalExecutor's workers itself: a
collection in a forked task would otherwise walk, and so copy, every page of those modules'
objects. It opens no file, connection or thread. A module that fails to import is logged and
skipped, not raised: Python's forkserver ignores only an ImportError, and any other error would
stop it and with it the executor's workers (a Celery worker would not start); the tasks then
import that module themselves and fail with the error in their own log. On the CeleryExecutor the Celery worker
imports it before it forks its pool (``imports`` in ``plugins/retune_celery.py``).
"""

from __future__ import annotations

import gc
import importlib
import logging

# What the tasks of retune_model and monitor_drift import, heaviest first.
MODULES: tuple[str, ...] = (
    "evidently",
    "mlflow",
    "mlflow.sklearn",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.inspection",
    "pandas",
    "optuna",
    "optuna.visualization.matplotlib",
    "retune.pipeline",
    "retune.tuning",
    "retune.validation",
    "retune.registry",
    "retune.tracking",
    "retune.policy",
    "retune.profile",
    "retune.warmstart",
)

_log = logging.getLogger(__name__)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except Exception as _exc:  # noqa: BLE001 - a forkserver or Celery worker that dies here takes every task with it
        # The tasks import it again themselves and fail there, with the error in their own log.
        _log.warning("retune.preload: %s not preloaded (%s: %s); tasks import it themselves", _name, type(_exc).__name__, _exc)
gc.freeze()

"""Retune: keep a production model tuned as its data changes.

The library has no Airflow import and no side effect on import; the DAGs in ``dags/``
call :mod:`retune.pipeline`, one function per task.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

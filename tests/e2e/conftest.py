"""Fixtures for end-to-end runs (see tests_e2e_helpers)."""

from tests_e2e_helpers import airflow_db, retune_env  # noqa: F401

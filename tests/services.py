"""The machine's Redis for the tests that need it (the Celery broker of the stack tests)."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("RETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis(role: str = "Redis") -> None:
    """Skip the test when Redis does not answer at :data:`REDIS_URL`; fail it when ``CI=true``.

    Args:
        role: What the test needs Redis for, in the messages.
    """
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{role} is required in CI: {exc}")
        pytest.skip(f"{role} unreachable at {REDIS_URL}: {exc}")

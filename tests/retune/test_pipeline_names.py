"""Names the pipeline derives from run keys: one key, one study."""

from __future__ import annotations

import re

import pytest

from retune.pipeline import slug

SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def test_two_alert_runs_of_a_long_config_name_get_two_studies() -> None:
    """Alert run ids are ``alert__<config>__<time>_<digest>``: with a 51-character config
    name, cutting at 80 characters left the same slug for two alerts of one day."""
    config = "metro-traffic-volume-hourly-regressor-v2-eu-west-1a"
    assert len(config) == 51
    morning = f"retune_model/alert__{config}__20250529T090000_0123456789ab"
    evening = f"retune_model/alert__{config}__20250529T173000_ba9876543210"
    assert morning[:80] == evening[:80]  # what made them one study
    assert slug(morning) != slug(evening)
    for s in (slug(morning), slug(evening)):
        assert len(s) <= 80 and SAFE.fullmatch(s), s


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("retune_model/manual__2025-05-29T10:00:00+00:00", "retune_model/manual__2025-05-29T10_00_00_00_00"),
        ("x" * 81, "x" * 82),
        ("a b", "a/b"),
    ],
)
def test_keys_that_differ_have_different_slugs(a: str, b: str) -> None:
    assert slug(a) != slug(b)
    assert SAFE.fullmatch(slug(a)) and SAFE.fullmatch(slug(b))


def test_a_safe_short_key_is_its_own_slug_and_slugs_are_stable() -> None:
    assert slug("retune_model.scheduled__2025-05-29") == "retune_model.scheduled__2025-05-29"
    key = "retune_model/scheduled__2025-05-29T00:00:00+00:00"
    assert slug(key) == slug(key)  # a cleared run finds its study again
    assert slug(key).startswith("retune_model_scheduled__2025-05-29T00_00_00_00_00-")
    assert slug("") == "run" and slug("///") == slug("///") != slug("//")

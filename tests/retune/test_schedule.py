"""retune.schedule: which configs a monitor run checks, by each config's own cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retune.errors import ConfigError
from retune.schedule import check_interval, cron_fires, due_configs, list_configs


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- cron_fires


@pytest.mark.parametrize(
    ("expression", "start", "end", "fires"),
    [
        ("@daily", utc(2025, 1, 1, 23), utc(2025, 1, 2, 0), True),  # the end is included
        ("@daily", utc(2025, 1, 1, 0), utc(2025, 1, 2, 0), True),
        ("@daily", utc(2025, 1, 1, 0), utc(2025, 1, 1, 23, 59), False),  # the start is excluded
        ("@daily", utc(2025, 1, 1, 1), utc(2025, 1, 1, 2), False),
        ("@hourly", utc(2025, 1, 1, 1, 30), utc(2025, 1, 1, 2), True),
        ("@hourly", utc(2025, 1, 1, 1, 30), utc(2025, 1, 1, 1, 59), False),
        ("0 6 * * 1", utc(2025, 1, 6, 5), utc(2025, 1, 6, 7), True),  # 2025-01-06 is a Monday
        ("0 6 * * 1", utc(2025, 1, 7, 5), utc(2025, 1, 7, 7), False),  # a Tuesday
        ("*/15 * * * *", utc(2025, 1, 1, 0, 1), utc(2025, 1, 1, 0, 14), False),
        ("*/15 * * * *", utc(2025, 1, 1, 0, 1), utc(2025, 1, 1, 0, 15), True),
        ("@weekly", utc(2025, 1, 1), utc(2025, 1, 8), True),
    ],
)
def test_cron_fires_in_half_open_interval(expression: str, start: datetime, end: datetime, fires: bool) -> None:
    assert cron_fires(expression, start, end) is fires


# --------------------------------------------------------------------------- list/due configs


@pytest.fixture
def config_dir(tmp_path: Path, demo_dict, write_yaml) -> Path:
    folder = tmp_path / "configs"
    for name, schedule in [("daily", "@daily"), ("hourly", "@hourly"), ("monday", "0 6 * * 1")]:
        cfg = dict(demo_dict, name=name, drift={**demo_dict["drift"], "schedule": schedule})
        write_yaml(cfg, name, folder)
    (folder / "Not A Name.yaml").write_text("ignored: true\n")
    (folder / "notes.txt").write_text("not a config\n")
    (folder / "daily.yml").write_text("ignored: only .yaml counts\n")
    return folder


def test_list_configs_sorted_and_only_valid_yaml_names(config_dir: Path) -> None:
    assert list_configs(str(config_dir)) == ["daily", "hourly", "monday"]


def test_list_configs_defaults_to_the_settings(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(config_dir.parent / "state"))  # settings may create it
    assert list_configs() == ["daily", "hourly", "monday"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (utc(2025, 1, 5, 23), utc(2025, 1, 6, 0), ["daily", "hourly"]),  # midnight, a Monday
        (utc(2025, 1, 6, 5, 30), utc(2025, 1, 6, 6, 30), ["hourly", "monday"]),
        (utc(2025, 1, 6, 6, 5), utc(2025, 1, 6, 6, 50), []),
        (utc(2025, 1, 5), utc(2025, 1, 12), ["daily", "hourly", "monday"]),
    ],
)
def test_due_configs_follow_each_cron(config_dir: Path, start: datetime, end: datetime, expected: list[str]) -> None:
    assert due_configs(only=None, start=start, end=end, every=False, config_dir=str(config_dir)) == expected


def test_every_checks_all_configs(config_dir: Path) -> None:
    due = due_configs(only=None, start=utc(2025, 1, 6, 6, 5), end=utc(2025, 1, 6, 6, 50), every=True, config_dir=str(config_dir))
    assert due == ["daily", "hourly", "monday"]


def test_without_an_interval_all_configs_are_due(config_dir: Path) -> None:
    assert due_configs(only=None, start=None, end=None, every=False, config_dir=str(config_dir)) == ["daily", "hourly", "monday"]


def test_only_returns_that_config_whatever_its_cron(config_dir: Path) -> None:
    due = due_configs(
        only="monday", start=utc(2025, 1, 7, 6, 5), end=utc(2025, 1, 7, 6, 50), every=False, config_dir=str(config_dir)
    )
    assert due == ["monday"]


def test_due_configs_uses_the_settings_folder(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(config_dir.parent / "state"))
    assert due_configs(only=None, start=utc(2025, 1, 6, 5, 30), end=utc(2025, 1, 6, 6, 30), every=False) == ["hourly", "monday"]


def test_an_invalid_config_is_due_so_its_own_check_fails_and_the_others_still_run(config_dir: Path) -> None:
    """A broken config used to fail due_configs: no model was checked in any scheduled run.
    Now it is due (its check_drift fails naming the file) beside the configs whose cron fires."""
    from retune.config import config_path, load_config

    (config_dir / "broken.yaml").write_text("name: broken\n")
    due = due_configs(
        only=None, start=utc(2025, 1, 6, 5, 30), end=utc(2025, 1, 6, 6, 30), every=False, config_dir=str(config_dir)
    )
    assert due == ["broken", "hourly", "monday"]
    with pytest.raises(ConfigError, match="broken.yaml"):  # what its check_drift then says
        load_config(config_path("broken", str(config_dir)))


# --------------------------------------------------------------------------- check_interval

HOUR = timedelta(hours=1)


def test_a_run_after_a_scheduler_gap_checks_the_cron_times_inside_the_gap() -> None:
    """The 23:00 run succeeded; the scheduler was down until 01:30. The 01:30 run covered
    only (00:30, 01:30], so @daily (00:00) was never checked that day."""
    end = utc(2025, 1, 2, 1, 30)
    start, _ = check_interval(end, end, every=HOUR, previous_end=utc(2025, 1, 1, 23))
    assert start == utc(2025, 1, 1, 23) and cron_fires("@daily", start, end)
    alone, _ = check_interval(end, end, every=HOUR)  # what it covered before
    assert alone == utc(2025, 1, 2, 0, 30) and not cron_fires("@daily", alone, end)


@pytest.mark.parametrize(
    ("previous_end", "start"),
    [
        (None, utc(2025, 1, 2, 0)),  # the first run
        (utc(2025, 1, 2, 0), utc(2025, 1, 2, 0)),  # the previous hourly run: back to back, no cron time twice
        (utc(2025, 1, 2, 0, 40), utc(2025, 1, 2, 0)),  # a manual run since: never narrower than an hour
    ],
)
def test_without_a_gap_a_run_covers_its_own_hour(previous_end: datetime | None, start: datetime) -> None:
    end = utc(2025, 1, 2, 1)
    assert check_interval(end, end, every=HOUR, previous_end=previous_end) == (start, end)
    assert check_interval(utc(2025, 1, 2, 0, 15), end, every=HOUR, previous_end=previous_end)[0] == min(
        utc(2025, 1, 2, 0, 15), previous_end or end
    )


def test_no_interval_stays_none() -> None:
    assert check_interval(None, None, every=HOUR, previous_end=utc(2025, 1, 1)) == (None, None)


def test_a_config_that_crashed_the_loader_is_due_and_the_others_still_run(config_dir: Path, demo_dict) -> None:
    """A list or .inf duration or a Latin-1 file raised TypeError, OverflowError or
    UnicodeDecodeError, which due_configs did not catch: every scheduled monitor run failed."""
    import yaml

    for name, data in [("endless", {"window": float("inf")}), ("listed", {"train_window": ["28d"]})]:
        (config_dir / f"{name}.yaml").write_text(
            yaml.safe_dump({**demo_dict, "name": name, "data": {**demo_dict["data"], **data}})
        )
    latin = yaml.safe_dump({**demo_dict, "name": "latin", "description": "café"}, allow_unicode=True)
    (config_dir / "latin.yaml").write_bytes(latin.encode("latin-1"))
    due = due_configs(
        only=None, start=utc(2025, 1, 6, 5, 30), end=utc(2025, 1, 6, 6, 30), every=False, config_dir=str(config_dir)
    )
    assert due == ["endless", "hourly", "latin", "listed", "monday"]

"""``python -m retune check``: configs (and their data) validated before deployment, nothing written."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from retune import demo_data
from retune.checks import check_configs
from retune.cli import main


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], write_yaml: Callable[..., Path]) -> Path:
    """A config folder: ``demo`` (valid, data written), ``bad-range`` (low > high), ``renamed``
    (its target column is not in the data), ``My Model.yaml`` (an unusable file name)."""
    state, configs = tmp_path / "state", tmp_path / "configs"
    monkeypatch.setenv("RETUNE_STATE_DIR", str(state))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    demo_data.write(state / "data" / "demo", days=90, rows_per_day=20)
    write_yaml(demo_raw, "demo", configs)
    bad = copy.deepcopy(demo_raw)
    bad["model"]["search_space"]["learning_rate"] |= {"low": 0.5, "high": 0.1}
    write_yaml({**bad, "name": "bad-range"}, "bad-range", configs)
    write_yaml({**demo_raw, "name": "renamed", "target": "sales"}, "renamed", configs)
    (configs / "My Model.yaml").write_text("name: my-model\n")
    return configs


def test_every_file_is_checked_and_each_failure_named(folder: Path) -> None:
    checks = {c.path.name: c for c in check_configs()}
    assert sorted(checks) == ["My Model.yaml", "bad-range.yaml", "demo.yaml", "renamed.yaml"]
    assert checks["demo.yaml"].ok and checks["renamed.yaml"].ok, "without --data only the YAML is checked"
    bad = checks["bad-range.yaml"]
    assert not bad.ok and "model.search_space" in str(bad.error) and "learning_rate" in str(bad.error)
    assert "bad-range.yaml" in str(bad.error)
    assert not checks["My Model.yaml"].ok and "not a usable config file name" in str(checks["My Model.yaml"].error)


def test_data_check_reads_both_windows_and_names_the_missing_column(folder: Path) -> None:
    checks = {c.name: c for c in check_configs(["demo", "renamed"], data=True, window_end="2025-03-20")}
    demo = checks["demo"]
    assert demo.ok, demo.error
    # reference 2025-01-01..2025-02-26 (56 days) and the 28-day train window, 20 rows a day
    assert demo.details["reference"] == f"{56 * 20:,} rows" and demo.details["latest"] == f"{28 * 20:,} rows"
    assert demo.details["features"] == "4 numerical + 3 categorical"
    renamed = checks["renamed"]
    assert not renamed.ok and "sales" in str(renamed.error)


def test_cli_exit_codes_and_nothing_written(folder: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = sorted(p.relative_to(state) for p in state.rglob("*"))

    assert main(["check", "--config", "demo", "--data", "--window-end", "2025-03-20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok    demo  ") and "reference 1,120 rows" in out[0]
    assert out[-1] == "1 of 1 config(s) ok (data read)"

    assert main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 of 4 config(s) ok"
    assert sum(line.startswith("FAIL") for line in out) == 2

    assert main(["check", "--config", "../demo", "--config", "missing", "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in rows] == [False, False]
    assert "is not valid" in rows[0]["error"] and "does not exist" in rows[1]["error"]

    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before, "a check writes nothing"


def test_an_empty_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    assert main(["check"]) == 1
    assert "no config files in" in capsys.readouterr().err


def test_a_config_whose_name_is_not_its_file_name_is_refused(folder: Path, demo_raw: dict) -> None:
    """store.yaml with name: demand passed the check (a note), then the monitor's planning
    failed on demand.yaml for every model, or used another config named demand."""
    from retune.errors import ConfigError
    from retune.pipeline import load_named_config

    (folder / "store.yaml").write_text(yaml.safe_dump({**demo_raw, "name": "demand"}, sort_keys=False))
    [check] = check_configs(["store"])
    assert (
        not check.ok
        and "name: 'demand' must be the file's name, 'store'" in str(check.error)
        and "store.yaml" in str(check.error)
    )
    with pytest.raises(ConfigError, match=r"store\.yaml: name: 'demand'"):
        load_named_config("store")
    assert load_named_config("demo").name == "demo"


def test_a_config_that_crashed_the_loader_fails_alone_naming_the_file_and_field(folder: Path, demo_raw: dict) -> None:
    """A list or .inf duration and a Latin-1 file raised TypeError, OverflowError and
    UnicodeDecodeError: `retune check` stopped with a traceback, the other configs unreported."""
    (folder / "listed.yaml").write_text(
        yaml.safe_dump({**demo_raw, "name": "listed", "data": {**demo_raw["data"], "train_window": ["28d"]}})
    )
    (folder / "endless.yaml").write_text(
        yaml.safe_dump({**demo_raw, "name": "endless", "data": {**demo_raw["data"], "window": float("inf")}})
    )
    (folder / "latin.yaml").write_bytes(
        yaml.safe_dump({**demo_raw, "name": "latin", "description": "café"}, allow_unicode=True).encode("latin-1")
    )
    checks = {c.name: c for c in check_configs()}
    assert checks["demo"].ok and not checks["bad-range"].ok
    assert "listed.yaml: data.train_window: not a duration" in str(checks["listed"].error)
    assert "endless.yaml: data.window: not a duration" in str(checks["endless"].error)
    assert "latin.yaml: not UTF-8" in str(checks["latin"].error)


def test_an_unexpected_error_is_reported_against_its_file_with_its_traceback(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug met on one config is that config's FAIL line (and logged with its traceback), not
    a traceback that ends the check before the other configs are reported."""
    from retune import checks as checks_module

    real = checks_module.load_named_file

    def buggy(path: Path) -> Any:
        if path.stem == "renamed":
            raise KeyError("oops")
        return real(path)

    monkeypatch.setattr(checks_module, "load_named_file", buggy)
    checks = {c.name: c for c in check_configs()}
    assert checks["demo"].ok and not checks["bad-range"].ok
    error = str(checks["renamed"].error)
    assert "renamed.yaml" in error and "unexpected error" in error and "KeyError: 'oops'" in error
    [record] = [r for r in caplog.records if r.name == "retune.checks"]
    assert "renamed.yaml" in record.getMessage() and record.exc_info is not None

"""``python -m retune demo-data``: seeds a fresh state folder (stack, compose volume) with the data
the shipped demo config reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from retune import demo_data
from retune.checks import check_configs
from retune.cli import main
from retune.settings import DEFAULT_CONFIG_DIR


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(DEFAULT_CONFIG_DIR))  # the shipped include/configs/demo.yaml
    return tmp_path / "state"


def test_the_shipped_demo_config_reads_what_it_writes(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [before] = check_configs(["demo"], data=True, window_end="2025-03-10")
    assert not before.ok and "no data file" in str(before.error), "the premise: a fresh state folder has no data"

    assert main(["demo-data", "--days", "70", "--rows-per-day", "30"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wrote 3 file(s), 2,100 rows (2025-01-01 .. 2025-03-11) to {state / 'data' / 'demo'}"
    files = sorted((state / "data" / "demo").glob("*.csv"))
    assert [f.name for f in files] == ["demand_00.csv", "demand_01.csv", "demand_02.csv"]
    written = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    expected = demo_data.generate(days=70, rows_per_day=30)
    assert len(written) == len(expected) and written["demand"].tolist() == expected["demand"].tolist()

    [after] = check_configs(["demo"], data=True, window_end="2025-03-10")
    assert after.ok, after.error


def test_a_second_run_writes_the_same_files(state: Path, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    assert main(["demo-data", "--folder", str(folder), "--days", "31", "--rows-per-day", "5"]) == 0
    first = {f.name: f.read_bytes() for f in folder.iterdir()}
    assert main(["demo-data", "--folder", str(folder), "--days", "31", "--rows-per-day", "5"]) == 0
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == first
    assert not (state / "data").exists(), "--folder is where it writes"


@pytest.mark.parametrize("bad", [["--days", "0"], ["--rows-per-day", "-1"]])
def test_bad_sizes_are_usage_errors(state: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo-data", *bad])
    assert exit_.value.code == 2
    assert not (state / "data").exists()

"""Pooling B1 seed sets (bench/b1_pool.py): which cases count, and how wide the intervals are."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import b1_pool  # noqa: E402


def _study(cpu: float | None, best: float, hold_cpu: float | None = None) -> dict[str, Any]:
    """One study of a case: CPU to target (``None``: never reached), final best, holdout view."""
    return {
        "best": best,
        "reached": cpu is not None,
        "cpu_to_target_s": cpu,
        "holdout": {"final": best * 2, "cold_final": 20.0, "reached": hold_cpu is not None, "cpu_to_target_s": hold_cpu},
    }


def _case(dataset: str, seed: int, episode: int, retune_cpu: float | None, *, cold_cpu: float = 8.0) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "seed": seed,
        "episode": episode,
        "studies": {
            "cold": _study(cold_cpu, 10.0, cold_cpu),
            "retune": _study(retune_cpu, 9.9, None if retune_cpu is None else retune_cpu * 2),
        },
    }


def _results(path: Path, cases: list[dict[str, Any]], commit: str = "abc") -> Path:
    path.write_text(json.dumps({"B1": {"cases": cases, "commit": commit}}))
    return path


def test_one_chain_gives_no_spread_where_a_case_bootstrap_would() -> None:
    """Episodes of one seed are one chain: resampling chains, a single chain has one median."""
    cases = [_case("bike", 0, e, 8.0 / r) for e, r in enumerate([1, 2, 3, 4, 5])]
    out = b1_pool.chain_bootstrap(cases, lambda c: b1_pool._cpu_ratio(c, "retune"))
    assert out == {"n": 5, "median": pytest.approx(3.0), "low": pytest.approx(3.0), "high": pytest.approx(3.0)}


def test_interval_holds_the_median_and_widens_with_disagreeing_chains() -> None:
    steady = [_case("bike", s, e, 2.0) for s in range(6) for e in range(3)]  # 4x in every chain
    mixed = [_case("bike", s, e, 2.0 if s % 2 else 8.0) for s in range(6) for e in range(3)]  # 4x or 1x by chain
    a = b1_pool.chain_bootstrap(steady, lambda c: b1_pool._cpu_ratio(c, "retune"))
    b = b1_pool.chain_bootstrap(mixed, lambda c: b1_pool._cpu_ratio(c, "retune"))
    assert a["low"] == a["high"] == pytest.approx(4.0)
    assert b["low"] <= b["median"] <= b["high"]
    assert b["low"] == pytest.approx(1.0) and b["high"] == pytest.approx(4.0)


def test_resampling_keeps_each_datasets_share() -> None:
    """Bike chains all at 1x, NOAA chains all at 8x, twice as many bike cases: every resample's
    median is bike's, so the interval does not move although NOAA chains could be drawn."""
    cases = [_case("bike", s, 0, 8.0) for s in range(6)] + [_case("noaa", s, 0, 1.0) for s in range(3)]
    out = b1_pool.chain_bootstrap(cases, lambda c: b1_pool._cpu_ratio(c, "retune"))
    assert (out["median"], out["low"], out["high"]) == (1.0, 1.0, 1.0)


def test_a_study_that_never_reached_counts_as_infinitely_slow() -> None:
    cases = [_case("bike", s, 0, None) for s in range(3)] + [_case("bike", 9, 0, 1.0)]
    rows = {(r["dataset"], r["criterion"]): r for r in b1_pool.pool(cases, ["retune"])}
    assert rows["all", "validation"]["median"] == 0.0
    assert rows["all", "validation"]["reached_share"] == pytest.approx(0.25)
    assert rows["all", "validation"]["verdict"] == "undecided"  # the interval is 0 - 8: it holds 4x


@pytest.mark.parametrize(("low", "high", "verdict"), [(4.0, 6.0, "met"), (1.0, 3.9, "missed"), (3.0, 5.0, "undecided")])
def test_verdict_reads_the_interval_against_the_target(low: float, high: float, verdict: str) -> None:
    assert b1_pool.verdict(low, high) == verdict


def test_final_best_is_pooled_beside_the_speed(tmp_path: Path) -> None:
    rows = b1_pool.pool([_case("bike", s, 0, 2.0) for s in range(4)], ["retune"])
    valid = next(r for r in rows if r["dataset"] == "bike" and r["criterion"] == "validation")
    assert valid["verdict"] == "met"
    assert valid["final_this_over_cold"]["median"] == pytest.approx(0.99)
    hold = next(r for r in rows if r["dataset"] == "bike" and r["criterion"] == "holdout")
    assert hold["median"] == pytest.approx(2.0)  # cold 8 s, retune 4 s on the holdout
    assert hold["final_this_over_cold"]["median"] == pytest.approx(0.99)


def test_a_case_in_two_files_is_refused_naming_both(tmp_path: Path) -> None:
    a = _results(tmp_path / "a.json", [_case("bike", 5, 0, 2.0)])
    b = _results(tmp_path / "b.json", [_case("bike", 6, 0, 2.0), _case("bike", 5, 0, 3.0)])
    with pytest.raises(ValueError, match=r"b\.json: case \('bike', 0, 5\) is also in .*a\.json"):
        b1_pool.load_cases([a, b])


def test_a_file_without_b1_cases_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "skipped.json"
    empty.write_text(json.dumps({"B1": {"skipped": "no datasets"}}))
    with pytest.raises(ValueError, match=r"skipped\.json: no B1 cases"):
        b1_pool.load_cases([empty])
    with pytest.raises(ValueError, match=r"missing\.json: cannot read"):
        b1_pool.load_cases([tmp_path / "missing.json"])


def test_main_writes_the_pooled_table_and_warns_on_mixed_commits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _results(tmp_path / "a.json", [_case("bike", s, 0, 2.0) for s in range(3)], commit="one")
    b = _results(tmp_path / "b.json", [_case("noaa", s, 0, 1.0) for s in range(3)], commit="two")
    assert b1_pool.main([str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "B1-pooled.json").read_text())
    assert [s["seeds"] for s in data["sources"]] == [[0, 1, 2], [0, 1, 2]]
    assert "2 commits" in data["warning"] and "2 commits" in capsys.readouterr().err
    md = (tmp_path / "out" / "B1-pooled.md").read_text()
    assert "| retune | bike | validation | 3 | 1.00 | 4.00 |" in md
    with pytest.raises(SystemExit):
        b1_pool.main([str(a), str(a), "--out", str(tmp_path / "out")])

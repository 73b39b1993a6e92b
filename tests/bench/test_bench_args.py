"""The benchmark runner's own logic (not its numbers: benchmarks never fail on a number)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import b1_efficiency  # noqa: E402
import run  # noqa: E402


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("5-9", [5, 6, 7, 8, 9]), ("5,7", [5, 7]), ("0-2,7", [0, 1, 2, 7]), (" 3 ", [3])],
)
def test_seeds_are_read_as_ranges_and_lists(text: str, seeds: list[int]) -> None:
    assert run.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "9-5", "1,1", "-3", "2-x"])
def test_bad_seeds_name_the_option(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
        run.parse_seeds(text)


def test_seeds_alone_select_the_seeded_benchmarks() -> None:
    assert run.select("", None) == list(run.BENCHMARKS)
    assert run.select("", [5, 6]) == list(run.SEEDED), "--seeds 5-9 alone is B1 on other seeds, not the whole suite"
    assert run.select("b1, B2", [5]) == ["B1", "B2"]
    with pytest.raises(ValueError, match="--seeds applies to B1 only"):
        run.select("B2", [5])
    with pytest.raises(ValueError, match=r"--only: unknown benchmark\(s\) \['B9'\]"):
        run.select("B9", None)


def _case(dataset: str, valid: float, holdout: float) -> dict:
    """One B1 case: cold, and one study at ``valid`` / ``holdout`` times cold's error."""
    cold = {"best": 10.0, "holdout": {"final": 20.0, "cold_final": 20.0}}
    other = {"best": 10.0 * valid, "holdout": {"final": 20.0 * holdout, "cold_final": 20.0}}
    return {"dataset": dataset, "studies": {"cold": cold, "retune": other}}


def test_target_agreement_ranks_validation_against_holdout_per_dataset() -> None:
    same = [_case("a", v, v) for v in (0.9, 0.95, 1.0, 1.05)]  # validation says what the holdout says
    reverse = [_case("b", v, 2 - v) for v in (0.9, 0.95, 1.0, 1.05)]  # it says the opposite
    out = b1_efficiency.target_agreement(same + reverse)
    assert out["a"] == {"pairs": 4, "spearman_validation_vs_holdout": pytest.approx(1.0)}
    assert out["b"] == {"pairs": 4, "spearman_validation_vs_holdout": pytest.approx(-1.0)}


def test_target_agreement_leaves_out_cold_and_studies_without_a_holdout_view() -> None:
    cases = [_case("a", v, v) for v in (0.9, 1.1)]
    cases[0]["studies"]["cma"] = {"best": 9.0}  # no holdout view
    out = b1_efficiency.target_agreement(cases)
    assert out["a"] == {"pairs": 2, "spearman_validation_vs_holdout": None}  # too few pairs for a rank correlation

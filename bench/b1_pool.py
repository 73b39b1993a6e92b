"""Pool B1 results of several seed sets into one table with bootstrap confidence intervals.

``python bench/b1_pool.py [FILE ...]`` (default: ``bench/results/latest.json`` and
``bench/results/seeds/B1-seeds-*.json``) reads the ``B1.cases`` of each file, refuses a case
that two files both hold (the same dataset, episode and seed would count twice) and prints,
per dataset and over all, the median cold/this CPU-to-target ratio of each study with a 95%
interval, on validation (B1's target) and on the holdout. It writes
``bench/results/B1-pooled.json`` and ``B1-pooled.md`` (``--out`` for another folder).

The interval resamples whole seed chains, not cases: a seed's episodes are not independent
(episode e warm-starts from episode e-1's study), so each (dataset, seed) chain is drawn with
replacement, within its dataset, and the median recomputed, 2,000 times. A study that never
reached the target counts as 0 (infinitely slow), as in B1 itself.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from b1_efficiency import _cpu_ratio, _final_ratio, _holdout_final_ratio, _holdout_ratio  # noqa: E402
from common import RESULTS, markdown_table, median, render_table, rnd, table, write_json  # noqa: E402

STUDIES = ("retune", "retune, early stop (default)", "cold+sh", "warm+hyperband", "cold, other seed")
TARGET = 4.0  # B1's target: cold / retune CPU to target


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results stay portable)."""
    try:
        return str(path.resolve().relative_to(RESULTS.parent.parent))
    except ValueError:
        return str(path)


def load_cases(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The B1 cases of ``paths`` and where each file came from.

    Raises:
        ValueError: If a file has no B1 cases, or a case (dataset, episode, seed) is in two files;
            the message names the file(s).
    """
    cases: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, int], Path] = {}
    for path in paths:
        try:
            b1 = json.loads(Path(path).read_text()).get("B1") or {}
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read B1 results ({exc})") from exc
        got = b1.get("cases") or []
        if not got:
            raise ValueError(f"{path}: no B1 cases (a B1 run that was skipped or failed?)")
        for case in got:
            key = (case["dataset"], int(case["episode"]), int(case["seed"]))
            if key in seen:
                raise ValueError(f"{path}: case {key} is also in {seen[key]}; pool each seed once")
            seen[key] = path
            cases.append(case)
        sources.append(
            {
                "file": _shown(Path(path)),
                "cases": len(got),
                "seeds": sorted({int(c["seed"]) for c in got}),
                "commit": b1.get("commit"),
                "uncommitted_changes": b1.get("uncommitted_changes"),
            }
        )
    return cases, sources


def chain_bootstrap(
    cases: Sequence[dict[str, Any]],
    value: Callable[[dict[str, Any]], float | None],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The median of ``value`` over ``cases`` and its bootstrap interval, resampling seed chains.

    Chains are the (dataset, seed) groups; each resample draws, per dataset, as many chains as
    it has, with replacement, so the mix of datasets stays as measured.

    Args:
        cases: B1 cases.
        value: The figure of one case (``None``: the case has no such figure and is left out).
        n_boot: Resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling (the same inputs give the same interval).

    Returns:
        ``n`` (cases with a value), ``median``, ``low``, ``high`` (``None`` when no case has a value).
    """
    chains: dict[str, dict[int, list[float]]] = {}
    for case in cases:
        v = value(case)
        if v is not None:
            chains.setdefault(case["dataset"], {}).setdefault(int(case["seed"]), []).append(v)
    values = [v for by_seed in chains.values() for vs in by_seed.values() for v in vs]
    if not values:
        return {"n": 0, "median": None, "low": None, "high": None}
    rng = random.Random(seed)
    groups = [list(by_seed.values()) for by_seed in chains.values()]
    medians = []
    for _ in range(n_boot):
        draw = [v for g in groups for chain in rng.choices(g, k=len(g)) for v in chain]
        medians.append(median(draw))
    medians.sort()
    tail = (1 - level) / 2
    return {
        "n": len(values),
        "median": median(values),
        "low": medians[int(tail * (n_boot - 1))],
        "high": medians[int(round((1 - tail) * (n_boot - 1)))],
    }


def verdict(low: float, high: float, target: float = TARGET) -> str:
    """``met`` when the whole interval is at or over ``target``, ``missed`` when it is all under,
    ``undecided`` when it straddles it."""
    if low >= target:
        return "met"
    return "missed" if high < target else "undecided"


def pool(cases: Sequence[dict[str, Any]], studies: Sequence[str] = STUDIES) -> list[dict[str, Any]]:
    """Rows of the pooled table: per study, dataset (and ``all``) and criterion."""
    rows = []
    datasets = ["all", *sorted({c["dataset"] for c in cases})]
    for study in studies:
        for dataset in datasets:
            subset = [c for c in cases if dataset in ("all", c["dataset"]) and study in c["studies"]]
            if not subset:
                continue
            for criterion, fn, final_fn in (
                ("validation", _cpu_ratio, _final_ratio),
                ("holdout", _holdout_ratio, _holdout_final_ratio),
            ):
                stats = chain_bootstrap(subset, partial(fn, label=study))
                if not stats["n"]:
                    continue
                final = chain_bootstrap(subset, partial(final_fn, label=study))
                got = [r for r in (fn(c, study) for c in subset) if r is not None]
                rows.append(
                    {
                        "study": study,
                        "dataset": dataset,
                        "criterion": criterion,
                        "chains": len({(c["dataset"], c["seed"]) for c in subset}),
                        **stats,
                        "reached_share": sum(r > 0 for r in got) / len(got),
                        "verdict": verdict(stats["low"], stats["high"]),
                        "final_this_over_cold": final,
                    }
                )
    return rows


def _first_seed(path: Path) -> int:
    """Order ``B1-seeds-5-9.json`` before ``B1-seeds-10-14.json``."""
    digits = path.stem.removeprefix("B1-seeds-").split("-")[0].split(",")[0]
    return int(digits) if digits.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="B1 results (default: latest.json and seeds/B1-seeds-*.json)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for B1-pooled.json/.md (default bench/results)")
    args = parser.parse_args(argv)
    files = args.files or [RESULTS / "latest.json", *sorted((RESULTS / "seeds").glob("B1-seeds-*.json"), key=_first_seed)]
    try:
        cases, sources = load_cases(files)
    except ValueError as exc:
        parser.error(str(exc))
    commits = {s["commit"] for s in sources}
    warning = f"the files come from {len(commits)} commits: {sorted(map(str, commits))}" if len(commits) > 1 else None
    if warning:
        print(f"warning: {warning}; their code differs", file=sys.stderr)
    rows = pool(cases)
    seeds = sorted({int(c["seed"]) for c in cases})
    t = table(
        f"B1 pooled over {len(cases)} cases, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}): median cold/this CPU to "
        f"target with a 95% interval (seed chains resampled); target {TARGET:g}x",
        [
            "study",
            "dataset",
            "criterion",
            "cases",
            "reached",
            "median",
            "95% interval",
            f"{TARGET:g}x target",
            "final this/cold",
            "final 95% interval",
        ],
        [
            [
                r["study"],
                r["dataset"],
                r["criterion"],
                r["n"],
                f"{r['reached_share']:.2f}",
                f"{r['median']:.2f}",
                f"{r['low']:.2f} - {r['high']:.2f}",
                r["verdict"],
                f"{r['final_this_over_cold']['median']:.3f}",
                f"{r['final_this_over_cold']['low']:.3f} - {r['final_this_over_cold']['high']:.3f}",
            ]
            for r in rows
        ],
    )
    print(render_table(t))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "B1-pooled.json", {"sources": sources, "warning": warning, "rows": rnd(rows, 4)})
    listed = ", ".join(f"{s['file']} (seeds {s['seeds']}, commit {str(s['commit'])[:10]})" for s in sources)
    head = [f"Sources: {listed}"]
    (args.out / "B1-pooled.md").write_text(
        "\n".join([markdown_table(t), "", *head, *([f"Warning: {warning}"] if warning else []), ""])
    )
    print(f"\nwritten: {args.out / 'B1-pooled.json'}, {args.out / 'B1-pooled.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

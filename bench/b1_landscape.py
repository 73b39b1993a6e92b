"""Why B1's target is noisy: how the search landscape moves between windows, and how much one
configuration's error moves with the model's own randomness.

``python bench/b1_landscape.py [--configs 120] [--windows 8]`` (about 3 minutes; not part of
``bench/run.py``). On bike sharing's windows (as in B1 and B5) it scores the same random
configurations of the B1 search space on each window and prints, for consecutive windows, the
rank correlation of their validation errors and how far the previous window's best
configuration lands from the new best; then, for a few configurations, the spread of the
validation error over ten model seeds (HistGradientBoosting subsamples features at random);
last, how far apart whole searches land: on a few windows, ``--studies`` cold 30-trial studies
that differ only in the sampler's seed, once with the B1 space and once with ``max_features``
left out of it (HistGradientBoosting is then deterministic), and how often one study's final
best reaches another's within B1's 0.5% (the share of ordered pairs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import quiet  # noqa: E402


def _score(rd: Any, split: Any, features: Any, params: dict[str, Any], seed: int) -> float:
    from threadpoolctl import threadpool_limits

    from retune.metrics import get_metric
    from retune.models import get_family

    cfg = rd.cfg
    family = get_family(cfg.model.family)
    pipe = family.build(
        cfg.task, {**cfg.model.fixed_params, **params}, numerical=features.numerical, categorical=features.categorical, seed=seed
    )
    with threadpool_limits(limits=1):
        for _ in family.staged_fit(pipe, split.train[features.columns], split.train[cfg.target], n_steps=cfg.tuning.n_steps):
            pass
    return float(get_metric(cfg.metric.name, cfg.task).score(pipe, split.valid[features.columns], split.valid[cfg.target]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=120)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--studies", type=int, default=5, help="cold studies per window in the last part")
    parser.add_argument("--study-windows", type=int, default=3, help="windows of the last part")
    args = parser.parse_args(argv)
    quiet()
    import optuna
    import realdata
    from scipy.stats import spearmanr

    from retune.data import split_for_retune
    from retune.tuning import suggest

    with tempfile.TemporaryDirectory(prefix="retune-landscape-") as tmp:
        rd = realdata.load("bike_sharing", Path(tmp), n_trials=30)
        space = rd.cfg.model.search_space
        configs = [
            suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=i)).ask(), space) for i in range(args.configs)
        ]
        errors: list[list[float]] = []
        end = rd.bootstrap_end
        splits = []
        for _ in range(args.windows):
            df, features = realdata.window(rd, end - rd.train_window, end)
            split = split_for_retune(df, rd.cfg)
            splits.append((end, split, features))
            errors.append([_score(rd, split, features, c, seed=0) for c in configs])
            end = end + rd.window
        print("windows                   rank corr.  previous best on new / new best")
        for (a, _, _), (b, _, _), ea, eb in zip(splits, splits[1:], errors, errors[1:], strict=False):
            prev_best = min(range(len(configs)), key=lambda i: ea[i])
            rho = spearmanr(ea, eb).statistic
            print(f"{a.date()} -> {b.date()}  {rho:10.2f}  {eb[prev_best] / min(eb):.3f}")
        _, split, features = splits[1]
        print("\nvalidation error over 10 model seeds (one configuration each)")
        for i in sorted(range(len(configs)), key=lambda i: errors[1][i])[:3]:
            values = [_score(rd, split, features, configs[i], seed=s) for s in range(10)]
            mean = statistics.fmean(values)
            print(f"{configs[i]}: sd/mean {statistics.pstdev(values) / mean:.4f}, min/mean {min(values) / mean:.4f}")
        print(
            f"\n{args.studies} cold studies per window ({rd.cfg.tuning.n_trials} trials, no pruning), only the sampler seed differs"
        )
        print("window      space                      worst/best final  pairs within 0.5%")
        for end, split, features in splits[1 : 1 + args.study_windows]:
            for name, space_of in (("B1 space", dict(space)), ("without max_features", _without(space, "max_features"))):
                bests = _search_bests(rd, split, features, space_of, args.studies)
                pairs = [(a, b) for i, a in enumerate(bests) for j, b in enumerate(bests) if i != j]
                within = sum(b <= a * 1.005 for a, b in pairs) / len(pairs)
                print(f"{end.date()}  {name:26} {max(bests) / min(bests):16.3f}  {within:17.2f}")
    return 0


def _without(space: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in space.items() if k != name}


def _search_bests(rd: Any, split: Any, features: Any, space: dict[str, Any], n: int) -> list[float]:
    """Final best of ``n`` cold studies (no pruning, the whole budget) with sampler seeds 0..n-1
    and the same model seed."""
    import optuna
    import realdata

    bests = []
    for s in range(n):
        run = realdata.timed_study(
            rd,
            split,
            features,
            label="cold",
            study_name=f"landscape.{s}",
            storage=optuna.storages.InMemoryStorage(),
            n_trials=rd.cfg.tuning.n_trials,
            seed=0,
            sampler_seed=s,
            pruner="none",
            space=space,
            early_stop=None,
        )
        bests.append(float(run.best))  # type: ignore[arg-type]
    return bests


if __name__ == "__main__":
    sys.exit(main())

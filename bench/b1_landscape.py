"""Why B1's target is noisy: how the search landscape moves between windows, and how much one
configuration's error moves with the model's own randomness.

``python bench/b1_landscape.py [--configs 120] [--windows 8]`` (about 3 minutes; not part of
``bench/run.py``). On bike sharing's windows (as in B1 and B5) it scores the same random
configurations of the B1 search space on each window and prints, for consecutive windows, the
rank correlation of their validation errors and how far the previous window's best
configuration lands from the new best; then, for a few configurations, the spread of the
validation error over ten model seeds (HistGradientBoosting subsamples features at random).
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic store-demand data with two regime changes, for ``make demo`` and the tests.

Regime A (days 0-119) is stable; regime B (from day 120) raises prices and footfall and
makes demand twice as price-sensitive; regime C (from day 180) moves temperature and
competitor prices and brings a new channel mix. Features are drawn independently each day,
so windows inside one regime show no drift.

Example:
    >>> df = generate(days=3, rows_per_day=10, seed=0)
    >>> list(df.columns)[:3], len(df)
    (['ts', 'price', 'temperature'], 30)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

START = datetime(2025, 1, 1, tzinfo=UTC)
REGIME_B_DAY = 120
REGIME_C_DAY = 180


def generate(*, days: int = 240, rows_per_day: int = 120, seed: int = 0, start: datetime = START) -> pd.DataFrame:
    """Generate the demand data.

    Args:
        days: Number of days.
        rows_per_day: Rows per day (timestamps spread over the day).
        seed: Random seed.
        start: First timestamp (UTC).

    Returns:
        Columns ``ts, price, temperature, competitor_price, footfall, promo, region, channel, demand``.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    day = np.repeat(np.arange(days), rows_per_day)
    ts = pd.Timestamp(start) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.uniform(0, 86_400, n), unit="s")
    b = day >= REGIME_B_DAY
    c = day >= REGIME_C_DAY
    price = rng.normal(10, 1.5, n) + 3.0 * b
    temperature = rng.normal(15, 6, n) + 9.0 * c
    competitor_price = rng.normal(10, 1.0, n) - 2.5 * c
    footfall = rng.gamma(4.0, 25.0, n) * (1 + 0.6 * b)
    promo = rng.choice(["none", "discount", "bundle"], n, p=[0.6, 0.3, 0.1])
    region = rng.choice(["north", "south", "east", "west"], n)
    channel = np.where(
        c,
        rng.choice(["store", "online", "app"], n, p=[0.3, 0.3, 0.4]),
        rng.choice(["store", "online", "app"], n, p=[0.7, 0.25, 0.05]),
    )
    region_effect = pd.Series(region).map({"north": 0.0, "south": 6.0, "east": -4.0, "west": 2.0}).to_numpy()
    promo_effect = pd.Series(promo).map({"none": 0.0, "discount": 12.0, "bundle": 20.0}).to_numpy()
    sensitivity = np.where(b, 6.0, 3.0)
    demand = (
        80
        - sensitivity * (price - 10)
        + 2.5 * (competitor_price - 10) * np.where(c, 2.0, 1.0)
        + 0.8 * temperature * np.where(c, -1.0, 1.0)
        + 0.15 * footfall
        + promo_effect * np.where(channel == "app", 1.5, 1.0)
        + region_effect
        + 5 * np.sin(temperature / 4) * footfall / 100
        + rng.normal(0, 4, n)
    )
    df = pd.DataFrame(
        {
            "ts": ts,
            "price": price.round(2),
            "temperature": temperature.round(1),
            "competitor_price": competitor_price.round(2),
            "footfall": footfall.round(0),
            "promo": promo,
            "region": region,
            "channel": channel,
            "demand": demand.round(2),
        }
    )
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def write(folder: str | Path, *, days: int = 240, rows_per_day: int = 120, seed: int = 0) -> list[Path]:
    """Write the data as one CSV file per 30 days (as a production feed would land).

    Args:
        folder: Target folder (created).
        days: Number of days.
        rows_per_day: Rows per day.
        seed: Random seed.

    Returns:
        The files written.
    """
    import pandas as pd

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    df = generate(days=days, rows_per_day=rows_per_day, seed=seed)
    files = []
    month = ((df["ts"] - pd.Timestamp(START)).dt.days // 30).to_numpy()
    for m in sorted(set(month.tolist())):
        path = out / f"demand_{m:02d}.csv"
        df[month == m].to_csv(path, index=False)
        files.append(path)
    return files

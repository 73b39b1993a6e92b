"""Shared helpers of the benchmarks: CPU clocks, medians, tables, plots, machine facts.

Every benchmark module has ``run(quick: bool, out: Path) -> dict`` and returns its raw
figures, a ``ratios`` object and a ``table`` (``{"title", "headers", "rows"}``) that
``bench/run.py`` prints and stores. Benchmarks never fail on a number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATASETS = Path(os.environ.get("RETUNE_DATASETS", str(ROOT.parent / "shared" / "datasets")))
BIN = Path(sys.executable).parent

if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))


# --------------------------------------------------------------------------- clocks


def cpu_seconds(children: bool = True) -> float:
    """User + system CPU seconds of this process (all its threads) and, by default, of its
    waited-for child processes."""
    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime for w in who)


@dataclass
class Clock:
    """CPU and wall seconds of a block (``with CpuClock() as c: ...; c.cpu``)."""

    cpu: float = 0.0
    wall: float = 0.0
    children: bool = True


@contextlib.contextmanager
def clock(children: bool = True) -> Iterator[Clock]:
    """Measure a block: ``with clock() as c: ...`` then ``c.cpu``, ``c.wall``."""
    c = Clock(children=children)
    cpu0, wall0 = cpu_seconds(children), time.perf_counter()
    try:
        yield c
    finally:
        c.cpu = cpu_seconds(children) - cpu0
        c.wall = time.perf_counter() - wall0


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None if there are none)."""
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def rnd(value: Any, digits: int = 4) -> Any:
    """Round floats (recursively in dicts and lists) for compact JSON."""
    if isinstance(value, float):
        return round(value, digits) if value == value else None
    if isinstance(value, dict):
        return {k: rnd(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rnd(v, digits) for v in value]
    return value


# --------------------------------------------------------------------------- output


def fmt(value: Any, spec: str = ".3g") -> str:
    """A table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(title: str, headers: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A table as stored in the results (cells already formatted)."""
    return {"title": title, "headers": headers, "rows": [[fmt(c) for c in r] for r in rows]}


def render_table(t: dict[str, Any]) -> str:
    """Fixed-width text of a table."""
    headers, rows = t["headers"], t["rows"]
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [t["title"], line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def markdown_table(t: dict[str, Any]) -> str:
    """A table as Markdown (for the README)."""
    out = [f"**{t['title']}**", "", "| " + " | ".join(t["headers"]) + " |", "|" + "---|" * len(t["headers"])]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in t["rows"]]
    return "\n".join(out)


def plot_path(out: Path, name: str, quick: bool) -> Path:
    """Where a benchmark's PNG goes."""
    return out / f"{name}{'-quick' if quick else ''}.png"


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log(msg: str) -> None:
    """Progress on stderr (tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quiet() -> None:
    """Silence the chatty libraries."""
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("alembic", "mlflow", "optuna", "airflow", "sqlalchemy", "httpx", "retune", "evidently", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    except ImportError:
        pass


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """Cores, memory, Python and package versions."""
    from importlib import metadata

    packages = {}
    for name in ("apache-airflow", "mlflow", "optuna", "evidently", "scikit-learn", "scipy", "numpy", "pandas", "cmaes"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
        load = [round(x, 2) for x in psutil.getloadavg()]
    except (ImportError, OSError):
        load = None
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": mem,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


def _git(*args: str) -> str | None:
    """``git <args>`` in the repository (read-only): its output, or None when git fails or
    this is not a work tree."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return None if out.returncode else out.stdout.strip()


def git_commit() -> str | None:
    """``git rev-parse HEAD``, or None outside a work tree."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether tracked files other than ``bench/results`` differ from ``HEAD`` (the measured
    code is then not the recorded commit), or None outside a work tree."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return None if status is None else bool(status)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, NaN as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rnd(data, 6), indent=1, default=str) + "\n")


# --------------------------------------------------------------------------- MLflow stand-in


class _Info:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


class _Run:
    def __init__(self, run_id: str) -> None:
        self.info = _Info(run_id)


class NullMlflowClient:
    """Takes what :class:`retune.tuning.Objective` logs and drops it.

    The benchmarks time the tuning itself (training, pruning, sampling); per-trial tracking
    costs the same in every contender and is measured end to end by B3 and B4 instead.
    """

    def __init__(self) -> None:
        self.n = 0

    def create_run(self, experiment_id: str, tags: dict[str, str] | None = None, **_: Any) -> _Run:
        self.n += 1
        return _Run(f"null-{self.n}")

    def log_batch(self, *_: Any, **__: Any) -> None:
        return None

    def log_metric(self, *_: Any, **__: Any) -> None:
        return None

    def set_tag(self, *_: Any, **__: Any) -> None:
        return None

    def set_terminated(self, *_: Any, **__: Any) -> None:
        return None

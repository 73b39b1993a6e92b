"""Typed configuration of one monitored model, loaded from YAML and validated with pydantic.

One YAML file per monitored model lives under ``include/configs/``. Every error
raised while loading names the file and the field, for example::

    ConfigError: include/configs/demo.yaml: model.search_space.learning_rate: low (0.5) > high (0.1)

Example:
    >>> from retune.config import load_config
    >>> cfg = load_config("include/configs/demo.yaml")  # doctest: +SKIP
    >>> cfg.tuning.n_trials  # doctest: +SKIP
    24
"""

from __future__ import annotations

import math
import os
import re
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from retune.errors import ConfigError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
"""Model and config names become paths, run names and study names: keep them tame."""

COLD_STARTUP_TRIALS = 10
"""TPE's random trials before it models, in a cold study (Optuna's ``TPESampler`` default)."""

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_DURATION = timedelta(days=100 * 365)
"""The longest duration a config may give: windows reach back from now, and pandas'
timestamps start in 1677 (a longer window, or one past timedelta's range, failed at run time
with an overflow naming no field)."""


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` or seconds into a timedelta.

    Args:
        value: A duration string, a number of seconds, or a timedelta.

    Returns:
        The duration.

    Raises:
        ValueError: If the value is not a positive duration of at most :data:`MAX_DURATION`
            (also for a list, a mapping, NaN or infinity: pydantic then names the field).
    """
    not_a_duration = f"not a duration: {value!r} (use e.g. '7d', '12h', '30m')"
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(not_a_duration)
        delta = timedelta(seconds=min(max(float(value), -1.0), MAX_DURATION.total_seconds() + 1))
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(not_a_duration)
        try:
            delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:  # past timedelta's range: too long either way
            delta = timedelta.max
    else:
        raise ValueError(not_a_duration)
    if delta <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    if delta > MAX_DURATION:
        raise ValueError(f"duration {value!r} is longer than {MAX_DURATION.days // 365} years")
    return delta


def parse_timestamp(value: str | datetime) -> datetime:
    """Parse an ISO date or datetime into an aware UTC datetime.

    Args:
        value: ``"2024-05-01"``, ``"2024-05-01T12:00:00+02:00"`` or a datetime.

    Returns:
        The timestamp in UTC.
    """
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


Duration = Annotated[timedelta, Field(description="A duration such as '7d' or '12h'.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
"""A table (``table`` or ``schema.table``) or column name a SQL source may use."""

CONN_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
"""An Airflow connection id: outside Airflow Retune reads ``AIRFLOW_CONN_<ID>``, so it must make a variable name."""

_DSN_SECRETS = (
    re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^@/?#\s]*)(?=@)"),  # URI user:password@
    # password=... and sslpassword=... (key=value, ?query)
    re.compile(r"(?P<keep>\b(?:ssl)?password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE),
)


def redact_dsn(text: str) -> str:
    """Mask the passwords of PostgreSQL DSNs (URI or ``key=value`` form) in a text.

    Args:
        text: A DSN, or any text that may quote one (an error message).

    Returns:
        The text with every password replaced by ``***``.

    Example:
        >>> redact_dsn("postgresql://retune:s3cret@db:5432/data")
        'postgresql://retune:***@db:5432/data'
    """
    for pattern in _DSN_SECRETS:
        text = pattern.sub(lambda m: f"{m.group('keep')}***", text)
    return text


def dsn_secrets(dsn: str) -> list[str]:
    """The passwords written in a DSN as :func:`redact_dsn` finds them, also percent-decoded
    and unquoted: to mask them where a message quotes them out of their DSN (libpq quotes the
    token it could not parse).

    Example:
        >>> dsn_secrets("postgresql://u:pa%zzss@db/x")
        ['pa%zzss']
    """
    from urllib.parse import unquote

    found: list[str] = []
    for pattern in _DSN_SECRETS:
        for match in pattern.finditer(dsn):
            secret = match.group("secret")
            for form in (secret, secret.strip("'"), unquote(secret)):
                if form and form not in found:
                    found.append(form)
    return found


class SqlConfig(_Strict):
    """A PostgreSQL table or query; the window bounds are always bound parameters.

    Exactly one of ``table`` and ``query``, and exactly one of ``dsn`` and ``conn_id``.
    """

    table: str | None = Field(None, description="``table`` or ``schema.table``; rows are filtered on data.time_column.")
    query: str | None = Field(None, description="A SELECT with the placeholders %(start)s and %(end)s (write a literal % as %%).")
    dsn: str | None = Field(None, description="libpq DSN or URI; ${VARS} expand. Keep the password in a variable.")
    conn_id: str | None = Field(
        None,
        description="Airflow connection id (type postgres): Airflow's connection in the DAGs, AIRFLOW_CONN_<CONN_ID> outside Airflow.",
    )
    chunk_rows: int = Field(50_000, ge=1, le=10_000_000, description="Rows fetched per round trip (server-side cursor).")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not SQL_IDENTIFIER.match(value):
            raise ValueError(
                f"{value!r} is not a valid table name: use table or schema.table "
                "(letters, digits and '_', not starting with a digit)"
            )
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is None:
            return value
        missing = [p for p in ("%(start)s", "%(end)s") if p not in value]
        if missing:
            raise ValueError(f"the query must filter on the window with %(start)s and %(end)s; missing {' and '.join(missing)}")
        try:
            value % {"start": "", "end": ""}
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"the query has a placeholder other than %(start)s and %(end)s, or a lone % ({exc!r}); write a literal % as %%"
            ) from None
        return value

    @field_validator("conn_id")
    @classmethod
    def _conn_id(cls, value: str | None) -> str | None:
        if value is not None and not CONN_ID_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a usable connection id (letters, digits and '_'; it names AIRFLOW_CONN_<ID>)")
        return value

    @field_serializer("dsn")
    def _hide_password(self, value: str | None) -> str | None:
        return None if value is None else redact_dsn(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> SqlConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if (self.dsn is None) == (self.conn_id is None):
            raise ValueError("give exactly one of dsn or conn_id")
        return self


class SourceConfig(_Strict):
    """Where rows come from: CSV or Parquet files (``path``) or a PostgreSQL table or query (``sql``)."""

    source_required: ClassVar[bool] = True

    path: str | None = Field(None, description="CSV or Parquet path or glob; relative paths are relative to the config file.")
    sql: SqlConfig | None = Field(None, description="A PostgreSQL table or query instead of files.")
    format: Literal["auto", "csv", "parquet"] = "auto"
    read_options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for pandas' reader.")

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if self.path is not None and self.sql is not None:
            raise ValueError("give either path (files) or sql (a table or query), not both")
        if self.path is None and self.sql is None and self.source_required:
            raise ValueError("give path (CSV or Parquet files) or sql (a PostgreSQL table or query)")
        if self.sql is not None and ("format" in self.model_fields_set or self.read_options):
            raise ValueError("format and read_options apply to files (path), not to sql")
        return self


class ReferenceConfig(SourceConfig):
    """The reference period the first model was trained on; without path or sql, read from production."""

    source_required: ClassVar[bool] = False

    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        return None if value is None else parse_timestamp(value)

    @model_validator(mode="after")
    def _order(self) -> ReferenceConfig:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})")
        if self.end is None and self.path is None and self.sql is None:
            raise ValueError(
                "end is required when the reference is read from data.production (no path or sql): an open end "
                "puts every production window inside the reference it is compared with, which hides drift"
            )
        return self


class DataConfig(_Strict):
    """Data sources and windows."""

    production: SourceConfig
    reference: ReferenceConfig
    time_column: str
    window: Duration = Field(description="Length of a production window checked for drift.")
    train_window: Duration = Field(description="Length of the data a retune trains and validates on.")
    holdout_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="Newest share held out for staging.")
    validation_fraction: float = Field(0.25, gt=0.0, lt=0.9, description="Newest share of the rest used to score trials.")
    min_rows: int = Field(50, ge=1, description="Fewer rows in a window is an error.")

    @field_validator("window", "train_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class FeaturesConfig(_Strict):
    """Feature columns with declared types; or all columns but the excluded ones."""

    numerical: list[str] | None = None
    categorical: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list, description="With numerical unset: every other column is a feature.")

    @model_validator(mode="after")
    def _no_overlap(self) -> FeaturesConfig:
        for where, names in (("numerical", self.numerical or []), ("categorical", self.categorical), ("exclude", self.exclude)):
            twice = sorted({c for c in names if names.count(c) > 1})
            if twice:
                raise ValueError(f"{where}: column(s) listed more than once: {twice}")
        both = set(self.numerical or []) & set(self.categorical)
        if both:
            raise ValueError(f"columns declared both numerical and categorical: {sorted(both)}")
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1


class FloatParam(_Strict):
    type: Literal["float", "log_float"]
    low: float
    high: float
    step: float | None = None


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


ParamSpec = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


def parse_space(raw: dict[str, Any]) -> dict[str, IntParam | FloatParam | CategoricalParam]:
    """A search space from its JSON form (as carried in the retune context)."""
    from pydantic import TypeAdapter

    return TypeAdapter(dict[str, ParamSpec]).validate_python(raw)


class ModelConfig(_Strict):
    """Model family, fixed parameters and the search space."""

    family: str
    fixed_params: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, ParamSpec]

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        from retune.models import FAMILIES

        if value not in FAMILIES:
            raise ValueError(f"unknown model family {value!r}; choose one of {sorted(FAMILIES)}")
        return value

    @field_validator("search_space")
    @classmethod
    def _ranges(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError("search_space is empty")
        for name, spec in space.items():
            if isinstance(spec, CategoricalParam):
                odd = [c for c in spec.choices if c is not None and not isinstance(c, (bool, int, float, str))]
                if odd:
                    raise ValueError(
                        f"{name}: choices must be null, true/false, numbers or strings (Optuna stores them); got {odd[0]!r}"
                    )
            if isinstance(spec, (IntParam, FloatParam)):
                if not (math.isfinite(spec.low) and math.isfinite(spec.high)):
                    raise ValueError(f"{name}: low and high must be finite numbers, got low={spec.low}, high={spec.high}")
                if spec.step is not None and not (math.isfinite(spec.step) and spec.step > 0):
                    raise ValueError(f"{name}: step must be a positive number, got {spec.step}")
                if spec.low > spec.high:
                    raise ValueError(f"{name}: low ({spec.low}) > high ({spec.high})")
                log = isinstance(spec, FloatParam) and spec.type == "log_float" or (isinstance(spec, IntParam) and spec.log)
                if log and spec.low <= 0:
                    raise ValueError(f"{name}: a log range needs low > 0, got {spec.low}")
                if log and ((isinstance(spec, IntParam) and spec.step != 1) or (isinstance(spec, FloatParam) and spec.step)):
                    raise ValueError(f"{name}: a log range cannot have a step")
        return space


class MetricConfig(_Strict):
    """The metric trials are scored with; its direction follows from its name."""

    name: str
    direction: Literal["minimize", "maximize"] | None = None


DRIFT_METHODS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ["anderson", "cramer_von_mises", "ed", "empirical_mmd", "es", "ks", "mannw", "t_test", "wasserstein"],
        frozenset({"numerical"}),
    ),
    **dict.fromkeys(["TVD", "chisquare", "fisher_exact", "g_test", "z"], frozenset({"categorical"})),
    **dict.fromkeys(["hellinger", "jensenshannon", "kl_div", "psi"], frozenset({"numerical", "categorical"})),
}
"""Evidently's drift tests by name, with the column types each accepts (tabular tests only;
``tests/retune/test_config.py`` checks this against Evidently's own registry)."""


def _check_drift_method(value: str | None) -> str | None:
    if value is not None and value not in DRIFT_METHODS:
        raise ValueError(f"unknown drift method {value!r}; Evidently's tabular tests are {sorted(DRIFT_METHODS)}")
    return value


class ColumnDrift(_Strict):
    method: str | None = None
    threshold: float | None = None

    _method = field_validator("method")(classmethod(lambda cls, v: _check_drift_method(v)))


ReportRule = Literal["on_drift", "always", "never"]
"""When a drift check renders Evidently's HTML report (``drift.report``; see :func:`retune.drift.wants_report`)."""


class DriftConfig(_Strict):
    """When a production window counts as drifted."""

    schedule: str = Field("@daily", description="Cron or preset for the monitor of this model.")
    method: str | None = Field(None, description="Evidently stat test for every column (None: Evidently's default per type).")
    threshold: float | None = Field(None, description="Per-column threshold for every column (None: the test's default).")
    columns: dict[str, ColumnDrift] = Field(default_factory=dict, description="Per-column method and threshold.")
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="Share of drifted columns that makes the dataset drifted.")
    reference: Literal["champion_training", "fixed"] = Field(
        "champion_training",
        description="Compare against the champion's training window (after a retune) or always the fixed reference.",
    )
    detector: Literal["profiled", "evidently"] = Field(
        "profiled",
        description=(
            "How the verdict is computed: 'profiled' (the default: Evidently's default statistics and thresholds "
            "from a reference profile, the same verdicts at a fraction of the CPU; see retune.profile) or "
            "'evidently' (Evidently's DataDriftPreset on both windows every check)."
        ),
    )
    report: ReportRule = Field(
        "on_drift",
        description=(
            "When the check logs Evidently's HTML report (drift/report.html): 'on_drift' (the default: for a "
            "drifted window, the one someone will look at and a retune follows), 'always' (every check, at the "
            "preset's cost) or 'never'."
        ),
    )

    _method = field_validator("method")(classmethod(lambda cls, v: _check_drift_method(v)))

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        """A cron expression or preset that fires: a typo used to pass here and then fail the
        monitor's ``due_configs`` for every model, in every scheduled run."""
        from datetime import UTC, datetime

        from croniter import croniter

        try:
            croniter(value, datetime(2025, 1, 1, tzinfo=UTC)).get_next(datetime)
        except Exception as exc:  # noqa: BLE001 - croniter's errors name no field
            raise ValueError(f"{value!r} is not a cron expression or preset that fires ({exc})") from None
        return value


class PrunerConfig(_Strict):
    """``tuning.pruner``: which Optuna pruner stops unpromising trials, with its arguments.

    The default is successive halving: on the real-drift episodes of benchmark B1 (bike
    sharing and NOAA weather, 25 episode x seed cases) it ended warm-started studies with a
    better model than the median pruner (holdout error 0.977x vs 0.991x a cold unpruned
    study's, 12 wins to 7) at the same CPU, and showed no short-horizon bias with the
    learning rate in the space.
    """

    type: Literal["median", "percentile", "successive_halving", "hyperband", "wilcoxon", "none"] = "successive_halving"
    args: dict[str, Any] = Field(default_factory=dict)


class AdaptiveConfig(_Strict):
    """Drift-aware retuning: mode, space and budget from the drift share (see :mod:`retune.adaptive`)."""

    enabled: bool = True
    mild_below: float = Field(0.3, ge=0.0, le=1.0, description="Drift share below this is mild drift.")
    severe_at: float = Field(0.6, ge=0.0, le=1.0, description="Drift share at or above this is severe drift.")
    mild_budget: float = Field(0.5, gt=0.0, le=10.0, description="Mild drift: n_trials x this.")
    mild_narrow: float = Field(
        0.125, gt=0.0, le=1.0, description="Mild drift: half-width of the narrowed ranges, share of the width."
    )
    severe_budget: float = Field(1.5, gt=0.0, le=10.0, description="Severe drift: n_trials x this.")
    severe_widen: float = Field(0.25, ge=0.0, le=5.0, description="Severe drift: widen each range by this share of its width.")
    severe_cold: bool = Field(False, description="Severe drift: start cold (no warm-start seeds).")

    @model_validator(mode="after")
    def _order(self) -> AdaptiveConfig:
        if self.mild_below > self.severe_at:
            raise ValueError(f"mild_below ({self.mild_below}) > severe_at ({self.severe_at})")
        return self


class TuningConfig(_Strict):
    """The study budget and how it prunes."""

    n_trials: int = Field(30, ge=1, le=10_000)
    timeout: int | None = Field(
        None,
        ge=1,
        le=86_400,
        description=(
            "The study's wall-clock limit in seconds, at most 24 h, from when its first worker started (retried and "
            "late workers share it); None: the trial budget alone, within the tune task's 25 h execution_timeout."
        ),
    )
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    seed: int = 42
    n_steps: int = Field(4, ge=1, le=50, description="Intermediate values each trial reports.")
    warm_start_top_k: int = Field(3, ge=0, le=100)
    threads_per_trial: int = Field(1, ge=1, description="BLAS/OpenMP threads a trial may use (threadpoolctl).")
    n_workers: int = Field(1, ge=1, le=64, description="Parallel trial workers on one study (Airflow mapped tasks).")
    heartbeat_interval: int = Field(10, ge=1, description="Seconds between trial heartbeats (RDB storage).")
    grace_period: int = Field(60, ge=2, description="Seconds without a heartbeat before a trial counts as dead and is retried.")
    max_retry: int = Field(2, ge=0, description="Retries of a trial whose worker died.")
    early_stop_patience: int | Literal["auto"] | None = Field(
        "auto",
        description=(
            "Stop the study after this many finished trials without improving the best. 'auto': a warm-started "
            "study stops after max(5, n_trials / 5) such trials, a cold one runs its budget; None: off."
        ),
    )
    early_stop_min_delta: float = Field(0.0, ge=0.0, description="An improvement smaller than this does not count.")
    startup_trials: int | Literal["auto"] = Field(
        "auto",
        description=(
            "Trials TPE samples at random before it models the results. 'auto': the number of warm-start seeds + 1 "
            "when the study searches the space its seeds came from (TPE learns from the seeds after one random trial); "
            "10 (Optuna's default) for a cold study or one whose space severe drift widened."
        ),
    )
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)
    transfer: Literal["enqueue", "cmaes"] = Field(
        "enqueue",
        description="How the previous study informs the new one: enqueue its best params (re-scored), "
        "or also start a CMA-ES sampler from its trials (source_trials) when the space is numeric and unchanged "
        "and the previous study had one objective, in the same direction.",
    )
    objectives: list[str] = Field(
        default_factory=lambda: ["metric"],
        description="What the study optimizes: the metric alone, or with prediction latency (ms per 1,000 rows) and model size (KiB).",
    )
    max_latency_ms_per_1k: float | None = Field(None, gt=0, description="Multi-objective: the winner's latency bound.")
    max_size_kb: float | None = Field(None, gt=0, description="Multi-objective: the winner's size bound.")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if not value or value[0] != "metric" or len(set(value)) != len(value) or not set(value) <= {"metric", "latency", "size"}:
            raise ValueError(f"must start with 'metric', then 'latency' and/or 'size', without repeats; got {value}")
        return value

    @field_validator("max_latency_ms_per_1k", "max_size_kb")
    @classmethod
    def _bound_needs_objective(cls, value: float | None, info: ValidationInfo) -> float | None:
        """A winner's bound applies to its objective only: without it the bound would be ignored."""
        objective = "latency" if info.field_name == "max_latency_ms_per_1k" else "size"
        objectives = info.data.get("objectives")
        if value is not None and objectives is not None and objective not in objectives:
            raise ValueError(
                f"needs {objective!r} in tuning.objectives (got {objectives}); without it the bound is never checked"
            )
        return value

    @field_validator("startup_trials")
    @classmethod
    def _startup(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"must be at least 0 or 'auto'; got {value}")
        return value

    @field_validator("early_stop_patience")
    @classmethod
    def _patience(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1, 'auto' or null; got {value}")
        return value

    def startup_trials_for(self, n_seeds: int, *, widened: bool = False) -> int:
        """TPE's ``n_startup_trials`` for one study.

        Args:
            n_seeds: Warm-start seeds enqueued in the study.
            widened: Whether the study searches a space wider than its seeds' (severe drift).
        """
        if self.startup_trials != "auto":
            return int(self.startup_trials)
        return n_seeds + 1 if n_seeds and not widened else COLD_STARTUP_TRIALS

    def patience_for(self, *, n_trials: int, warm: bool) -> int | None:
        """The early-stopping patience of one study (``None``: it runs its budget).

        Args:
            n_trials: The study's trial budget.
            warm: Whether the study was warm-started (seeds enqueued).
        """
        if self.multi_objective or self.early_stop_patience is None:
            return None
        if self.early_stop_patience == "auto":
            return max(5, math.ceil(n_trials / 5)) if warm else None
        return int(self.early_stop_patience)

    @property
    def multi_objective(self) -> bool:
        """Whether the study has more than one objective (no pruning then)."""
        return len(self.objectives) > 1

    @model_validator(mode="after")
    def _pruner_args(self) -> TuningConfig:
        from retune.tuning import make_pruner

        make_pruner(self.pruner, n_steps=self.n_steps)
        return self


class ValidationConfig(_Strict):
    """Gates the challenger must pass before it becomes champion (finite numbers only: a NaN or
    infinite bound fails a gate on every retune)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_improvement: float = Field(0.0, ge=0.0, le=1.0, description="Relative improvement over the champion (0.01 = 1%).")
    min_absolute_improvement: float | None = Field(None, gt=0.0)
    max_latency_ms_per_1k: float | None = Field(None, gt=0.0, description="Prediction latency per 1,000 rows, ms.")
    metric_threshold: float | None = Field(
        None, description="Absolute bound the metric must reach; within the metric's range (r2 at most 1, accuracy 0-1, ...)."
    )
    staging_sample_rows: int = Field(1000, ge=10)
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description=(
            "Confidence of the paired bootstrap gate: the lower bound of the challenger's improvement "
            "over the champion on the same holdout at this level must be above zero."
        ),
    )
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples of the holdout rows.")


class PolicyConfig(_Strict):
    """When a requested retune may start (see :mod:`retune.policy`)."""

    hysteresis: int = Field(1, ge=1, le=100, description="Consecutive drifted windows before the schedule retunes.")
    cooldown: Duration = Field(
        timedelta(0),
        description="No new retune this soon after the last one started (one its drift gate skipped does not count).",
    )
    lock_ttl: Duration = Field(
        timedelta(hours=6), description="A retune that shows no sign of life (no trial finished) this long is presumed dead."
    )

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> timedelta:
        if value in (0, "0", None):
            return timedelta(0)
        return parse_duration(value)

    @field_validator("lock_ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> timedelta:
        return parse_duration(value)


class RegistryConfig(_Strict):
    model_name: str

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid name (lowercase letters, digits, '-', '_'; up to 63)")
        return value


def check_drift_columns(drift: DriftConfig, *, numerical: list[str], categorical: list[str]) -> None:
    """Refuse a drift method that cannot test a feature's type, and per-column drift settings
    for a column that is no feature.

    Args:
        drift: The config's ``drift`` section.
        numerical: Numerical feature columns.
        categorical: Categorical feature columns.

    Raises:
        ValueError: Naming the field (``drift.method``, ``drift.columns.<column>.method``,
            ``drift.columns``) and the column.
    """
    kinds = dict.fromkeys(numerical, "numerical") | dict.fromkeys(categorical, "categorical")
    for column, kind in kinds.items():
        per_column = drift.columns.get(column)
        method, where = (
            (per_column.method, f"drift.columns.{column}.method")
            if per_column is not None and per_column.method
            else (drift.method, "drift.method")
        )
        if method and kind not in DRIFT_METHODS[method]:
            raise ValueError(
                f"{where}: {method!r} cannot test the {kind} column {column!r}; it takes {sorted(DRIFT_METHODS[method])} columns"
            )
    unknown = sorted(set(drift.columns) - set(kinds))
    if unknown:
        raise ValueError(f"drift.columns: {unknown} are not features of this config")


class RetuneConfig(_Strict):
    """Everything Retune needs to know about one monitored model."""

    name: str
    description: str = ""
    task: Literal["classification", "regression"]
    target: str
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig
    metric: MetricConfig
    drift: DriftConfig = Field(default_factory=DriftConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    registry: RegistryConfig
    source_file: str | None = Field(None, exclude=True, description="The file this config was read from.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid name (lowercase letters, digits, '-', '_'; up to 63)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RetuneConfig:
        from retune.metrics import get_metric  # local: metrics imports sklearn

        try:
            metric = get_metric(self.metric.name, self.task)
        except ValueError as exc:
            raise ValueError(f"metric.name: {exc}") from None
        if self.metric.direction is not None and self.metric.direction != metric.direction:
            raise ValueError(
                f"metric.direction: {self.metric.name} must be {metric.direction}d, config says {self.metric.direction}"
            )
        threshold = self.validation.metric_threshold
        if threshold is not None and (outside := metric.out_of_range(threshold)):
            raise ValueError(f"validation.metric_threshold: {outside}")
        from retune.models import get_family

        family = get_family(self.model.family)
        family.check_params(self.task, {**self.model.fixed_params, **dict.fromkeys(self.model.search_space)})
        if (threads := family.thread_param) is not None:
            for section in ("fixed_params", "search_space"):
                if threads in getattr(self.model, section):
                    raise ValueError(
                        f"model.{section}.{threads}: {self.model.family} takes its thread count from "
                        f"tuning.threads_per_trial (now {self.tuning.threads_per_trial}), the threads one trial "
                        f"may use beside the other workers; remove {threads} and set that instead"
                    )
        if self.target in (self.features.numerical or []) + self.features.categorical:
            raise ValueError(f"features: the target {self.target!r} cannot be a feature")
        self._check_drift_types()
        return self

    def _check_drift_types(self) -> None:
        """Refuse drift settings that do not fit the declared features (types are known here
        only when the features are declared; with ``exclude`` only,
        :func:`retune.data.resolve_features` runs the same check once it has typed them)."""
        if self.features.numerical is None:
            return
        check_drift_columns(self.drift, numerical=self.features.numerical, categorical=self.features.categorical)

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """The optimisation direction of the metric."""
        from retune.metrics import get_metric

        return get_metric(self.metric.name, self.task).direction

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe copy of the config, for logging and lineage."""
        return self.model_dump(mode="json")


def _format_error(path: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        # Discriminated unions add the tag to the location; keep it readable.
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def _expand(value: str, variables: dict[str, str]) -> str:
    return string.Template(value).safe_substitute({**os.environ, **variables})


def resolve_path(pattern: str, *, base: Path, variables: dict[str, str] | None = None) -> str:
    """Expand ``${VARS}`` and make a path relative to the config file's folder absolute.

    Args:
        pattern: A path or glob from the config.
        base: The folder of the config file.
        variables: Extra variables (for example ``RETUNE_STATE_DIR``).

    Returns:
        An absolute path or glob.
    """
    expanded = os.path.expanduser(_expand(pattern, variables or {}))
    if not os.path.isabs(expanded):
        expanded = str(base / expanded)
    return expanded


def load_config(path: str | os.PathLike[str]) -> RetuneConfig:
    """Read and validate one model config.

    Args:
        path: The YAML file.

    Returns:
        The validated config with ``source_file`` set.

    Raises:
        ConfigError: If the file is missing, unreadable, not UTF-8, not YAML, or invalid;
            the message names the file and every offending field.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: config file does not exist")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return RetuneConfig.model_validate({**raw, "source_file": str(file.resolve())})
    except ValidationError as exc:
        raise ConfigError(_format_error(str(file), exc)) from None


def load_named_file(path: str | os.PathLike[str]) -> RetuneConfig:
    """:func:`load_config` for a config the DAGs address by its file, ``<name>.yaml``.

    Raises:
        ConfigError: As :func:`load_config`, or when the config's ``name`` is not its file's
            name: the DAGs address a config by its file, while its policy, windows and
            experiments go by ``name``; two names for one model made the monitor's planning
            fail (or act on another config of that name).
    """
    file = Path(path)
    cfg = load_config(file)
    if cfg.name != file.stem:
        raise ConfigError(f"{file}: name: {cfg.name!r} must be the file's name, {file.stem!r} (the DAGs address it by its file)")
    return cfg


def config_path(name: str, config_dir: str | os.PathLike[str]) -> Path:
    """The YAML file of a config name, refusing names that could escape the folder.

    Args:
        name: A config name such as ``"demo"``.
        config_dir: The folder holding the configs.

    Returns:
        ``<config_dir>/<name>.yaml``.

    Raises:
        ConfigError: If the name is not a plain, safe name.
    """
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"config name {name!r} is not valid (lowercase letters, digits, '-', '_')")
    return Path(config_dir) / f"{name}.yaml"

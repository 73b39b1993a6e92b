"""Staging validation: the challenger against the champion on the same newest holdout.

The winner is refit on the tuning data, logged to MLflow, loaded back in a fresh process
(as a user would load it) and scored there on a sample of the holdout: that is the staging
check. Then the gates of the config are applied with MLflow's ``MetricThreshold`` and
``validate_evaluation_results``, one gate at a time so each verdict is recorded.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retune.config import RetuneConfig
from retune.metrics import Metric

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LATENCY = "latency_ms_per_1k"


@dataclass(frozen=True)
class Gate:
    """One gate's verdict."""

    name: str
    passed: bool
    detail: str


def latency_ms_per_1k(model: Any, X: pd.DataFrame, *, repeats: int = 3) -> float:
    """Median prediction latency per 1,000 rows, in milliseconds.

    Args:
        model: Anything with ``predict``.
        X: Rows to predict.
        repeats: Timed repeats (the median is kept).

    Returns:
        Milliseconds per 1,000 rows.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000.0 * 1000.0 / max(len(X), 1)


def staging_check(model_uri: str, sample: pd.DataFrame, *, tracking_uri: str, timeout: float = 600) -> dict[str, Any]:
    """Load a model from MLflow in a fresh Python process and predict a sample.

    The sample travels to the child process on its standard input (Parquet bytes), so no
    file is left behind.

    Args:
        model_uri: For example ``models:/m-...`` or ``runs:/<id>/model``.
        sample: Feature rows to predict.
        tracking_uri: The MLflow tracking URI the child process uses.
        timeout: Seconds before the check fails.

    Returns:
        ``{"ok": bool, "predictions": [...], "latency_ms_per_1k": float, "error": str | None}``.
    """
    import io

    buf = io.BytesIO()
    sample.reset_index(drop=True).to_parquet(buf)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "retune.staging", model_uri],
            input=buf.getvalue(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"staging check timed out after {timeout}s", "predictions": None}
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {
            "ok": False,
            "error": "model failed to load or predict in a fresh process: " + " | ".join(tail),
            "predictions": None,
        }
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    result["ok"] = True
    result["error"] = None
    return result


def _gate(name: str, thresholds: dict[str, Any], candidate: dict[str, float], baseline: dict[str, float] | None) -> Gate:
    from mlflow.exceptions import MlflowException
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import validate_evaluation_results

    try:
        validate_evaluation_results(
            thresholds,
            EvaluationResult(metrics=candidate, artifacts={}, run_id="staging"),
            EvaluationResult(metrics=baseline, artifacts={}, run_id="champion") if baseline is not None else None,
        )
    except MlflowException as exc:  # ModelValidationFailedException is one
        return Gate(name, False, str(exc).strip().replace("\n", " "))
    return Gate(name, True, "passed")


def apply_gates(
    cfg: RetuneConfig,
    metric: Metric,
    *,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    staging: dict[str, Any],
    predictions_match: bool,
) -> list[Gate]:
    """Apply every gate of the config.

    Args:
        cfg: The model config (``validation`` section).
        metric: The model metric.
        challenger: The challenger's holdout metrics (metric name and ``latency_ms_per_1k``).
        champion: The champion's holdout metrics, or ``None`` if there is no champion.
        staging: The result of :func:`staging_check`.
        predictions_match: Whether the fresh process predicted what the trained model did.

    Returns:
        One verdict per gate.
    """
    from mlflow.models import MetricThreshold

    v = cfg.validation
    gates = [
        Gate(
            "staging_load",
            bool(staging.get("ok")) and predictions_match,
            staging.get("error") or ("predictions match" if predictions_match else "predictions in a fresh process differ"),
        )
    ]
    if champion is not None:
        kwargs: dict[str, Any] = {"greater_is_better": metric.greater_is_better}
        if v.min_improvement > 0:
            kwargs["min_relative_change"] = float(v.min_improvement)
        if v.min_absolute_improvement:
            kwargs["min_absolute_change"] = float(v.min_absolute_improvement)
        if len(kwargs) == 1:  # no margin asked for: still never promote a worse model
            better = metric.better(challenger[metric.name], champion[metric.name]) or (
                challenger[metric.name] == champion[metric.name]
            )
            gates.append(
                Gate(
                    "beats_champion",
                    better,
                    f"challenger {metric.name}={challenger[metric.name]:.6g} vs champion {champion[metric.name]:.6g}",
                )
            )
        else:
            gate = _gate("beats_champion", {metric.name: MetricThreshold(**kwargs)}, challenger, champion)
            gates.append(
                Gate(
                    gate.name,
                    gate.passed,
                    f"challenger {metric.name}={challenger[metric.name]:.6g} vs champion "
                    f"{champion[metric.name]:.6g}: {gate.detail}",
                )
            )
    else:
        gates.append(Gate("beats_champion", True, "no champion yet"))
    if v.metric_threshold is not None:
        gates.append(
            _gate(
                "metric_threshold",
                {metric.name: MetricThreshold(threshold=float(v.metric_threshold), greater_is_better=metric.greater_is_better)},
                challenger,
                None,
            )
        )
    if v.max_latency_ms_per_1k is not None:
        gate = _gate(
            "latency",
            {LATENCY: MetricThreshold(threshold=float(v.max_latency_ms_per_1k), greater_is_better=False)},
            challenger,
            None,
        )
        gates.append(
            Gate(
                gate.name, gate.passed, f"{challenger[LATENCY]:.3g} ms per 1k rows (max {v.max_latency_ms_per_1k}): {gate.detail}"
            )
        )
    return gates


def gates_json(gates: list[Gate]) -> list[dict[str, Any]]:
    """Gates as JSON."""
    return [asdict(g) for g in gates]

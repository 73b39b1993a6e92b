"""Drift-aware retuning: how much to trust the past depends on how far the data moved.

From the drift share that triggered a retune, :func:`plan` picks a mode:

- ``mild`` (share below ``adaptive.mild_below``): the search space is narrowed around the
  champion's params and the budget shrinks (``mild_budget`` x n_trials);
- ``moderate``: the configured space and budget, warm-started;
- ``severe`` (share at or above ``adaptive.severe_at``): the space is widened by
  ``severe_widen`` of each range's width, the budget grows (``severe_budget``), and with
  ``severe_cold`` the study starts cold;
- ``cold``: no champion to start from (the first model, or none promoted yet, e.g. the first
  challenger failed a gate): the configured space and budget. It is still warm-started from
  the model's previous study if there is one (else from similar tasks, see
  :mod:`retune.metalearn`), unless severe drift and ``severe_cold`` say to start cold.

Example:
    >>> from retune.config import AdaptiveConfig, FloatParam
    >>> space = {"lr": FloatParam(type="float", low=0.0, high=1.0)}
    >>> p = plan(AdaptiveConfig(), space, n_trials=20, drift_share=0.2, champion_params={"lr": 0.5})
    >>> p.mode, p.n_trials, (p.space["lr"].low, p.space["lr"].high)
    ('mild', 10, (0.375, 0.625))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from retune.config import AdaptiveConfig, CategoricalParam, FloatParam, IntParam, ParamSpec, RetuneConfig
from retune.models import Domain, ModelFamily, get_family


@dataclass(frozen=True)
class Plan:
    """The mode of one retune and what it implies."""

    mode: str
    reason: str
    space: dict[str, ParamSpec]
    n_trials: int
    warm: bool

    def space_json(self) -> dict[str, Any]:
        """The search space as JSON (for the retune context)."""
        return {k: v.model_dump() for k, v in self.space.items()}


def _is_log(spec: IntParam | FloatParam) -> bool:
    return (isinstance(spec, FloatParam) and spec.type == "log_float") or (isinstance(spec, IntParam) and spec.log)


def _bounds(spec: IntParam | FloatParam, lo: float, hi: float) -> ParamSpec:
    """``spec`` with the range ``[lo, hi]``, kept on the configured grid: a ``step`` range
    keeps the values ``spec.low + k x step`` (it used to move to ``lo + k x step``, off every
    configured value), and a log integer range starts at 1 or more."""
    step = None if _is_log(spec) else spec.step
    if step and not (isinstance(spec, IntParam) and step == 1):
        k_lo, k_hi = math.ceil((lo - spec.low) / step - 1e-9), math.floor((hi - spec.low) / step + 1e-9)
        if k_hi < k_lo:  # narrower than one step: the grid value nearest its middle
            k_lo = k_hi = round(((lo + hi) / 2 - spec.low) / step)
        lo, hi = round(spec.low + k_lo * step, 12), round(spec.low + k_hi * step, 12)
    if isinstance(spec, IntParam):
        lo_i, hi_i = int(math.floor(lo)), int(math.ceil(hi))
        if hi_i < lo_i:
            lo_i, hi_i = hi_i, lo_i
        if spec.log:
            lo_i, hi_i = max(lo_i, 1), max(hi_i, 1)
        return spec.model_copy(update={"low": lo_i, "high": max(hi_i, lo_i), "step": 1 if spec.log else spec.step})
    return spec.model_copy(update={"low": float(lo), "high": float(max(hi, lo))})


def narrow(space: dict[str, ParamSpec], center: dict[str, Any], fraction: float) -> dict[str, ParamSpec]:
    """Shrink each numeric range to ``center +- fraction x width`` (log ranges in log space),
    inside the configured range; params without a center, or whose center is not a finite
    number (the champion was tuned when the param was categorical: ``"sqrt"``, ``None``),
    keep their range.

    Args:
        space: The configured space.
        center: The champion's params.
        fraction: Half-width of the new range as a share of the old width.

    Returns:
        The narrowed space.
    """
    out: dict[str, ParamSpec] = {}
    for name, spec in space.items():
        if isinstance(spec, CategoricalParam) or name not in center:
            out[name] = spec
            continue
        try:
            value = float(center[name])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            out[name] = spec
            continue
        if _is_log(spec):
            lo, hi, c = math.log(spec.low), math.log(spec.high), math.log(min(max(value, spec.low), spec.high))
            half = fraction * (hi - lo)
            # exp(log(x)) is not always x (exp(log(8)) = 7.999...): clamp, or an int range floors out of it
            lo_x, hi_x = max(spec.low, math.exp(max(lo, c - half))), min(spec.high, math.exp(min(hi, c + half)))
            out[name] = _bounds(spec, lo_x, hi_x)
        else:
            half = fraction * (spec.high - spec.low)
            c = min(max(value, spec.low), spec.high)
            out[name] = _bounds(spec, max(spec.low, c - half), min(spec.high, c + half))
    return out


def widen(space: dict[str, ParamSpec], fraction: float, *, domains: dict[str, Domain] | None = None) -> dict[str, ParamSpec]:
    """Grow each numeric range by ``fraction x width`` on both sides (log ranges in log
    space), never below zero for a range that started at or above zero, nor below 1 for an
    integer range that started at or above 1, and never outside the values the estimator
    accepts (``domains``, e.g. ``max_features`` in ``(0, 1]``), so that no widened trial fails.

    Args:
        space: The configured space.
        fraction: Share of each range's width added on each side.
        domains: Accepted values per parameter (see :meth:`retune.models.ModelFamily.domain`).

    Returns:
        The widened space.
    """
    if fraction <= 0:
        return dict(space)
    domains = domains or {}
    out: dict[str, ParamSpec] = {}
    for name, spec in space.items():
        if isinstance(spec, CategoricalParam):
            out[name] = spec
            continue
        if _is_log(spec):
            lo, hi = math.log(spec.low), math.log(spec.high)
            pad = fraction * max(hi - lo, math.log(2.0))
            lo_f, hi_f = math.exp(lo - pad), math.exp(hi + pad)
        else:
            pad = fraction * (spec.high - spec.low)
            floor = 1.0 if isinstance(spec, IntParam) and spec.low >= 1 else (0.0 if spec.low >= 0 else -math.inf)
            lo_f, hi_f = max(spec.low - pad, floor), spec.high + pad
        if name in domains:
            lo_f, hi_f = domains[name].clip(lo_f, hi_f, inside=(float(spec.low), float(spec.high)))
        out[name] = _bounds(spec, lo_f, hi_f)
    return out


def domains_of(family: ModelFamily, task: str, space: dict[str, ParamSpec]) -> dict[str, Domain]:
    """The accepted values of every numeric parameter of ``space`` that the estimator constrains."""
    out: dict[str, Domain] = {}
    for name, spec in space.items():
        if isinstance(spec, (IntParam, FloatParam)):
            domain = family.domain(task, name, integer=isinstance(spec, IntParam))
            if domain is not None:
                out[name] = domain
    return out


def plan(
    cfg: AdaptiveConfig,
    space: dict[str, ParamSpec],
    *,
    n_trials: int,
    drift_share: float | None,
    champion_params: dict[str, Any] | None,
    domains: dict[str, Domain] | None = None,
) -> Plan:
    """Pick the retune mode from the drift share and shape the space and budget.

    Args:
        cfg: ``tuning.adaptive`` of the config.
        space: The configured search space.
        n_trials: The requested budget.
        drift_share: Share of drifted columns that triggered the retune (``None``: unknown).
        champion_params: The champion's params (``None``: no champion).
        domains: Values the estimator accepts per parameter (bounds the widened space).

    Returns:
        The plan.
    """
    if not champion_params:  # nothing to narrow around; a previous study's best may still seed it
        severe_cold = cfg.enabled and cfg.severe_cold and drift_share is not None and drift_share >= cfg.severe_at
        why = f", drift share {drift_share:.2f} >= {cfg.severe_at}: cold start" if severe_cold else ""
        return Plan("cold", f"no champion to start from{why}", dict(space), n_trials, warm=not severe_cold)
    if not cfg.enabled or drift_share is None:
        why = "adaptive mode off" if not cfg.enabled else "no drift share given (manual or forced retune)"
        return Plan("moderate", why, dict(space), n_trials, warm=True)
    if drift_share < cfg.mild_below:
        budget = max(1, int(round(n_trials * cfg.mild_budget)))
        return Plan(
            "mild",
            f"drift share {drift_share:.2f} < {cfg.mild_below}: narrow around the champion, {budget} trials",
            narrow(space, champion_params, cfg.mild_narrow),
            budget,
            warm=True,
        )
    if drift_share >= cfg.severe_at:
        budget = max(1, int(round(n_trials * cfg.severe_budget)))
        return Plan(
            "severe",
            f"drift share {drift_share:.2f} >= {cfg.severe_at}: widen the space by {cfg.severe_widen}, "
            f"{budget} trials{', cold start' if cfg.severe_cold else ''}",
            widen(space, cfg.severe_widen, domains=domains),
            budget,
            warm=not cfg.severe_cold,
        )
    return Plan("moderate", f"drift share {drift_share:.2f}: configured space and budget", dict(space), n_trials, warm=True)


def plan_for(
    cfg: RetuneConfig,
    *,
    drift_share: float | None,
    champion_params: dict[str, Any] | None,
    n_trials: int | None = None,
) -> Plan:
    """:func:`plan` for one model's config: its ``tuning.adaptive``, search space and budget,
    a widened space bounded by what its estimator accepts (:func:`domains_of`).

    Retune's pipeline and the benchmarks plan through this, so that both search the same space.

    Args:
        cfg: The model's config.
        drift_share: Share of drifted columns that triggered the retune (``None``: unknown).
        champion_params: The champion's params (``None``: no champion).
        n_trials: The requested budget (default: ``tuning.n_trials``).

    Returns:
        The plan.
    """
    space = cfg.model.search_space
    return plan(
        cfg.tuning.adaptive,
        space,
        n_trials=cfg.tuning.n_trials if n_trials is None else n_trials,
        drift_share=drift_share,
        champion_params=champion_params,
        domains=domains_of(get_family(cfg.model.family), cfg.task, space),
    )

"""Warm start: seed a new study with the champion's params and the previous study's best.

Seeds are enqueued as ordinary trials, so they are trained and scored on the new data:
a score computed on old data is never reused. Each seed is marked with the trial user
attribute ``warm_start`` (``"champion"`` or ``"previous_study"``) and, on its MLflow child
run, the tag ``retune.warm_start``.

Example:
    >>> from retune.config import FloatParam
    >>> clip_to_space({"lr": 5.0, "gone": 1}, {"lr": FloatParam(type="float", low=0.0, high=1.0)})
    {'lr': 1.0}
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from retune.config import CategoricalParam, FloatParam, IntParam, ParamSpec
from retune.tuning import WARM_START_ATTR

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STUDY_PREFIX = "retune."  # model names cannot contain ".", so prefixes never overlap


def study_prefix(model_name: str) -> str:
    """The prefix every study of a model's retunes starts with."""
    return f"{STUDY_PREFIX}{model_name}."


def clip_to_space(params: dict[str, Any], space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Keep only the params the current space has, clipped into its ranges.

    A categorical value that is no longer a choice is dropped (the sampler picks one).

    Args:
        params: Params from an earlier model.
        space: The current search space.

    Returns:
        The params that fit the space.
    """
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if name not in params:
            continue
        value = params[name]
        if isinstance(spec, (IntParam, FloatParam)):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                continue
            number = min(max(number, spec.low), spec.high)
            if spec.step:  # snap onto the grid low, low + step, ... that Optuna samples from, up to its
                # last point <= high (Optuna lowers such a high, and enqueues a value beyond it anyway)
                k_max = math.floor((spec.high - spec.low) / spec.step + 1e-9)
                k = min(round((number - spec.low) / spec.step), k_max)
                number = min(spec.low + k * spec.step, spec.high)
            out[name] = int(round(number)) if isinstance(spec, IntParam) else float(number)
        elif isinstance(spec, CategoricalParam) and value in spec.choices:
            out[name] = value
    return out


def previous_study_top_k(
    storage: str | optuna.storages.BaseStorage | Sequence[str | optuna.storages.BaseStorage],
    model_name: str,
    *,
    exclude: str,
    k: int,
) -> tuple[str | None, list[dict[str, Any]]]:
    """The best ``k`` distinct param sets of the model's most recent other study.

    "Best" is by that study's own objective and direction, not the current config's: its
    trials were scored on the metric it was tuned for, which may have changed since (r2,
    maximized, to mae, minimized, made its worst trials the seeds). A multi-objective study
    is ranked by its first objective, the metric (``tuning.objectives`` starts with it),
    which is also what picks a multi-objective study's winner.

    Args:
        storage: Optuna storage, or several (the newest study across all of them wins).
        model_name: The registered model name (studies are named after it).
        exclude: The current study's name.
        k: How many.

    Returns:
        The previous study's name (or ``None``) and its top params, best first.
    """
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    if k <= 0:
        return None, []
    storages: list[Any] = list(storage) if isinstance(storage, (list, tuple)) else [storage]
    prefix = study_prefix(model_name)
    candidates = [
        (s.datetime_start, s.study_name, st)
        for st in storages
        for s in optuna.get_all_study_summaries(st, include_best_trial=False)
        if s.study_name.startswith(prefix) and s.study_name != exclude and s.datetime_start is not None
    ]
    if not candidates:
        return None, []
    _, latest_name, latest_storage = max(candidates, key=lambda c: c[0])
    study = optuna.load_study(study_name=latest_name, storage=latest_storage)
    maximize = study.directions[0] == StudyDirection.MAXIMIZE
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    complete.sort(key=lambda t: t.values[0], reverse=maximize)
    seen: set[str] = set()
    top: list[dict[str, Any]] = []
    for t in complete:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        top.append(dict(t.params))
        if len(top) == k:
            break
    return latest_name, top


def enqueue_seeds(
    study: optuna.Study, seeds: list[tuple[str, dict[str, Any]]], space: dict[str, ParamSpec]
) -> list[dict[str, Any]]:
    """Enqueue warm-start seeds, clipped to the space, without duplicates.

    Args:
        study: The new study.
        seeds: ``(source, params)`` pairs, most trusted first.
        space: The current search space.

    Returns:
        What was enqueued: ``[{"source": ..., "params": ...}]``.
    """
    enqueued: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, params in seeds:
        clipped = clip_to_space(params, space)
        if not clipped:
            continue
        key = json.dumps(clipped, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        study.enqueue_trial(clipped, user_attrs={WARM_START_ATTR: source}, skip_if_exists=True)
        enqueued.append({"source": source, "params": clipped})
    log.info("warm start: enqueued %d seed(s): %s", len(enqueued), [e["source"] for e in enqueued])
    return enqueued

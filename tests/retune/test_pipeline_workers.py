"""The samplers of a retune's trial workers: one study, a different random sequence each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retune import pipeline
from retune.settings import get_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RETUNE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("RETUNE_OPTUNA_STORAGE", raising=False)
    return get_settings()


def _ctx(cfg: Any, name: str) -> dict[str, Any]:
    return {"study_name": name, "pruner": cfg.tuning.pruner.type, "n_workers": 2}


def test_two_workers_and_a_retried_worker_propose_different_random_trials(make_cfg: Callable[..., Any], settings: Any) -> None:
    """Both workers used to seed TPE with tuning.seed: on a cold study (random start) they
    proposed the same trials in pairs, and a retried worker replayed its own."""
    cfg = make_cfg()
    dists = pipeline.tuning_distributions(cfg.model.search_space)
    ctx = _ctx(cfg, "retune.demo-demand.workers")
    first = pipeline._create_study(cfg, ctx, settings, worker=0).ask(dists)
    second = pipeline._create_study(cfg, ctx, settings, worker=1).ask(dists)
    assert first.params != second.params

    study = pipeline._create_study(cfg, ctx, settings, worker=0)
    study.tell(first.number, 1.0)
    again = pipeline._create_study(cfg, ctx, settings, worker=0).ask(dists)  # worker 0 retried
    assert again.params != first.params

    # one worker, first attempt: the config's seed, so a one-worker retune is reproducible
    alone = pipeline._create_study(cfg, _ctx(cfg, "retune.demo-demand.alone"), settings, worker=0).ask(dists)
    assert alone.params == first.params

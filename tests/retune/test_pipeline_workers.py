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


def _demo_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], **tuning: Any) -> None:
    """The demo data and a small demo config (``tuning`` overrides) in the state folder."""
    import copy

    import yaml

    from retune import demo_data

    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("RETUNE_CONFIG_DIR", str(configs))
    monkeypatch.setenv("RETUNE_GIT_COMMIT", "unit-test")
    demo_data.write(tmp_path / "data" / "demo", days=60, rows_per_day=30)
    raw = copy.deepcopy(demo_raw)
    raw["data"]["reference"]["end"] = "2025-02-15"
    raw["model"]["fixed_params"]["max_iter"] = 20
    raw["tuning"].update(n_trials=2, n_steps=2, **tuning)
    (configs / "demo.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _lose_a_trial(study: Any, cl: Any, ctx: dict[str, Any]) -> tuple[Any, str]:
    """A trial (with its child run) whose worker was killed mid-trial."""
    lost = study.ask()
    child = cl.create_run(ctx["experiment_id"], tags={"mlflow.parentRunId": ctx["parent_run_id"]}).info.run_id
    lost.set_user_attr("mlflow_run_id", child)
    return lost, child


def test_summarize_fails_a_trial_its_dead_worker_left_running(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], restore_mlflow_uris: None
) -> None:
    """The summary runs once every tune task ended: a trial still RUNNING lost its worker.
    It is counted failed and its MLflow child run ends FAILED, not RUNNING under a FINISHED parent."""
    import optuna

    from retune import tracking

    _demo_state(tmp_path, monkeypatch, demo_raw)
    ctx = pipeline.prepare("demo", window_kind="reference", key="dead-worker")
    pipeline.warm_start(ctx)
    pipeline.tune_worker(ctx, 0)
    study = optuna.load_study(study_name=ctx["study_name"], storage=get_settings().optuna_storage)
    cl = tracking.client(get_settings())
    lost, child = _lose_a_trial(study, cl, ctx)  # a worker killed mid-trial, after the others met the budget

    outcome = pipeline.summarize_study(ctx)
    assert outcome["n_failed"] == 1 and outcome["n_complete"] == 2
    assert study.trials[lost.number].state == optuna.trial.TrialState.FAIL
    assert cl.get_run(child).info.status == "FAILED"


def test_a_failed_retune_fails_the_trial_its_killed_worker_left_running(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_raw: dict[str, Any], restore_mlflow_uris: None
) -> None:
    """A retune that failed (the killed worker's tune task out of retries) never reaches the
    study summary: its trial and child run stayed RUNNING for ever under the FAILED parent run.
    finish (release_lock, once every worker ended) fails them; two workers on SQLite: the
    study is in the journal file."""
    import optuna

    from retune import tracking
    from retune.storage import open_storage

    _demo_state(tmp_path, monkeypatch, demo_raw, n_workers=2)
    ctx = pipeline.prepare("demo", window_kind="reference", key="killed-then-failed")
    pipeline.warm_start(ctx)
    pipeline.tune_worker(ctx, 0)
    cfg = pipeline.load_named_config("demo")
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(settings, cfg.tuning, n_workers=2))
    cl = tracking.client(settings)
    lost, child = _lose_a_trial(study, cl, ctx)

    # the DAG passes the study's name; without it, it is read from the parent run
    pipeline.finish("demo", None, registered=None, parent_run_id=ctx["parent_run_id"])
    assert study.trials[lost.number].state == optuna.trial.TrialState.FAIL
    run = cl.get_run(child)
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_state"] == "FAIL"
    assert cl.get_run(ctx["parent_run_id"]).info.status == "FAILED"
    assert [t.state for t in study.trials[:2]] == [optuna.trial.TrialState.COMPLETE] * 2

    again, child = _lose_a_trial(study, cl, ctx)
    pipeline.finish("demo", None, registered=None, parent_run_id=ctx["parent_run_id"], study_name=ctx["study_name"])
    assert study.trials[again.number].state == optuna.trial.TrialState.FAIL
    assert cl.get_run(child).info.status == "FAILED"

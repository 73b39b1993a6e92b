"""pipeline.drift_windows: what a drift check compares, from the champion's registry tags."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retune import pipeline


@pytest.fixture
def client(tmp_path: Path, restore_mlflow_uris: None) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(cl: Any, tags: dict[str, str]) -> None:
    cl.create_registered_model("demo-demand")
    version = cl.create_model_version("demo-demand", "file:///nowhere/model", tags=tags)
    cl.set_registered_model_alias("demo-demand", "champion", version.version)


@pytest.mark.parametrize(
    ("tags", "start", "end"),
    [
        # a reference period with only a start: register wrote retune.train_end="" (old versions)
        (
            {pipeline.TRAIN_START_TAG: "2025-01-01T00:00:00+00:00", pipeline.TRAIN_END_TAG: ""},
            datetime(2025, 1, 1, tzinfo=UTC),
            None,
        ),
        ({pipeline.TRAIN_START_TAG: "2025-01-01T00:00:00+00:00"}, datetime(2025, 1, 1, tzinfo=UTC), None),  # what it writes now
        ({pipeline.TRAIN_END_TAG: "2025-03-01T00:00:00+00:00"}, None, datetime(2025, 3, 1, tzinfo=UTC)),
    ],
)
def test_a_champion_trained_on_an_open_reference_period_is_the_drift_reference(
    make_cfg: Callable[..., Any], client: Any, tags: dict[str, str], start: datetime | None, end: datetime | None
) -> None:
    """Parsing "" raised ValueError in every drift check of that model, after retries."""
    _champion(client, {**tags, "retune.window_kind": "reference"})
    reference, production = pipeline.drift_windows(make_cfg(), datetime(2025, 6, 1, tzinfo=UTC), client)
    assert (reference.kind, reference.start, reference.end) == ("reference", start, end)
    assert production.end == datetime(2025, 6, 1, tzinfo=UTC)


def test_a_champion_without_training_bounds_falls_back_to_the_configs_reference(
    make_cfg: Callable[..., Any], client: Any
) -> None:
    _champion(client, {"retune.window_kind": "reference"})
    cfg = make_cfg()
    reference, _ = pipeline.drift_windows(cfg, datetime(2025, 6, 1, tzinfo=UTC), client)
    assert (reference.start, reference.end) == (cfg.data.reference.start, cfg.data.reference.end)

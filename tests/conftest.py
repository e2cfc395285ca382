"""Shared fixtures of the integration tests: one local pipeline run per dataset, reused; every
test checks that its inputs (the shared samples, the data roots it passed) are unchanged."""

from __future__ import annotations

import pytest

from tfjoint.bench.joint import FULL
from tfjoint.datasets import samples
from tfjoint.pipeline import runners
from tfjoint.pipeline.conftest import _inputs_unchanged, _shared_data_fingerprint  # noqa: F401 - autouse


@pytest.fixture
def shared_data():
    """The read-only real samples (../shared/data); tests that read them skip without them."""
    try:
        return samples.shared_data_dir()
    except FileNotFoundError as e:
        pytest.skip(f"the read-only real samples are not beside this checkout: {e}")


@pytest.fixture(scope="session")
def synthetic_run_args(tmp_path_factory):
    """``run_local``'s arguments for :func:`synthetic_run`: the full joint model (every
    family's slot filled, as ``tfjoint bench joint``'s ``full``), with TFX caching on so a test
    can rerun it with only the Trainer's arguments changed."""
    root = tmp_path_factory.mktemp("synthetic")
    slots = {slot: name for slot, name in FULL.items() if slot != "task_architecture"}
    return dict(
        dataset="synthetic",
        model=FULL["task_architecture"],
        pipeline_root=str(root / "pipeline"),
        serving_dir=str(root / "serving"),
        dataset_kwargs={"n": 6000},
        hparams={"epochs": 3, **slots},
        enable_cache=True,
    )


@pytest.fixture(scope="session")
def synthetic_run(synthetic_run_args):
    """The full joint model through the whole pipeline: behavior-aware E^B, E^M over the item
    tags, STAR, PLE and uncertainty weighting. The Evaluator, the Pusher and the serving tests
    judge it."""
    return runners.run_local(**synthetic_run_args)

"""Shared fixtures of the integration tests: one local pipeline run per dataset, reused."""

from __future__ import annotations

import pytest

from tfjoint.datasets import samples
from tfjoint.pipeline import runners


@pytest.fixture
def shared_data():
    """The read-only real samples (../shared/data); tests that read them skip without them."""
    try:
        return samples.shared_data_dir()
    except FileNotFoundError as e:
        pytest.skip(f"the read-only real samples are not beside this checkout: {e}")


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return runners.run_local(
        dataset="synthetic",
        model="mmoe",
        pipeline_root=str(root / "pipeline"),
        serving_dir=str(root / "serving"),
        dataset_kwargs={"n": 6000},
        hparams={"epochs": 3},
    )

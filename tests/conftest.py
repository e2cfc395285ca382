"""Shared fixtures of the integration tests: one local pipeline run per dataset, reused."""

from __future__ import annotations

import pytest

from tfjoint.pipeline import runners


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

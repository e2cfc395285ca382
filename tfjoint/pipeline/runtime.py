"""Runtime parameters of the compiled (Kubeflow Pipelines V2) pipeline: data root, epochs
and model, chosen when a run is submitted, not when the pipeline is compiled.

TFX's ``RuntimeParameter`` replaces a whole execution property. The data root is one
(ImportExampleGen's ``input_base``); epochs and model are keys of the Trainer's JSON
``custom_config``, which the V2 compiler cannot template. So :func:`RuntimeOverrides`, a
one-step Python component, turns the three parameters into a JSON file that reaches the
Trainer through its ``hyperparameters`` input; ``run_fn`` applies it over ``custom_config``
(:func:`merged_config`). A local run has no such component and the Trainer's config is the
compiled one.
"""

# No `from __future__ import annotations`: TFX reads the component's type hints at runtime.

import dataclasses
import json
import os
from typing import Any

from tfx import v1 as tfx
from tfx.types.standard_artifacts import HyperParameters

OVERRIDES_FILENAME = "overrides.json"
PARAMETER_NAMES = ("data_root", "epochs", "model")


@dataclasses.dataclass(frozen=True)
class RuntimeParameters:
    """The pipeline's runtime parameters (their names are the keys of the submitted run's
    ``parameter_values``)."""

    data_root: Any
    epochs: Any
    model: Any


def runtime_parameters(*, data_root: str, epochs: int, model: str) -> RuntimeParameters:
    """``RuntimeParameter`` objects whose defaults are the compiled values."""
    param = tfx.dsl.experimental.RuntimeParameter
    return RuntimeParameters(
        data_root=param(name="data_root", ptype=str, default=data_root),
        epochs=param(name="epochs", ptype=int, default=int(epochs)),
        model=param(name="model", ptype=str, default=model),
    )


def overrides(data_root: str, epochs: int, model: str) -> dict[str, Any]:
    """The Trainer config keys the runtime parameters set (the warmup records follow the
    data root, as :func:`tfjoint.pipeline.pipeline.create_pipeline` derives them)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be an integer > 0. Received: {epochs}")
    return {"epochs": int(epochs), "model": model, "warmup_examples": os.path.join(data_root, "eval", "*")}


@tfx.dsl.components.component
def RuntimeOverrides(  # noqa: N802 - a TFX component class name
    data_root: tfx.dsl.components.Parameter[str],
    epochs: tfx.dsl.components.Parameter[int],
    model: tfx.dsl.components.Parameter[str],
    overrides_file: tfx.dsl.components.OutputArtifact[HyperParameters],
) -> None:
    """Writes :func:`overrides` of the run's parameters as the Trainer's ``hyperparameters``."""
    from tfx.dsl.io import fileio

    with fileio.open(os.path.join(overrides_file.uri, OVERRIDES_FILENAME), "w") as f:
        f.write(json.dumps(overrides(data_root, epochs, model)))


def merged_config(custom_config: dict[str, Any] | None, hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """The Trainer's config: ``custom_config`` with the runtime overrides (if any) on top."""
    return {**(custom_config or {}), **(hyperparameters or {})}

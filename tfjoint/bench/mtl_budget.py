"""What both experiments of ``tfjoint bench mtl-synthetic`` share: the training budget every
model of an experiment gets, and the mean ± std over seeds that every table reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

# Adam's learning rate in both experiments.
LEARNING_RATE = 3e-3
# Traced steps run this many at a time: the same updates, a third of the time (these
# models are so small that the per-step overhead dominates).
STEPS_PER_EXECUTION = 32


@dataclasses.dataclass(frozen=True)
class Budget:
    """The training budget every model of one experiment gets."""

    epochs: int
    batch_size: int
    learning_rate: float
    # Runs the steps eagerly: the same updates, and faster for tiny runs, whose time would
    # otherwise go into tracing the training step.
    run_eagerly: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and learning_rate > 0. Received: {self}")

    def compile_kwargs(self) -> dict[str, Any]:
        """``Model.compile`` arguments besides the optimizer; traced steps run
        :data:`STEPS_PER_EXECUTION` at a time."""
        if self.run_eagerly:
            return {"run_eagerly": True}
        return {"run_eagerly": False, "steps_per_execution": STEPS_PER_EXECUTION}


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` of ``values``, one per seed; ``std`` is the sample
    standard deviation, 0 for a single value."""
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}

"""Gate monitoring: the mean gate weight per expert per task, as Keras metrics.

Expert collapse (every task's gate putting its weight on one expert) is the most common
silent failure of MMoE-style models. A gated layer calls :func:`track_gates` from ``call``
with its gate weights; the metrics ``gate_<task>_expert_<i>`` then appear in ``fit``'s logs
and history (the joint model collects sublayer metrics) and reset every epoch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
from keras import ops


_enabled = True


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Traces without the metric updates: serving graphs must not carry stateful
    monitoring ops."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def create_gate_trackers(layer: keras.layers.Layer, num_experts: dict[str, int]) -> None:
    """Creates one ``Mean`` metric per task and expert on ``layer`` (call from ``build``)."""
    layer.gate_trackers = {
        task: [keras.metrics.Mean(name=f"gate_{task}_expert_{i}") for i in range(n)]
        for task, n in num_experts.items()
    }


def track_gates(layer: keras.layers.Layer, gates: dict[str, Any]) -> None:
    """Adds the batch means of ``gates[task]`` (``(batch, num_experts)``) to the trackers."""
    if not _enabled:
        return
    for task, weights in gates.items():
        weights = ops.cast(weights, "float32")
        rows = ops.cast(ops.shape(weights)[0], "float32")
        # Weighted by the batch size, so an empty batch (the end of a dataset of unknown
        # length can yield one) changes nothing.
        sums = ops.sum(weights, axis=0)
        for i, tracker in enumerate(layer.gate_trackers[task]):
            tracker.update_state(sums[i] / ops.maximum(rows, 1.0), sample_weight=rows)
